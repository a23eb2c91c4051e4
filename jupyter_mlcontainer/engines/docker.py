"""The boundary to the container engine: the only module that imports the docker SDK.

Everything else (provisioner, kernelspecs, images, jobs, freeze, CLI, REST handlers) calls the
typed methods of :class:`Engine`, so that

* blocking SDK calls run in one thread pool (:meth:`Engine.call`, :meth:`Engine.run_blocking`),
  never on the event loop;
* engine failures become the typed errors of :mod:`.errors` (not found, conflict, engine down,
  no GPU runtime...), each with a message a user can act on and its HTTP status;
* what a container is comes in as a :class:`~.container_spec.ContainerSpec` (plain data), so
  another implementation (a cluster, a pool of pre-started containers) can stand behind the
  same methods.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import io
import json
import os
import re
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Iterator, TypeVar

import docker
import docker.errors
from docker.types import DeviceRequest, Mount

from ..core.errors import (  # noqa: F401  (re-exported for callers that catch them)
    BadEngineRequest, Conflict, ContainerNotFound, ContainerNotRunning, EngineError, EngineNotFound,
    EngineUnavailable, GpuRequestUnsatisfiable, GpuRuntimeMissing, ImageNotFound, MLContainerError, NotFound,
    PortInUse, WorkspaceNotOnEngineHost,
)
from ..core.identity import owner_id
from ..core.labels import LABEL_OWNER, LABEL_ROLE
from ..core.names import split_reference
from .base import CDI_GPU_KIND, NO_NEW_PRIVILEGES, ContainerSpec, EngineKind, FileSpec, GpuRequest, cdi_devices

T = TypeVar("T")

NVIDIA_TOOLKIT_HINT = (
    "GPUs were requested but the Docker engine has no NVIDIA runtime. Install the NVIDIA "
    "Container Toolkit on the host (https://docs.nvidia.com/datacenter/cloud-native/"
    "container-toolkit/latest/install-guide.html), run `nvidia-ctk runtime configure "
    "--runtime=docker`, restart dockerd, or start the kernel without GPUs (--gpus none)."
)

CDI_HINT = (
    "This engine asks for GPUs through CDI device names (nvidia.com/gpu=...), which come from "
    "the CDI specs of the NVIDIA Container Toolkit: generate them on the engine's host with "
    "`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` (list them: `nvidia-ctk cdi "
    "list`), or start the kernel without GPUs (--gpus none)."
)


CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")  # where Podman (and Docker 25+) read CDI specs


def local_cdi_gpu_specs() -> list[str]:
    """This host's CDI spec files that describe NVIDIA GPUs (for an engine on this host that
    does not list its CDI devices: Podman)."""
    found = []
    for folder in CDI_SPEC_DIRS:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, errors="replace") as f:
                    if CDI_GPU_KIND in f.read(1 << 20):
                        found.append(path)
            except OSError:
                continue
    return found


def engine_address(base_url: str | None) -> str:
    """The address an engine is reached at: ``base_url``, else DOCKER_HOST, else the local socket."""
    return base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _unreachable(where: str | None, exc: BaseException) -> str:
    """Why the engine at ``where`` did not answer, and what to check: TLS set-up for an engine
    on the network, the daemon and the docker group for a local socket."""
    where = engine_address(where)
    text = str(exc)
    tls_files = "DOCKER_CERT_PATH: a folder with the engine's CA (ca.pem) and your client certificate (cert.pem, key.pem)"
    if "HTTP request to an HTTPS server" in text:
        return f"The Docker engine at {where} speaks TLS: set DOCKER_TLS_VERIFY=1 and {tls_files}"
    if "client_cert param" in text or "ca_cert" in text:
        return (f"The TLS files for the Docker engine at {where} are missing ({os.environ.get('DOCKER_CERT_PATH') or '~/.docker'}"
                f" has no ca.pem, cert.pem and key.pem): set {tls_files}")
    if "SSLError" in text or "CERTIFICATE" in text.upper():
        return (f"TLS with the Docker engine at {where} failed ({_ssl_reason(text)}): check that DOCKER_CERT_PATH's "
                "ca.pem is the engine's CA and its cert.pem and key.pem a client certificate the engine trusts")
    if where.startswith(("unix://", "npipe://")):
        return f"Docker engine not reachable at {where}: is dockerd running, and is your user in the docker group? ({exc})"
    return f"Docker engine not reachable at {where}: is it running, and listening there? ({exc})"


def _ssl_reason(text: str) -> str:
    """The SSL library's own words (e.g. 'certificate verify failed: unable to get local issuer
    certificate') out of a requests error's nested reprs."""
    found = re.search(r"\[SSL(?:: [A-Z0-9_]+)?\] ([^(']+)", text)
    return found.group(1).strip() if found else text[-200:]


def translate(exc: BaseException, *, image: str | None = None, where: str | None = None) -> EngineError:
    """Turn a docker SDK / transport exception into an :class:`EngineError` with a user message."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, docker.errors.ImageNotFound) or (
        image and isinstance(exc, docker.errors.NotFound) and "image" in str(exc).lower()
    ):
        return ImageNotFound(
            f"Image {image!r} is not present on the Docker engine. Pull it first "
            f"(`docker pull {image}`) or build it."
            if image
            else f"Image not found: {_explanation(exc)}"
        )
    if isinstance(exc, docker.errors.NotFound):
        text = _explanation(exc)
        return ContainerNotFound(text) if "container" in text.lower() else EngineNotFound(text)
    if isinstance(exc, docker.errors.APIError):
        text = _explanation(exc)
        path = missing_bind_source(text)
        if path:
            return WorkspaceNotOnEngineHost(
                f"{path} does not exist on the Docker engine's host ({engine_address(where)}): "
                "an engine on another host needs the notebook folder at the same path there (shared storage such as NFS)"
            )
        if "unresolvable cdi devices" in text.lower():
            return GpuRequestUnsatisfiable(f"The engine has no CDI device for the requested GPUs. {CDI_HINT} (engine said: {text})")
        if "port is already allocated" in text or "address already in use" in text:
            return PortInUse(f"A port the container asks for is taken (engine said: {text})")
        if "is not running" in text or "container state improper" in text:  # the latter: Podman's
            return ContainerNotRunning(text)
        if exc.status_code == 409:
            return Conflict(f"Docker engine refused: {text}")
        if exc.status_code == 400:
            return BadEngineRequest(f"Docker engine refused the request: {text}")
        if "could not select device driver" in text and "gpu" in text:
            return GpuRuntimeMissing(f"{NVIDIA_TOOLKIT_HINT} (engine said: {text})")
        if "nvidia-container-cli" in text and ("device error" in text or "unknown device" in text):
            return GpuRequestUnsatisfiable(f"The requested GPUs are not on this host (engine said: {text})")
        return EngineError(f"Docker engine error: {text}")
    if isinstance(exc, (docker.errors.DockerException, ConnectionError, OSError)):
        return EngineUnavailable(_unreachable(where, exc))
    # requests' exceptions derive from OSError (IOError); anything else is a bug.
    return EngineError(f"Unexpected error talking to the Docker engine: {exc!r}")


