"""Every error this project raises on purpose, in one hierarchy, each with the HTTP status a
REST front door answers with.

The bottom layer: it imports nothing of the project and nothing of the web stack, so the
engines, the provisioner (loaded by nbclient and papermill too) and the domain raise these
without pulling in tornado. ``str()`` of each is a message a user can act on. The REST handlers
answer any of them with ``{"message": ...}`` and :func:`status_for`; the CLI prints the message.
Anything else that escapes (a ``ValueError`` or ``KeyError`` of a bug) is a 500 with its
traceback in the log, never a 4xx: only what is raised here on purpose says "your input".

    MLContainerError                      500  raised on purpose; its message is for the user
    ├── BadRequest                        400  the input: a request, a notebook's record, an option
    │   ├── PathRefused, KernelSpecError, ContextTooLarge, ImageNotUsable, FreezeError (RestoreError)
    ├── NotFound                          404  ImageNotFound, ContainerNotFound, EngineNotFound, JobNotFound,
    │                                          KernelContainerNotFound
    ├── Conflict                          409  PortInUse, ContainerNotRunning, WorkspaceNotOnEngineHost,
    │                                          OutputExists, RestorePlanChanged, ContextChanged,
    │                                          KernelEnvironmentUnavailable
    ├── RequestTooLarge                   413
    ├── ConfigurationError                500  a setting that cannot be used (the admin's to fix)
    └── EngineError                       502  the engine failed (or said no): EngineUnavailable 503,
                                               BadEngineRequest 400, GpuRuntimeMissing 400,
                                               GpuRequestUnsatisfiable 400, HomeRefused
An engine's "not found" or "conflict" is both an ``EngineError`` (code that asked the engine
catches those) and its HTTP kind.
"""

from __future__ import annotations


class MLContainerError(Exception):
    """Base of the project's errors: raised on purpose, with a message for the user."""

    http_status = 500


# -- kinds ------------------------------------------------------------------------------------

class BadRequest(MLContainerError):
    """Bad input: a request's body or query, a notebook's record, a CLI option or value."""

    http_status = 400


class NotFound(MLContainerError):
    """Something named does not exist."""

    http_status = 404


class Conflict(MLContainerError):
    """The request conflicts with the state of things (in use, exists, changed meanwhile)."""

    http_status = 409


class RequestTooLarge(MLContainerError):
    """A request body over the API's limit."""

    http_status = 413


class ConfigurationError(MLContainerError):
    """A setting (c.MLContainer.*, an environment variable, a config file) that cannot be used."""


# -- the engine -------------------------------------------------------------------------------

class EngineError(MLContainerError):
    """A failure of the container engine (or of an operation on it), said for the user."""

    http_status = 502


class EngineUnavailable(EngineError):
    """The engine cannot be reached at all."""

    http_status = 503


class ImageNotFound(NotFound, EngineError):
    """The image is not present on the engine."""


class ContainerNotFound(NotFound, EngineError):
    """The container is gone."""


class EngineConflict(Conflict, EngineError):
    """The engine refused because of its state (an image a container uses, a name taken)."""


class EngineNotFound(NotFound, EngineError):
    """Something else the engine was asked about is not there (a service, a volume, a network)."""


class BadEngineRequest(BadRequest, EngineError):
    """The engine refused the request as malformed (a bad reference, an invalid option): the
    client's input, not the engine's state."""


class WorkspaceNotOnEngineHost(Conflict, EngineError):
    """An engine on another host has no folder at the workspace's path (no shared storage)."""


class HomeRefused(EngineError):
    """A kernel's bootstrap refused its HOME in the cache (not the user's own private folder)."""


class PortInUse(Conflict, EngineError):
    """A host port the engine was asked to publish is taken."""


class ContainerNotRunning(Conflict, EngineError):
    """The container exists but is not running (it stopped, or is being removed)."""


class GpuRuntimeMissing(BadRequest, EngineError):
    """GPUs were asked for and the engine cannot give them (no NVIDIA runtime, no CDI spec)."""


class GpuRequestUnsatisfiable(BadRequest, EngineError):
    """More GPUs, or other ones, than the engine (or the cluster) has were asked for."""


class ImageNotUsable(BadRequest, EngineError):
    """The image cannot run a kernel as it is (no Python, no ipykernel, cannot encrypt where it must)."""


# -- input and files --------------------------------------------------------------------------

class PathRefused(BadRequest):
    """A path that leaves the folder it must stay in (a client's mistake or an attack)."""


class KernelSpecError(BadRequest):
    """Bad input for a kernelspec operation (an unknown option, a name that is taken)."""


class ContextTooLarge(BadRequest):
    """A build context over the configured limit (the message says how to raise it)."""


class ContextChanged(Conflict):
    """A file of a build context changed while it was read."""


class JobNotFound(NotFound):
    """No pull or build job with that id (finished long ago, or never started)."""


# -- freeze and restore -----------------------------------------------------------------------

class FreezeError(BadRequest):
    """Freeze cannot proceed (an image without Python, a container that is not running...)."""


class OutputExists(Conflict, FreezeError):
    """The Dockerfile or requirements file exists and overwriting was not asked for."""


class KernelContainerNotFound(NotFound, FreezeError):
    """No running container for that kernel or container id."""


class KernelEnvironmentUnavailable(Conflict, FreezeError):
    """The kernel did not tell its environment (busy, gone, restarted, not answering)."""


class RestoreError(FreezeError):
    """A notebook's environment record is missing or cannot be made available here."""


class RestorePlanChanged(Conflict, RestoreError):
    """The notebook, its Dockerfile or the images changed after the restore plan was shown."""


class HostCheckFailed(Conflict):
    """This host cannot run a frozen notebook's GPU code (its driver, its GPUs' architecture):
    a restore builds nothing, a kernel does not start; the message says why and what to do."""


def status_for(exc: BaseException) -> int:
    """The HTTP status for ``exc``: its own, for the errors above; 500 for anything else (a
    bug, whatever its type)."""
    status = getattr(exc, "http_status", None) if isinstance(exc, MLContainerError) else None
    return status if isinstance(status, int) else 500
