"""Long engine operations (pull, build) that any front door can start, follow and cancel.

A :class:`Job` runs in its own thread and keeps its progress in plain data, so several clients
(REST pollers, the CLI, widgets) can watch the same pull; starting a pull of an image that is
already being pulled returns the running job instead of a second download.
"""

from __future__ import annotations

import glob
import os
import re
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable

from .engine import Engine, EngineError, translate
from .policy import resolve_under

LOG_LINES = 200


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return f"No job {self.args[0]!r}"


@dataclass
class Job:
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
        return self._done.wait(timeout)

    # -- called by the runner --------------------------------------------------------------

    def add_log(self, line: str) -> None:
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
        if self.state == "cancelled":
            state = "cancelled"
        self.state = state
        self.error = error
        self.finished = time.time()
        self._done.set()


def follow(job: Job, on_line: Callable[[str], None] | None = None, interval: float = 0.2) -> Job:
    """Block until ``job`` ends, passing its new log lines to ``on_line`` as they come."""
    seen = 0
    while True:
        finished = job.wait(interval)
        lines, seen = job.log_since(seen)
        for line in lines:
            if on_line:
                on_line(line)
        if finished:
            return job


class JobRegistry:
    """Running and finished jobs of this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.started, reverse=True)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
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
        if not image or any(ch.isspace() for ch in image):
            raise ValueError(f"Not an image reference: {image!r}")
        repo, tag = _split(image)
        with self._lock:
            for job in self._jobs.values():
                if job.kind == "pull" and job.target == image and job.state == "running":
                    return job
            job = Job(kind="pull", target=image)
            self._jobs[job.id] = job

        def events() -> Iterable[dict[str, Any]]:
            stream = self.engine.call_sync(
                lambda: self.engine.api.pull(repo, tag=tag, stream=True, decode=True)
            )
            job._stream = stream
            return stream

        self._start(job, events, on_done=lambda: self._pulled(job))
        return job

    def build(
        self, dockerfile: str, tag: str, *, wheelhouse: str | None = None, build_args: dict[str, str] | None = None,
        then: Callable[[Job], None] | None = None,
    ) -> Job:
        """Start building ``dockerfile`` as ``tag``; ``then(job)`` runs after a successful build
        (its failure fails the job)."""
        context = build_context(dockerfile, wheelhouse)
        job = Job(kind="build", target=tag)
        with self._lock:
            self._jobs[job.id] = job

        def events() -> Iterable[dict[str, Any]]:
            stream = self.engine.call_sync(
                lambda: self.engine.api.build(
                    fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True, decode=True,
                    buildargs=build_args or {},
                )
            )
            job._stream = stream
            return stream

        def built() -> None:
            attrs = self.engine.inspect_image_sync(tag)
            job.result = {"id": attrs.get("Id"), "digests": attrs.get("RepoDigests") or []}
            if then is not None:
                then(job)

        self._start(job, events, on_done=built)
        return job

    def _pulled(self, job: Job) -> None:
        attrs = self.engine.inspect_image_sync(job.target)
        job.result = {"id": attrs.get("Id"), "digests": attrs.get("RepoDigests") or []}

    def _start(self, job: Job, events: Callable[[], Iterable[dict[str, Any]]], on_done: Callable[[], None]) -> None:
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
                    job.finish("error", str(translate(exc)))  # the engine's words, e.g. "manifest unknown"

        threading.Thread(target=run, name=f"mlcontainer-{job.kind}-{job.id}", daemon=True).start()


def build_context(dockerfile: str, wheelhouse: str | None = None) -> IO[bytes]:
    """A tar with the Dockerfile and what its COPY/ADD lines name from its folder (not the whole
    folder: a notebook folder often holds gigabytes of data), plus ``wheelhouse`` as ./wheelhouse.

    Blocking (call it off the event loop); the tar goes to a temporary file, not to memory.
    Every source a COPY/ADD pattern matches must resolve (symlinks included) inside the
    Dockerfile's folder, as in Docker's own context: a glob through a symlinked folder that
    points out, a link to a file outside, or a ``../`` source is refused with its path.
    Folders are added without following the symlinks inside them (they travel as links).
    """
    if not os.path.isfile(dockerfile):
        raise ValueError(f"No Dockerfile at {dockerfile}")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(dockerfile)))
    sources: set[str] = set()
    with open(dockerfile) as f:
        lines = f.read().splitlines()
    for line in lines:
        words = line.split()
        if words and words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            for pattern in (w for w in words[1:-1] if not w.startswith("--")):
                for match in glob.glob(os.path.join(folder, pattern)):
                    name = os.path.relpath(match, folder)
                    resolve_under(folder, name, f"{words[0].upper()} source")
                    sources.add(name)
    context = tempfile.TemporaryFile()
    try:
        with tarfile.open(fileobj=context, mode="w") as tar:
            tar.add(dockerfile, arcname="Dockerfile")
            for name in sorted(sources):
                if not (wheelhouse and name == "wheelhouse"):
                    tar.add(os.path.join(folder, name), arcname=name)
            if wheelhouse:
                if not os.path.isdir(wheelhouse):
                    raise ValueError(f"--wheelhouse {wheelhouse}: no such folder")
                tar.add(wheelhouse, arcname="wheelhouse")
    except BaseException:
        context.close()
        raise
    context.seek(0)
    return context


_STEP = re.compile(r"^Step (\d+)/(\d+) :")


def _apply(job: Job, event: dict[str, Any]) -> None:
    if "error" in event:
        detail = event.get("errorDetail") or {}
        raise EngineError(detail.get("message") or event["error"])
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


def _split(image: str) -> tuple[str, str | None]:
    """``repo:tag`` -> (repo, tag); a digest reference keeps its digest as the tag."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag
    return image, "latest"
