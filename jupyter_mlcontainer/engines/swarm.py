"""Kernels on a Docker Swarm cluster: each kernel is a service with one task, on whichever node
has room (and the GPUs it asks for), behind the same :class:`~.backend.ContainerBackend` seam as
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
"""

from __future__ import annotations

import itertools
import posixpath
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import docker
from docker.types import (
    ConfigReference, ContainerSpec as SwarmContainerSpec, Mount, Placement, Resources, RestartPolicy,
    SecretReference, ServiceMode, TaskTemplate,
)

from .base import CONNECTION_FILE_IN_CONTAINER, CONNECTION_SECRET_ENV, NO_NEW_PRIVS_ENV, ContainerSpec, EngineKind
from ..core.labels import LABEL_IMAGE, LABEL_KERNEL_ID, LABEL_ROLE
from .docker import Engine, get_engine, missing_bind_source
from ..core.errors import ContainerNotFound, EngineError, GpuRequestUnsatisfiable, WorkspaceNotOnEngineHost

T = TypeVar("T")

GPU_RESOURCE = "NVIDIA-GPU"  # the generic resource nodes advertise (dockerd --node-generic-resource)
LABEL_SERVICE = "org.jupyter.mlcontainer.service"  # on a kernel's secrets and configs: their service's name
ENDED = ("complete", "failed", "shutdown", "rejected", "orphaned", "remove")
WAITING = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
_names = itertools.count()
_NO_EXEC = "A Swarm manager runs no command in a container on another node (freeze asks the kernel instead)"
SECRET_PATH = "/run/secrets/mlcontainer-kernel.json"  # the bootstrap copies it where the kernel writes


def helper_task(container: SwarmContainerSpec, *, memory: str | None, pids: int | None, restart: str) -> TaskTemplate:
    """The task of a helper service of ours (the cache keeper, an image probe): its container as
    given (capabilities dropped, read-only), with a memory and a process limit. A service of API
    1.41 can be put on no network only by giving it none of its own (it keeps the node's bridge),
    and has no no-new-privileges field: the keeper sets that on itself; a probe runs with every
    capability dropped, no mount and no secret, for the milliseconds of an empty program."""
    resources = Resources(mem_limit=_bytes(memory))
    if pids:
        resources.setdefault("Limits", {})["Pids"] = pids
    return TaskTemplate(container, resources=resources, restart_policy=RestartPolicy(condition=restart))


