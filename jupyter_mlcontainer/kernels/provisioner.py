"""The kernel provisioner: runs a Jupyter kernel in its own Docker container.

jupyter_client creates one :class:`DockerKernelProvisioner` per kernel manager (from the
kernelspec's ``metadata.kernel_provisioner``) and keeps it across restarts. What a launch does:

* on an engine of this host the kernel binds its five sockets as Unix sockets in its private
  folder (the ipc transport: no TCP port for other users or containers to reach, nothing to
  publish), kept across restarts so open clients keep working; otherwise it binds fixed ports
  inside its own network namespace, and the engine publishes them on 127.0.0.1 with host ports
  of its own choosing (nothing is picked in advance, so no port race); a restart asks for the
  same host ports;
* its traffic is encrypted (CurveZMQ, keys provisioned here) whenever the image's kernel can,
  and it joins a network where no other container reaches its ports;
* the workspace is bind-mounted at its own absolute path and the kernel starts in the
  notebook's folder, as the uid:gid of this process, with no-new-privileges;
* the shared cache volume is mounted and the usual ML cache variables point into it;
* GPUs become engine device requests.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Bool, CaselessStrEnum, CFloat, Dict, Float, Integer, Unicode, default

from ..cache import paths as cache_paths
from ..cache.volume import ensure_cache, forget_home
from ..engines.base import CONNECTION_FILE_IN_CONTAINER, ContainerSpec, EngineLocation, GpuRequest, engine_location
from .container_spec import (
    CONTAINER_PORTS, HOME_REFUSED_EXIT, KERNEL_NETWORK, NETWORK_GATE_ENV, NETWORK_GATE_IN_CONTAINER,
    container_user_for, gpu_requests, kernel_container, kernel_environment, shm_size_for,
)
from ..engines.base import ContainerBackend
from .connection import curve_keys, ipc_base, ipc_fits, new_connection_dir, published_ports, write_connection_file
from .deaths import DeathRecord, note_engine_lost, record_death
from ..engines.docker import get_engine
from ..core.errors import (
    ContainerNotFound, ContainerNotRunning, EngineError, EngineUnavailable, GpuRequestUnsatisfiable, HomeRefused,
    PortInUse,
)
from ..machine.gpu import get_monitor, unsatisfiable_reason
from ..core.identity import HostUser, current_user, owner_id, passwd_files
from ..images.probe import ImageFacts, probe_image_sync, unusable_reason
from ..core.errors import ImageNotUsable
from ..core.policy import write_text_safely
from ..core.settings import MLContainer
from .readiness import KernelNotReady, wait_for_kernel_ports, zmq_socket_answers
from .claims import forget_claim, record_claim
from .pool import Spare, WarmPool, claimed, discard_spare, get_pool, remove_at_exit, template_of
from .watcher import get_watcher
from ..core.errors import ConfigurationError

PROVISIONER_NAME = "mlcontainer-docker"

log = logging.getLogger(__name__)


# Containers this process started and has not removed yet, with their connection folders:
# removed at interpreter exit, so a front end that exits without shutting its kernel down
# (jupyter console does) leaves neither a container nor a key file behind.
_LIVE: dict[str, tuple[ContainerBackend, str]] = {}


@atexit.register
def _remove_live_containers() -> None:
    remove_at_exit(_LIVE)


# Launches wait for their kernel's ports (up to startup_timeout) in threads of their own: in
# the engine's pool, 16 slow starts held every thread and the panel's requests queued behind them.
_LAUNCHES = ThreadPoolExecutor(max_workers=64, thread_name_prefix="mlcontainer-launch")


def _folder_files(folder: str) -> dict[str, bytes]:
    """The files of a launch's private folder (for an engine that cannot mount it)."""
    contents = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            contents[name] = f.read()
    return contents


def _env_default(name: str, fallback: str) -> str:
    return os.environ.get(name, fallback)


