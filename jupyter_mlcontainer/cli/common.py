"""What every command of ``jupyter mlcontainer`` shares: its error, its JSON output, the service.

Every command calls :func:`service`, which reads ``c.MLContainer`` from the server's config
files and the environment: the CLI acts on the engine and cache volume the server and its
kernels use.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..core.errors import ConfigurationError
from ..service import MLContainerService, cli_service


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 1 (:func:`~.main` catches it)."""


def print_json(data: Any) -> None:
    """The ``--json`` output of a command: indented, anything JSON lacks as its ``str``."""
    print(json.dumps(data, indent=2, default=str))


def package_version() -> str:
    """The installed package's version, for ``--version`` (the parser asks once, when built)."""
    try:
        return version("jupyter-mlcontainer")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


def service() -> MLContainerService:
    """The service every command acts through, configured as the server is; a broken config
    file or setting is the user's to fix (:class:`CLIError`), not a traceback."""
    try:
        return cli_service()
    except ConfigurationError as exc:  # a broken config file or setting
        raise CLIError(str(exc)) from None
