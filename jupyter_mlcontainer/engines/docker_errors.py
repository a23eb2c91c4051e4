"""The docker SDK's exceptions as the typed errors of core/errors.py, each with a message a user
can act on: what the engine said, and what to check or install.

:meth:`~.docker.Engine.call_sync` passes every SDK failure through :func:`translate`; the Swarm
backend reads :func:`missing_bind_source` out of a task's error.
"""

from __future__ import annotations

import os
import re

import docker.errors

from ..core.errors import (
    BadEngineRequest,
    ContainerNotFound,
    ContainerNotRunning,
    EngineConflict,
    EngineError,
    EngineNotFound,
    EngineUnavailable,
    GpuRequestUnsatisfiable,
    GpuRuntimeMissing,
    ImageNotFound,
    PortInUse,
    WorkspaceNotOnEngineHost,
)
from .docker_client import engine_address

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

_TLS_FILES = (
    "DOCKER_CERT_PATH: a folder with the engine's CA (ca.pem) and your client certificate (cert.pem, key.pem)"
)


def translate(exc: BaseException, *, image: str | None = None, where: str | None = None) -> EngineError:
    """Turn a docker SDK / transport exception into an :class:`EngineError` with a user message.
    ``image``: the image the call was about (an engine's "not found" then means the image);
    ``where``: the engine's address, for messages."""
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
        return _refusal(exc, where)
    if isinstance(exc, (docker.errors.DockerException, ConnectionError, OSError)):
        return EngineUnavailable(_unreachable(where, exc))
    # requests' exceptions derive from OSError (IOError); anything else is a bug.
    return EngineError(f"Unexpected error talking to the Docker engine: {exc!r}")


def _refusal(exc: docker.errors.APIError, where: str | None) -> EngineError:
    """An engine's answer that refuses a request, by what its words say."""
    text = _explanation(exc)
    path = missing_bind_source(text)
    if path:
        return WorkspaceNotOnEngineHost(
            f"{path} does not exist on the Docker engine's host ({engine_address(where)}): "
            "an engine on another host needs the notebook folder at the same path there (shared storage such as NFS)"
        )
    if "unresolvable cdi devices" in text.lower():
        return GpuRequestUnsatisfiable(
            f"The engine has no CDI device for the requested GPUs. {CDI_HINT} (engine said: {text})"
        )
    if "port is already allocated" in text or "address already in use" in text:
        return PortInUse(f"A port the container asks for is taken (engine said: {text})")
    if "is not running" in text or "container state improper" in text:  # the latter: Podman's
        return ContainerNotRunning(text)
    if exc.status_code == 409:
        return EngineConflict(f"Docker engine refused: {text}")
    if exc.status_code == 400:
        return BadEngineRequest(f"Docker engine refused the request: {text}")
    if "could not select device driver" in text and "gpu" in text:
        return GpuRuntimeMissing(f"{NVIDIA_TOOLKIT_HINT} (engine said: {text})")
    if "nvidia-container-cli" in text and ("device error" in text or "unknown device" in text):
        return GpuRequestUnsatisfiable(f"The requested GPUs are not on this host (engine said: {text})")
    return EngineError(f"Docker engine error: {text}")


def _unreachable(where: str | None, exc: BaseException) -> str:
    """Why the engine at ``where`` did not answer, and what to check: TLS set-up for an engine
    on the network, the daemon and the docker group for a local socket."""
    where = engine_address(where)
    text = str(exc)
    if "HTTP request to an HTTPS server" in text:
        return f"The Docker engine at {where} speaks TLS: set DOCKER_TLS_VERIFY=1 and {_TLS_FILES}"
    if "client_cert param" in text or "ca_cert" in text:
        folder = os.environ.get("DOCKER_CERT_PATH") or "~/.docker"
        return (f"The TLS files for the Docker engine at {where} are missing ({folder}"
                f" has no ca.pem, cert.pem and key.pem): set {_TLS_FILES}")
    if "SSLError" in text or "CERTIFICATE" in text.upper():
        return (f"TLS with the Docker engine at {where} failed ({_ssl_reason(text)}): check that DOCKER_CERT_PATH's "
                "ca.pem is the engine's CA and its cert.pem and key.pem a client certificate the engine trusts")
    if where.startswith(("unix://", "npipe://")):
        return (f"Docker engine not reachable at {where}: is dockerd running, and is your user in the docker group? "
                f"({exc})")
    return f"Docker engine not reachable at {where}: is it running, and listening there? ({exc})"


def _ssl_reason(text: str) -> str:
    """The SSL library's own words (e.g. 'certificate verify failed: unable to get local issuer
    certificate') out of a requests error's nested reprs."""
    found = re.search(r"\[SSL(?:: [A-Z0-9_]+)?\] ([^(']+)", text)
    return found.group(1).strip() if found else text[-200:]


def missing_bind_source(text: str) -> str | None:
    """The folder an engine's message says it lacks for a bind mount (an engine on another
    host, or a Swarm node, without the workspace on shared storage); None for other messages."""
    found = re.search(r"bind source path does not exist: (\S+)", text)
    return found.group(1) if found else None


def _explanation(exc: BaseException) -> str:
    """The engine's own words in an SDK exception (its ``explanation``), else the exception's."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)
