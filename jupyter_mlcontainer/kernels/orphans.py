"""Removing kernel containers whose owning process died (a server killed with SIGKILL).

jupyter_server never re-adopts kernels after a crash, so their containers would run forever.
Each container carries its owner's id; a container is an orphan only when that owner's lease
is in this user's runtime folder and no process holds it (identity.py). Containers of live
servers, of other users, and of other hosts or filesystems sharing the engine are never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..core.identity import dead_owners, forget_dead_owner, owner_is_dead
from ..core.labels import LABEL_OWNER, LABEL_ROLE
from ..engines.base import ContainerBackend
from .claims import is_spare, kernel_id_of

log = logging.getLogger(__name__)


@dataclass
class Orphan:
    container_id: str
    kernel_id: str
    owner: str
    role: str


def find_orphans(engine: ContainerBackend) -> list[Orphan]:
    """Our containers (kernels, probes, volume helpers) whose owner process is dead. Blocking."""
    orphans = []
    for container in engine.our_containers_sync():
        labels = container.get("Labels") or {}
        owner = labels.get(LABEL_OWNER, "")
        if owner and owner_is_dead(owner) is True:
            orphans.append(
                Orphan(container["Id"], kernel_id_of(container) or "", owner,
                       "spare" if is_spare(container) and not kernel_id_of(container) else labels.get(LABEL_ROLE, ""))
            )
    return orphans


def reap_orphans(engine: ContainerBackend, logger: logging.Logger | None = None, *, forget_leases: bool = True) -> list[Orphan]:
    """Remove orphaned containers and say so in the log; return what was removed. Blocking.
    ``forget_leases``: drop the dead owners' leases afterwards (a caller reaping several
    backends does that once, after the last: without its lease an owner is nobody's to judge)."""
    logger = logger or log
    removed = []
    for orphan in find_orphans(engine):
        engine.call_sync(engine.remove_container_sync, orphan.container_id)
        removed.append(orphan)
    if forget_leases:
        forget_dead_leases()
    if removed:
        owners = sorted({o.owner for o in removed})
        logger.warning(
            "Removed %d orphaned container(s) left by dead Jupyter process(es) %s: %s",
            len(removed),
            ", ".join(owners),
            ", ".join(f"{o.container_id[:12]} (kernel {o.kernel_id or '-'})" for o in removed),
        )
    return removed


def forget_dead_leases() -> None:
    """Drop the leases of every dead owner (their containers are gone)."""
    for owner in set(dead_owners()):
        forget_dead_owner(owner)
