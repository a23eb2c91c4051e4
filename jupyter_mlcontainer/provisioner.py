"""The kernel provisioner: runs a Jupyter kernel in its own Docker container.

jupyter_client creates one :class:`DockerKernelProvisioner` per kernel manager (from the
kernelspec's ``metadata.kernel_provisioner``) and keeps it across restarts. What a launch does:

* the kernel binds fixed ports inside its own network namespace, and the engine publishes
  them on 127.0.0.1 with host ports of its own choosing (nothing is picked in advance, so no
  port race); a restart asks for the same host ports, so open clients keep working;
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
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from docker.types import Mount
from docker.utils import parse_bytes
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
import zmq
from traitlets import Bool, CaselessStrEnum, Dict, Float, Unicode, default

from . import cache
from .engine import (
    LABEL_CACHE_VOLUME,
    LABEL_GPUS,
    LABEL_IMAGE,
    LABEL_INJECTED_ENV,
    LABEL_KERNEL_ID,
    LABEL_KERNEL_NAME,
    LABEL_OWNER,
    LABEL_OWNER_USER,
    LABEL_ROLE,
    LABEL_WORKSPACE,
    NO_NEW_PRIVILEGES,
    Engine,
    EngineError,
    GpuRequestUnsatisfiable,
    get_engine,
    gpu_device_requests,
)
from .gpu import get_monitor, unsatisfiable_reason
from .http_errors import as_http_error
from .identity import HostUser, current_user, owner_id, passwd_files
from .images import ImageFacts, ImageNotUsable, probe_image_sync, slug, unusable_reason
from .readiness import KernelNotReady, wait_for_kernel_ports
from .watcher import get_watcher

PROVISIONER_NAME = "mlcontainer-docker"

# Ports the kernel binds inside its own network namespace; the host side is chosen by the engine.
# The network kernel containers join unless configured otherwise (engine.ensure_kernel_network_sync).
KERNEL_NETWORK = "mlcontainer-kernels"
CONTAINER_PORTS = {"shell_port": 50001, "iopub_port": 50002, "stdin_port": 50003, "control_port": 50004, "hb_port": 50005}
CONNECTION_DIR_IN_CONTAINER = "/run/mlcontainer"
CONNECTION_FILE_IN_CONTAINER = f"{CONNECTION_DIR_IN_CONTAINER}/kernel.json"

# The container's first process: create HOME (inside the cache volume), check that it is this
# user's own private folder, then exec the kernel. HOME is where a kernel reads code it runs at
# start (IPython startup files, .pth files in the user site, matplotlib config), and the cache
# volume's home/ is writable by every user of the engine (sticky, like /tmp): a HOME that
# someone else created, or that others can write, could hold their code, so the kernel refuses
# to start and says why. Fixed text, no user input; the kernel argv follows as arguments.
HOME_REFUSED_EXIT = 78
BOOTSTRAP = (
    "import os, stat, sys\n"
    "home = os.environ.get('HOME')\n"
    "if home:\n"
    "    try:\n"
    "        os.makedirs(home, mode=0o700, exist_ok=True)\n"
    "    except OSError as exc:\n"
    "        sys.stderr.write('jupyter-mlcontainer: cannot create HOME %s: %s\\n' % (home, exc))\n"
    "    else:\n"
    "        st = os.lstat(home)\n"
    "        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:\n"
    "            sys.stderr.write(\n"
    "                'jupyter-mlcontainer: refusing to start: HOME %s is not your private folder '\n"
    "                '(owner uid %d, you are uid %d, mode %o). Someone else may have put files there '\n"
    "                'that a kernel would run at start (IPython startup, .pth). Check its content, '\n"
    "                'then remove it or make it yours with mode 0700.\\n'\n"
    "                % (home, st.st_uid, os.getuid(), stat.S_IMODE(st.st_mode)))\n"
    f"            sys.exit({HOME_REFUSED_EXIT})\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)

log = logging.getLogger(__name__)


@dataclass
class DeathRecord:
    """Why a kernel container stopped without being asked to."""

    kernel_id: str
    container_id: str
    image: str
    exit_code: int
    oom_killed: bool
    memory_limit: str
    engine_error: str
    log_tail: str
    time: float

    def message(self) -> str:
        if self.oom_killed:
            limit = f" (memory limit {self.memory_limit})" if self.memory_limit else ""
            return f"Kernel was killed: out of memory{limit}, exit code {self.exit_code}"
        if self.engine_error:
            return f"Kernel container failed: {self.engine_error}"
        if self.exit_code in (137, -9):
            return "Kernel was killed (SIGKILL, exit code 137)"
        return f"Kernel process exited with code {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["message"] = self.message()
        return data


# Containers this process started and has not removed yet, with their connection folders:
# removed at interpreter exit, so a front end that exits without shutting its kernel down
# (jupyter console does) leaves neither a container nor a key file behind.
_LIVE: dict[str, tuple[Engine, str]] = {}


@atexit.register
def _remove_live_containers() -> None:
    for container_id, (engine, conn_dir) in list(_LIVE.items()):
        shutil.rmtree(conn_dir, ignore_errors=True)
        try:
            engine.remove_container_sync(container_id)
        except Exception:
            pass  # the engine is gone: the next server start reaps these as orphans


# kernel id -> the last unexpected death (kept for the server's REST API and logs).
DEATHS: dict[str, DeathRecord] = {}


def last_death(kernel_id: str) -> DeathRecord | None:
    """The last recorded unexpected death of ``kernel_id``'s container, if any."""
    return DEATHS.get(kernel_id)


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
        "use. Env: MLCONTAINER_CACHE_VOLUME.",
    )
    cache_mount_path = Unicode(
        cache.DEFAULT_MOUNT_PATH, config=True, help="Where the cache volume is mounted in the container."
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
        help="Docker network for kernel containers. Default: 'mlcontainer-kernels', a bridge made "
        "on first use with inter-container traffic off, so no other container (another user's "
        "kernels included) reaches a kernel's ports. Name another network (e.g. 'bridge', or one "
        "your services are on) to let containers on it reach the kernel.",
    )
    transport_encryption = CaselessStrEnum(
        ["auto", "required", "disabled"],
        "auto",
        config=True,
        help="CurveZMQ encryption of the kernel's traffic, with keys provisioned per kernel as "
        "jupyter_client's local provisioner does: 'auto' encrypts whenever the image's kernel can "
        "(ipykernel 7.4 or newer with a CURVE-enabled libzmq; the probe tells), 'required' refuses "
        "to start a kernel that cannot, 'disabled' never encrypts. A kernel manager whose "
        "transport_encryption is 'required' makes it required too.",
    )
    use_init = Bool(
        True,
        config=True,
        help="Run an init process (docker --init) as PID 1 so that processes the kernel spawns "
        "are reaped and signals are forwarded.",
    )
    docker_host = Unicode(
        "", config=True, help="Engine address (e.g. unix:///var/run/docker.sock); default: DOCKER_HOST."
    )
    startup_timeout = Float(
        120.0,
        config=True,
        help="Seconds a starting kernel may take to open all five of its ports (checked through "
        "the published ports, for any kernel). Past it the start fails with the kernel's last "
        "output and the container is removed; raise it for images that import slowly from slow disks.",
    )

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
        return _env_default("MLCONTAINER_CACHE_VOLUME", cache.DEFAULT_VOLUME)

    # -- state (per kernel manager, kept across restarts) ---------------------------------

    container_id: str | None = None
    host_ports: dict[str, int] | None = None
    restarts: int = 0
    _conn_dir: str | None = None
    _stopping: bool = False
    _death_recorded: bool = False
    _cwd: str | None = None
    _memory_limit_text: str = ""

    @property
    def engine(self) -> Engine:
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
        loop = asyncio.get_running_loop()
        self._stopping = False
        self._death_recorded = False
        try:
            return await loop.run_in_executor(self.engine._pool, lambda: self._launch_sync(cmd, kwargs))
        except EngineError as exc:
            self.log.error("Kernel %s could not start: %s", self.kernel_id, exc)
            raise as_http_error(exc) from exc

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
        cache.ensure_cache_volume(engine, self.cache_volume, facts.image_id, facts.python or "python3")
        watcher = get_watcher(engine)
        watcher.start()

        key = km.session.key if km is not None else b""
        if not key:
            raise EngineError("The kernel manager has no session key")
        # A private folder per launch (0700, removed by cleanup, at restart too): the connection
        # file with the kernel's key, mounted read-write because ipykernel may rewrite it.
        conn_dir = _new_connection_dir(self.kernel_id)
        self._conn_dir = conn_dir
        try:
            return self._launch_in(conn_dir, engine, facts, user, cwd, workspace, key, cmd, kwargs)
        except BaseException:
            if self.container_id is not None:  # e.g. cancelled while waiting for readiness
                self._discard_container(self.container_id)
            self._remove_conn_dir()
            raise

    def _launch_in(
        self, conn_dir: str, engine: Engine, facts: ImageFacts, user: HostUser, cwd: str,
        workspace: str, key: bytes, cmd: list[str], kwargs: dict[str, Any],
    ) -> KernelConnectionInfo:
        km = self.parent
        signature_scheme = km.session.signature_scheme if km is not None else "hmac-sha256"
        curve = self._curve_keys(facts)
        _write_private_json(
            os.path.join(conn_dir, "kernel.json"),
            {
                **CONTAINER_PORTS,
                "ip": "0.0.0.0",
                "key": key.decode(),
                "transport": "tcp",
                "signature_scheme": signature_scheme,
                "kernel_name": getattr(km, "kernel_name", ""),
                **curve,
            },
        )

        home = cache.home_in_cache(self.cache_mount_path, user.name)
        env, injected = self._container_env(kwargs.get("env") or {}, user, home)
        mounts = [
            Mount(target=workspace, source=workspace, type="bind", read_only=False),
            Mount(target=self.cache_mount_path, source=self.cache_volume, type="volume"),
            Mount(target=CONNECTION_DIR_IN_CONTAINER, source=conn_dir, type="bind", read_only=False),
        ]
        if user.uid != 0:
            passwd, group = passwd_files(conn_dir, user, home, facts.passwd, facts.group)
            mounts += [
                Mount(target="/etc/passwd", source=passwd, type="bind", read_only=True),
                Mount(target="/etc/group", source=group, type="bind", read_only=True),
            ]
        gpus = self._resolve_gpus()
        device_requests = gpu_device_requests(gpus)
        if device_requests:
            self._check_gpus_exist(device_requests)
            if "NVIDIA_DRIVER_CAPABILITIES" not in facts.env:
                env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
                injected.append("NVIDIA_DRIVER_CAPABILITIES")
        else:
            self._no_gpu_env(env, injected)
        memory = self.memory.strip() or None
        self._memory_limit_text = memory or ""
        labels = {
            LABEL_ROLE: "kernel",
            LABEL_KERNEL_ID: self.kernel_id,
            LABEL_KERNEL_NAME: getattr(km, "kernel_name", "") or "",
            LABEL_OWNER: owner_id(),
            LABEL_OWNER_USER: user.name,
            LABEL_WORKSPACE: workspace,
            LABEL_CACHE_VOLUME: self.cache_volume,
            LABEL_IMAGE: self.image,
            LABEL_INJECTED_ENV: ",".join(sorted(injected)),
            LABEL_GPUS: gpus,
        }
        host_config_args = dict(
            mounts=mounts,
            device_requests=device_requests or None,
            mem_limit=memory,
            nano_cpus=int(float(self.cpus) * 1e9) if self.cpus.strip() else None,
            shm_size=self._shm_size(memory, engine),
            security_opt=[NO_NEW_PRIVILEGES],
            # A non-root kernel needs no capability; root keeps the engine's reduced default set.
            cap_drop=["ALL"] if user.uid != 0 else None,
            init=self.use_init,
            network_mode=self.network or engine.ensure_kernel_network_sync(KERNEL_NETWORK),
        )
        name = f"mlc-{slug(self.image)[:40]}-{self.kernel_id[:8]}-{self.restarts}"
        container_id, host_ports = self._create_and_start(
            name, cmd, env, cwd, user.docker_user, labels, host_config_args, self.host_ports, facts
        )
        self.container_id = container_id
        _LIVE[container_id] = (engine, conn_dir)
        self.host_ports = host_ports
        self.restarts += 1
        self._wait_until_listening(container_id, host_ports)
        self.connection_info = {
            **host_ports,
            "ip": "127.0.0.1",
            "key": key,
            "transport": "tcp",
            "signature_scheme": signature_scheme,
            "kernel_name": getattr(km, "kernel_name", ""),
            **curve,
        }
        self.log.info(
            "Kernel %s started in container %s (image %s, gpus=%s, workspace %s, cwd %s, %s)",
            self.kernel_id, container_id[:12], self.image, gpus, workspace, cwd,
            "encrypted (CurveZMQ)" if curve else "not encrypted",
        )
        return self.connection_info

    def _create_and_start(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        cwd: str,
        docker_user: str,
        labels: dict[str, str],
        host_config_args: dict[str, Any],
        wanted_ports: dict[str, int] | None,
        facts: ImageFacts,
    ) -> tuple[str, dict[str, int]]:
        """Create and start the container; return (id, host ports). Removes it on failure."""
        api = self.engine.api
        deadline = time.monotonic() + 5
        while True:
            bindings = {
                port: ("127.0.0.1", (wanted_ports or {}).get(field) or None)
                for field, port in CONTAINER_PORTS.items()
            }
            host_config = api.create_host_config(port_bindings=bindings, **host_config_args)
            container = self.engine.call_sync(
                lambda: api.create_container(
                    self.image,
                    name=name,
                    entrypoint=[facts.python or "python3", "-c", BOOTSTRAP],
                    command=cmd,
                    environment=env,
                    working_dir=cwd,
                    user=docker_user,
                    labels=labels,
                    ports=list(CONTAINER_PORTS.values()),
                    host_config=host_config,
                ),
                image=self.image,
            )
            cid = container["Id"]
            try:
                self.engine.call_sync(lambda: api.start(cid))
                attrs = self.engine.call_sync(lambda: api.inspect_container(cid))
                state = attrs.get("State") or {}
                if not state.get("Running"):  # gone already (e.g. its HOME was refused): say why
                    tail = self._log_tail(cid)
                    raise EngineError(
                        f"The kernel in {self.image} exited during start-up (exit code {state.get('ExitCode', '?')})"
                        + (f":\n{tail.strip()}" if tail.strip() else "")
                    )
                return cid, _host_ports(attrs)
            except Exception as exc:
                self.engine.remove_container_sync(cid)
                text = str(exc)
                port_busy = "port is already allocated" in text or "address already in use" in text
                if wanted_ports and port_busy:
                    # The previous container's ports are released asynchronously after a restart.
                    if time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    self.log.warning(
                        "Kernel %s: its previous host ports are taken; restarting on new ports "
                        "(connected clients must reconnect)", self.kernel_id,
                    )
                    wanted_ports = None
                    continue
                raise

    def _curve_keys(self, facts: ImageFacts) -> dict[str, str]:
        """The CurveZMQ keypair for this kernel's connection file and connection info, or {}
        when it runs unencrypted (see ``transport_encryption``). The kernel manager keeps the
        pair: a restart reuses it, so clients connected before the restart reconnect."""
        km = self.parent
        manager_policy = km._transport_encryption_policy() if hasattr(km, "_transport_encryption_policy") else "disabled"
        required = "required" in (self.transport_encryption, manager_policy)
        if self.transport_encryption == "disabled" and not required:
            return {}
        if not (facts.curve and zmq.has("curve")):
            if required:
                raise ImageNotUsable(
                    f"Transport encryption is required, but the kernel of {self.image} cannot encrypt: it "
                    f"needs ipykernel 7.4 or newer (the image has {facts.ipykernel}) with a CURVE-enabled "
                    "pyzmq" + ("" if zmq.has("curve") else ", and so does this server's pyzmq")
                )
            return {}
        if km is None:
            public, secret = zmq.curve_keypair()
        else:
            if km.curve_publickey is None or km.curve_secretkey is None:
                km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
            public, secret = km.curve_publickey, km.curve_secretkey
        return {"curve_publickey": public.decode("ascii"), "curve_secretkey": secret.decode("ascii")}

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
            waited = wait_for_kernel_ports("127.0.0.1", host_ports, timeout=self.startup_timeout, gone=exited)
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
            code = event.exit_code if event else "?"
            raise EngineError(
                f"The kernel in {self.image} exited during start-up (exit code {code})"
                + (f":\n{tail.strip()}" if tail.strip() else "")
            )
        self.log.debug("Kernel %s: ports answered after %.3f s", self.kernel_id, waited)

    def _discard_container(self, container_id: str) -> None:
        """Remove the kernel's container and forget it (a failed launch, and cleanup). Blocking."""
        self.engine.remove_container_sync(container_id)
        get_watcher(self.engine).forget(container_id)
        _LIVE.pop(container_id, None)
        self.container_id = None

    def _running(self, container_id: str) -> bool:
        try:
            state = self.engine.api.inspect_container(container_id).get("State") or {}
        except Exception:
            return False
        return bool(state.get("Running"))

    def _log_tail(self, container_id: str, lines: int = 20) -> str:
        try:
            return self.engine.api.logs(container_id, tail=lines, stdout=True, stderr=True).decode(errors="replace")
        except Exception:
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

    def _container_env(
        self, launch_env: dict[str, str], user: HostUser, home: str
    ) -> tuple[dict[str, str], list[str]]:
        """The container's environment and the names we injected (not the user's own).

        The host's environment is not copied into the container: only the kernelspec's env,
        the configured env and Jupyter's JPY_* variables (session name) go in.
        """
        env: dict[str, str] = {}
        injected: list[str] = []
        for key, value in launch_env.items():
            if key.startswith("JPY_") and key != "JPY_PARENT_PID":
                env[key] = value
                injected.append(key)
        ours = dict(cache.cache_env(self.cache_mount_path))
        ours.update(
            HOME=home,
            USER=user.name,
            LOGNAME=user.name,
            PYTHONUSERBASE=f"{home}/.local/mlcontainer/{slug(self.image)}",
            JUPYTER_MLCONTAINER_IMAGE=self.image,
            JUPYTER_MLCONTAINER_KERNEL_ID=self.kernel_id,
        )
        env.update(ours)
        injected += list(ours)
        # The user's variables win over ours.
        for key in (self.kernel_spec.env or {}):
            if key in launch_env:
                env[key] = launch_env[key]
        env.update({str(k): str(v) for k, v in self.env.items()})
        injected = [name for name in injected if name not in (self.kernel_spec.env or {}) and name not in self.env]
        return env, injected

    def _resolve_gpus(self) -> str:
        value = (self.gpus or "auto").strip()
        if value.lower() != "auto":
            gpu_device_requests(value)  # validate early, with a clear message
            return value
        if self.engine.has_nvidia_runtime_sync() and get_monitor().gpu_count() > 0:
            return "all"
        return "none"

    def _check_gpus_exist(self, device_requests: list[Any]) -> None:
        """Refuse a request for GPUs this host does not have, naming the ones it has."""
        reason = unsatisfiable_reason(device_requests, get_monitor().snapshot(with_processes=True))
        if reason:
            raise GpuRequestUnsatisfiable(f"{reason} Change --gpus of kernelspec {self.kernel_spec.display_name!r}.")

    def _no_gpu_env(self, env: dict[str, str], injected: list[str]) -> None:
        """No GPU means none, whatever the image's ENV says and whatever the host's default
        runtime is: images like nvidia/cuda and pytorch/pytorch set NVIDIA_VISIBLE_DEVICES=all,
        which NVIDIA's runtime honours for every container when it is the default runtime.
        ``void`` is the toolkit's documented "no GPU" (no device nodes, no driver libraries)."""
        asked = env.get("NVIDIA_VISIBLE_DEVICES")
        if asked not in (None, "void", "none"):
            self.log.warning(
                "Kernel %s: NVIDIA_VISIBLE_DEVICES=%s from the kernelspec is overridden with 'void' "
                "because the kernel has no GPUs (--gpus none); use --gpus to give it GPUs",
                self.kernel_id, asked,
            )
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
        if "NVIDIA_VISIBLE_DEVICES" not in injected:
            injected.append("NVIDIA_VISIBLE_DEVICES")

    def _shm_size(self, memory: str | None, engine: Engine) -> str | None:
        value = (self.shm_size or "").strip().lower()
        if value and value != "auto":
            parse_bytes(value)  # raises a DockerException with the bad value
            return value
        if memory:
            total = parse_bytes(memory)
        else:
            total = int(engine.info_sync().get("MemTotal") or 0)
        if total <= 0:
            return "1g"
        return str(max(64 * 1024 * 1024, total // 2))

    # -- lifecycle -----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """Called by the restarter every few seconds: None while the container runs, else its
        exit code. Reads the process-wide event stream; inspects only when the stream is down."""
        cid = self.container_id
        if cid is None:
            return 0
        watcher = get_watcher(self.engine)
        event = watcher.exit_of(cid)
        if event is None:
            if watcher.healthy:
                return None
            state = await self._inspect_state(cid)
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
            await self._record_death(cid, code)
        return code

    async def _inspect_state(self, cid: str) -> dict[str, Any] | None:
        try:
            attrs = await self.engine.call(lambda: self.engine.api.inspect_container(cid))
        except EngineError as exc:
            if "No such container" in str(exc) or type(exc).__name__ == "ContainerNotFound":
                return None
            raise
        return attrs.get("State") or {}

    async def _record_death(self, cid: str, code: int) -> None:
        state: dict[str, Any] = {}
        try:
            state = await self._inspect_state(cid) or {}
        except EngineError:
            pass
        tail = await self.engine.call(self._log_tail, cid)
        record = DeathRecord(
            kernel_id=self.kernel_id,
            container_id=cid,
            image=self.image,
            exit_code=int(state.get("ExitCode", code)),
            oom_killed=bool(state.get("OOMKilled")),
            memory_limit=self._memory_limit_text,
            engine_error=state.get("Error") or "",
            log_tail=tail[-4000:],
            time=time.time(),
        )
        DEATHS[self.kernel_id] = record
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
            await self.engine.call(lambda: self.engine.api.kill(cid, signal=int(signum)))
        except EngineError as exc:
            text = str(exc)
            if "is not running" in text or "No such container" in text or "ContainerNotFound" in type(exc).__name__:
                return
            raise

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

        On restart the host ports are kept so that the new container publishes the same ones.
        """
        cid, self.container_id = self.container_id, None
        if cid is not None:
            await self.engine.call(self._discard_container, cid)
        self._death_recorded = False
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
        info.update(container_id=self.container_id, host_ports=self.host_ports, image=self.image)
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        self.host_ports = provisioner_info.get("host_ports")

    def resolve_path(self, path_str: str) -> str | None:
        """Paths are the same inside and outside: the workspace is mounted at its host path."""
        path = os.path.expanduser(path_str)
        if not os.path.isabs(path) and self._cwd:
            path = os.path.join(self._cwd, path)
        return path if os.path.exists(path) else None


def _host_ports(attrs: dict[str, Any]) -> dict[str, int]:
    published = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    ports = {}
    for field, port in CONTAINER_PORTS.items():
        bindings = published.get(f"{port}/tcp") or []
        chosen = [b for b in bindings if b.get("HostIp") in ("127.0.0.1", "")]
        if not chosen:
            raise EngineError(f"The engine did not publish container port {port} on 127.0.0.1")
        ports[field] = int(chosen[0]["HostPort"])
    return ports


def _write_private_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _new_connection_dir(kernel_id: str) -> str:
    """A new private (0700) folder for one launch of ``kernel_id``, in this user's Jupyter
    runtime folder: never a folder shared with other users, never derived from the kernel
    manager's connection file (a temp path for standalone managers)."""
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"mlcontainer-{kernel_id[:8]}-", dir=runtime)


__all__ = ["DockerKernelProvisioner", "DeathRecord", "last_death", "PROVISIONER_NAME"]
