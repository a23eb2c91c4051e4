"""A Slurm job as a kernel's container is seen: its state read from ``squeue --json`` (data_parser
v0.0.40 and later, Slurm 23.11+), and what a user is told about it: why it waits and when it may
start, how long it has left, and why it ended. Pure (no cluster); docs/slurm.md says where the
Slurm backend stands.

Slurm's numbers come as ``{"set": bool, "infinite": bool, "number": n}``; a state is a list of
flags whose first is the job's base state (``PENDING``, ``RUNNING``, ``TIMEOUT``...).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..core.errors import EngineError

# Slurm's words for why a job waits, as a user should read them (the reasons our users meet; the
# others are shown as Slurm says them). https://slurm.schedmd.com/job_reason_codes.html
WAIT_REASONS = {
    "Resources": "the nodes it needs are busy",
    "Priority": "jobs of higher priority are ahead of it",
    "BeginTime": "it may not start yet (requeued, or a later start was asked for)",
    "Dependency": "it waits for another job",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
    "PartitionTimeLimit": "its time limit is over the partition's",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "QOSMaxGRESPerUser": "you hold as many GPUs as your QOS allows",
    "QOSMaxGRESPerJob": "it asks for more GPUs than your QOS allows per job",
    "QOSMaxJobsPerUserLimit": "you run as many jobs as your QOS allows",
    "QOSMaxWallDurationPerJobLimit": "its time limit is over your QOS's",
    "AssocGrpGRES": "your account holds as many GPUs as it may",
    "AssocMaxJobsLimit": "your account runs as many jobs as it may",
    "JobHeldUser": "you held it",
    "JobHeldAdmin": "an administrator held it",
    "Reservation": "it waits for its reservation",
}

ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"})
WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})


def _number(value: Any) -> int | None:
    """A Slurm number: None when unset or infinite."""
    if isinstance(value, dict):
        if not value.get("set") or value.get("infinite"):
            return None
        return int(value.get("number", 0))
    return int(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class SlurmJob:
    """One job as ``squeue --json`` shows it, in the terms the kernel list and messages use."""

    job_id: str
    name: str
    user: str
    uid: int
    state: str  # the base state: PENDING, RUNNING, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL...
    reason: str  # Slurm's state reason ("None" when there is none)
    nodes: str  # its allocation ("" while pending)
    partition: str
    submit_time: int | None
    start_time: int | None  # the start, or while pending the scheduler's estimate (None: none yet)
    end_time: int | None
    time_limit: int | None  # minutes; None: no limit
    exit_code: int | None
    signal: int | None
    signal_name: str
    comment: str = ""  # what the submitter wrote with the job (ours: the kernel's labels, engines/slurm.py)

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def why_waiting(self, now: float | None = None) -> str:
        """What the kernel's start, the panel and the status bar say while the job waits:
        Slurm's reason in a user's words, and the estimated start when the scheduler has one."""
        reason = self.reason if self.reason and self.reason != "None" else ""
        text = f"Job {self.job_id} is waiting in the queue of partition {self.partition or '(default)'}"
        if reason:
            text += f": {WAIT_REASONS.get(reason, 'Slurm says so')} ({reason})"
        now = time.time() if now is None else now
        if self.start_time and self.start_time > now:
            text += f"; estimated start {_clock(self.start_time)} (in {_duration(self.start_time - now)})"
        return text

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds until the time limit ends a running job; None without a limit or a start."""
        if self.time_limit is None or self.start_time is None or not self.running:
            return None
        now = time.time() if now is None else now
        return max(0.0, self.start_time + self.time_limit * 60 - now)

    def summary(self, now: float | None = None) -> str:
        """One line for the kernel list: why it waits and when it may start, where it runs and
        how long it has left, or why it ended."""
        if self.waiting:
            return self.why_waiting(now)
        if self.running:
            left = self.time_left(now)
            text = f"Job {self.job_id} running on {self.nodes or 'its node'}"
            return text + (f", {_duration(left)} left of {_limit(self.time_limit)}" if left is not None else "")
        return self.why_ended() or f"Job {self.job_id} is {self.state}"

    def why_ended(self) -> str:
        """Why the job (the kernel) ended, named from Slurm's state, for the kernel's death
        record; "" while it has not ended."""
        if not self.ended:
            return ""
        where = f" on {self.nodes}" if self.nodes else ""
        if self.state == "TIMEOUT":
            return f"Job {self.job_id} reached its time limit ({_limit(self.time_limit)}): Slurm ended it{where}"
        if self.state == "OUT_OF_MEMORY":
            return f"Job {self.job_id} ran out of memory{where}: ask for more memory (--mem) for this kernel"
        if self.state == "NODE_FAIL":
            return f"The node of job {self.job_id} failed ({self.nodes or 'unknown node'}): the kernel was lost with it"
        if self.state == "PREEMPTED":
            return f"Job {self.job_id} was preempted{where} by a job of higher priority"
        if self.state == "CANCELLED":
            return f"Job {self.job_id} was cancelled{where}" + (f" ({self.signal_name or 'signal'})" if self.signal else "")
        if self.state == "BOOT_FAIL":
            return f"The node of job {self.job_id} failed to boot ({self.nodes or 'unknown node'})"
        if self.state == "DEADLINE":
            return f"Job {self.job_id} reached its deadline"
        if self.state == "FAILED":
            return f"Job {self.job_id} failed{where} (exit code {self.exit_code})"
        return f"Job {self.job_id} ended{where} ({self.state}, exit code {self.exit_code})"


def job_from_json(entry: dict[str, Any]) -> SlurmJob:
    """One entry of ``squeue --json``'s ``jobs``."""
    states = entry.get("job_state") or ["UNKNOWN"]
    exit_code = entry.get("exit_code") or {}
    signal = (exit_code.get("signal") or {}) if isinstance(exit_code, dict) else {}
    return SlurmJob(
        job_id=str(entry.get("job_id", "")),
        name=str(entry.get("name") or ""),
        user=str(entry.get("user_name") or ""),
        uid=int(entry.get("user_id", -1)),
        state=str(states[0] if isinstance(states, list) else states),
        reason=str(entry.get("state_reason") or ""),
        nodes=str(entry.get("nodes") or ""),
        partition=str(entry.get("partition") or ""),
        submit_time=_number(entry.get("submit_time")),
        start_time=_number(entry.get("start_time")) or None,
        end_time=_number(entry.get("end_time")) or None,
        time_limit=_number(entry.get("time_limit")),
        exit_code=_number(exit_code.get("return_code")) if isinstance(exit_code, dict) else None,
        signal=_number(signal.get("id")) or None,
        signal_name=str(signal.get("name") or ""),
        comment=str(entry.get("comment") or ""),
    )


def jobs_from_squeue(text: str) -> dict[str, SlurmJob]:
    """The jobs of ``squeue --json`` output, by id; EngineError naming Slurm's own errors."""
    try:
        answer = json.loads(text)
    except ValueError:
        raise EngineError(f"squeue did not answer in JSON (Slurm 23.11 or later is needed): {text[:200]!r}") from None
    errors = [e.get("description") or e.get("error") or str(e) for e in answer.get("errors") or []]
    if errors:
        raise EngineError(f"squeue: {'; '.join(errors)}")
    jobs = (job_from_json(entry) for entry in answer.get("jobs") or [])
    return {job.job_id: job for job in jobs}


def _clock(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _limit(minutes: int | None) -> str:
    if minutes is None:
        return "none"
    return f"{minutes // 60}:{minutes % 60:02d}:00"