class SwarmBackend:
    """The operations of :class:`~.backend.ContainerBackend` on a Swarm manager (``manager_url``,
    a DOCKER_HOST). Images, probes and volumes go to the manager's own engine."""

    helpers_reach_kernels = False  # a short helper runs on the manager's own engine, not on the nodes

    def __init__(self, manager_url: str) -> None:
        self.engine: Engine = get_engine(manager_url)
        self.base_url = manager_url
        self._addresses: dict[str, tuple[str, str]] = {}  # node id -> (hostname, address)
        self._nodes_of: dict[str, str] = {}  # kernel id -> the node its last task ran on

    # -- the seam's plumbing: the manager's engine does it
    @property
    def address(self) -> str:
        return self.engine.address

    @property
    def api(self) -> docker.APIClient:
        return self.engine.api

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.engine.run_blocking(fn, *args)

    def call_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.engine.call_sync(fn, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Images, probes, volumes, info: the manager's engine (it has the images the nodes run).
        if name == "engine":  # not set yet (copies, pickling): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)

    def kind_sync(self) -> EngineKind:
        kind = self.engine.kind_sync()
        return EngineKind(product=kind.product, rootless=kind.rootless, cgroup_version=kind.cgroup_version,
                          cgroup_driver=kind.cgroup_driver, gpu_devices="swarm")

    def has_nvidia_runtime_sync(self) -> bool:
        """Whether any node advertises GPUs (as generic resources)."""
        return any(self._node_gpus(node) for node in self.call_sync(self.api.nodes))

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

    def ensure_service_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """A long-running helper of ours on *every* node (the cache keeper: each node's own
        cache volume is set up and kept by the node's own task): a global service, restarted by
        Swarm, made once; waits until each ready node runs it, so that a kernel's first start
        on a node finds its volume set up."""
        found = [s for s in self.call_sync(lambda: self.api.services(filters={"name": spec.name}))
                 if s["Spec"]["Name"] == spec.name]
        labels = found[0]["Spec"].get("Labels") or {} if found else spec.labels
        if found:
            service_id = found[0]["ID"]
        else:
            container = SwarmContainerSpec(
                spec.image, command=spec.entrypoint, args=spec.command, user=spec.user, labels=spec.labels,
                mounts=[Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts],
                cap_add=spec.cap_add, cap_drop=spec.cap_drop, read_only=spec.read_only,
            )
            template = helper_task(container, memory=spec.memory, pids=spec.pids_limit, restart="any")
            try:
                service_id = self.call_sync(lambda: self.api.create_service(
                    template, name=spec.name, labels=spec.labels, mode=ServiceMode("global"),
                ), image=spec.image)["ID"]
            except EngineError:
                found = self.call_sync(lambda: self.api.services(filters={"name": spec.name}))
                if not found:
                    raise
                service_id = found[0]["ID"]  # another server made it meanwhile
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
                nodes = ", ".join(sorted(self._node(node)[0] for node in failed))
                error = next(iter(failed.values()))
                if "no such image" in error.lower():
                    raise EngineError(
                        f"{spec.name} cannot start on {nodes}: the image {spec.image} is not there. Load it on every "
                        f"node as the kernels' images are (docker save {spec.image} | docker load, on each node; "
                        "`jupyter mlcontainer helper-image` makes it and says its name)")
                raise EngineError(f"{spec.name} cannot start on {nodes}: {error}")
            time.sleep(0.2)

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
        secrets, configs = [], []
        labels = {LABEL_SERVICE: name, LABEL_ROLE: "kernel-file"}
        for index, file in enumerate(spec.files):
            file_name = f"{name}-{index}"
            if file.path == CONNECTION_FILE_IN_CONTAINER:  # holds the kernel's key: a secret
                created = self.call_sync(lambda: self.api.create_secret(file_name, file.content, labels=labels))
                secrets.append(SecretReference(created["ID"], file_name, filename=SECRET_PATH, uid=str(file.uid),
                                               gid=str(file.gid), mode=0o400))
            else:
                created = self.call_sync(lambda: self.api.create_config(file_name, file.content, labels=labels))
                configs.append(ConfigReference(created["ID"], file_name, filename=file.path, uid=str(file.uid),
                                               gid=str(file.gid), mode=file.mode))
        return secrets, configs

    def _create_service(self, name: str, spec: ContainerSpec, secrets: list, configs: list) -> str:
        gpus = sum(max(request.count or len(request.device_ids), 0) for request in spec.gpus)
        if any(request.count == -1 for request in spec.gpus):
            raise GpuRequestUnsatisfiable("On a Swarm cluster a kernel asks for a number of GPUs (--gpus 2), not all")
        mounts = [Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts]
        env = {**spec.env, NO_NEW_PRIVS_ENV: "1"}  # the bootstrap sets it: services have no such option
        if spec.shm_size:  # a service has no --shm-size: /dev/shm as a tmpfs of that size
            mounts.append(Mount(target="/dev/shm", source=None, type="tmpfs", tmpfs_size=_bytes(spec.shm_size),
                                tmpfs_mode=0o1777))
        if secrets:  # the kernel rewrites its connection file: a private, writable folder for it
            mounts.append(Mount(target=posixpath.dirname(CONNECTION_FILE_IN_CONTAINER), source=None, type="tmpfs",
                                tmpfs_mode=0o1777, tmpfs_size=1 << 20))
            env[CONNECTION_SECRET_ENV] = SECRET_PATH
        container = SwarmContainerSpec(
            spec.image, command=spec.entrypoint, args=spec.command, env=env, workdir=spec.working_dir,
            user=spec.user, labels=spec.labels, secrets=secrets, configs=configs, init=spec.init,
            mounts=mounts, cap_drop=spec.cap_drop, read_only=spec.read_only,
        )
        template = TaskTemplate(
            container, restart_policy=RestartPolicy(condition="none"),
            resources=Resources(
                mem_limit=_bytes(spec.memory), cpu_limit=spec.nano_cpus,
                generic_resources={GPU_RESOURCE: gpus} if gpus else None,
            ),
            placement=Placement(constraints=self._constraints(spec)),
        )
        # Host mode: each port on the task's node, chosen by the node; read back from the task.
        endpoint = {"Ports": [{"Protocol": "tcp", "TargetPort": port, "PublishMode": "host",
                               **({"PublishedPort": host} if host else {})} for port, host in spec.ports.items()]}
        created = self.call_sync(lambda: self.api.create_service(
            template, name=name, labels=spec.labels, mode=ServiceMode("replicated", replicas=1), endpoint_spec=endpoint,
        ), image=spec.image)
        return created["ID"]

    def _constraints(self, spec: ContainerSpec) -> list[str]:
        """A restart (it asks for its previous ports) goes back to the node it ran on: the
        clients connected before reconnect to the same address and ports."""
        node = self._nodes_of.get(spec.labels.get(LABEL_KERNEL_ID, ""))
        return [f"node.id=={node}"] if node and any(spec.ports.values()) else []

    def _running_task(self, service_id: str, spec: ContainerSpec) -> dict[str, Any]:
        deadline = time.monotonic() + spec.placement_timeout
        while True:
            task = self._task(service_id)
            state = (task or {}).get("Status", {}).get("State", "new")
            if state == "running":
                break
            if state in ENDED:
                status = task["Status"]
                node = self._node(task.get("NodeID", ""))[0] or "the cluster"
                error = status.get("Err") or status.get("Message") or ""
                missing = missing_bind_source(error)
                if missing:
                    raise WorkspaceNotOnEngineHost(
                        f"{missing} does not exist on Swarm node {node}, where the kernel was placed: a kernel "
                        "on a Swarm needs its notebook folder (and a host-folder cache) at the same path on every "
                        "node, on shared storage such as NFS"
                    )
                raise EngineError(f"The kernel's task on {node} {state}: {error}" + _exit_text(status))
            if time.monotonic() > deadline:
                message = (task or {}).get("Status", {}).get("Err") or (task or {}).get("Status", {}).get("Message") or state
                if "insufficient resources" in message or "no suitable node" in message:
                    raise GpuRequestUnsatisfiable(
                        f"No node of the cluster can take the kernel within {spec.placement_timeout:.0f} s: {message}"
                    )
                raise EngineError(f"The kernel's task was not running within {spec.placement_timeout:.0f} s ({message})")
            time.sleep(0.2)
        hostname, addr = self._node(task["NodeID"])
        if spec.labels.get(LABEL_KERNEL_ID):
            self._nodes_of[spec.labels[LABEL_KERNEL_ID]] = task["NodeID"]
        ports = {}
        for port in (task.get("Status") or {}).get("PortStatus", {}).get("Ports") or []:
            ports[f"{port['TargetPort']}/tcp"] = [{"HostIp": spec.publish_ip, "HostPort": str(port["PublishedPort"])}]
        return {
            "Id": service_id,
            "Name": spec.name,
            "State": {"Running": True, "Status": "running"},
            "NetworkSettings": {"Ports": ports},
            "Node": {"Name": hostname, "Addr": addr, "ID": task["NodeID"]},
            "Config": {"Labels": dict(spec.labels)},
        }

    def _task(self, service_id: str) -> dict[str, Any] | None:
        tasks = self.call_sync(lambda: self.api.tasks(filters={"service": service_id}))
        tasks.sort(key=lambda t: t.get("CreatedAt", ""))
        return tasks[-1] if tasks else None

    def _node(self, node_id: str) -> tuple[str, str]:
        if node_id and node_id not in self._addresses:
            node = self.call_sync(lambda: self.api.inspect_node(node_id))
            self._addresses[node_id] = (node["Description"]["Hostname"], node["Status"].get("Addr", ""))
        return self._addresses.get(node_id, ("", ""))

    @staticmethod
    def _node_gpus(node: dict[str, Any]) -> list[str]:
        resources = ((node.get("Description") or {}).get("Resources") or {}).get("GenericResources") or []
        return [r["NamedResourceSpec"]["Value"] for r in resources
                if (r.get("NamedResourceSpec") or {}).get("Kind") == GPU_RESOURCE]

    def cluster_sync(self) -> dict[str, Any]:
        """The cluster as the status shows it: each node (hostname, role, state, address), its
        GPUs and which of them running kernel tasks hold (with the kernel ids)."""
        held: dict[str, str] = {}  # GPU id -> kernel id
        for task in self.call_sync(lambda: self.api.tasks(filters={"desired-state": "running"})):
            kernel = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels", {}).get(LABEL_KERNEL_ID, "")
            for resource in (task.get("GenericResources") or task.get("AssignedGenericResources") or []):
                spec = resource.get("NamedResourceSpec") or {}
                if spec.get("Kind") == GPU_RESOURCE:
                    held[spec["Value"]] = kernel
        nodes = []
        for node in self.call_sync(self.api.nodes):
            gpus = self._node_gpus(node)
            nodes.append({
                "hostname": node["Description"]["Hostname"], "role": node["Spec"].get("Role"),
                "state": node["Status"].get("State"), "address": node["Status"].get("Addr"),
                "gpus": [{"id": gpu, "kernel_id": held.get(gpu) or None} for gpu in gpus],
            })
        nodes.sort(key=lambda n: (n["role"] != "manager", n["hostname"]))
        return {"manager": self.address, "nodes": nodes}

    def container_state_sync(self, container_id: str) -> dict[str, Any] | None:
        """The kernel task's state as a container's State (Running, ExitCode, Error); None when
        the service is gone."""
        try:
            task = self._task(container_id)
        except ContainerNotFound:
            return None
        if task is None:
            return None if not self._service_exists(container_id) else {"Running": False, "Status": "pending"}
        return self._state_of(task)

    def _state_of(self, task: dict[str, Any]) -> dict[str, Any]:
        status = task.get("Status") or {}
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        error = status.get("Err", "")
        if error.startswith("task: non-zero exit"):  # the exit code says it
            error = ""
        if status.get("State") not in ("complete", *WAITING):
            # The task's last word may have come from a node that no longer answers ("running",
            # or the scheduler's "assigned node no longer meets constraints"): say so.
            lost = self._node_lost(task.get("NodeID", ""))
            if lost:
                return {"Running": False, "Status": "node-down", "ExitCode": -1, "Error": lost, "OOMKilled": False}
        return {"Running": status.get("State") == "running", "Status": status.get("State"),
                "ExitCode": code if code is not None else -1, "Error": error, "OOMKilled": False}

    def _node_lost(self, node_id: str) -> str:
        """Why the node ``node_id`` cannot be running anything of ours ("" while it is up)."""
        try:
            node = self.call_sync(lambda: self.api.inspect_node(node_id))
        except EngineError:
            return f"Swarm node {node_id[:12]}, where it ran, has left the cluster"
        status = node.get("Status") or {}
        if status.get("State") in ("down", "disconnected"):
            reason = f" ({status['Message']})" if status.get("Message") else ""
            return f"Swarm node {node['Description']['Hostname']}, where it ran, is {status['State']}{reason}"
        return ""

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
        return {"Id": service["ID"], "Name": service["Spec"]["Name"], "Image": image_id,
                "State": self._state_of(task) if task else {"Running": False, "Status": "pending"},
                "Config": {"Labels": labels, "Image": image, "WorkingDir": container.get("Dir", ""),
                           "Env": container.get("Env") or []},
                "Mounts": [{"Destination": m.get("Target", ""), "Type": m.get("Type", "")} for m in container.get("Mounts") or []],
                "Node": {"Name": hostname, "Addr": addr}}

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
        import signal as signals

        if signum in (signals.SIGKILL, signals.SIGTERM):
            self.remove_container_sync(container_id)
            return
        raise EngineError(f"Swarm kernels take no signal {signum}: they are interrupted by message")

    def remove_container_sync(self, container_id: str) -> None:
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
        for kind, listing, remove in (("secret", self.api.secrets, self.api.remove_secret),
                                      ("config", self.api.configs, self.api.remove_config)):
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

    def events_stream(self, *, since: float, events: list[str], labels: list[str]) -> "TaskEnds":
        return TaskEnds(self, labels)


class TaskEnds:
    """The ``die`` events of kernel services' tasks, from polling the manager once a second (its
    event stream carries no container event of other nodes). Iterable; ``close()`` ends it."""

    def __init__(self, backend: SwarmBackend, labels: list[str], every: float = 1.0) -> None:
        self.backend, self.labels, self.every = backend, labels, every
        self._closed = threading.Event()
        self._reported: set[str] = set()

    def close(self) -> None:
        self._closed.set()

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
                yield {"Action": "die", "id": service, "time": time.time(),
                       "Actor": {"ID": service, "Attributes": {"exitCode": str(code if code is not None else -1)}}}
            self._closed.wait(self.every)


def _bytes(size: str | None) -> int | None:
    from .base import parse_size

    return parse_size(size) if size else None


def _exit_text(status: dict[str, Any]) -> str:
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return f" (exit code {code})" if code not in (None, 0) else ""


_backends: dict[str, SwarmBackend] = {}
_backends_lock = threading.Lock()


def get_swarm(manager_url: str) -> SwarmBackend:
    """The process-wide backend for the Swarm whose manager is ``manager_url``."""
    with _backends_lock:
        backend = _backends.get(manager_url)
        if backend is None:
            backend = _backends[manager_url] = SwarmBackend(manager_url)
        return backend
