"""Kernels on a Docker Swarm cluster: each kernel is a service with one task, on whichever node
has room (and the GPUs it asks for), behind the same :class:`~.base.ContainerBackend` seam as
a container on the local engine. The provisioner runs unchanged; what differs is here.

How a kernel container's parts map onto Swarm (docs/swarm.md says why):

* the container -> a service (``ContainerSpec.name``), one replica, restart condition ``none``
  (Jupyter's restarter decides about restarts), the spec's labels on the service and its task;
  the service id stands for the container id everywhere (kernel list, death, removal);
* files copied in (the connection file with the kernel's key, passwd and group) -> a Swarm
  secret and configs, mounted at their paths with the kernel user's uid and modes, removed with
  the service; nothing of the Jupyter host's file system is assumed on the node but the
  workspace, at the same path (shared storage);
* the five ports -> published in host mode on the task's node (the node picks them), read back
  from the task's status; the kernel is reached at the node's address in the cluster;
* GPUs -> a reservation of N ``NVIDIA-GPU`` generic resources; the task lands on a node with N
  free and the bootstrap makes the ids Swarm assigned (``DOCKER_RESOURCE_NVIDIA-GPU``) the
  kernel's visible devices;
* the engine's ``die`` events -> task states followed by polling the manager (a node's
  containers are not visible through it); a task that ends is the kernel's death, with the
  task's exit code or the node's error;
* signals -> none reach another node's container through the manager: the kernelspec
  interrupts by message; stopping the kernel removes the service.

The parts: the service's spec (:mod:`.swarm_spec`), reading tasks and nodes back
(:mod:`.swarm_tasks`), and what the manager's own engine answers (:mod:`.image_engine`).
"""
# Just over 400 lines because of the mapping above: the class itself is the seam's members only.

from __future__ import annotations

import itertools
import signal as signals
import threading
import time
from typing import Any

from docker.types import ConfigReference, SecretReference, ServiceMode

from ..core.errors import ContainerNotFound, EngineError
from ..core.identity import HostUser
from ..core.labels import LABEL_IMAGE, LABEL_KERNEL_ID, LABEL_ROLE
from .base import ContainerSpec, EngineKind, EngineLocation
from .image_engine import ImageEngine
from .swarm_spec import (
    LABEL_SERVICE,
    file_reference,
    helper_task,
    holds_secret,
    keeper_container,
    kernel_endpoint,
    kernel_task,
)
from .swarm_tasks import (
    ENDED,
    PENDING,
    TaskEnds,
    ended_error,
    held_gpus,
    latest_task,
    lost_state,
    may_be_lost,
    node_gpus,
    node_lost,
    published_ports,
    task_state,
    unplaced_error,
)

_names = itertools.count()
_NO_EXEC = "A Swarm manager runs no command in a container on another node (freeze asks the kernel instead)"


