"""The deaths of a Slurm backend's kernels, as an engine's ``die`` events for the watcher
(kernels/watcher.py): engines/slurm.py's ``events_stream``."""

from __future__ import annotations

from typing import Any, Iterator

from .polled_events import PolledEvents, die_event
from .slurm_spec import matches


class KernelEnds(PolledEvents):
    """The ``die`` events of this server's Slurm kernels. A kernel ends when its step's ``srun``
    client returns, whatever ended it (the kernel's exit, a signal, its job's end: a time limit, a
    node failure, a cancel): the clients are polled here, ten times a second, without asking
    Slurm; the job's state is read once a kernel has ended. Iterable; ``close()`` ends it.
    ``backend``: the SlurmBackend (its kernels, and the steps it removed with their exit codes)."""

    def __init__(self, backend: Any, labels: list[str], every: float = 0.1) -> None:
        super().__init__(backend, labels, every)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._closed.is_set():
            # A kernel is a step: a restart's kernel runs in the same job (the same id) as a new step.
            for step, code in list(self.backend._removed.items()):  # the die of a removed kernel
                if step not in self._reported:
                    self._reported.add(step)
                    yield die_event(step.split(".")[0], code)
            for job_id, kernel in list(self.backend._kernels.items()):
                client, step = kernel["client"], f"{job_id}.{kernel['step']}"
                if step in self._reported or client is None or client.poll() is None:
                    continue
                if any(not matches(kernel["labels"], label) for label in self.labels):
                    continue
                self._reported.add(step)
                state = self.backend.container_state_sync(job_id) or {}
                yield die_event(job_id, state.get("ExitCode", client.returncode))
            self._closed.wait(self.every)

