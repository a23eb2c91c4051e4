"""Kernel deaths found by polling, for a backend whose engine streams no event for its kernels
(a Swarm's tasks on other nodes, Slurm's jobs): the part every such stream shares, and the
``die`` event the watcher (kernels/watcher.py) reads, shaped as an engine's."""

from __future__ import annotations

import threading
import time
from typing import Any


def die_event(container_id: str, code: Any) -> dict[str, Any]:
    """A kernel's end as an engine's ``die`` event (exit code -1 when unknown)."""
    return {"Action": "die", "id": container_id, "time": time.time(),
            "Actor": {"ID": container_id, "Attributes": {"exitCode": str(code if code is not None else -1)}}}


class PolledEvents:
    """A stream of ``die`` events that a subclass's ``__iter__`` finds by asking ``backend`` every
    ``every`` seconds, for kernels with ``labels``; ``close()`` ends it. ``_reported`` keeps what
    was reported, so that each end is told once."""

    def __init__(self, backend: Any, labels: list[str], every: float) -> None:
        self.backend, self.labels, self.every = backend, labels, every
        self._closed = threading.Event()
        self._reported: set[str] = set()

    def close(self) -> None:
        self._closed.set()
