"""Long engine operations (pull, build) that any front door can start, follow and cancel.

A :class:`Job` runs in its own thread and keeps its progress in plain data, so several clients
(REST pollers, the CLI, widgets) can watch the same pull; starting a pull of an image that is
already being pulled returns the running job instead of a second download.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..core.errors import EngineError, JobNotFound
from ..core.names import check_reference, reference_parts
from ..core.settings import DEFAULT_CONTEXT_LIMIT_MB
from ..engines.base import ContainerBackend

# The build context lives in its own module; these names are imported from here too (restore).
from .build_context import BuildContext, PackedContext, collect_context

LOG_LINES = 200
KEEP_FINISHED = 100  # finished jobs kept for the panel and followers; older ones are dropped


@dataclass
class Job:
    """One pull or build (or a composite of them: restore), made by :class:`JobRegistry`. Its
    thread writes the progress; front doors read it (:meth:`to_dict`, :meth:`follow`)."""

    kind: str  # "pull" | "build"
    target: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "running"  # running | done | error | cancelled
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    lines_total: int = 0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    _stream: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def progress(self) -> float | None:
        """Overall fraction from the layers whose size is known; 1.0 once done."""
        if self.state == "done":
            return 1.0
        with self._lock:
            sized = [layer for layer in self.layers.values() if layer.get("total")]
            if not sized:
                return None
            total = sum(layer["total"] for layer in sized)
            current = sum(min(layer.get("current", 0), layer["total"]) for layer in sized)
        return current / total if total else None

    def to_dict(self) -> dict[str, Any]:
        """The job as the REST API and the panel show it (the last 50 log lines)."""
        with self._lock:
            layers = {key: dict(value) for key, value in self.layers.items()}
            log = list(self.log[-50:])
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "progress": self.progress,
            "layers": layers,
            "log": log,
            "error": self.error,
            "result": self.result,
            "started": self.started,
            "finished": self.finished,
        }

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the job ended within ``timeout`` seconds (the CLI's pull polls with it)."""
        return self._done.wait(timeout)

    def follow(self, on_line: Callable[[str], None] | None = None, interval: float = 0.2) -> "Job":
        """Block until the job ends, passing its new log lines to ``on_line`` as they come (the
        CLI follows a pull, a build, a restore this way)."""
        seen = 0
        while True:
            finished = self.wait(interval)
            lines, seen = self.log_since(seen)
            for line in lines:
                if on_line:
                    on_line(line)
            if finished:
                return self

    # -- called by the runner --------------------------------------------------------------

    def add_log(self, line: str) -> None:
        """Keep one more log line (the last :data:`LOG_LINES` are kept; followers count them all)."""
        with self._lock:
            self.log.append(line)
            self.lines_total += 1
            del self.log[:-LOG_LINES]

    def log_since(self, seen: int) -> tuple[list[str], int]:
        """Lines added after the first ``seen`` ones (of those still kept), and the new total."""
        with self._lock:
            fresh = self.lines_total - seen
            return (self.log[-fresh:] if fresh > 0 else []), self.lines_total

    def update_layer(self, layer_id: str, status: str, current: int | None, total: int | None) -> None:
        """Record an engine event about one layer (a build's steps count as the layer "steps")."""
        with self._lock:
            layer = self.layers.setdefault(layer_id, {"status": "", "current": 0, "total": 0})
            layer["status"] = status
            if total:
                layer["total"] = int(total)
            if current is not None:
                layer["current"] = int(current)
            if status in ("Pull complete", "Already exists", "Download complete") and layer["total"]:
                layer["current"] = layer["total"]

    def finish(self, state: str, error: str | None = None) -> None:
        """End the job (its thread does, once); a job cancelled meanwhile stays cancelled."""
        if self.state == "cancelled":
            state = "cancelled"
        self.state = state
        self.error = error
        self.finished = time.time()
        self._done.set()


