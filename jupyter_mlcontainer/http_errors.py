"""The one place where domain errors become HTTP statuses.

Used by the REST handlers, and by the provisioner: jupyter_server answers a kernel start that
raised anything but a ``tornado.web.HTTPError`` with "Unhandled error" and no message, so the
provisioner re-raises domain errors through :func:`as_http_error`, keeping their class too.
"""

from __future__ import annotations

from tornado import web

from .engine import EngineError, EngineUnavailable, GpuRequestUnsatisfiable, GpuRuntimeMissing, ImageNotFound
from .freeze import FreezeError, KernelContainerNotFound, OutputExists, RestorePlanChanged
from .images import ImageNotUsable
from .jobs import JobNotFound


def status_for(exc: BaseException) -> int:
    if isinstance(exc, EngineUnavailable):
        return 503
    if isinstance(exc, (ImageNotFound, JobNotFound)):
        return 404
    if isinstance(exc, (ImageNotUsable, GpuRuntimeMissing, GpuRequestUnsatisfiable, ValueError)):  # KernelSpecError too
        return 400
    if isinstance(exc, (OutputExists, RestorePlanChanged)):
        return 409
    if isinstance(exc, KernelContainerNotFound):
        return 404
    if isinstance(exc, FreezeError):  # RestoreError too
        return 400
    if isinstance(exc, EngineError):
        return 502
    return 500


_variants: dict[type, type] = {}


def _message(self) -> str:
    return str(self.log_message)


def as_http_error(exc: Exception) -> Exception:
    """An exception that is both ``type(exc)`` and a tornado HTTPError carrying its message."""
    if isinstance(exc, web.HTTPError):
        return exc
    cls = type(exc)
    variant = _variants.get(cls)
    if variant is None:
        variant = _variants[cls] = type(cls.__name__, (cls, web.HTTPError), {"__str__": _message})
        variant.__module__ = cls.__module__
    err = variant.__new__(variant)
    # No format args: jupyter_server sends log_message as is (a '%' in it is harmless).
    web.HTTPError.__init__(err, status_for(exc), str(exc))
    return err