class SwarmBackend(ImageEngine):
    """The operations of :class:`~.base.ContainerBackend` on a Swarm manager (``manager_url``,
    a DOCKER_HOST; None: the environment's). Kernels are services on the nodes (here); images,
    probes, volumes and the engine's own answers go to the manager's engine
    (:class:`~.image_engine.ImageEngine`)."""

    helpers_reach_kernels = False  # a short helper runs on the manager's own engine, not on the nodes
    gpus_placed_by_scheduler = True  # N of the nodes' NVIDIA-GPU generic resources, reserved by count
    delivers_signals = False  # the manager reaches no container on another node: kernels interrupt by message
    is_cluster = True
    # The node is known once the task is placed: nothing of this host but the workspace is assumed
    # there, and the kernel is reached at its node's address (create_and_start_sync's Node.Addr).
    location = EngineLocation(False, "")

    def __init__(self, manager_url: str | None) -> None:
        super().__init__(manager_url)
        self._addresses: dict[str, tuple[str, str]] = {}  # node id -> (hostname, address)
        self._nodes_of: dict[str, str] = {}  # kernel id -> the node its last task ran on

    # -- the engine as the provisioner sees it: the manager's, with GPUs placed by Swarm

    def kernel_user_sync(self) -> HostUser | None:
        return None  # kernels run as this process's user, on every node

    def kind_sync(self) -> EngineKind:
        kind = self.engine.kind_sync()
        return EngineKind(product=kind.product, rootless=kind.rootless, cgroup_version=kind.cgroup_version,
                          cgroup_driver=kind.cgroup_driver, gpu_devices="swarm")

    def has_nvidia_runtime_sync(self) -> bool:
        """Whether any node advertises GPUs (as generic resources)."""
        return any(node_gpus(node) for node in self.call_sync(self.api.nodes))

    def joins_network_after_start_sync(self) -> bool:
        return False  # a task joins no network of ours

    def ensure_kernel_network_sync(self, name: str) -> str:
        return ""  # a task publishes its ports on its node; it joins no network of ours

    def memory_usage_sync(self, container_id: str) -> int | None:
        return None

    # A container on another node is out of the manager's reach: freeze asks the kernel itself
    # to run its scripts (freeze/runner.py), and cannot see `docker diff`.
    def exec_sync(self, container_id: str, command: list[str]) -> tuple[int | None, str, str]:
        raise EngineError(_NO_EXEC)

    def container_diff_sync(self, container_id: str) -> list[dict[str, Any]]:
        raise EngineError(_NO_EXEC)

    # -- the cache keeper: a helper on every node

    def ensure_service_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """A long-running helper of ours on *every* node (the cache keeper: each node's own
        cache volume is set up and kept by the node's own task): a global service, restarted by
        Swarm, made once; waits until each ready node runs it, so that a kernel's first start
        on a node finds its volume set up."""
        found = [s for s in self.call_sync(lambda: self.api.services(filters={"name": spec.name}))
                 if s["Spec"]["Name"] == spec.name]
        labels = found[0]["Spec"].get("Labels") or {} if found else spec.labels
        service_id = found[0]["ID"] if found else self._create_global(spec)
        deadline = time.monotonic() + 60
        while True:
            ready = {n["ID"] for n in self.call_sync(self.api.nodes)
                     if (n.get("Status") or {}).get("State") == "ready"
                     and (n.get("Spec") or {}).get("Availability") == "active"}
            tasks = self.call_sync(lambda: self.api.tasks(filters={"service": service_id}))
            running = {t["NodeID"] for t in tasks if (t.get("Status") or {}).get("State") == "running"}
            if ready <= running or time.monotonic() > deadline:
                return {"Id": service_id, "State": {"Running": ready <= running}, "Config": {"Labels": labels}}
            failed = {t["NodeID"]: str(t["Status"].get("Err") or "") for t in tasks if t["NodeID"] in ready - running
                      and t["Status"].get("State") in ("failed", "rejected") and t["Status"].get("Err")}
            if failed:
                raise self._keeper_error(spec, failed)
            time.sleep(0.2)

    def _create_global(self, spec: ContainerSpec) -> str:
        """Create the global service ``spec`` describes; its id (another server's, when that one
        made it meanwhile)."""
        template = helper_task(keeper_container(spec), memory=spec.memory, pids=spec.pids_limit, restart="any")
        try:
            return self.call_sync(lambda: self.api.create_service(
                template, name=spec.name, labels=spec.labels, mode=ServiceMode("global"),
            ), image=spec.image)["ID"]
        except EngineError:
            found = self.call_sync(lambda: self.api.services(filters={"name": spec.name}))
            if not found:
                raise
            return found[0]["ID"]  # another server made it meanwhile

    def _keeper_error(self, spec: ContainerSpec, failed: dict[str, str]) -> EngineError:
        """Why the global service cannot start on the nodes ``failed`` (node id -> its error)."""
        nodes = ", ".join(sorted(self._node(node)[0] for node in failed))
        error = next(iter(failed.values()))
        if "no such image" in error.lower():
            return EngineError(
                f"{spec.name} cannot start on {nodes}: the image {spec.image} is not there. Load it on every "
                f"node as the kernels' images are (docker save {spec.image} | docker load, on each node; "
                "`jupyter mlcontainer helper-image` makes it and says its name)")
        return EngineError(f"{spec.name} cannot start on {nodes}: {error}")

    # -- kernels

    def create_and_start_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """Create the kernel's service and wait until its task runs (or could not be placed:
        GpuRequestUnsatisfiable / EngineError with the scheduler's reason). Returns inspect-like
        data: Id (the service's), State, NetworkSettings.Ports and Node (Name, Addr)."""
        name = spec.name or f"mlc-kernel-{next(_names)}"
        secrets, configs = self._files(name, spec)
        try:
            service_id = self._create_service(name, spec, secrets, configs)
        except BaseException:
            self._remove_files(name)
            raise
        try:
            return self._running_task(service_id, spec)
        except BaseException:
            self.remove_container_sync(service_id)
            raise

    def _files(self, name: str, spec: ContainerSpec) -> tuple[list[SecretReference], list[ConfigReference]]:
        """Make the spec's files a secret (the connection file) and configs, labelled with their
        service's ``name`` so that they go with it."""
        secrets, configs = [], []
        labels = {LABEL_SERVICE: name, LABEL_ROLE: "kernel-file"}
        for index, file in enumerate(spec.files):
            file_name = f"{name}-{index}"
            if holds_secret(file):
                created = self.call_sync(lambda: self.api.create_secret(file_name, file.content, labels=labels))
                secrets.append(file_reference(file, created["ID"], file_name))
            else:
                created = self.call_sync(lambda: self.api.create_config(file_name, file.content, labels=labels))
                configs.append(file_reference(file, created["ID"], file_name))
        return secrets, configs

    def _create_service(self, name: str, spec: ContainerSpec, secrets: list, configs: list) -> str:
        template = kernel_task(spec, secrets, configs, self._constraints(spec))
        created = self.call_sync(lambda: self.api.create_service(
            template, name=name, labels=spec.labels, mode=ServiceMode("replicated", replicas=1),
            endpoint_spec=kernel_endpoint(spec),
        ), image=spec.image)
        return created["ID"]

    def _constraints(self, spec: ContainerSpec) -> list[str]:
        """A restart (it asks for its previous ports) goes back to the node it ran on: the
        clients connected before reconnect to the same address and ports."""
        node = self._nodes_of.get(spec.labels.get(LABEL_KERNEL_ID, ""))
        return [f"node.id=={node}"] if node and any(spec.ports.values()) else []

    def _running_task(self, service_id: str, spec: ContainerSpec) -> dict[str, Any]:
        """Wait until the service's task runs; its inspect-like data (see create_and_start_sync)."""
        deadline = time.monotonic() + spec.placement_timeout
        while True:
            task = self._task(service_id)
            state = (task or {}).get("Status", {}).get("State", "new")
            if state == "running":
                break
            if state in ENDED:
                raise ended_error(task, state, self._node(task.get("NodeID", ""))[0] or "the cluster")
            if time.monotonic() > deadline:
                raise unplaced_error(task, state, spec.placement_timeout)
            time.sleep(0.2)
        hostname, addr = self._node(task["NodeID"])
        if spec.labels.get(LABEL_KERNEL_ID):
            self._nodes_of[spec.labels[LABEL_KERNEL_ID]] = task["NodeID"]
        return {
            "Id": service_id,
            "Name": spec.name,
            "State": {"Running": True, "Status": "running"},
            "NetworkSettings": {"Ports": published_ports(task, spec.publish_ip)},
            "Node": {"Name": hostname, "Addr": addr, "ID": task["NodeID"]},
            "Config": {"Labels": dict(spec.labels)},
        }

    def _task(self, service_id: str) -> dict[str, Any] | None:
        return latest_task(self.call_sync(lambda: self.api.tasks(filters={"service": service_id})))

    def _node(self, node_id: str) -> tuple[str, str]:
        """(hostname, address) of a node, cached: a node keeps both while it is in the cluster."""
        if node_id and node_id not in self._addresses:
            node = self.call_sync(lambda: self.api.inspect_node(node_id))
            self._addresses[node_id] = (node["Description"]["Hostname"], node["Status"].get("Addr", ""))
        return self._addresses.get(node_id, ("", ""))

    def cluster_sync(self) -> dict[str, Any]:
        """The cluster as the status shows it: each node (hostname, role, state, address), its
        GPUs and which of them running kernel tasks hold (with the kernel ids)."""
        held = held_gpus(self.call_sync(lambda: self.api.tasks(filters={"desired-state": "running"})))
        nodes = []
        for node in self.call_sync(self.api.nodes):
            nodes.append({
                "hostname": node["Description"]["Hostname"], "role": node["Spec"].get("Role"),
                "state": node["Status"].get("State"), "address": node["Status"].get("Addr"),
                "gpus": [{"id": gpu, "kernel_id": held.get(gpu) or None} for gpu in node_gpus(node)],
            })
        nodes.sort(key=lambda n: (n["role"] != "manager", n["hostname"]))
        return {"kind": "Swarm", "manager": self.address, "nodes": nodes}

    def container_state_sync(self, container_id: str) -> dict[str, Any] | None:
        """The kernel task's state as a container's State (Running, ExitCode, Error); None when
        the service is gone."""
        try:
            task = self._task(container_id)
        except ContainerNotFound:
            return None
        if task is None:
            return None if not self._service_exists(container_id) else dict(PENDING)
        return self._state_of(task)

    def _state_of(self, task: dict[str, Any]) -> dict[str, Any]:
        status = task.get("Status") or {}
        if may_be_lost(status):
            lost = self._node_lost(task.get("NodeID", ""))
            if lost:
                return lost_state(lost)
        return task_state(status)

    def _node_lost(self, node_id: str) -> str:
        """Why the node ``node_id`` cannot be running anything of ours ("" while it is up)."""
        try:
            node = self.call_sync(lambda: self.api.inspect_node(node_id))
        except EngineError:
            node = None
        return node_lost(node, node_id)

    def inspect_container_sync(self, container_id: str) -> dict[str, Any]:
        """The kernel's service as a container's inspect data: what the kernel list and freeze
        read (labels, image, working folder, environment, mount points, state) and its node.
        ``Image`` is the manager's image of that reference (the nodes' copies come from it)."""
        service = self.call_sync(lambda: self.api.inspect_service(container_id))
        labels = (service.get("Spec") or {}).get("Labels") or {}
        container = service["Spec"]["TaskTemplate"]["ContainerSpec"]
        image = container["Image"]
        try:
            image_id = self.engine.inspect_image_sync(labels.get(LABEL_IMAGE) or image)["Id"]
        except EngineError:
            image_id = ""
        task = self._task(container_id)
        hostname, addr = self._node(task.get("NodeID", "")) if task else ("", "")
        mounts = [{"Destination": m.get("Target", ""), "Type": m.get("Type", "")}
                  for m in container.get("Mounts") or []]
        return {"Id": service["ID"], "Name": service["Spec"]["Name"], "Image": image_id,
                "State": self._state_of(task) if task else dict(PENDING),
                "Config": {"Labels": labels, "Image": image, "WorkingDir": container.get("Dir", ""),
                           "Env": container.get("Env") or []},
                "Mounts": mounts, "Node": {"Name": hostname, "Addr": addr}}

    def _service_exists(self, service_id: str) -> bool:
        try:
            self.call_sync(lambda: self.api.inspect_service(service_id))
            return True
        except ContainerNotFound:
            return False
        except EngineError as exc:
            if "not found" in str(exc).lower():
                return False
            raise

    def container_logs_sync(self, container_id: str, tail: int | str = "all") -> str:
        try:
            chunks = self.call_sync(lambda: self.api.service_logs(container_id, stdout=True, stderr=True, tail=tail))
            return b"".join(chunks).decode(errors="replace")
        except EngineError:
            return ""

    def signal_container_sync(self, container_id: str, signum: int) -> None:
        """Swarm reaches no container on another node with a signal: stopping (TERM, KILL)
        removes the service; an interrupt goes by message (the kernelspec says so)."""
        if signum in (signals.SIGKILL, signals.SIGTERM):
            self.remove_container_sync(container_id)
            return
        raise EngineError(f"Swarm kernels take no signal {signum}: they are interrupted by message")

    def remove_container_sync(self, container_id: str, *, for_restart: bool = False) -> None:
        """Remove the kernel's service (Swarm stops its task) and its secrets and configs."""
        name = ""
        try:
            service = self.call_sync(lambda: self.api.inspect_service(container_id))
            name = service["Spec"]["Name"]
            self.call_sync(lambda: self.api.remove_service(container_id))
        except ContainerNotFound:
            pass
        except EngineError as exc:
            if "not found" not in str(exc).lower():
                raise
        if name:
            self._remove_files(name)

    def _remove_files(self, name: str) -> None:
        # A secret in use by a task that is still stopping cannot go yet: retried briefly.
        deadline = time.monotonic() + 30
        for listing, remove in ((self.api.secrets, self.api.remove_secret), (self.api.configs, self.api.remove_config)):
            for item in self.call_sync(lambda: listing(filters={"label": f"{LABEL_SERVICE}={name}"})):
                while True:
                    try:
                        self.call_sync(lambda: remove(item["ID"]))
                        break
                    except EngineError as exc:
                        if "in use" not in str(exc) or time.monotonic() > deadline:
                            break
                        time.sleep(0.2)

    def containers_sync(self, labels: list[str], *, all: bool = True) -> list[dict[str, Any]]:
        """Kernel services with ``labels``, as container rows (Id, Names, Labels, State, Image)."""
        rows = []
        for service in self.call_sync(lambda: self.api.services(filters={"label": labels})):
            spec = service.get("Spec") or {}
            task = self._task(service["ID"])
            state = self._state_of(task) if task else {"Status": "pending"}
            rows.append({"Id": service["ID"], "Names": [f"/{spec.get('Name', '')}"], "Labels": spec.get("Labels") or {},
                         "State": state.get("Status") or "", "Status": state.get("Error") or state.get("Status") or "",
                         "Image": spec["TaskTemplate"]["ContainerSpec"]["Image"],
                         "Node": self._node(task.get("NodeID", ""))[0] if task else ""})
        return rows

    def our_containers_sync(self, role: str | None = None) -> list[dict[str, Any]]:
        return self.containers_sync([f"{LABEL_ROLE}={role}" if role else LABEL_ROLE])

    def events_stream(self, *, since: float, events: list[str], labels: list[str]) -> TaskEnds:
        """The kernels' deaths (``die``), polled from the manager: a service whose task ended.
        ``since`` and ``events`` go unused (the manager keeps no past task events to replay)."""
        return TaskEnds(self, labels)

    # -- the nodes' images (base.ClusterBackend)

    def image_on_nodes(self, image: str, python: str) -> dict[str, str]:
        from .swarm_images import image_on_nodes

        return image_on_nodes(self, image, python)

    def cached_node_images(self, image: str, python: str) -> dict[str, Any]:
        from .swarm_images import node_images

        return node_images().states(self, image, python)


_backends: dict[str | None, SwarmBackend] = {}
_backends_lock = threading.Lock()


def get_swarm(manager_url: str | None = None) -> SwarmBackend:
    """The process-wide backend for the Swarm whose manager is ``manager_url`` (None: the
    environment's DOCKER_HOST, else the local socket, as :func:`~.docker.get_engine`)."""
    with _backends_lock:
        backend = _backends.get(manager_url)
        if backend is None:
            backend = _backends[manager_url] = SwarmBackend(manager_url)
        return backend