def missing_bind_source(text: str) -> str | None:
    """The folder an engine's message says it lacks for a bind mount (an engine on another
    host, or a Swarm node, without the workspace on shared storage); None for other messages."""
    found = re.search(r"bind source path does not exist: (\S+)", text)
    return found.group(1) if found else None


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def _gpu_options(gpus: list[GpuRequest], kind: EngineKind) -> dict[str, Any]:
    """The host-config options that ask a Docker engine of ``kind`` for ``gpus``: the NVIDIA
    runtime's device requests, or CDI device names in a device request of the "cdi" driver.
    (Podman's Docker-compatible API takes neither: GPU kernels there go through _libpod_create.)"""
    if not gpus:
        return {}
    if kind.gpu_devices != "cdi":
        return {"device_requests": [
            DeviceRequest(count=g.count, device_ids=list(g.device_ids) or None, capabilities=[["gpu"]]) for g in gpus
        ]}
    return {"device_requests": [DeviceRequest(driver="cdi", device_ids=cdi_devices(gpus))]}


class _LargeReads:
    """A file whose ``read(n)`` returns up to 1 MiB whatever ``n`` is: http.client sends a body
    file in 8 KiB reads, a Python loop that would hand the GIL back and forth with the event
    loop 130 000 times per GB of build context."""

    mode = "rb"

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._f = fileobj

    def read(self, n: int = -1) -> bytes:
        return self._f.read(-1 if n is None or n < 0 else max(n, 1 << 20))

    def fileno(self) -> int:
        return self._f.fileno()

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, *args: Any) -> int:
        return self._f.seek(*args)


