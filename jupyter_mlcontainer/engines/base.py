"""The seam where kernels' containers come from: what the provisioner and the service ask of an
engine, and nothing more.

:class:`~.docker.Engine` (a Docker or Podman engine, local or remote, rootful or rootless) and
:class:`~.swarm.SwarmBackend` (a Docker Swarm) implement it: each receives the same
:class:`ContainerSpec`, answers with the same inspect data, raises the same typed errors
(core/errors.py), and says what differs through the capabilities below, so the provisioner never
asks which backend it has. :mod:`.registry` maps a kernelspec's ``placement`` to a backend.
Nothing outside ``engines/`` imports an engine SDK; callers type against :class:`ContainerBackend`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable, Protocol, TypeVar, runtime_checkable

from ..core.errors import BadRequest
from ..core.identity import HostUser

T = TypeVar("T")

# "=" and not ":": dockerd logs a deprecation warning for the ':' form at every container start.
NO_NEW_PRIVILEGES = "no-new-privileges=true"

# What the kernel's bootstrap (kernels/container_spec.py) understands, for a backend that cannot
# bind-mount the kernel's folder: where the connection file goes in the container, the variable
# naming a read-only copy of it that the bootstrap copies into place (a Swarm secret), and the one
# asking the bootstrap to set no-new-privileges on itself (a Swarm service has no such option).
CONNECTION_DIR_IN_CONTAINER = "/run/mlcontainer"
CONNECTION_FILE_IN_CONTAINER = f"{CONNECTION_DIR_IN_CONTAINER}/kernel.json"
CONNECTION_SECRET_ENV = "MLCONTAINER_CONNECTION_SECRET"
NO_NEW_PRIVS_ENV = "MLCONTAINER_NO_NEW_PRIVS"


@dataclass(frozen=True)
class EngineKind:
    """Which engine answers, as far as a container's uids go. Under a rootless engine (one per
    user, run by that user) container uid 0 *is* the user on the host and any other container uid
    is one of the user's subordinate uids, which can read neither the workspace nor the
    connection folder; a rootful engine runs container uids as the same host uids."""

    product: str = "docker"  # "docker" or "podman"
    rootless: bool = False
    cgroup_version: str = "2"
    cgroup_driver: str = ""
    # How GPUs are asked for: "runtime" (the NVIDIA runtime's device requests, Docker's --gpus)
    # or "cdi" (Container Device Interface names, nvidia.com/gpu=0: Podman, and Docker 25+
    # whose engine lists CDI devices and has no NVIDIA runtime).
    gpu_devices: str = "runtime"
    # The engine's storage driver (``docker info``'s Driver: overlay2, overlay, vfs, ...; "" unknown).
    storage_driver: str = ""

    @property
    def title(self) -> str:
        if self.product == "slurm":
            return "Slurm"
        name = "Podman" if self.product == "podman" else "Docker"
        return f"rootless {name}" if self.rootless else name

    @property
    def uid_model(self) -> str:
        """How the kernel gets the user's files: ``same-uid`` (rootful: the host uid:gid
        inside), ``root-is-user`` (rootless Docker: container uid 0), ``keep-id`` (rootless
        Podman, and Slurm's rootless crun: a user namespace maps the user's own uid inside)."""
        if not self.rootless:
            return "same-uid"
        return "root-is-user" if self.product == "docker" else "keep-id"

    @property
    def limits_ignored_reason(self) -> str:
        """Why memory and CPU limits would be silently dropped by this engine ("" if enforced)."""
        if self.rootless and (self.cgroup_version == "1" or self.cgroup_driver == "none"):
            return (f"{self.title} on cgroup v{self.cgroup_version} cannot enforce memory or CPU limits "
                    "(it needs cgroup v2 with systemd delegation)")
        return ""

    @property
    def copying_storage_reason(self) -> str:
        """Why every new container costs a full copy of its image ("" when it does not): the vfs
        driver, what rootless Podman (and rootless Docker) fall back to without native or fuse
        overlay, copies the whole image into each container (a 337 MB image: 38.7 s a start on
        rootless Podman, against 2.2 s on rootless Docker with overlay2)."""
        if self.storage_driver != "vfs":
            return ""
        return (f"{self.title} stores images on vfs, which copies the whole image into every new container: "
                "each cold kernel start waits for that copy (tens of seconds for a few hundred MB)")

    @property
    def copying_storage_fix(self) -> str:
        """What the user (or an admin) does to leave vfs for overlay on this engine ("" if not on vfs)."""
        if self.storage_driver != "vfs":
            return ""
        if self.product == "podman":
            conf = "~/.config/containers/storage.conf" if self.rootless else "/etc/containers/storage.conf"
            reset = "podman system reset" if self.rootless else "sudo podman system reset"
            return ("use overlay: install fuse-overlayfs (Debian/Ubuntu: apt install fuse-overlayfs; not needed on "
                    "Linux 5.13 or later, whose overlay works rootless), then run `" + reset + "` (it deletes all "
                    "your Podman containers, images and volumes: it must come before the driver changes), set "
                    f'driver = "overlay" under [storage] in {conf}, restart the Podman service and pull or load '
                    "your images again")
        conf = "~/.config/docker/daemon.json" if self.rootless else "/etc/docker/daemon.json"
        return ('use overlay: set "storage-driver": "overlay2" in ' + conf + (
                " (rootless: Linux 5.11 or later; else install fuse-overlayfs and set \"fuse-overlayfs\")"
                if self.rootless else "") + " and restart the daemon; images kept on vfs are not seen by the new "
                "driver: pull or load them again (docker save them first)")


@dataclass(frozen=True)
class EngineLocation:
    """Where the engine runs, seen from the Jupyter server: on this host (bind mounts of this
    host's folders work, ports published on 127.0.0.1 are reachable) or on another one (only the
    workspace is expected there, at the same path; ports are published on ``address``)."""

    local: bool
    address: str  # where the kernel's published ports are reached


def engine_location(docker_host: str | None) -> EngineLocation:
    """``DOCKER_HOST`` (or ``c.MLContainer.docker_host``) -> :class:`EngineLocation`.
    unix:// and npipe:// sockets and tcp:// to a loopback address are this host; tcp:// and
    ssh:// to any other host are remote."""
    from urllib.parse import urlsplit

    url = (docker_host or "").strip()
    if not url or url.startswith(("unix://", "npipe://", "/")):
        return EngineLocation(True, "127.0.0.1")
    host = urlsplit(url if "://" in url else f"tcp://{url}").hostname or ""
    if host in ("localhost", "127.0.0.1", "::1"):
        return EngineLocation(True, "127.0.0.1")
    return EngineLocation(False, host)