class DockerKernelProvisioner(KernelProvisionerBase):  # type:ignore[misc]
    """Launches each kernel in its own Docker container (``mlcontainer-docker``).

    Every option is a trait settable as ``c.DockerKernelProvisioner.<name>`` in a Jupyter
    config file, from an ``MLCONTAINER_*`` environment variable where noted, and per kernel
    in the kernelspec's ``metadata.kernel_provisioner.config`` (which wins).
    """

    image = Unicode(
        "",
        config=True,
        help="Image the kernel runs in (e.g. pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime). "
        "Must contain Python with ipykernel; `jupyter mlcontainer image prepare IMAGE` adds it.",
    )
    gpus = Unicode(
        config=True,
        help="GPUs for the kernel: 'auto' (all GPUs when the engine has an NVIDIA runtime and "
        "NVML sees GPUs, else none), 'all', 'none', a count ('2'), or device indices / UUIDs "
        "('0,1', 'GPU-...'). Env: MLCONTAINER_GPUS.",
    )
    memory = Unicode(
        config=True,
        help="Memory limit for the kernel container ('8g', '512m'); empty for none. A kernel "
        "that exceeds it is OOM-killed and the reason is reported. Env: MLCONTAINER_MEMORY.",
    )
    cpus = Unicode(
        config=True,
        help="CPU limit as a number of CPUs ('4', '0.5'); empty for none. Env: MLCONTAINER_CPUS.",
    )
    shm_size = Unicode(
        config=True,
        help="Size of /dev/shm. Docker's 64 MB default makes PyTorch DataLoader workers die with "
        "'Bus error'. 'auto' = half of the memory limit, or half of the engine's memory when "
        "there is no limit (what --ipc=host would give, without sharing IPC). Env: MLCONTAINER_SHM_SIZE.",
    )
    env = Dict(
        config=True,
        help="Extra environment variables for the kernel (added to the kernelspec's env).",
    )
    cache_volume = Unicode(
        config=True,
        help="Named volume shared by every container kernel for model and package caches "
        "(HF_HOME, TORCH_HOME, PIP_CACHE_DIR, ...) and the kernel user's HOME. Created on first "
        "use; an absolute path names a host folder on the engine's host instead. Default: "
        "c.MLContainer.cache_volume (shared with the panel and the CLI), which defaults to "
        "MLCONTAINER_CACHE_VOLUME; a kernelspec may name another.",
    )
    cache_mount_path = Unicode(
        cache_paths.DEFAULT_MOUNT_PATH, config=True, help="Where the cache volume is mounted in the container."
    )
    workspace = Unicode(
        "",
        config=True,
        help="Host folder bind-mounted read-write at the same absolute path. Default: the Jupyter "
        "server's root directory, or the kernel's working directory for a standalone kernel manager.",
    )
    network = Unicode(
        "",
        config=True,
        help="Docker network for kernel containers (their own outbound access: pip, model downloads). "
        "Default: 'mlcontainer-kernels', a bridge made on first use with inter-container traffic off, "
        "so no other container (another user's kernels included) reaches a kernel's published ports "
        "(kernel_transport 'tcp'; on Unix sockets there are none). Name another network (e.g. "
        "'bridge', or one your services are on) to let containers on it reach a kernel on 'tcp'.",
    )
    transport_encryption = CaselessStrEnum(
        ["auto", "required", "disabled"],
        "auto",
        config=True,
        help="CurveZMQ encryption of the kernel's traffic, with keys provisioned per kernel as "
        "jupyter_client's local provisioner does: 'auto' encrypts whenever the image's kernel can "
        "(ipykernel 7.4 or newer with a CURVE-enabled libzmq; the probe tells), and where the "
        "kernel's ports are published on a network other machines share (an engine on another "
        "host, a Swarm) refuses to start one that cannot; 'required' refuses that everywhere; "
        "'disabled' never encrypts (the only way to run an older ipykernel on a shared network, "
        "where anyone who reaches the node reads the kernel's output). A kernel manager whose "
        "transport_encryption is 'required' makes it required too.",
    )
    kernel_transport = CaselessStrEnum(
        ["auto", "ipc", "tcp"],
        "auto",
        config=True,
        help="How the server reaches the kernel. 'ipc': the kernel binds its five sockets as Unix "
        "sockets in its private connection folder (0700, bind-mounted into the container), so no "
        "TCP port exists: no other user of this host and no container can reach the kernel, "
        "encrypted or not, and the start skips publishing ports (~0.06 s). 'tcp': five ports "
        "published on 127.0.0.1 (on the engine's address for a remote engine). 'auto': ipc for an "
        "engine on this Linux host, tcp for a remote engine, a Swarm, or Docker Desktop (its VM's "
        "bind mounts carry no Unix sockets), and when the folder's path is too long for a Unix socket.",
    )
    use_init = Bool(
        True,
        config=True,
        help="Run an init process (docker --init) as PID 1 so that processes the kernel spawns "
        "are reaped and signals are forwarded.",
    )
    docker_host = Unicode(
        config=True,
        help="Engine address for this kernel. Default: c.MLContainer.docker_host (shared with the "
        "panel and the CLI), which defaults to DOCKER_HOST.",
    )
    placement = CaselessStrEnum(
        ["local", "swarm"],
        default_value="local",
        config=True,
        help="Where the kernel runs: 'local' (a container on the engine at docker_host) or 'swarm' (a "
        "service task on the Docker Swarm whose manager is docker_host, on whichever node has room and "
        "the GPUs asked for: --gpus N reserves N of the nodes' NVIDIA-GPU generic resources). Swarm "
        "kernels need the workspace at the same path on every node; their cache is each node's own "
        "volume, or a folder every node mounts (cache_volume = its path); they are interrupted by "
        "message. docs/swarm.md.",
    )
    placement_timeout = CFloat(
        60.0,
        config=True,
        help="placement 'swarm': seconds a kernel's task may wait for a node with room (and its GPUs) "
        "before the start fails with the scheduler's reason.",
    )
    startup_timeout = Float(
        120.0,
        config=True,
        help="Seconds a starting kernel may take to open all five of its ports (checked through "
        "the published ports, for any kernel). Past it the start fails with the kernel's last "
        "output and the container is removed; raise it for images that import slowly from slow disks.",
    )

    warm_pool_size = Integer(
        min=0,
        config=True,
        help="Spare containers kept started for this kernelspec once it has been used, so that the "
        "next start claims one instead of waiting for a container and the image's imports (a warm "
        "start answers in a fraction of a cold start's time). Each idle spare holds a Python process "
        "with ipykernel imported (30-60 MB). 0 turns the pool off. Default: MLCONTAINER_WARM_POOL, else 1 "
        "in a Jupyter server and 0 for a kernel manager of its own (nbconvert, papermill).",
    )
    warm_pool_idle_timeout = Float(
        3600.0,
        config=True,
        help="Seconds after the last start of a kernelspec when its spares are removed: "
        "kernelspecs nobody used for that long hold no containers.",
    )
    engine_return_timeout = Float(
        120.0,
        config=True,
        help="Seconds the automatic restart of a kernel whose container went away with its engine "
        "(dockerd stopped or restarted) waits for the engine to answer again; the notebook shows "
        "the kernel restarting meanwhile. 0: do not wait (the restart fails at once and is retried).",
    )

    @default("docker_host")
    def _docker_host_default(self) -> str:
        return MLContainer(parent=self).docker_host

    @default("warm_pool_size")
    def _warm_pool_default(self) -> int:
        # A Jupyter server starts kernels all day: one spare per used kernelspec. A batch run
        # (nbconvert, papermill: a kernel manager of its own) would make a spare only to throw
        # it away at exit, so it makes none unless asked.
        from jupyter_client.multikernelmanager import MultiKernelManager

        served = isinstance(getattr(self.parent, "parent", None), MultiKernelManager)
        raw = _env_default("MLCONTAINER_WARM_POOL", "1" if served else "0")
        try:
            return max(0, int(raw))
        except ValueError:
            raise ConfigurationError(f"MLCONTAINER_WARM_POOL={raw!r}: give a number of spares (0 turns the pool off)") from None

    @default("gpus")
    def _gpus_default(self) -> str:
        return _env_default("MLCONTAINER_GPUS", "auto")

    @default("memory")
    def _memory_default(self) -> str:
        return _env_default("MLCONTAINER_MEMORY", "")

    @default("cpus")
    def _cpus_default(self) -> str:
        return _env_default("MLCONTAINER_CPUS", "")

    @default("shm_size")
    def _shm_default(self) -> str:
        return _env_default("MLCONTAINER_SHM_SIZE", "auto")

    @default("cache_volume")
    def _cache_volume_default(self) -> str:
        return MLContainer(parent=self).cache_volume

    # How a failed start's error reaches the kernel manager's caller. jupyter_server answers
    # anything but a tornado HTTPError with "Unhandled error" and no message, so the server
    # extension installs server/http_errors.py's adapter (through the service) when it starts;
    # elsewhere (nbclient, papermill, jupyter console) the error goes as it is.
    start_error_adapter: Callable[[Exception], Exception] = staticmethod(lambda exc: exc)

    # -- state (per kernel manager, kept across restarts) ---------------------------------

    container_id: str | None = None
    host_ports: dict[str, int] | None = None
    restarts: int = 0
    _conn_dir: str | None = None
    _stopping: bool = False
    _death_recorded: bool = False
    _died: bool = False  # the container stopped unasked: the restart that follows may wait for the engine
    _kernel_ip: str = "127.0.0.1"  # where its published ports are reached (the engine's host); ipc: the sockets' base
    _transport: str = "tcp"  # this kernel's: "ipc" keeps its folder (the sockets' path) across restarts
    _cwd: str | None = None
    _memory_limit_text: str = ""

    @property
    def engine(self) -> ContainerBackend:
        """Where this kernel's container runs: the local engine, or a Swarm (placement)."""
        if self.placement == "swarm":
            from ..engines.swarm import get_swarm

            return get_swarm(self.docker_host or MLContainer(parent=self).docker_host)
        return get_engine(self.docker_host or None)

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    # -- launch --------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Called by the kernel manager before launch; returns kwargs with ``cmd``, the argv
        to run inside the container (the kernelspec's, with the in-container connection file)."""
        if not self.image:
            raise ImageNotUsable(
                f"Kernelspec {self.kernel_spec.display_name!r} names no image in "
                "metadata.kernel_provisioner.config.image"
            )
        extra = kwargs.pop("extra_arguments", [])
        argv = [
            arg.replace("{connection_file}", CONNECTION_FILE_IN_CONTAINER)
            for arg in self.kernel_spec.argv
        ] + list(extra)
        return await super().pre_launch(cmd=argv, **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Called by the kernel manager: start the container and return its connection info
        (127.0.0.1 and the host ports the engine published)."""
        self._stopping = False
        self._death_recorded = False
        try:
            if self._died:  # the restarter's restart: an engine restarting takes a few seconds
                await self._wait_for_engine()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(_LAUNCHES, functools.partial(self._launch_sync, cmd, kwargs))
        except EngineError as exc:
            self.log.error("Kernel %s could not start: %s", self.kernel_id, exc)
            # No chained SDK traceback: jupyter_client logs this error with its traceback.
            raise DockerKernelProvisioner.start_error_adapter(exc) from None

    async def _wait_for_engine(self) -> None:
        """Before restarting a kernel whose container stopped unasked (perhaps with its engine):
        wait until the engine answers, at most ``engine_return_timeout`` s; EngineUnavailable
        after that. Answers at once when the engine is up. A coroutine, so that a server that
        exits meanwhile is not held up by it."""
        deadline = time.monotonic() + self.engine_return_timeout
        logged = False
        while True:
            try:
                await self.engine.run_blocking(self.engine.version_sync)
                break
            except EngineUnavailable:
                if time.monotonic() >= deadline:
                    raise
                if not logged:
                    note_engine_lost(self.kernel_id, self._engine_address())
                    self.log.warning(
                        "Kernel %s: waiting up to %.0f s for the Docker engine at %s to answer again before restarting it",
                        self.kernel_id, self.engine_return_timeout, self._engine_address(),
                    )
                    logged = True
                await asyncio.sleep(0.25)
        self._died = False
        if logged:
            self.log.info("Kernel %s: the Docker engine answers again; restarting the kernel", self.kernel_id)

    def _launch_sync(self, cmd: list[str], kwargs: dict[str, Any]) -> KernelConnectionInfo:
        engine = self.engine
        km = self.parent
        facts = probe_image_sync(engine, self.image)
        reason = unusable_reason(self.image, facts)
        if reason:
            raise ImageNotUsable(reason)
        user = current_user()
        cwd = os.path.abspath(kwargs.get("cwd") or os.getcwd())
        workspace = self._workspace(cwd)
        self._cwd = cwd
        helper = MLContainer(parent=self).helper_image
        for note in ensure_cache(engine, self.cache_volume, user, helper):
            self.log.warning("Kernel %s: %s", self.kernel_id, note)
        watcher = get_watcher(engine)
        watcher.start()

        key = km.session.key if km is not None else b""
        if not key:
            raise EngineError("The kernel manager has no session key")
        for attempt in (1, 2):
            # A private folder (0700, removed by cleanup): the connection file with the kernel's
            # key, mounted read-write because ipykernel may rewrite it; one per launch, but on the
            # ipc transport one per kernel (its sockets' path is the connection clients keep).
            if not (self._transport == "ipc" and self.host_ports and self._conn_dir and os.path.isdir(self._conn_dir)):
                self._conn_dir = new_connection_dir(self.kernel_id)
            conn_dir = self._conn_dir
            try:
                return self._launch_in(conn_dir, engine, facts, user, cwd, workspace, key, cmd, kwargs)
            except BaseException as exc:
                if self.container_id is not None:  # e.g. cancelled while waiting for readiness
                    self._discard_container(self.container_id)
                self._remove_conn_dir()
                if not isinstance(exc, HomeRefused) or attempt == 2:
                    raise
                # Someone put something at the HOME's name since it was made: set it aside, once.
                self.log.warning("Kernel %s: %s; setting it aside and starting again", self.kernel_id, exc)
            forget_home(engine, self.cache_volume, user)
            for note in ensure_cache(engine, self.cache_volume, user, helper):
                self.log.warning("Kernel %s: %s", self.kernel_id, note)
        raise AssertionError("unreachable")

    def _launch_in(
        self, conn_dir: str, engine: ContainerBackend, facts: ImageFacts, user: HostUser, cwd: str,
        workspace: str, key: bytes, cmd: list[str], kwargs: dict[str, Any],
    ) -> KernelConnectionInfo:
        km = self.parent
        signature_scheme = km.session.signature_scheme if km is not None else "hmac-sha256"
        # A Swarm task's node is known once it is placed: nothing of this host but the workspace
        # is assumed there, and the kernel is reached at its node's address (_create_and_start).
        location = EngineLocation(False, "") if self.placement == "swarm" else engine_location(engine.address)
        curve = curve_keys(self.image, facts, self.transport_encryption, km, shared_network=not location.local)
        transport = self._transport = self._choose_transport(engine, location, conn_dir)
        write_connection_file(
            conn_dir, key=key, signature_scheme=signature_scheme, kernel_name=getattr(km, "kernel_name", ""), curve=curve,
            transport=transport,
        )

        home = cache_paths.home_in_cache(self.cache_mount_path, user.name)
        gpus = self._resolve_gpus()
        requests = gpu_requests(gpus)
        if requests and self.placement != "swarm":  # a cluster's GPUs are its scheduler's to place
            self._check_gpus_exist(requests)
        environment = kernel_environment(
            image=self.image, kernel_id=self.kernel_id, user=user, home=home, cache_mount_path=self.cache_mount_path,
            launch_env=kwargs.get("env") or {}, kernelspec_env=dict(self.kernel_spec.env or {}),
            configured_env=dict(self.env), gpus=requests, image_env=facts.env,
            externally_managed=facts.externally_managed, python=facts.python or "", conda=facts.conda,
            venv=facts.venv, python_version=facts.python_version or "",
        )
        if environment.overridden_gpu_env:
            self.log.warning(
                "Kernel %s: NVIDIA_VISIBLE_DEVICES=%s from the kernelspec is overridden with 'void' "
                "because the kernel has no GPUs (--gpus none); use --gpus to give it GPUs",
                self.kernel_id, environment.overridden_gpu_env,
            )
        memory = self.memory.strip() or None
        self._memory_limit_text = memory or ""
        kind = engine.kind_sync()
        limits_ignored = ""
        if (memory or self.cpus.strip()) and kind.limits_ignored_reason:
            asked = ", ".join(f"{name} {value}" for name, value in (("memory", memory), ("cpus", self.cpus.strip())) if value)
            limits_ignored = f"{asked} not enforced: {kind.limits_ignored_reason}"
            self.log.warning("Kernel %s: %s", self.kernel_id, limits_ignored)
        in_container = container_user_for(user, kind)
        self._kernel_ip = location.address
        spec = kernel_container(
            image=self.image, python=facts.python or "python3", kernel_id=self.kernel_id,
            kernel_name=getattr(km, "kernel_name", "") or "", restarts=self.restarts, owner=owner_id(), command=cmd,
            environment=environment, user=user, cwd=cwd, workspace=workspace, cache_volume=self.cache_volume,
            cache_mount_path=self.cache_mount_path, connection_dir=conn_dir,
            passwd_group=passwd_files(conn_dir, user, home, facts.passwd, facts.group) if in_container != "0:0" else None,
            gpus_setting=gpus, gpus=requests, memory=memory, cpus=self.cpus,
            shm_size=shm_size_for(self.shm_size, memory, int(engine.info_sync().get("MemTotal") or 0)),
            use_init=self.use_init, network=self.network or engine.ensure_kernel_network_sync(KERNEL_NETWORK),
            host_ports=self.host_ports, engine_kind=kind, limits_ignored=limits_ignored, location=location,
            connection_files=None if location.local else _folder_files(conn_dir), venv=facts.venv,
            publish_ports=transport == "tcp",
        )
        spec.placement_timeout = self.placement_timeout
        # Spares take their claim through a FIFO in a folder shared with this host: local engines only.
        pool = get_pool(engine) if self.warm_pool_size > 0 and location.local else None
        template = template_of(spec, facts.image_id, conn_dir, workspace) if pool is not None else None
        # A restart asks for its previous host ports (ipc: keeps its folder): only a fresh start can take a spare.
        spare = pool.claim(template.key, facts.image_id) if template is not None and not self.host_ports else None
        if spare is not None:
            container_id, host_ports = self._start_on_spare(pool, spare, spec, conn_dir, key, signature_scheme, curve)
            conn_dir = self._conn_dir  # the spare's folder, or still the launch's own when the start went cold
        else:
            container_id, host_ports = self._create_and_start(spec)
        if template is not None:
            pool.offer(template, self.warm_pool_size, self.warm_pool_idle_timeout)
        self.container_id = container_id
        _LIVE[container_id] = (engine, conn_dir)
        self.host_ports = host_ports
        self.restarts += 1
        if transport == "ipc":
            self._kernel_ip = ipc_base(conn_dir)  # a claimed spare's folder, if one was claimed
        self._wait_until_listening(container_id, host_ports)
        self.connection_info = {
            **host_ports,
            "ip": self._kernel_ip,
            "key": key,
            "transport": transport,
            "signature_scheme": signature_scheme,
            "kernel_name": getattr(km, "kernel_name", ""),
            **curve,
        }
        self.log.info(
            "Kernel %s started in container %s (image %s, gpus=%s, workspace %s, cwd %s, %s, %s)",
            self.kernel_id, container_id[:12], self.image, gpus, workspace, cwd,
            "Unix sockets in its folder" if transport == "ipc" else f"ports on {self._kernel_ip}",
            "encrypted (CurveZMQ)" if curve else "not encrypted",
        )
        return self.connection_info

    def _choose_transport(self, engine: ContainerBackend, location: EngineLocation, conn_dir: str) -> str:
        """``kernel_transport`` for this launch: ipc needs the engine on this host (the folder is
        bind-mounted), on Linux, and a folder path short enough for a Unix socket."""
        wanted = self.kernel_transport
        if wanted == "tcp":
            return "tcp"
        if not location.local:
            if wanted == "ipc":
                raise EngineError("kernel_transport 'ipc' needs the engine on this host (the kernel's sockets are in a "
                                  "folder of this host): use 'tcp' or 'auto' for a remote engine or a Swarm")
            return "tcp"
        if not ipc_fits(conn_dir):
            if wanted == "ipc":
                raise EngineError(f"kernel_transport 'ipc': the kernel's folder {conn_dir} is too long a path for a Unix "
                                  "socket (107 bytes): set JUPYTER_RUNTIME_DIR to a shorter one, or use 'tcp'")
            self.log.warning("Kernel %s: its folder %s is too deep for Unix sockets (107 bytes), and no shorter private "
                             "folder was found: publishing its ports on 127.0.0.1 instead, where other local users "
                             "reach them (a shorter JUPYTER_RUNTIME_DIR avoids it)", self.kernel_id, conn_dir)
            return "tcp"
        if wanted == "auto" and (not sys.platform.startswith("linux")
                                 or "desktop" in str(engine.info_sync().get("OperatingSystem", "")).lower()):
            return "tcp"
        return "ipc"

    def _start_on_spare(
        self, pool: WarmPool, spare: Spare, spec: ContainerSpec, conn_dir: str, key: bytes, signature_scheme: str,
        curve: dict[str, str],
    ) -> tuple[str, dict[str, int]]:
        """Hand the kernel's own part to a spare: its connection file, then (through the FIFO)
        its environment, working directory and argv; the launch's own folder gives way to the
        spare's. A spare that does not take it is discarded and the start goes cold."""
        km = self.parent
        try:
            write_connection_file(
                spare.conn_dir, key=key, signature_scheme=signature_scheme,
                kernel_name=getattr(km, "kernel_name", ""), curve=curve, transport=self._transport,
            )
            record_claim(spare.container_id, self.kernel_id, getattr(km, "kernel_name", "") or "")
            pool.hand_over(spare, {"env": spec.env, "cwd": spec.working_dir, "argv": spec.command})
        except OSError as exc:
            self.log.info("Kernel %s: spare %s did not take the claim (%s); starting cold", self.kernel_id,
                          spare.container_id[:12], exc)
            discard_spare(self.engine, spare.container_id, spare.conn_dir)
            return self._create_and_start(spec)
        claimed(spare.container_id)
        shutil.rmtree(conn_dir, ignore_errors=True)
        self._conn_dir = spare.conn_dir
        self.log.debug("Kernel %s: claimed spare %s", self.kernel_id, spare.container_id[:12])
        return spare.container_id, spare.host_ports

    def _create_and_start(self, spec: ContainerSpec) -> tuple[str, dict[str, int]]:
        """Start the container; return (id, host ports). A restart asks for the previous host
        ports, which the engine releases a moment after the old container goes: retried for a
        few seconds, then new ports (clients must reconnect). A container that exits at once
        (e.g. its HOME was refused) fails the start with its own output."""
        spec = self._network_after_start(spec)
        gate = os.path.join(self._conn_dir or "", os.path.basename(NETWORK_GATE_IN_CONTAINER))
        if spec.network_after_start:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(gate)  # a restart's, in the folder an ipc kernel keeps
        deadline = time.monotonic() + 5
        while True:
            try:
                attrs = self.engine.create_and_start_sync(spec)
                break
            except PortInUse:
                if not any(spec.ports.values()):
                    raise
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                self.log.warning(
                    "Kernel %s: its previous host ports are taken; restarting on new ports "
                    "(connected clients must reconnect)", self.kernel_id,
                )
                spec.ports = dict.fromkeys(spec.ports)
        cid = attrs["Id"]
        if spec.network_after_start:
            write_text_safely(gate, "")  # the kernel's bootstrap waits for it (container_spec._NETWORK_GATE)
        self._kernel_ip = (attrs.get("Node") or {}).get("Addr") or self._kernel_ip  # a Swarm task's node
        state = attrs.get("State") or {}
        if not state.get("Running"):
            tail = self._log_tail(cid)
            self.engine.remove_container_sync(cid)
            raise self._exited_error(state.get("ExitCode", "?"), tail)
        if not spec.ports:
            return cid, dict(CONTAINER_PORTS)  # the ipc transport: sockets in the kernel's folder
        try:
            return cid, published_ports(attrs, spec.publish_ip)
        except EngineError:
            self.engine.remove_container_sync(cid)
            raise

    def _network_after_start(self, spec: ContainerSpec) -> ContainerSpec:
        """``spec`` to start on no network and join the kernels' network right after: the
        engine's network set-up then overlaps the kernel's imports (0.06-0.08 s of a cold start).
        Only where nothing needs the network at create: Unix sockets (no published ports), our
        own kernels' network (a user-defined bridge: the container's DNS and hosts entries end
        up as when created on it, tested), on Docker (rootful or rootless; Podman is left as it
        was: untested there)."""
        if (self._transport != "ipc" or self.network or spec.network != KERNEL_NETWORK or spec.ports
                or self.engine.kind_sync().product != "docker" or not self._conn_dir):
            return spec
        return dataclasses.replace(
            spec, network="none", network_after_start=spec.network,
            env={**spec.env, NETWORK_GATE_ENV: NETWORK_GATE_IN_CONTAINER},
        )

    def _wait_until_listening(self, container_id: str, host_ports: dict[str, int]) -> None:
        """Block until a ZeroMQ socket answers on each of the kernel's published ports (see
        :mod:`.readiness`), or raise if the container exits first or the start-up timeout passes.

        Works for any kernel that binds the ports of its connection file, whatever it writes
        or does not write; the container is removed when the kernel does not come up.
        """
        watcher = get_watcher(self.engine)

        def exited() -> bool:
            return watcher.exit_of(container_id) is not None or (
                not watcher.healthy and not self._running(container_id)
            )

        try:
            waited = wait_for_kernel_ports(self._kernel_ip, host_ports, timeout=self.startup_timeout, gone=exited,
                                           transport=self._transport)
        except KernelNotReady as exc:
            tail = self._log_tail(container_id)
            self._discard_container(container_id)
            raise EngineError(
                f"The kernel in {self.image} did not open its ports within {exc.waited:.0f} s "
                f"({', '.join(exc.missing)} silent); raise c.DockerKernelProvisioner.startup_timeout "
                "if the image is slow to import" + (f". Its last output:\n{tail.strip()}" if tail.strip() else "")
            ) from None
        if exited():
            tail = self._log_tail(container_id)
            event = watcher.exit_of(container_id)
            self._discard_container(container_id)
            raise self._exited_error(event.exit_code if event else "?", tail)
        self.log.debug("Kernel %s: ports answered after %.3f s", self.kernel_id, waited)

    def _exited_error(self, code: Any, tail: str) -> EngineError:
        """The error for a kernel that exited during start-up, with its last output."""
        kind = HomeRefused if code == HOME_REFUSED_EXIT else EngineError
        return kind(f"The kernel in {self.image} exited during start-up (exit code {code})"
                    + (f":\n{tail.strip()}" if tail.strip() else ""))

    def _discard_container(self, container_id: str) -> None:
        """Remove the kernel's container and forget it (a failed launch, and cleanup). Blocking.
        An unreachable engine does not fail the clean-up: the watcher removes the container
        when the engine answers again."""
        watcher = get_watcher(self.engine)
        try:
            self.engine.remove_container_sync(container_id)
            watcher.forget(container_id)
            forget_claim(container_id)
        except EngineUnavailable:
            watcher.remove_when_back(container_id)
        _LIVE.pop(container_id, None)
        self.container_id = None

    def _running(self, container_id: str) -> bool:
        try:
            state = self.engine.container_state_sync(container_id) or {}
        except EngineError:
            return False
        return bool(state.get("Running"))

    def _log_tail(self, container_id: str, lines: int = 20) -> str:
        try:
            return self.engine.container_logs_sync(container_id, tail=lines)
        except EngineError:
            return ""

    def _workspace(self, cwd: str) -> str:
        workspace = self.workspace
        if not workspace:
            km = self.parent
            root = getattr(getattr(km, "parent", None), "root_dir", None)
            workspace = root or cwd
        workspace = os.path.abspath(os.path.expanduser(workspace))
        if not (cwd == workspace or cwd.startswith(workspace.rstrip("/") + "/")):
            workspace = cwd  # a kernel started outside the server root still sees its folder
        if workspace == "/":
            raise EngineError(
                "Refusing to mount the host's / into a kernel container: start Jupyter in your "
                "project folder or set c.DockerKernelProvisioner.workspace"
            )
        return workspace

    def _resolve_gpus(self) -> str:
        value = (self.gpus or "auto").strip()
        if value.lower() != "auto":
            gpu_requests(value)  # validate early, with a clear message
            return value
        if self.placement == "swarm":
            return "none"  # a cluster's GPUs are asked for by number
        if self.engine.has_nvidia_runtime_sync() and get_monitor().gpu_count() > 0:
            return "all"
        return "none"

    def _check_gpus_exist(self, device_requests: list[GpuRequest]) -> None:
        """Refuse a request for GPUs this host does not have, naming the ones it has."""
        reason = unsatisfiable_reason(device_requests, get_monitor().snapshot(with_processes=True))
        if reason:
            raise GpuRequestUnsatisfiable(f"{reason} Change --gpus of kernelspec {self.kernel_spec.display_name!r}.")

    # -- lifecycle -----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """Called by the restarter every few seconds: None while the container runs, else its
        exit code. Reads the process-wide event stream; inspects only when the stream is down."""
        cid = self.container_id
        if cid is None:
            return 0
        watcher = get_watcher(self.engine)
        event = watcher.exit_of(cid)
        unreachable = ""
        if event is None:
            if watcher.healthy:
                return None
            try:
                state = await self._inspect_state(cid)
            except EngineUnavailable as exc:
                # Without its engine the kernel may still run (live-restore): its heartbeat
                # port tells. Closed means the engine took the container down with it.
                if await asyncio.to_thread(self._heartbeat_answers):
                    return None
                state, unreachable = {"ExitCode": -1}, str(exc)
            if state is None:
                code = -1
            elif state.get("Running") or state.get("Restarting"):
                return None
            else:
                code = int(state.get("ExitCode", -1))
        else:
            code = event.exit_code
        if not self._stopping and not self._death_recorded:
            self._death_recorded = True
            await self._record_death(cid, code, unreachable)
        return code

    def _engine_address(self) -> str:
        return self.engine.address

    def _heartbeat_answers(self) -> bool:
        port = (self.host_ports or {}).get("hb_port")
        return bool(port) and zmq_socket_answers(self._kernel_ip, int(port), timeout=0.5, transport=self._transport)

    async def _inspect_state(self, cid: str) -> dict[str, Any] | None:
        return await self.engine.run_blocking(self.engine.container_state_sync, cid)

    async def _record_death(self, cid: str, code: int, unreachable: str = "") -> None:
        """Keep why the kernel's container stopped (exit code, OOM, the engine going away) for
        the kernel list and the log. Called once per unexpected exit, by :meth:`poll`."""
        state: dict[str, Any] = {}
        tail = ""
        if not unreachable:
            try:
                state = await self._inspect_state(cid) or {}
                tail = await self.engine.call(self._log_tail, cid)
            except EngineUnavailable as exc:  # the engine went down with the container
                unreachable = str(exc)
            except EngineError:
                pass
        self._died = True
        if unreachable:
            self.log.debug("Kernel %s: engine unreachable: %s", self.kernel_id, unreachable)
        record = DeathRecord(
            kernel_id=self.kernel_id,
            container_id=cid,
            image=self.image,
            exit_code=int(state.get("ExitCode", code)),
            oom_killed=bool(state.get("OOMKilled")),
            memory_limit=self._memory_limit_text,
            engine_error=state.get("Error") or "",
            engine_lost=self._engine_address() if unreachable else "",
            log_tail=tail[-4000:],
            time=time.time(),
        )
        record_death(record)
        self.log.warning(
            "Kernel %s (container %s, image %s) died: %s%s",
            self.kernel_id, cid[:12], self.image, record.message(),
            f"\n--- last output ---\n{tail.rstrip()}" if tail.strip() else "",
        )

    async def wait(self) -> int | None:
        """Called by the kernel manager during shutdown: wait for the container to stop."""
        while True:
            code = await self.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.1)

    async def send_signal(self, signum: int) -> None:
        """Deliver ``signum`` to the kernel (interrupts arrive here as SIGINT)."""
        if self.container_id is None:
            return
        if signum == 0:
            await self.poll()
            return
        await self._signal(signum)

    async def _signal(self, signum: int) -> None:
        cid = self.container_id
        if cid is None:
            return
        try:
            await self.engine.run_blocking(self.engine.signal_container_sync, cid, signum)
        except (ContainerNotRunning, ContainerNotFound):
            return  # it has stopped: nothing to signal
        except EngineUnavailable:
            if await asyncio.to_thread(self._heartbeat_answers):
                raise
            # Its engine took it down: nothing to signal (the restart waits for the engine).

    async def kill(self, restart: bool = False) -> None:
        """Called by the kernel manager when a kernel does not stop by itself."""
        self._stopping = True
        await self._signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        self._stopping = True
        await self._signal(signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        """Called after the kernel manager sent shutdown_request: the exit that follows is ours."""
        self._stopping = True

    async def cleanup(self, restart: bool = False) -> None:
        """Called last on shutdown and before a restart's launch: remove the container.

        On restart the host ports are kept so that the new container publishes the same ones
        (ipc: the folder with the sockets is kept, for the new container to bind them again).
        """
        cid, self.container_id = self.container_id, None
        if cid is not None:
            await self.engine.call(self._discard_container, cid)
        self._death_recorded = False
        if not (restart and self._transport == "ipc"):
            self._remove_conn_dir()  # a restart's launch makes a new one
        if not restart:
            self.host_ports = None

    def _remove_conn_dir(self) -> None:
        conn_dir, self._conn_dir = self._conn_dir, None
        if conn_dir:
            shutil.rmtree(conn_dir, ignore_errors=True)

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return recommended

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(container_id=self.container_id, host_ports=self.host_ports, image=self.image, transport=self._transport)
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        self.host_ports = provisioner_info.get("host_ports")
        self._transport = provisioner_info.get("transport", "tcp")

    def resolve_path(self, path_str: str) -> str | None:
        """Paths are the same inside and outside: the workspace is mounted at its host path."""
        path = os.path.expanduser(path_str)
        if not os.path.isabs(path) and self._cwd:
            path = os.path.join(self._cwd, path)
        return path if os.path.exists(path) else None


__all__ = ["DockerKernelProvisioner", "PROVISIONER_NAME"]
