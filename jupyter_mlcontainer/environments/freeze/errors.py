"""Freeze's and restore's errors (each with its HTTP status, see errors.py)."""

from __future__ import annotations

from ...core.errors import EngineError


class FreezeError(EngineError):
    """Freeze cannot proceed (image without Python, container not running...)."""

    http_status = 400


class OutputExists(FreezeError):
    """The Dockerfile or requirements file exists and overwriting was not asked for."""

    http_status = 409


class KernelContainerNotFound(FreezeError):
    """No running container for that kernel or container id."""

    http_status = 404


class RestoreError(FreezeError):
    """A notebook's environment record is missing or cannot be made available here."""


class RestorePlanChanged(RestoreError):
    """The notebook, its Dockerfile or the images changed after the restore plan was shown."""

    http_status = 409
