"""Seeing a kernel's container end without waiting for the engine to say so.

When a server closes many kernels at once, the engine handles their exits one after another
(network and mounts torn down) before it reports each "die" event: 20 kernels on two cores
were gone in 1 s but reported over 2-3 s more. A kernel that was asked to shut down is watched
through its container's first process instead, where this process sees the engine's PIDs (a
local engine): gone, or now another container's, means the kernel has ended.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..core.errors import EngineError
from ..engines.base import ContainerBackend
from ..machine.gpu import container_id_of_pid


def first_pid(state: dict[str, Any]) -> int:
    """The PID of a container's first process in the engine's ``State`` of it (as the engine
    sees it); 0 when there is none."""
    pid = state.get("Pid")
    return pid if isinstance(pid, int) and pid > 0 else 0


@dataclass(frozen=True)
class ExitWatch:
    """The first process of container ``container_id``, as this host's ``/proc`` shows it."""

    container_id: str
    pid: int
    proc: str = "/proc"

    @classmethod
    def of(cls, backend: ContainerBackend, container_id: str) -> "ExitWatch | None":
        """A watch of the running container, or None where this process cannot see its
        processes (an engine on another host or in another PID namespace, a cluster node).
        Blocking (one inspect). Called by the provisioner when it first signals or watches a
        container whose start did not leave it a PID that serves (:meth:`at`)."""
        if not backend.location.local:
            return None
        try:
            state = backend.container_state_sync(container_id) or {}
        except EngineError:
            return None
        return cls.at(container_id, first_pid(state)) if state.get("Running") else None

    @classmethod
    def at(cls, container_id: str, pid: int) -> "ExitWatch | None":
        """A watch of ``pid``, which the engine said is container ``container_id``'s first process
        when it started it, if this host's ``/proc`` shows it so now (no engine call): the PID is
        the engine's, and it is ours only if that process is in this container."""
        if pid <= 0 or container_id_of_pid(pid) != container_id:
            return None
        return cls(container_id, pid)

    def ended(self) -> bool:
        """Whether the container's first process has ended (its PID gone, or reused elsewhere)."""
        if not os.path.exists(f"{self.proc}/{self.pid}"):
            return True
        return container_id_of_pid(self.pid, self.proc) != self.container_id
