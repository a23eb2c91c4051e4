"""Which backend a kernelspec's ``placement`` names: the one table of backends.

The provisioner and the service ask for a backend by placement and then only ask it questions
(engines/base.py); they never branch on the name. A new engine is a module under ``engines/``
with a factory taking the engine's address, and one row here.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core.errors import BadRequest
from .base import ContainerBackend

# placement -> (module under engines/, its factory(address) -> backend, the backend's class, the
# provisioner's setting that holds the address). Imported when first asked for: the Swarm's
# module is not loaded by a server that runs none.
BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "local": ("docker", "get_engine", "Engine", "docker_host"),
    "swarm": ("swarm", "get_swarm", "SwarmBackend", "docker_host"),
    "slurm": ("slurm", "get_slurm", "SlurmBackend", "slurm_login"),
}
DEFAULT_PLACEMENT = "local"


def placements() -> tuple[str, ...]:
    """The placements a kernelspec may name."""
    return tuple(BACKENDS)


def _row(placement: str) -> tuple[str, str, str, str]:
    try:
        return BACKENDS[(placement or DEFAULT_PLACEMENT).lower()]
    except KeyError:
        raise BadRequest(f"placement {placement!r}: one of {', '.join(map(repr, BACKENDS))}") from None


def address_setting(placement: str) -> str:
    """The provisioner's setting (a trait of c.DockerKernelProvisioner, and of c.MLContainer where
    it has one) whose value is ``placement``'s address: an engine's DOCKER_HOST, Slurm's login."""
    return _row(placement)[3]


def _part(placement: str, index: int) -> Any:
    row = _row(placement)
    module = importlib.import_module(f"{__package__}.{row[0]}")
    return getattr(module, row[index])


def backend_for(placement: str, address: str | None) -> ContainerBackend:
    """The process-wide backend for ``placement`` at ``address`` (a DOCKER_HOST; None or "": the
    environment's, for the local engine)."""
    return _part(placement, 1)(address or None)


def backend_class(placement: str) -> type:
    """The class of ``placement``'s backend, for its capabilities (``delivers_signals``,
    ``is_cluster``...) without reaching an engine."""
    return _part(placement, 2)
