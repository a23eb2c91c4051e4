"""The only module that talks to the Docker engine.

Everything else (provisioner, kernelspecs, images, CLI, REST handlers) goes through
:class:`Engine`, so that

* blocking docker SDK calls run in one thread pool, never on the event loop;
* engine failures become :class:`EngineError` subclasses whose ``str()`` is a message a
  user can act on ("engine not reachable", "image missing", "no NVIDIA runtime", ...);
* container labels are spelled in one place.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import docker
import docker.errors
from docker.types import DeviceRequest

from .identity import owner_id

T = TypeVar("T")

LABEL_PREFIX = "org.jupyter.mlcontainer"
LABEL_ROLE = f"{LABEL_PREFIX}.role"  # "kernel" | "probe" | "init"
LABEL_KERNEL_ID = f"{LABEL_PREFIX}.kernel-id"
LABEL_KERNEL_NAME = f"{LABEL_PREFIX}.kernel-name"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"  # the owning process's lease id (identity.owner_id)
LABEL_OWNER_USER = f"{LABEL_PREFIX}.owner-user"
LABEL_WORKSPACE = f"{LABEL_PREFIX}.workspace"
LABEL_CACHE_VOLUME = f"{LABEL_PREFIX}.cache-volume"
LABEL_VOLUME_CACHE = f"{LABEL_PREFIX}.cache"  # on the cache volume itself
LABEL_IMAGE = f"{LABEL_PREFIX}.image"  # the image reference the kernelspec names
LABEL_INJECTED_ENV = f"{LABEL_PREFIX}.injected-env"  # names of variables we set (not the user's)
LABEL_GPUS = f"{LABEL_PREFIX}.gpus"

# "=" and not ":": dockerd logs a deprecation warning for the ':' form at every container start.
NO_NEW_PRIVILEGES = "no-new-privileges=true"

NVIDIA_TOOLKIT_HINT = (
    "GPUs were requested but the Docker engine has no NVIDIA runtime. Install the NVIDIA "
    "Container Toolkit on the host (https://docs.nvidia.com/datacenter/cloud-native/"
    "container-toolkit/latest/install-guide.html), run `nvidia-ctk runtime configure "
    "--runtime=docker`, restart dockerd, or start the kernel without GPUs (--gpus none)."
)


class EngineError(Exception):
    """A failure of the Docker engine, with a message meant for the user."""


class EngineUnavailable(EngineError):
    """The engine cannot be reached at all."""


class ImageNotFound(EngineError):
    """The image is not present on the engine."""


class GpuRuntimeMissing(EngineError):
    """GPUs were requested from an engine that has no NVIDIA runtime."""


class ContainerNotFound(EngineError):
    """The container is gone."""


class GpuRequestUnsatisfiable(EngineError):
    """GPUs were requested that this host does not have (a count too large, an unknown id)."""


def _engine_hint() -> str:
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return (
        f"Docker engine not reachable at {where}: is dockerd running, and is your user in "
        "the docker group?"
    )


def translate(exc: BaseException, *, image: str | None = None) -> EngineError:
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
        return ContainerNotFound(_explanation(exc))
    if isinstance(exc, docker.errors.APIError):
        text = _explanation(exc)
        if "could not select device driver" in text and "gpu" in text:
            return GpuRuntimeMissing(f"{NVIDIA_TOOLKIT_HINT} (engine said: {text})")
        if "nvidia-container-cli" in text and ("device error" in text or "unknown device" in text):
            return GpuRequestUnsatisfiable(f"The requested GPUs are not on this host (engine said: {text})")
        return EngineError(f"Docker engine error: {text}")
    if isinstance(exc, (docker.errors.DockerException, ConnectionError, OSError)):
        return EngineUnavailable(f"{_engine_hint()} ({exc})")
    # requests' exceptions derive from OSError (IOError); anything else is a bug.
    return EngineError(f"Unexpected error talking to the Docker engine: {exc!r}")


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def gpu_device_requests(spec: str) -> list[DeviceRequest]:
    """Map a ``--gpus`` value to the engine's device requests.

    ``all`` -> every GPU; ``none``/``0``/empty -> no GPU; ``N`` -> N GPUs; ``ID,ID`` or
    ``device=ID,ID`` -> those device indices or UUIDs. ``auto`` must be resolved by the
    caller before (it depends on the engine and NVML).
    """
    value = (spec or "").strip().lower()
    if value.startswith("device="):
        ids = [part.strip() for part in spec.strip()[len("device=") :].split(",") if part.strip()]
        if not ids:
            raise ValueError(f"--gpus {spec!r}: no device listed after 'device='")
        return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    if value in ("", "none", "0"):
        return []
    if value == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if value == "auto":
        raise ValueError("'auto' must be resolved before asking the engine for GPUs")
    if value.isdigit():
        return [DeviceRequest(count=int(value), capabilities=[["gpu"]])]
    ids = [part.strip() for part in spec.split(",") if part.strip()]
    if ids and all(part.isdigit() or part.upper().startswith(("GPU-", "MIG-")) for part in ids):
        return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    raise ValueError(
        f"--gpus {spec!r} is not understood: use all, none, a count (2), or device indices / "
        "UUIDs separated by commas (0,1 or GPU-xxxx)"
    )


class Engine:
    """Async facade over one docker SDK client.

    One instance per engine address and process (see :func:`get_engine`); the client is
    created lazily and re-created after the engine was unreachable, so a server that
    started before dockerd recovers without a restart.
    """

    def __init__(self, base_url: str | None = None, max_workers: int = 16) -> None:
        self.base_url = base_url
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mlcontainer-engine")
        self._info: dict[str, Any] | None = None

    # -- plumbing -----------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The docker SDK client (blocking; call only from the pool). Raises EngineUnavailable."""
        with self._client_lock:
            if self._client is None:
                try:
                    if self.base_url:
                        client = docker.DockerClient(base_url=self.base_url, max_pool_size=32)
                    else:
                        client = docker.from_env(max_pool_size=32)
                except Exception as exc:  # from_env pings the engine for its API version
                    raise translate(exc) from exc
                self._client = client
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def _forget_client(self) -> None:
        with self._client_lock:
            self._client = None
            self._info = None

    def call_sync(self, fn: Callable[..., T], *args: Any, image: str | None = None, **kwargs: Any) -> T:
        """Run ``fn`` (a blocking SDK call) here, translating errors."""
        try:
            return fn(*args, **kwargs)
        except EngineError as exc:
            if isinstance(exc, EngineUnavailable):
                self._forget_client()
            raise
        except Exception as exc:
            err = translate(exc, image=image)
            if isinstance(err, EngineUnavailable):
                self._forget_client()
            raise err from exc

    async def call(self, fn: Callable[..., T], *args: Any, image: str | None = None, **kwargs: Any) -> T:
        """Run a blocking SDK call in the engine's thread pool, translating errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(self.call_sync, fn, *args, image=image, **kwargs)
        )

    # -- engine -------------------------------------------------------------------------

    def info_sync(self) -> dict[str, Any]:
        """``docker info``, cached for the life of the client."""
        if self._info is None:
            self._info = self.call_sync(lambda: self.api.info())
        return self._info

    def has_nvidia_runtime_sync(self) -> bool:
        info = self.info_sync()
        runtimes = info.get("Runtimes") or {}
        cdi = info.get("DiscoveredDevices") or []
        return "nvidia" in runtimes or any(
            str(dev.get("ID", "")).startswith("nvidia.com/gpu") for dev in cdi if isinstance(dev, dict)
        )

    # -- images -------------------------------------------------------------------------

    def inspect_image_sync(self, image: str) -> dict[str, Any]:
        return self.call_sync(lambda: self.api.inspect_image(image), image=image)

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
        timeout: float = 120,
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
            )
            container = self.api.create_container(
                image,
                entrypoint=command[:1],
                command=command[1:],
                user=user or "",
                labels={LABEL_OWNER: owner_id(), **(labels or {})},
                host_config=host_config,
                network_disabled=True,
            )
            cid = container["Id"]
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

        return self.call_sync(run, image=image)

    def remove_container_sync(self, container_id: str) -> None:
        """Force-remove a container; a container that is already gone is not an error."""
        try:
            self.api.remove_container(container_id, force=True, v=False)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if "already in progress" in _explanation(exc):
                return
            raise

    def our_containers_sync(self, role: str | None = None) -> list[dict[str, Any]]:
        """Containers (running or not) that jupyter-mlcontainer made, optionally of one role."""
        label = f"{LABEL_ROLE}={role}" if role else LABEL_ROLE
        return self.call_sync(lambda: self.api.containers(all=True, filters={"label": [label]}))

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
            return self.api.inspect_volume(name)
        except docker.errors.NotFound:
            return None

    def create_volume_sync(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return self.api.create_volume(name=name, labels=labels)


_ENGINES: dict[str | None, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(base_url: str | None = None) -> Engine:
    """The process-wide :class:`Engine` for ``base_url`` (default: DOCKER_HOST or the local socket)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(base_url)
        if engine is None:
            engine = _ENGINES[base_url] = Engine(base_url)
        return engine
