"""The boundary to a Docker (or Podman) engine, local or remote, rootful or rootless.

Everything else (provisioner, kernelspecs, images, jobs, freeze, CLI, REST handlers) calls the
typed methods of :class:`Engine` (the :class:`~.base.ContainerBackend` seam), so that

* blocking SDK calls run in one thread pool (:meth:`Engine.call`, :meth:`Engine.run_blocking`),
  never on the event loop;
* engine failures become the typed errors of core/errors.py (not found, conflict, engine down,
  no GPU runtime...), each with a message a user can act on and its HTTP status;
* what a container is comes in as a :class:`~.base.ContainerSpec` (plain data), so another
  implementation (a Swarm: :mod:`.swarm`) can stand behind the same methods.

Its parts: the SDK's client (:mod:`.docker_client`), the errors (:mod:`.docker_errors`), a spec
as the Docker API's create call (:mod:`.docker_spec`), images and helper containers
(:mod:`.docker_images`), and what Podman does differently (:mod:`.podman`), which the engine asks
where its kind is Podman.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import docker
import docker.errors

from ..core.errors import Conflict, ContainerNotFound, EngineError, EngineUnavailable, MLContainerError, NotFound
from ..core.identity import HostUser
from ..core.labels import LABEL_OWNER, LABEL_ROLE
from . import podman
from .base import CDI_GPU_KIND, ContainerSpec, EngineKind, EngineLocation, engine_location
from .docker_client import EngineStream, engine_address, sdk_client
from .docker_errors import _explanation, translate
from .docker_images import EngineImages
from .docker_spec import create_container, tar_of

# LABEL_OWNER: re-exported, for a test's script that reads it here.
__all__ = ["Engine", "EngineStream", "LABEL_OWNER", "get_engine"]

T = TypeVar("T")


class Engine(EngineImages):
    """Async facade over one docker SDK client.

    One instance per engine address and process (see :func:`get_engine`); the client is
    created lazily and re-created after the engine was unreachable, so a server that
    started before dockerd recovers without a restart. Images and helper containers:
    :class:`~.docker_images.EngineImages`.
    """

    helpers_reach_kernels = True  # a helper container runs on this engine, as its kernels do
    gpus_placed_by_scheduler = False  # GPUs are this host's (NVML), asked for by index, UUID or count
    delivers_signals = True
    is_cluster = False

    def __init__(self, base_url: str | None = None, max_workers: int = 16) -> None:
        self.base_url = base_url
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mlcontainer-engine")
        self._info: dict[str, Any] | None = None
        self._kind: EngineKind | None = None

    # -- plumbing -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Where this engine is reached (for messages, the status, and whether it is local)."""
        return engine_address(self.base_url)

    @property
    def location(self) -> EngineLocation:
        """This host (a local socket, or tcp:// to loopback) or another one (its address)."""
        return engine_location(self.address)

    def joins_network_after_start_sync(self) -> bool:
        """Docker (rootful or rootless) joins a started container to a user-defined bridge with the
        same DNS and hosts entries as at create (tested); Podman is left as it was: untested."""
        return self.kind_sync().product == "docker"

    @property
    def client(self) -> docker.DockerClient:
        """The docker SDK client (blocking; call only from the pool). Raises EngineUnavailable."""
        with self._client_lock:
            if self._client is None:
                try:
                    client = sdk_client(self.base_url)
                except Exception as exc:  # from_env pings the engine for its API version
                    raise translate(exc, where=self.base_url) from exc
                self._client = client
            return self._client

    @property
    def api(self) -> docker.APIClient:
        """The SDK's low-level client (blocking), for calls inside :meth:`call_sync`."""
        return self.client.api

    def _forget_client(self) -> None:
        """After the engine did not answer: the next call makes a new client and asks again what
        the engine is (it may have been restarted, or replaced)."""
        with self._client_lock:
            self._client = None
            self._info = None
            self._kind = None

    def call_sync(self, fn: Callable[..., T], *args: Any, image: str | None = None, **kwargs: Any) -> T:
        """Run ``fn`` (a blocking SDK call) here, translating errors."""
        try:
            return fn(*args, **kwargs)
        except MLContainerError as exc:  # ours already (from a nested call, or raised on purpose)
            if isinstance(exc, EngineUnavailable):
                self._forget_client()
            raise
        except Exception as exc:
            err = translate(exc, image=image, where=self.base_url)
            if isinstance(err, EngineUnavailable):
                self._forget_client()
            raise err from exc

    async def call(self, fn: Callable[..., T], *args: Any, image: str | None = None, **kwargs: Any) -> T:
        """Run a blocking SDK call in the engine's thread pool, translating errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(self.call_sync, fn, *args, image=image, **kwargs)
        )

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking project code (which calls this engine's ``*_sync`` methods) in the
        engine's thread pool; its exceptions pass through unchanged."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    # -- engine -------------------------------------------------------------------------

    def version_sync(self) -> dict[str, Any]:
        """``docker version``: the status and the doctor show it; the provisioner pings with it."""
        return self.call_sync(lambda: self.api.version())

    def disk_usage_sync(self) -> dict[str, Any]:
        """``docker system df`` (slow on big engines: callers cache it)."""
        return self.call_sync(lambda: self.api.df())

    def info_sync(self) -> dict[str, Any]:
        """``docker info``, cached for the life of the client."""
        if self._info is None:
            self._info = self.call_sync(lambda: self.api.info())
        return self._info

    def kernel_user_sync(self) -> HostUser | None:
        return None  # kernels run as this process's user

    def kind_sync(self) -> EngineKind:
        """Docker or Podman, rootful or rootless (cached with the client). Docker lists
        ``name=rootless`` in its security options; Podman names itself in its version's
        components and says whether it is rootless in its own (libpod) info."""
        if self._kind is None:
            info, version = self.info_sync(), self.version_sync()
            is_podman = podman.is_podman(version)
            if is_podman:
                rootless = self.call_sync(lambda: podman.is_rootless(self.api))
            else:
                rootless = any("rootless" in option for option in info.get("SecurityOptions") or [])
            cdi = any(str(dev.get("ID", "")).startswith(CDI_GPU_KIND) for dev in info.get("DiscoveredDevices") or []
                      if isinstance(dev, dict))
            self._kind = EngineKind(
                product="podman" if is_podman else "docker", rootless=rootless,
                cgroup_version=str(info.get("CgroupVersion") or "1"), cgroup_driver=str(info.get("CgroupDriver") or ""),
                gpu_devices="cdi" if is_podman or (cdi and "nvidia" not in (info.get("Runtimes") or {})) else "runtime",
                storage_driver=str(info.get("Driver") or ""),
            )
        return self._kind

    def has_nvidia_runtime_sync(self) -> bool:
        """Whether this engine can give a container NVIDIA GPUs: its NVIDIA runtime, the CDI
        devices it lists (Docker 25+), or for a Podman on this host the CDI specs it reads."""
        info = self.info_sync()
        runtimes = info.get("Runtimes") or {}
        cdi = info.get("DiscoveredDevices") or []
        if "nvidia" in runtimes or any(
            str(dev.get("ID", "")).startswith(CDI_GPU_KIND) for dev in cdi if isinstance(dev, dict)
        ):
            return True
        return self.kind_sync().product == "podman" and self.location.local and podman.local_cdi_gpu_specs() != []

    # -- containers ---------------------------------------------------------------------

    def ensure_service_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """A long-running container of ours (``spec.name``): started if stopped, made if absent
        or if it cannot start (its image gone); returns its inspect data. Races with another
        server making the same one end with that one."""
        try:
            attrs = self.inspect_container_sync(spec.name)
        except ContainerNotFound:
            attrs = None
        if attrs is not None:
            if attrs["State"].get("Running"):
                return attrs
            try:
                self.call_sync(lambda: self.api.start(attrs["Id"]))
                return self.inspect_container_sync(attrs["Id"])
            except EngineError:
                self.remove_container_sync(attrs["Id"])
        try:
            return self.create_and_start_sync(spec)
        except Conflict:  # another server made it meanwhile
            return self.inspect_container_sync(spec.name)

    def create_and_start_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """Create and start the container ``spec`` describes (then join it to
        ``spec.network_after_start``, if set); return its inspect data. A container that fails to
        start is removed (PortInUse when a wanted host port is taken)."""
        def create() -> str:
            if spec.gpus and self.kind_sync().product == "podman":
                return podman.create_container(self.api, spec)  # Podman's Docker API drops GPU requests
            return create_container(self.api, spec, self.kind_sync() if spec.gpus else EngineKind())

        container_id = self.call_sync(create, image=spec.image)
        try:
            if spec.files:
                self.call_sync(lambda: self.api.put_archive(container_id, "/", tar_of(spec.files)))
            self.call_sync(lambda: self.api.start(container_id))
            if spec.network_after_start:  # created on "none", which holds no other network
                self.call_sync(lambda: self.api.disconnect_container_from_network(container_id, "none"))
                self.call_sync(lambda: self.api.connect_container_to_network(container_id, spec.network_after_start))
            return self.inspect_container_sync(container_id)
        except BaseException:
            self.remove_container_sync(container_id)
            raise

    def inspect_container_sync(self, container_id: str) -> dict[str, Any]:
        """The container's inspect data; ContainerNotFound when it is gone."""
        return self.call_sync(lambda: self.api.inspect_container(container_id))

    def container_state_sync(self, container_id: str) -> dict[str, Any] | None:
        """The container's ``State`` (Running, ExitCode, OOMKilled, Error...), None when gone."""
        try:
            return self.inspect_container_sync(container_id).get("State") or {}
        except NotFound:
            return None

    def wait_container_sync(self, container_id: str, timeout: float = 120) -> int:
        """Block until the container exits (at most ``timeout`` s); its exit code."""
        return int(self.call_sync(lambda: self.api.wait(container_id, timeout=timeout)).get("StatusCode", -1))

    def container_logs_sync(self, container_id: str, tail: int | str = "all") -> str:
        """The container's output (stdout and stderr), its last ``tail`` lines."""
        data = self.call_sync(lambda: self.api.logs(container_id, tail=tail, stdout=True, stderr=True))
        return data.decode(errors="replace")

    def signal_container_sync(self, container_id: str, signum: int) -> None:
        """Send ``signum`` to the container's first process (ContainerNotRunning, ContainerNotFound)."""
        self.call_sync(lambda: self.api.kill(container_id, signal=int(signum)))

    def exec_sync(self, container_id: str, command: list[str]) -> tuple[int | None, str, str]:
        """Run ``command`` in the running container as its user: (exit code, stdout, stderr)."""
        def run() -> tuple[int | None, str, str]:
            exec_id = self.api.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
            output = self.api.exec_start(exec_id, demux=True)
            stdout, stderr = output if isinstance(output, tuple) else (output, b"")
            code = self.api.exec_inspect(exec_id).get("ExitCode")
            return code, (stdout or b"").decode(errors="replace"), (stderr or b"").decode(errors="replace")

        return self.call_sync(run)

    def container_diff_sync(self, container_id: str) -> list[dict[str, Any]]:
        """Files the container added (1), changed (0) or deleted (2): ``docker diff``."""
        return self.call_sync(lambda: self.api.diff(container_id)) or []

    def containers_sync(self, labels: list[str], *, all: bool = True) -> list[dict[str, Any]]:
        """Containers carrying every one of ``labels`` (``key`` or ``key=value``)."""
        return self.call_sync(lambda: self.api.containers(all=all, filters={"label": labels}))

    def stats_stream(self, container_id: str) -> EngineStream:
        """The container's resource samples, one a second, until it stops. Blocking."""
        return EngineStream(self, self.call_sync(lambda: self.api.stats(container_id, stream=True, decode=True)))

    def memory_usage_sync(self, container_id: str) -> int | None:
        """The container's memory use now, in bytes, as ``docker stats`` counts it (page cache
        left out); None when the engine cannot tell. One quick sample, not a stream."""
        sample = self.call_sync(lambda: self.api.stats(container_id, stream=False, one_shot=True))
        memory = sample.get("memory_stats") or {}
        usage = memory.get("usage")
        if usage is None:
            return None
        stats = memory.get("stats") or {}
        return int(usage - (stats.get("total_inactive_file", stats.get("inactive_file", 0)) or 0))

    def events_stream(self, *, since: float, events: list[str], labels: list[str]) -> EngineStream:
        """Container events (``die``, ``oom``...) of containers with ``labels``, from ``since``."""
        if self.kind_sync().product == "podman":
            events = podman.event_filter(events)
        return EngineStream(self, self.call_sync(
            lambda: self.api.events(
                since=int(since), decode=True,
                filters={"type": ["container"], "event": events, "label": labels},
            )
        ))

    def remove_container_sync(self, container_id: str, *, for_restart: bool = False) -> None:
        """Force-remove a container (a restart's too: nothing of it is reused); a container that is
        already gone is not an error.
        EngineUnavailable when the engine does not answer (the container may still exist)."""
        def remove() -> None:
            try:
                self.api.remove_container(container_id, force=True, v=False)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "already in progress" in _explanation(exc):
                    return
                raise

        self.call_sync(remove)

    def our_containers_sync(self, role: str | None = None) -> list[dict[str, Any]]:
        """Containers (running or not) that jupyter-mlcontainer made, optionally of one role."""
        return self.containers_sync([f"{LABEL_ROLE}={role}" if role else LABEL_ROLE])

    # -- the kernels' network ---------------------------------------------------------------

    def ensure_kernel_network_sync(self, name: str) -> str:
        """Create (once) the bridge network kernel containers join: inter-container traffic is
        off, and Docker drops traffic between bridge networks, so no other container (kernels
        included) reaches a kernel's ports; its published 127.0.0.1 ports and its own outbound
        traffic (pip, model downloads) work as on the default bridge. Returns ``name``."""
        def ensure() -> str:
            try:
                attrs = self.api.inspect_network(name)
            except docker.errors.NotFound:
                try:
                    self.api.create_network(
                        name, driver="bridge", check_duplicate=True,
                        options={"com.docker.network.bridge.enable_icc": "false"},
                        labels={LABEL_ROLE: "kernel-network"},
                    )
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # made by a concurrent start: fine
                        raise
                attrs = self.api.inspect_network(name)
            icc = (attrs.get("Options") or {}).get("com.docker.network.bridge.enable_icc", "true")
            kind = self.kind_sync()
            if icc != "false" and kind.product == "podman" and kind.rootless:
                # Podman cannot turn inter-container traffic off; a rootless Podman's networks
                # hold only its own user's containers, so other users' still cannot reach kernels.
                return name
            if icc != "false":
                raise EngineError(
                    f"Docker network {name!r} exists and lets containers reach each other "
                    "(inter-container traffic on): remove it (docker network rm) or set "
                    "c.DockerKernelProvisioner.network to a network of your choice"
                )
            return name

        return self.call_sync(ensure)

    # -- volumes (the cache volume) ----------------------------------------------------------

    def inspect_volume_sync(self, name: str) -> dict[str, Any] | None:
        """The volume's inspect data; None when there is none of that name."""
        try:
            return self.call_sync(lambda: self.api.inspect_volume(name))
        except NotFound:
            return None

    def create_volume_sync(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return self.call_sync(lambda: self.api.create_volume(name=name, labels=labels))

    def remove_volume_sync(self, name: str) -> None:
        self.call_sync(lambda: self.api.remove_volume(name))


_ENGINES: dict[str | None, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(base_url: str | None = None) -> Engine:
    """The process-wide :class:`Engine` for ``base_url`` (default: DOCKER_HOST or the local socket)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(base_url)
        if engine is None:
            engine = _ENGINES[base_url] = Engine(base_url)
        return engine
