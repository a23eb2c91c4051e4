"""The errors this project reports, each with the HTTP status a REST front door answers with.

The bottom layer: it imports nothing of the project and nothing of the web stack, so the
engine boundary, the provisioner (loaded by nbclient and papermill too) and the domain modules
raise these without pulling in tornado. ``str()`` of each is a message a user can act on.
The REST handlers turn any of them into ``{"message": ...}`` with :func:`status_for`; the CLI
prints the message.
"""

from __future__ import annotations


class MLContainerError(Exception):
    """Base of the project's errors."""

    http_status = 500


class EngineError(MLContainerError):
    """A failure of the container engine (or of an operation on it), said for the user."""

    http_status = 502


class EngineUnavailable(EngineError):
    """The engine cannot be reached at all."""

    http_status = 503


class NotFound(EngineError):
    """Something named does not exist on the engine."""

    http_status = 404


class ImageNotFound(NotFound):
    """The image is not present on the engine."""


class ContainerNotFound(NotFound):
    """The container is gone."""


class BadEngineRequest(EngineError):
    """The engine refused the request as malformed (a bad reference, an invalid option): the
    client's input, not the engine's state."""

    http_status = 400


class WorkspaceNotOnEngineHost(EngineError):
    """An engine on another host has no folder at the workspace's path (no shared storage)."""

    http_status = 409


class HomeRefused(EngineError):
    """A kernel's bootstrap refused its HOME in the cache (not the user's own private folder)."""


class Conflict(EngineError):
    """The engine refused because of the state of something (a name or port taken, a
    container that is not running)."""

    http_status = 409


class PortInUse(Conflict):
    """A host port asked for is taken (e.g. by the previous container of a restarting kernel)."""


class ContainerNotRunning(Conflict):
    """The container exists but is not running (a signal cannot reach it)."""


class GpuRuntimeMissing(EngineError):
    """GPUs were requested from an engine that has no NVIDIA runtime."""

    http_status = 400


class GpuRequestUnsatisfiable(EngineError):
    """GPUs were requested that this host does not have (a count too large, an unknown id)."""

    http_status = 400


class RequestTooLarge(MLContainerError):
    """A request body over the API's limit."""

    http_status = 413


def status_for(exc: BaseException) -> int:
    """The HTTP status for ``exc``: its own ``http_status``, 400 for other bad input
    (ValueError: validation, refused paths), else 500."""
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return status
    if isinstance(exc, ValueError):
        return 400
    return 500
