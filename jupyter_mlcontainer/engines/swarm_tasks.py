"""Reading a Swarm's tasks and nodes back: a kernel task's state as a container's, why it ended or
could not be placed, its published ports, the GPUs each node advertises, and the kernels' deaths
as ``die`` events (:class:`TaskEnds`), polled from the manager, whose event stream carries no
container event of other nodes. For :class:`~.swarm.SwarmBackend`.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..core.errors import EngineError, GpuRequestUnsatisfiable, WorkspaceNotOnEngineHost
from ..core.labels import LABEL_KERNEL_ID
from .docker_errors import missing_bind_source
from .polled_events import PolledEvents, die_event
from .swarm_spec import GPU_RESOURCE

ENDED = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
WAITING = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
PENDING = {"Running": False, "Status": "pending"}  # a service whose task is not there yet


def latest_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A service's newest task (a restart's, rather than the one it replaced); None when none."""
    tasks.sort(key=lambda t: t.get("CreatedAt", ""))
    return tasks[-1] if tasks else None


def task_state(status: dict[str, Any]) -> dict[str, Any]:
    """A task's ``Status`` as a container's ``State`` (Running, Status, ExitCode, Error)."""
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    error = status.get("Err", "")
    if error.startswith("task: non-zero exit"):  # the exit code says it
        error = ""
    return {"Running": status.get("State") == "running", "Status": status.get("State"),
            "ExitCode": code if code is not None else -1, "Error": error, "OOMKilled": False}


def lost_state(reason: str) -> dict[str, Any]:
    """The ``State`` of a task whose node is gone (``reason``: :func:`node_lost`)."""
    return {"Running": False, "Status": "node-down", "ExitCode": -1, "Error": reason, "OOMKilled": False}


def may_be_lost(status: dict[str, Any]) -> bool:
    """Whether a task's last word may have come from a node that no longer answers ("running",
    or the scheduler's "assigned node no longer meets constraints"): then its node is asked."""
    return status.get("State") not in ("complete", *WAITING)


def node_lost(node: dict[str, Any] | None, node_id: str) -> str:
    """Why the node ``node_id`` (its inspect data; None: the manager knows it no more) cannot be
    running anything of ours; "" while it is up."""
    if node is None:
        return f"Swarm node {node_id[:12]}, where it ran, has left the cluster"
    status = node.get("Status") or {}
    if status.get("State") in ("down", "disconnected"):
        reason = f" ({status['Message']})" if status.get("Message") else ""
        return f"Swarm node {node['Description']['Hostname']}, where it ran, is {status['State']}{reason}"
    return ""


def ended_error(task: dict[str, Any], state: str, node: str) -> EngineError:
    """Why a kernel's task on ``node`` ended before it ran: the workspace missing on the node
    (WorkspaceNotOnEngineHost), else the node's words and the exit code."""
    status = task["Status"]
    error = status.get("Err") or status.get("Message") or ""
    missing = missing_bind_source(error)
    if missing:
        return WorkspaceNotOnEngineHost(
            f"{missing} does not exist on Swarm node {node}, where the kernel was placed: a kernel "
            "on a Swarm needs its notebook folder (and a host-folder cache) at the same path on every "
            "node, on shared storage such as NFS"
        )
    return EngineError(f"The kernel's task on {node} {state}: {error}" + _exit_text(status))


def unplaced_error(task: dict[str, Any] | None, state: str, timeout: float) -> EngineError:
    """Why a kernel's task did not run within ``timeout`` s: no node with room (or the GPUs it
    asks for: GpuRequestUnsatisfiable), else the scheduler's words."""
    status = (task or {}).get("Status", {})
    message = status.get("Err") or status.get("Message") or state
    if "insufficient resources" in message or "no suitable node" in message:
        return GpuRequestUnsatisfiable(f"No node of the cluster can take the kernel within {timeout:.0f} s: {message}")
    return EngineError(f"The kernel's task was not running within {timeout:.0f} s ({message})")


def published_ports(task: dict[str, Any], host_ip: str) -> dict[str, list[dict[str, str]]]:
    """The ports the task's node published, as a container's ``NetworkSettings.Ports``."""
    ports = {}
    for port in (task.get("Status") or {}).get("PortStatus", {}).get("Ports") or []:
        ports[f"{port['TargetPort']}/tcp"] = [{"HostIp": host_ip, "HostPort": str(port["PublishedPort"])}]
    return ports


def node_gpus(node: dict[str, Any]) -> list[str]:
    """The GPU ids a node advertises (its ``NVIDIA-GPU`` generic resources)."""
    resources = ((node.get("Description") or {}).get("Resources") or {}).get("GenericResources") or []
    return [r["NamedResourceSpec"]["Value"] for r in resources
            if (r.get("NamedResourceSpec") or {}).get("Kind") == GPU_RESOURCE]


def held_gpus(tasks: list[dict[str, Any]]) -> dict[str, str]:
    """GPU id -> the kernel id of the running task that holds it."""
    held: dict[str, str] = {}
    for task in tasks:
        kernel = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels", {}).get(LABEL_KERNEL_ID, "")
        for resource in (task.get("GenericResources") or task.get("AssignedGenericResources") or []):
            spec = resource.get("NamedResourceSpec") or {}
            if spec.get("Kind") == GPU_RESOURCE:
                held[spec["Value"]] = kernel
    return held


def _exit_text(status: dict[str, Any]) -> str:
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return f" (exit code {code})" if code not in (None, 0) else ""


class TaskEnds(PolledEvents):
    """The ``die`` events of kernel services' tasks, from polling the manager once a second (its
    event stream carries no container event of other nodes). Iterable; ``close()`` ends it.
    ``backend``: the :class:`~.swarm.SwarmBackend` (its ``api`` and ``call_sync``)."""

    def __init__(self, backend: Any, labels: list[str], every: float = 1.0) -> None:
        super().__init__(backend, labels, every)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        api = self.backend.api
        while not self._closed.is_set():
            services = {s["ID"] for s in self.backend.call_sync(lambda: api.services(filters={"label": self.labels}))}
            services -= self._reported
            if not services:  # no kernel of ours on the cluster: nothing else to ask
                self._closed.wait(self.every)
                continue
            # Only our services' tasks (a shared cluster runs many others').
            tasks = self.backend.call_sync(lambda: api.tasks(filters={
                "service": sorted(services), "desired-state": ["running", "shutdown"]}))
            down = {n["ID"] for n in self.backend.call_sync(api.nodes)
                    if (n.get("Status") or {}).get("State") in ("down", "disconnected")}
            yield from self._ends(tasks, services, down)
            self._closed.wait(self.every)

    def _ends(self, tasks: list[dict[str, Any]], services: set[str], down: set[str]) -> Iterator[dict[str, Any]]:
        """The ``die`` events of ``services`` whose newest task ended, or runs on a node ``down``."""
        for task in tasks:
            service = task.get("ServiceID")
            status = task.get("Status") or {}
            lost = status.get("State") == "running" and task.get("NodeID") in down
            if service not in services or (status.get("State") not in ENDED and not lost):
                continue
            if any(t.get("ServiceID") == service and t.get("CreatedAt", "") > task.get("CreatedAt", "") for t in tasks):
                continue  # an older task of a service that has a newer one
            self._reported.add(service)
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            yield die_event(service, code)
