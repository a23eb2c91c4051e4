"""Domain errors as tornado HTTP errors, for the provisioner.

jupyter_server answers a kernel start that raised anything but a ``tornado.web.HTTPError``
with "Unhandled error" and no message, so the provisioner re-raises the project's errors
through :func:`as_http_error`, keeping their class too. Statuses come from the errors
themselves (errors.py); only this module and the REST handlers know tornado.
"""

from __future__ import annotations

from tornado import web

from ..core.errors import status_for

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