@dataclass(frozen=True)
class FileSpec:
    """A file an engine copies into a container before starting it (for engines on another
    host, which cannot bind-mount this host's private folder)."""

    path: str
    content: bytes
    mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class MountSpec:
    target: str
    source: str
    kind: str = "bind"  # "bind" | "volume"
    read_only: bool = False


@dataclass(frozen=True)
class GpuRequest:
    """GPUs asked of the engine: ``count`` of them (-1: all), or the listed ``device_ids``."""

    count: int | None = None
    device_ids: tuple[str, ...] = ()


@dataclass
class ContainerSpec:
    """Everything an engine needs to create and start one container."""

    image: str
    command: list[str]
    name: str | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # container port -> wanted host port on 127.0.0.1 (None: the engine picks one)
    ports: dict[int, int | None] = field(default_factory=dict)
    mounts: list[MountSpec] = field(default_factory=list)
    gpus: list[GpuRequest] = field(default_factory=list)
    memory: str | None = None
    nano_cpus: int | None = None
    shm_size: str | None = None
    cap_drop: list[str] | None = None
    cap_add: list[str] | None = None
    read_only: bool = False
    pids_limit: int | None = None
    restart_policy: str | None = None  # "unless-stopped" for a service (the cache keeper); kernels: none
    init: bool = False
    network: str | None = None
    # Started on no network, then joined to this one: the engine's network set-up (~0.06 s)
    # runs while the kernel imports (the provisioner's cold start on Unix sockets).
    network_after_start: str | None = None
    security_opt: list[str] = field(default_factory=lambda: [NO_NEW_PRIVILEGES])
    userns: str | None = None  # Podman's "keep-id"
    files: list[FileSpec] = field(default_factory=list)  # copied in between create and start
    publish_ip: str = "127.0.0.1"  # the address the kernel's ports are published on
    placement_timeout: float = 60.0  # a cluster: how long the task may wait for a node
    # What a batch scheduler is asked besides resources (Slurm: partition, time, account, qos) and
    # where its user's store is ("store"); engines ignore it.
    scheduler: dict[str, str] = field(default_factory=dict)