class EngineStream:
    """An engine event stream: iterating it raises the typed errors; ``close()`` stops it (a
    cancelled pull stops downloading)."""

    def __init__(self, engine: "Engine", stream: Any, image: str | None = None) -> None:
        self._engine, self._stream, self._image = engine, stream, image

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iterator = iter(self._stream)
        end = object()
        while True:
            item = self._engine.call_sync(next, iterator, end, image=self._image)
            if item is end:
                return
            yield item

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:
            pass


class Engine:
    """Async facade over one docker SDK client.

    One instance per engine address and process (see :func:`get_engine`); the client is
    created lazily and re-created after the engine was unreachable, so a server that
    started before dockerd recovers without a restart.
    """

    helpers_reach_kernels = True  # a helper container runs on this engine, as its kernels do

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
    def client(self) -> docker.DockerClient:
        """The docker SDK client (blocking; call only from the pool). Raises EngineUnavailable."""
        with self._client_lock:
            if self._client is None:
                try:
                    client = _EngineClient.from_env(max_pool_size=32, environment=_sdk_environment(self.base_url))
                except Exception as exc:  # from_env pings the engine for its API version
                    raise translate(exc, where=self.base_url) from exc
                self._client = client
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def _forget_client(self) -> None:
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

    def version_sync(self) -> dict[str, Any]:
        return self.call_sync(lambda: self.api.version())

    def disk_usage_sync(self) -> dict[str, Any]:
        """``docker system df`` (slow on big engines: callers cache it)."""
        return self.call_sync(lambda: self.api.df())

    # -- engine -------------------------------------------------------------------------

    def info_sync(self) -> dict[str, Any]:
        """``docker info``, cached for the life of the client."""
        if self._info is None:
            self._info = self.call_sync(lambda: self.api.info())
        return self._info

    def kind_sync(self) -> EngineKind:
        """Docker or Podman, rootful or rootless (cached with the client). Docker lists
        ``name=rootless`` in its security options; Podman names itself in its version's
        components and says whether it is rootless in its own (libpod) info."""
        if self._kind is None:
            info, version = self.info_sync(), self.version_sync()
            podman = any("podman" in (c.get("Name") or "").lower() for c in version.get("Components") or [])
            if podman:
                libpod = self.call_sync(lambda: self.api._result(self.api._get(self.api._url("/libpod/info")), json=True))
                rootless = bool(((libpod.get("host") or {}).get("security") or {}).get("rootless"))
            else:
                rootless = any("rootless" in option for option in info.get("SecurityOptions") or [])
            cdi = any(str(dev.get("ID", "")).startswith(CDI_GPU_KIND) for dev in info.get("DiscoveredDevices") or []
                      if isinstance(dev, dict))
            self._kind = EngineKind(
                product="podman" if podman else "docker", rootless=rootless,
                cgroup_version=str(info.get("CgroupVersion") or "1"), cgroup_driver=str(info.get("CgroupDriver") or ""),
                gpu_devices="cdi" if podman or (cdi and "nvidia" not in (info.get("Runtimes") or {})) else "runtime",
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
        from .base import engine_location

        return self.kind_sync().product == "podman" and engine_location(self.address).local and local_cdi_gpu_specs() != []

    # -- images -------------------------------------------------------------------------

    def inspect_image_sync(self, image: str) -> dict[str, Any]:
        return self.call_sync(lambda: self.api.inspect_image(image), image=image)

    def images_sync(self) -> list[dict[str, Any]]:
        return self.call_sync(lambda: self.api.images())

    def import_image_sync(self, data: bytes, tag: str, changes: list[str]) -> None:
        """Make image ``tag`` from a file system given as a tar (``docker import``). Blocking."""
        repository, _, name = tag.rpartition(":")

        def do_import() -> None:
            answer = self.api.import_image_from_data(data, repository=repository, tag=name, changes=changes)
            for line in str(answer).splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("error"):
                    raise EngineError(f"Could not import {tag}: {event['error']}")

        self.call_sync(do_import)

    def remove_image_sync(self, image: str) -> None:
        """Remove a tag (or an image by id); the engine refuses (Conflict) while a container uses it."""
        self.call_sync(lambda: self.api.remove_image(image), image=image)

    def pull_stream(self, image: str) -> EngineStream:
        """The engine's progress events of pulling ``image`` (a closable stream; an ``error``
        key in an event is the pull's failure). Blocking."""
        repo, tag = split_reference(image)
        # No ``image=``: a registry's "not found" is the pull's failure, in the engine's words,
        # not "the image is not present here".
        stream = self.call_sync(lambda: self.api.pull(repo, tag=tag, stream=True, decode=True))
        return EngineStream(self, stream)

    def build_stream(
        self, context: IO[bytes], tag: str, *, build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> EngineStream:
        """The engine's events of building the tar ``context`` (streamed from the file, never
        read into memory) as ``tag``. Blocking."""
        stream = self.call_sync(
            lambda: self.api.build(
                fileobj=_LargeReads(context), custom_context=True, tag=tag, rm=True, forcerm=True, decode=True,
                buildargs=build_args or {}, labels=labels or None,
            )
        )
        return EngineStream(self, stream)

    # -- containers ---------------------------------------------------------------------

    def run_to_completion_sync(
        self,
        image: str,
        command: list[str],
        *,
        user: str | None = None,
        mounts: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None,
        cap_drop: list[str] | None = None,
        cap_add: list[str] | None = None,
        init: bool = False,
        timeout: float = 120,
        read_only: bool = False,
        pids_limit: int | None = None,
        memory: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a short helper container without network; return (exit code, stdout, stderr).

        Used for image probes and volume initialisation. The container is always removed.
        A command that cannot be executed in the image returns exit code 127 with the
        engine's reason in stderr.
        """

        def run() -> tuple[int, str, str]:
            host_config = self.api.create_host_config(
                network_mode="none",
                mounts=mounts or [],
                cap_drop=cap_drop,
                cap_add=cap_add,
                security_opt=[NO_NEW_PRIVILEGES],
                init=init or None,
                read_only=read_only or None,
                pids_limit=pids_limit,
                mem_limit=memory,
            )
            with _HELPERS.creating():
                cid = self.api.create_container(
                    image,
                    entrypoint=command[:1],
                    command=command[1:],
                    user=user or "",
                    labels={LABEL_OWNER: owner_id(), **(labels or {})},
                    host_config=host_config,
                    network_disabled=True,
                )["Id"]
                _HELPERS.add(cid, self)
            try:
                try:
                    self.api.start(cid)
                except docker.errors.APIError as exc:
                    text = _explanation(exc)
                    if "executable file not found" in text or "no such file or directory" in text:
                        return 127, "", text
                    raise
                result = self.api.wait(cid, timeout=timeout)
                out = self.api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
                err = self.api.logs(cid, stdout=False, stderr=True).decode(errors="replace")
                return int(result.get("StatusCode", -1)), out, err
            finally:
                try:
                    self.api.remove_container(cid, force=True)
                except docker.errors.APIError:
                    pass
                _HELPERS.discard(cid)

        return self.call_sync(run, image=image)

    def _libpod_create(self, spec: ContainerSpec) -> str:
        """Create ``spec`` through Podman's own API. Its Docker-compatible API drops GPU requests
        without a word (DeviceRequests are ignored, CDI names in Devices refused; podman#19338,
        #22645); its own API takes CDI devices (nvidia.com/gpu=0), as `podman run --device` does."""
        from .base import parse_size

        limits: dict[str, Any] = {}
        if spec.memory:
            limits["memory"] = {"limit": parse_size(spec.memory)}
        if spec.nano_cpus:
            limits["cpu"] = {"period": 100000, "quota": spec.nano_cpus * 100000 // 1_000_000_000}
        if spec.pids_limit:
            limits["pids"] = {"limit": spec.pids_limit}
        body: dict[str, Any] = {
            "name": spec.name, "image": spec.image, "entrypoint": spec.entrypoint, "command": spec.command,
            "env": spec.env, "work_dir": spec.working_dir, "user": spec.user, "labels": spec.labels,
            "portmappings": [{"host_ip": spec.publish_ip, "container_port": port, "host_port": host or 0, "protocol": "tcp"}
                             for port, host in spec.ports.items()],
            "mounts": [{"destination": m.target, "source": m.source, "type": "bind",
                        "options": ["rbind"] + (["ro"] if m.read_only else [])} for m in spec.mounts if m.kind == "bind"],
            "volumes": [{"Name": m.source, "Dest": m.target, "Options": ["ro"] if m.read_only else []}
                        for m in spec.mounts if m.kind == "volume"],
            "devices": [{"path": name} for name in cdi_devices(spec.gpus)],
            "resource_limits": limits or None,
            "shm_size": parse_size(spec.shm_size) if spec.shm_size else None,
            "cap_drop": spec.cap_drop, "cap_add": spec.cap_add,
            "no_new_privileges": NO_NEW_PRIVILEGES in spec.security_opt,
            "init": spec.init,
            "read_only_filesystem": spec.read_only,
            "restart_policy": spec.restart_policy,
            "userns": {"nsmode": spec.userns} if spec.userns else None,
        }
        if spec.network and spec.network != "none":
            body["netns"] = {"nsmode": "bridge"}
            body["Networks"] = {spec.network: {}}
        body = {key: value for key, value in body.items() if value not in (None, [], {})}
        response = self.api._post_json(self.api._url("/libpod/containers/create"), data=body)
        return self.api._result(response, json=True)["Id"]

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
                return self._libpod_create(spec)
            host_config = self.api.create_host_config(
                port_bindings={port: (spec.publish_ip, host) for port, host in spec.ports.items()},
                mounts=[Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts],
                **_gpu_options(spec.gpus, self.kind_sync() if spec.gpus else EngineKind()),
                mem_limit=spec.memory,
                nano_cpus=spec.nano_cpus,
                shm_size=spec.shm_size,
                security_opt=spec.security_opt,
                cap_drop=spec.cap_drop,
                cap_add=spec.cap_add,
                read_only=spec.read_only or None,
                pids_limit=spec.pids_limit,
                restart_policy={"Name": spec.restart_policy} if spec.restart_policy else None,
                init=spec.init,
                network_mode=spec.network,
            )
            if spec.userns:  # the SDK refuses values other than "host"; Podman takes keep-id
                host_config["UsernsMode"] = spec.userns
            return self.api.create_container(
                spec.image, name=spec.name, entrypoint=spec.entrypoint, command=spec.command,
                environment=spec.env, working_dir=spec.working_dir, user=spec.user, labels=spec.labels,
                ports=list(spec.ports), host_config=host_config,
            )["Id"]

        container_id = self.call_sync(create, image=spec.image)
        try:
            if spec.files:
                self.call_sync(lambda: self.api.put_archive(container_id, "/", _tar_of(spec.files)))
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
        """Container events (``die``, ``oom``...) of containers with ``labels``, from ``since``.
        Podman reports a container's exit as ``die`` but filters on ``died``."""
        if self.kind_sync().product == "podman":
            events = ["died" if event == "die" else event for event in events]
        return EngineStream(self, self.call_sync(
            lambda: self.api.events(
                since=int(since), decode=True,
                filters={"type": ["container"], "event": events, "label": labels},
            )
        ))

    def remove_container_sync(self, container_id: str) -> None:
        """Force-remove a container; a container that is already gone is not an error.
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

    # -- volumes ------------------------------------------------------------------------

    def inspect_volume_sync(self, name: str) -> dict[str, Any] | None:
        try:
            return self.call_sync(lambda: self.api.inspect_volume(name))
        except NotFound:
            return None

    def create_volume_sync(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return self.call_sync(lambda: self.api.create_volume(name=name, labels=labels))

    def remove_volume_sync(self, name: str) -> None:
        self.call_sync(lambda: self.api.remove_volume(name))




def _tar_of(files: list[FileSpec]) -> bytes:
    """A tar of ``files`` (with their parent folders, owned by the file's owner, mode 0700) to
    extract at the container's root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders: set[str] = set()
        for spec in files:
            parts = spec.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder in folders or folder in ("etc", "run", "tmp"):
                    continue  # the image's own system folders keep their owner and mode
                folders.add(folder)
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, spec.uid, spec.gid
                tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.uid, info.gid = len(spec.content), spec.mode, spec.uid, spec.gid
            tar.addfile(info, io.BytesIO(spec.content))
    return buffer.getvalue()


class _HelperContainers:
    """The helper containers (image probes, volume set-up) this process is running. A process
    that exits meanwhile (a server stopped right after it listed new images) removes them at exit,
    created or running, rather than leave them until an orphan clean-up finds them: it first
    waits for creations under way (a thread frozen at exit between its create and its clean-up
    would leave one), and starts no new one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._creating = 0
        self._exiting = False
        self._ids: dict[str, Engine] = {}

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        """Around a helper container's create call and :meth:`add`."""
        with self._changed:
            if self._exiting:
                raise EngineUnavailable("This process is exiting: no helper container is started")
            self._creating += 1
        try:
            yield
        finally:
            with self._changed:
                self._creating -= 1
                self._changed.notify_all()

    def add(self, container_id: str, engine: Engine) -> None:
        with self._changed:
            self._ids[container_id] = engine

    def discard(self, container_id: str) -> None:
        with self._changed:
            self._ids.pop(container_id, None)

    def remove_all(self, wait: float = 10.0) -> None:
        with self._changed:
            self._exiting = True
            self._changed.wait_for(lambda: self._creating == 0, timeout=wait)
            left = list(self._ids.items())
        for container_id, engine in left:
            try:
                engine.api.remove_container(container_id, force=True)
            except Exception:  # gone already, or the engine with it
                pass


_HELPERS = _HelperContainers()
atexit.register(_HELPERS.remove_all)


_ENGINES: dict[str | None, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _sdk_environment(base_url: str) -> dict[str, str]:
    """The variables the SDK reads for the engine at ``base_url`` (default: DOCKER_HOST, else the
    local socket). As with the docker CLI, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH apply to a TCP
    address, whichever way it was given (an engine on the network speaks mutual TLS), and
    are left out for a socket or ssh."""
    env = dict(os.environ)
    host = base_url or env.get("DOCKER_HOST", "")
    if host:
        env["DOCKER_HOST"] = host
    if not host.startswith("tcp://"):
        env.pop("DOCKER_TLS_VERIFY", None)
        env.pop("DOCKER_CERT_PATH", None)
    return env


class _EngineAPI(docker.APIClient):
    """The SDK's client, verifying an engine on the network with the engine's own CA
    (DOCKER_CERT_PATH's ca.pem) in every request: requests lets a CA bundle from the machine's
    HTTPS settings (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE; a company proxy's, often) replace a
    session's CA per request, and then no engine certificate verifies. Proxies still apply."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):  # a CA file (TLSConfig.configure_client)
            settings["verify"] = self.verify
        return settings


class _EngineClient(docker.DockerClient):
    """docker.DockerClient on :class:`_EngineAPI` (``from_env`` builds this class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.api = _EngineAPI(*args, **kwargs)


def get_engine(base_url: str | None = None) -> Engine:
    """The process-wide :class:`Engine` for ``base_url`` (default: DOCKER_HOST or the local socket)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(base_url)
        if engine is None:
            engine = _ENGINES[base_url] = Engine(base_url)
        return engine