def follow(job: Job, on_line: Callable[[str], None] | None = None, interval: float = 0.2) -> Job:
    """Block until ``job`` ends, passing its new log lines to ``on_line`` as they come."""
    return job.follow(on_line, interval)


class JobRegistry:
    """Running and finished jobs of this process: the service holds one, and every front door
    starts, lists and cancels jobs through it."""

    def __init__(self, engine: ContainerBackend, context_limit_mb: int = DEFAULT_CONTEXT_LIMIT_MB,
                 also: "JobRegistry | None" = None) -> None:
        self.engine = engine
        self.context_limit_mb = context_limit_mb
        self.also = also  # another registry whose jobs are listed, read and cancelled here too
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def list(self) -> list[Job]:
        """Every job kept, newest first (the panel's list), with those of ``also``."""
        with self._lock:
            jobs = list(self._jobs.values())
        jobs += self.also.list() if self.also is not None else []
        return sorted(jobs, key=lambda job: job.started, reverse=True)

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; :class:`JobNotFound` when it is unknown or was pruned."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and self.also is not None:
            return self.also.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def cancel(self, job_id: str) -> Job:
        """Stop a running job (closes the engine stream; a pull stops downloading)."""
        job = self.get(job_id)
        if job.state == "running":
            job.state = "cancelled"
            job.finished = time.time()
            stream = job._stream
            if stream is not None:
                try:
                    stream.close()
                except Exception:
                    pass
        return job

    def pull(self, image: str) -> Job:
        """Start pulling ``image`` (or join the pull already running for it)."""
        image = image.strip()
        check_reference(image)
        with self._lock:
            for job in self._jobs.values():
                if job.kind == "pull" and job.target == image and job.state == "running":
                    return job
            job = Job(kind="pull", target=image)
            self._jobs[job.id] = job
        self.run(job, lambda: self.pull_events(job, image), on_done=lambda: self.record_image(job, image))
        return job

    def build(
        self, dockerfile: str, tag: str, *, wheelhouse: str | None = None, build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None, then: Callable[[Job], None] | None = None,
    ) -> Job:
        """Start building ``dockerfile`` as ``tag``; ``then(job)`` runs after a successful build
        (its failure fails the job). Blocking while the context is checked and packed."""
        context = collect_context(dockerfile, wheelhouse, self.context_limit_mb)
        job = Job(kind="build", target=tag)

        def built() -> None:
            self.record_image(job, tag)
            if then is not None:
                then(job)

        self.run(job, lambda: self.build_events(job, context, tag, build_args=build_args, labels=labels), on_done=built)
        return job

    # -- the parts a composite job (restore: pull, else build) is made of ------------------

    def pull_events(self, job: Job, image: str) -> Iterable[dict[str, Any]]:
        """The engine's progress events of pulling ``image``; closing the job closes the stream."""
        stream = self.engine.pull_stream(image)
        job._stream = stream
        return stream

    def build_events(
        self, job: Job, context: "BuildContext | PackedContext", tag: str, *, build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Iterable[dict[str, Any]]:
        """The engine's events of building ``context`` as ``tag``; a context not packed yet is
        packed here, in the job's thread, and streamed to the engine from its temporary file."""
        packed = context if isinstance(context, PackedContext) else context.pack()
        try:
            stream = self.engine.build_stream(packed.file, tag, build_args=build_args, labels=labels)
            job._stream = stream
            yield from stream
        finally:
            packed.close()

    def run(self, job: Job, events: Callable[[], Iterable[dict[str, Any]]], on_done: Callable[[], None]) -> Job:
        """Register ``job`` and run it in its own thread: apply each engine event to it, then
        ``on_done()``; any error becomes the job's error in the engine's words."""
        with self._lock:
            self._jobs[job.id] = job
            self._prune()

        def run() -> None:
            try:
                for event in events():
                    if job.state == "cancelled":
                        break
                    _apply(job, event)
                if job.state == "cancelled":
                    job.finish("cancelled")
                    return
                on_done()
                job.finish("done")
            except Exception as exc:  # the job's outcome, never the server's problem
                if job.state == "cancelled":
                    job.finish("cancelled")
                else:
                    job.finish("error", str(exc))  # typed errors say it in the engine's words

        threading.Thread(target=run, name=f"mlcontainer-{job.kind}-{job.id}", daemon=True).start()
        return job

    def _prune(self) -> None:
        """Keep every running job and the newest :data:`KEEP_FINISHED` finished ones (a server
        that pulls all day does not grow). Called with the lock held."""
        finished = sorted((j for j in self._jobs.values() if j.state != "running"), key=lambda j: j.started)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def record_image(self, job: Job, image: str) -> None:
        """Put what the engine now has as ``image`` into the job's result (a job's last step)."""
        attrs = self.engine.inspect_image_sync(image)
        job.result.update(image=image, id=attrs.get("Id"), digests=attrs.get("RepoDigests") or [])


_STEP = re.compile(r"^Step (\d+)/(\d+) :")


def raise_for_error(event: dict[str, Any]) -> None:
    """An engine stream reports failure as an event: raise it as an EngineError."""
    if "error" in event:
        detail = event.get("errorDetail") or {}
        raise EngineError(detail.get("message") or event["error"])


_START_PULLS: dict[str, JobRegistry] = {}
_START_PULLS_LOCK = threading.Lock()


def start_pulls(engine: ContainerBackend) -> JobRegistry:
    """The pulls that kernel starts on ``engine`` make, for this process: a start that finds its
    image missing pulls it here (kernels/launcher.py) and the service lists these jobs with its
    own, so the panel shows their progress and can cancel them."""
    key = getattr(engine, "address", "") or str(id(engine))
    with _START_PULLS_LOCK:
        registry = _START_PULLS.get(key)
        if registry is None:
            registry = _START_PULLS[key] = JobRegistry(engine)
        return registry


def made_here(image: str) -> bool:
    """Whether ``image`` names one of the images this project builds on the engine (test,
    frozen, restored and prepared images: ``mlcontainer-…/``, ``…-ipykernel``), which no
    registry has: a start never tries to pull those."""
    repo, tag, _ = reference_parts(image)
    first = repo.split("/", 1)[0]
    return first.startswith("mlcontainer") or repo.endswith("-ipykernel") or (tag or "").endswith("-ipykernel")


def progress_line(job: Job) -> str:
    """``3/7 layers, 212 of 840 MB`` for a running pull (the server log's line)."""
    layers = list(job.layers.values())
    done = sum(1 for layer in layers if re.search(r"complete|already exists", layer.get("status") or "", re.I))
    sized = [layer for layer in layers if layer.get("total")]
    line = f"{done}/{len(layers)} layers"
    if sized:
        current = sum(min(layer.get("current") or 0, layer["total"]) for layer in sized) / 2**20
        line += f", {current:.0f} of {sum(layer['total'] for layer in sized) / 2**20:.0f} MB"
    return line


def _apply(job: Job, event: dict[str, Any]) -> None:
    """Turn one engine event of a pull or a build into the job's layers and log (its thread
    calls this for every event)."""
    raise_for_error(event)
    status = event.get("status") or ""
    layer = event.get("id")
    detail = event.get("progressDetail") or {}
    if layer and status and not status.startswith(("Pulling from", "Digest:", "Status:")):
        job.update_layer(layer, status, detail.get("current"), detail.get("total"))
    elif status:
        job.add_log(status)
    if event.get("stream"):
        text = event["stream"].rstrip("\n")
        if text:
            job.add_log(text)
        step = _STEP.match(text)
        if step:  # a build's progress: steps done out of all steps
            job.update_layer("steps", text, int(step.group(1)) - 1, int(step.group(2)))