CDI_GPU_KIND = "nvidia.com/gpu"  # the kind `nvidia-ctk cdi generate` writes


def cdi_devices(gpus: list[GpuRequest]) -> list[str]:
    """GPU requests as CDI device names: ``all``, the listed indices or UUIDs, or for a count N
    the first N indices (what the NVIDIA runtime picks for ``--gpus N``)."""
    names: list[str] = []
    for request in gpus:
        if request.device_ids:
            names += [f"{CDI_GPU_KIND}={device}" for device in request.device_ids]
        elif request.count == -1:
            names.append(f"{CDI_GPU_KIND}=all")
        elif request.count:
            names += [f"{CDI_GPU_KIND}={index}" for index in range(request.count)]
    return names


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.I)


def parse_size(value: str) -> int:
    """``512m``, ``8g``, ``1.5g``, ``1048576`` -> bytes (Docker's units: powers of 1024)."""
    match = _SIZE.match(str(value))
    if not match:
        raise BadRequest(f"{value!r} is not a size: use a number with k, m, g or t (512m, 8g)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** "bkmgt".index((unit or "b").lower()))



@runtime_checkable
class ContainerBackend(Protocol):
    """The operations on containers, images and volumes that jupyter-mlcontainer needs.
    Methods ending in ``_sync`` block (call them from a thread: :meth:`run_blocking`)."""

    base_url: str | None
    address: str  # base_url, else DOCKER_HOST, else the local socket

    # -- what differs between backends: the provisioner and the service ask these, never which
    # backend they hold. A new backend answers them (engines/registry.py names it).

    # Whether a short helper container (run_to_completion_sync) runs where the kernels run and
    # sees what they see (one engine: yes; a Swarm: no, it runs on the manager's own engine).
    helpers_reach_kernels: bool
    # Whether the kernels' GPUs are placed by a scheduler (a Swarm's, a cluster's), asked for by
    # number: no check against this host's GPUs, and 'auto' means none.
    gpus_placed_by_scheduler: bool
    # Whether signals reach a kernel's process (a Swarm manager cannot signal a container on
    # another node: its kernelspecs interrupt by message).
    delivers_signals: bool
    # Whether the backend spans several machines (a cluster: the panel shows its nodes, images
    # are checked per node, the cache keeper runs on each).
    is_cluster: bool

    @property
    def location(self) -> EngineLocation:
        """Where a kernel's container runs, seen from the Jupyter server: this host (its folders
        are bind-mounted, its published ports reached on 127.0.0.1) or elsewhere (files are
        copied in, and ``address`` is where its ports are reached; empty when the scheduler
        decides the node at start: ``create_and_start_sync`` answers its ``Node.Addr``)."""

    def joins_network_after_start_sync(self) -> bool:
        """Whether a container may be created on no network and joined to its network right
        after start (``ContainerSpec.network_after_start``): the engine's network set-up then
        overlaps the kernel's imports."""

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking code in the backend's thread pool, off the event loop."""

    # -- running blocking calls
    def call_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` (blocking) here, translating the engine's errors into ours."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`call_sync` in the backend's thread pool."""

    # -- the engine itself
    def info_sync(self) -> dict[str, Any]: ...
    def kind_sync(self) -> EngineKind: ...

    def kernel_user_sync(self) -> HostUser | None:
        """Whom the kernels run as when that is not this process's user: a Slurm login's account
        (its uid owns the kernel's files on the cluster). None: this process's user, as on any
        engine. The launch names the kernel's HOME and passwd entry after it."""
    def version_sync(self) -> dict[str, Any]: ...
    def has_nvidia_runtime_sync(self) -> bool: ...
    def disk_usage_sync(self) -> dict[str, Any]: ...

    # -- kernel containers: start one from a spec, watch it, signal it, remove it
    def create_and_start_sync(self, spec: ContainerSpec) -> dict[str, Any]: ...
    def ensure_service_sync(self, spec: ContainerSpec) -> dict[str, Any]: ...
    def inspect_container_sync(self, container_id: str) -> dict[str, Any]: ...
    def container_state_sync(self, container_id: str) -> dict[str, Any] | None: ...
    def container_logs_sync(self, container_id: str, tail: int | str = "all") -> str: ...
    def wait_container_sync(self, container_id: str, timeout: float = 120) -> int: ...
    def signal_container_sync(self, container_id: str, signum: int) -> None: ...
    def remove_container_sync(self, container_id: str, *, for_restart: bool = False) -> None:
        """Remove the kernel's container. ``for_restart``: the provisioner's clean-up before the
        kernel's restart (a backend may keep what the restart reuses: a Slurm job's allocation)."""
    def containers_sync(self, labels: list[str], *, all: bool = True) -> list[dict[str, Any]]: ...
    def our_containers_sync(self, role: str | None = None) -> list[dict[str, Any]]: ...
    def events_stream(self, *, since: float, events: list[str], labels: list[str]) -> Iterable[dict[str, Any]]: ...
    def stats_stream(self, container_id: str) -> Iterable[dict[str, Any]]: ...
    def memory_usage_sync(self, container_id: str) -> int | None: ...
    def ensure_kernel_network_sync(self, name: str) -> str: ...

    # -- what freeze reads from a running kernel
    def exec_sync(self, container_id: str, command: list[str]) -> tuple[int | None, str, str]: ...
    def container_diff_sync(self, container_id: str) -> list[dict[str, Any]]: ...

    # -- images: probe, pull, build
    def inspect_image_sync(self, image: str) -> dict[str, Any]: ...
    def images_sync(self) -> list[dict[str, Any]]: ...
    def remove_image_sync(self, image: str) -> None: ...
    def import_image_sync(self, data: bytes, tag: str, changes: list[str]) -> None: ...
    def run_to_completion_sync(self, image: str, command: list[str], **options: Any) -> tuple[int, str, str]: ...
    def pull_stream(self, image: str) -> Iterable[dict[str, Any]]: ...
    def build_stream(
        self, context: IO[bytes], tag: str, *, build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Iterable[dict[str, Any]]: ...

    # -- the cache volume
    def inspect_volume_sync(self, name: str) -> dict[str, Any] | None: ...
    def create_volume_sync(self, name: str, labels: dict[str, str]) -> dict[str, Any]: ...
    def remove_volume_sync(self, name: str) -> None: ...


@runtime_checkable
class ClusterBackend(ContainerBackend, Protocol):
    """A backend whose kernels run on the nodes of a cluster (``is_cluster``): the questions the
    service asks it about the nodes, on top of the seam. Images are the manager's engine's; which
    nodes hold the same build is asked on the nodes themselves."""

    def image_on_nodes(self, image: str, python: str) -> dict[str, str]:
        """Per node: whether it holds this very build of ``image``, asked there and then (a few
        seconds). Called by ``jupyter mlcontainer image-nodes``."""
        ...

    def cached_node_images(self, image: str, python: str) -> dict[str, Any]:
        """The last answer of :meth:`image_on_nodes` and its age, refreshed in the background
        (never waits). Called by the image listing (panel, REST)."""
        ...
