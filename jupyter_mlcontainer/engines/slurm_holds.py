"""Slurm jobs kept allocated with no kernel in them, for the kernel that comes next: a restarting
kernel's job (by its kernel id, for :data:`~.slurm.HOLD_FOR_RESTART` seconds) and, with the
kernelspec's ``hold``, a shut-down kernel's job for the next kernel of the same shape (by
:func:`~.slurm_spec.warm_key`). A timer cancels a job nobody took; the process's exit cancels
them all. engines/slurm.py keeps one :class:`HeldJobs` per backend."""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

_all: list["HeldJobs"] = []
exiting = threading.Event()  # set at exit: nothing is held any more, a removed kernel's job is cancelled


class HeldJobs:
    """``cancel(job_id)`` cancels a job (``scancel``, through the login node)."""

    # A hold longer than a week is a week (threading.Timer takes no infinity).
    LONGEST = 7 * 24 * 3600.0

    def __init__(self, cancel: Callable[[str], None]) -> None:
        self._cancel = cancel
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, threading.Timer]] = {}  # key -> (job id, the timer cancelling it)
        _all.append(self)

    def hold(self, key: str, job_id: str, seconds: float) -> None:
        """Keep ``job_id`` for the next start that asks for ``key``, at most ``seconds``."""
        timer = threading.Timer(min(seconds, self.LONGEST), self._expire, (key, job_id))
        timer.daemon = True
        with self._lock:
            previous = self._held.pop(key, None)
            self._held[key] = (job_id, timer)
        if previous is not None:
            previous[1].cancel()
            if previous[0] != job_id:  # one held job per key: the older goes
                self._safely_cancel(previous[0])
        timer.start()

    def take(self, key: str) -> str:
        """The job held for ``key`` ("" when none), no longer held (its timer stopped)."""
        with self._lock:
            held = self._held.pop(key, None) if key else None
        if held is None:
            return ""
        held[1].cancel()
        return held[0]

    def holds(self, job_id: str) -> bool:
        with self._lock:
            return any(job == job_id for job, _ in self._held.values())

    def forget(self, job_id: str) -> None:
        """``job_id`` is being cancelled by its owner: hold it no more."""
        with self._lock:
            for key, (job, timer) in list(self._held.items()):
                if job == job_id:
                    timer.cancel()
                    del self._held[key]

    def release_all(self) -> None:
        """Cancel every held job (the process exits)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for job_id, timer in held:
            timer.cancel()
            self._safely_cancel(job_id)

    def _expire(self, key: str, job_id: str) -> None:
        """Nobody took it in time: cancel it."""
        with self._lock:
            if self._held.get(key, ("",))[0] != job_id:
                return
            del self._held[key]
        self._safely_cancel(job_id)

    def _safely_cancel(self, job_id: str) -> None:
        """Cancel, from a timer or at exit: a login node that does not answer is logged, and the
        job is left to its time limit or the next server's orphan clean-up."""
        try:
            self._cancel(job_id)
        except Exception as exc:  # noqa: BLE001 (a timer thread: nothing above it to report to)
            log.warning("Could not cancel held Slurm job %s: %s", job_id, exc)


@atexit.register
def _release_at_exit() -> None:
    """Runs before the provisioner's own atexit removal (registered earlier, so run later): from
    now on a removed kernel's job is cancelled at once, and the held ones are."""
    exiting.set()
    for held in _all:
        held.release_all()
