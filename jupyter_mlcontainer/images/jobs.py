"""Long engine operations (pull, build) that any front door can start, follow and cancel.

A :class:`Job` runs in its own thread and keeps its progress in plain data, so several clients
(REST pollers, the CLI, widgets) can watch the same pull; starting a pull of an image that is
already being pulled returns the running job instead of a second download.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable

from ..engines.docker import Engine
from ..core.names import check_reference
from ..core.errors import EngineError
from ..core.policy import resolve_under
from ..core.settings import DEFAULT_CONTEXT_LIMIT_MB
from ..core.errors import ContextChanged, ContextTooLarge, JobNotFound
from ..core.errors import BadRequest

LOG_LINES = 200
KEEP_FINISHED = 100  # finished jobs kept for the panel and followers; older ones are dropped



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
    return job.follow(on_line, interval)


class JobRegistry:
    """Running and finished jobs of this process."""

    def __init__(self, engine: Engine, context_limit_mb: int = DEFAULT_CONTEXT_LIMIT_MB) -> None:
        self.engine = engine
        self.context_limit_mb = context_limit_mb
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



@dataclass
class BuildContext:
    """What a Dockerfile's build sends to the engine: the Dockerfile and what its COPY/ADD lines
    name from its folder (not the whole folder: a notebook folder often holds gigabytes of data).

    Made by :func:`collect_context`, which checks every source. :meth:`digest` and :meth:`pack`
    read the files the same way (each through the folders opened before it, never following a
    link), so what a digest was computed from is exactly what a pack of the same bytes sends:
    :meth:`pack` returns the digest of what it packed, and restore builds only a pack whose
    digest is the one the user confirmed."""

    dockerfile: str
    folder: str
    sources: list[str]  # relative to folder
    size: int
    wheelhouse: str | None = None
    # source -> the real folder (relative to folder) holding it, as resolved when it was checked:
    # a source named through a link inside the folder (alias/x, alias -> inside) is read from
    # there, through real folders only, whatever the link says by the time it is packed.
    parents: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 over the Dockerfile and every file and link of the context (not the
        wheelhouse: it only feeds pins the Dockerfile already names). Names a restored image."""
        import hashlib

        h = hashlib.sha256()
        self._walk(lambda name, info, chunks: _hash_member(h, name, info, chunks))
        return h.hexdigest()

    def pack(self) -> "PackedContext":
        """The context as a tar in a temporary file (never in memory), with the digest of what
        it holds. Blocking."""
        import hashlib

        h = hashlib.sha256()
        context = tempfile.TemporaryFile()
        try:
            with tarfile.open(fileobj=_SyncedWrites(context), mode="w") as tar:
                tar.copybufsize = 1 << 20  # big copies: few GIL hand-offs, the event loop stays quick

                def add(name: str, info: tarfile.TarInfo, chunks: Iterable[bytes] | None, hashed: bool = True) -> None:
                    info.name = name if name else "Dockerfile"
                    if chunks is None:
                        tar.addfile(info)
                        if hashed:
                            _hash_member(h, name, info, None)
                        return
                    data = _Chunks(chunks, h if hashed else None, name)
                    try:
                        tar.addfile(info, data)
                    except OSError as exc:  # tarfile's "unexpected end of data": it shrank
                        raise ContextChanged(f"{name or 'The Dockerfile'} changed while it was packed ({exc})") from None
                    data.check(info.size)

                self._walk(add)
                if self.wheelhouse:
                    _walk_folder(self.wheelhouse, "wheelhouse", lambda n, i, c: add(n, i, c, hashed=False))
        except BaseException:
            context.close()
            raise
        context.seek(0)
        return PackedContext(context, h.hexdigest())

    def _walk(self, visit: Callable[[str, tarfile.TarInfo, Iterable[bytes] | None], None]) -> None:
        """``visit(name, info, chunks)`` for the Dockerfile (name "") and each member of the
        context, in a fixed order; ``chunks`` yields a file's bytes (None for a folder or link)."""
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _visit_entry(fd, os.path.basename(self.dockerfile), "", visit, recurse=False)
            for name in self.sources:
                if self.wheelhouse and name == "wheelhouse":
                    continue
                real = self.parents.get(name, os.path.dirname(name))
                parent, last = _open_parent(fd, f"{real}/{os.path.basename(name)}" if real else os.path.basename(name))
                try:
                    _visit_entry(parent, last, name, visit)
                finally:
                    os.close(parent)
        finally:
            os.close(fd)


