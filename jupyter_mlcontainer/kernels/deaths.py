"""Why kernel containers stopped without being asked to: the provisioner records, the kernel
list (REST, panel) and the logs read.

Records live in this process, newest last, at most :data:`KEEP` of them: a long-running
server whose kernels die now and then does not grow without bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

KEEP = 256


@dataclass
class DeathRecord:
    """Why a kernel container stopped without being asked to."""

    kernel_id: str
    container_id: str
    image: str
    exit_code: int
    oom_killed: bool
    memory_limit: str
    engine_error: str
    log_tail: str
    time: float
    engine_lost: str = ""  # the engine's address, when the container went away with its engine

    def message(self) -> str:
        if self.engine_lost:
            return (f"Kernel stopped with its Docker engine ({self.engine_lost}): the engine stopped or "
                    "became unreachable; the kernel restarts when the engine answers again")
        if self.oom_killed:
            limit = f" (memory limit {self.memory_limit})" if self.memory_limit else ""
            return f"Kernel was killed: out of memory{limit}, exit code {self.exit_code}"
        if self.engine_error:
            return f"Kernel container failed: {self.engine_error}"
        if self.exit_code in (137, -9):
            return "Kernel was killed (SIGKILL, exit code 137)"
        if self.exit_code in (143, -15):
            return "Kernel was stopped (SIGTERM, exit code 143): its container was stopped from outside"
        return f"Kernel process exited with code {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["message"] = self.message()
        return data


_records: OrderedDict[str, DeathRecord] = OrderedDict()
_lock = threading.Lock()


def record_death(record: DeathRecord) -> None:
    """Keep ``record`` as the last death of its kernel (the provisioner calls this)."""
    with _lock:
        _records.pop(record.kernel_id, None)
        _records[record.kernel_id] = record
        while len(_records) > KEEP:
            _records.popitem(last=False)


def note_engine_lost(kernel_id: str, engine: str) -> None:
    """The engine of ``kernel_id``'s dead container stopped answering right after the death
    (dockerd stopping sends SIGTERM to its containers first): that is the reason to show."""
    with _lock:
        record = _records.get(kernel_id)
        if record is not None:
            record.engine_lost = engine


def last_death(kernel_id: str) -> DeathRecord | None:
    """The last recorded unexpected death of ``kernel_id``'s container, if any."""
    with _lock:
        return _records.get(kernel_id)


def forget_death(kernel_id: str) -> None:
    """Drop ``kernel_id``'s record (its kernel was shut down on purpose)."""
    with _lock:
        _records.pop(kernel_id, None)