@dataclass
class PackedContext:
    """A packed build context (a temporary file, read from the start) and the sha256 of what it
    holds (:meth:`BuildContext.digest`'s for the same files)."""

    file: IO[bytes]
    digest: str

    def close(self) -> None:
        self.file.close()



_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_parent(root: int, name: str) -> tuple[int, str]:
    """(an fd of the folder holding ``name``, its last component), every folder on the way
    opened without following a link: a folder swapped for a link since the plan is refused."""
    parts = name.split("/")
    fd = os.dup(root)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise ContextChanged(f"{name}: {part} is no longer a folder of the context ({exc.strerror})") from None
            os.close(fd)
            fd = child
        return fd, parts[-1]
    except BaseException:
        os.close(fd)
        raise


def _visit_entry(parent: int, entry: str, name: str, visit: Callable[..., None], recurse: bool = True) -> None:
    st = os.stat(entry, dir_fd=parent, follow_symlinks=False)
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = st.st_mode & 0o7777, int(st.st_mtime)
    if stat.S_ISLNK(st.st_mode) and recurse:
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry, dir_fd=parent)
        visit(name, info, None)
    elif stat.S_ISDIR(st.st_mode) and recurse:
        info.type = tarfile.DIRTYPE
        visit(name, info, None)
        fd = os.open(entry, _DIR_FLAGS, dir_fd=parent)
        try:
            for child in sorted(os.listdir(fd)):
                _visit_entry(fd, child, f"{name}/{child}", visit)
        finally:
            os.close(fd)
    elif stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(entry, _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise ContextChanged(f"{name or entry}: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ContextChanged(f"{name or entry} is no longer a file")
            info.size = os.fstat(fd).st_size
            visit(name, info, _read_chunks(fd))
        finally:
            os.close(fd)
    else:
        raise ContextChanged(f"{name or entry} is not a file, a folder or a link: refused")


def _walk_folder(folder: str, prefix: str, visit: Callable[..., None]) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        info = tarfile.TarInfo(prefix)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        visit(prefix, info, None)
        for child in sorted(os.listdir(fd)):
            _visit_entry(fd, child, f"{prefix}/{child}", visit)
    finally:
        os.close(fd)


def _read_chunks(fd: int) -> Iterable[bytes]:
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            return
        yield data


def _hash_member(h: Any, name: str, info: tarfile.TarInfo, chunks: Iterable[bytes] | None) -> None:
    if name:
        h.update(b"\0" + name.encode() + b"\0")
    if info.issym():
        h.update(b"link:" + info.linkname.encode())
    for data in chunks or ():
        h.update(data)


class _Chunks:
    """A file object over ``chunks`` for tarfile, hashing what it hands out as
    :func:`_hash_member` does; :meth:`check` says whether the size was what the tar header
    says (a file that grew or shrank while it was read is refused)."""

    def __init__(self, chunks: Iterable[bytes], h: Any, name: str) -> None:
        self._it, self._h, self._name, self._buffer, self.seen = iter(chunks), h, name, b"", 0
        if h is not None and name:
            h.update(b"\0" + name.encode() + b"\0")

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            data = next(self._it, b"")
            if not data:
                break
            self._buffer += data
        out, self._buffer = (self._buffer, b"") if size < 0 else (self._buffer[:size], self._buffer[size:])
        self.seen += len(out)
        if self._h is not None:
            self._h.update(out)
        return out

    def check(self, size: int) -> None:
        if self.seen != size or next(self._it, b""):
            raise ContextChanged(f"{self._name or 'The Dockerfile'} changed while it was packed")


class _SyncedWrites:
    """Writes to ``fileobj``, flushed to disk every 64 MiB: a large context never piles up
    gigabytes of dirty pages whose write-back would stall every other writer of this process
    (the server's log lines, written from its event loop, among them)."""

    EVERY = 64 << 20

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._f, self._pending = fileobj, 0

    def write(self, data: bytes) -> int:
        written = self._f.write(data)
        self._pending += len(data)
        if self._pending >= self.EVERY:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._pending = 0
        return written

    def tell(self) -> int:
        return self._f.tell()


def _context_members(folder: str, sources: list[str]) -> Iterable[tuple[str, str]]:
    """(relative name, path) of every file, folder and link the sources add, links not followed."""
    for name in sources:
        top = os.path.join(folder, name)
        yield name, top
        if os.path.isdir(top) and not os.path.islink(top):
            for root, dirs, files in os.walk(top):  # os.walk does not follow links into folders
                dirs.sort()
                for entry in sorted(dirs) + sorted(files):
                    path = os.path.join(root, entry)
                    yield os.path.relpath(path, folder), path


def collect_context(
    dockerfile: str, wheelhouse: str | None = None, limit_mb: int = DEFAULT_CONTEXT_LIMIT_MB
) -> BuildContext:
    """Check and measure the context of ``dockerfile``. Blocking (reads the folder).

    Every source a COPY/ADD pattern matches must resolve (symlinks included) inside the
    Dockerfile's folder, as in Docker's own context: a glob through a symlinked folder that
    points out, a link to a file outside, or a ``../`` source is refused with its path.
    Folders travel without following the symlinks inside them. A context over ``limit_mb``
    is refused before anything is packed.
    """
    if not os.path.isfile(dockerfile):
        raise BadRequest(f"No Dockerfile at {dockerfile}")
    if wheelhouse and not os.path.isdir(wheelhouse):
        raise BadRequest(f"--wheelhouse {wheelhouse}: no such folder")
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
    ordered = sorted(sources)
    size = os.path.getsize(dockerfile)
    limit = limit_mb * 1024 * 1024
    members = list(_context_members(folder, ordered))
    if wheelhouse:
        members += _context_members(wheelhouse, [""])
    for _, path in members:
        if os.path.isfile(path) and not os.path.islink(path):
            size += os.path.getsize(path)
            if size > limit:
                raise ContextTooLarge(
                    f"The build context of {dockerfile} is over {limit_mb} MB (what its COPY/ADD lines "
                    f"name). Copy less, or raise the limit: c.MLContainer.build_context_limit_mb "
                    f"or MLCONTAINER_BUILD_CONTEXT_LIMIT_MB"
                )
    parents = {}
    for name in ordered:
        real = os.path.relpath(os.path.realpath(os.path.join(folder, os.path.dirname(name))), folder)
        parents[name] = "" if real == "." else real
    return BuildContext(dockerfile, folder, ordered, size, wheelhouse, parents)


def build_context(dockerfile: str, wheelhouse: str | None = None, limit_mb: int = DEFAULT_CONTEXT_LIMIT_MB) -> IO[bytes]:
    """The checked context of ``dockerfile`` packed into a temporary file. Blocking."""
    return collect_context(dockerfile, wheelhouse, limit_mb).pack().file


_STEP = re.compile(r"^Step (\d+)/(\d+) :")


def raise_for_error(event: dict[str, Any]) -> None:
    """An engine stream reports failure as an event: raise it as an EngineError."""
    if "error" in event:
        detail = event.get("errorDetail") or {}
        raise EngineError(detail.get("message") or event["error"])


def _apply(job: Job, event: dict[str, Any]) -> None:
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
