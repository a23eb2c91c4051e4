"""A Dockerfile's build context: checked, measured, hashed and packed without following a link.

:func:`collect_context` reads the Dockerfile's COPY/ADD lines and checks every source they name
(before a build, and for restore's plan); :meth:`BuildContext.digest` names a restored image;
:meth:`BuildContext.pack` makes the tar a build job streams to the engine (images/jobs.py). Both
read the files the same way, through folders opened one component at a time, so what a user
confirmed is what is sent.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterable

from ..core.errors import BadRequest, ContextChanged, ContextTooLarge
from ..core.policy import resolve_under
from ..core.settings import DEFAULT_CONTEXT_LIMIT_MB


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
        h = hashlib.sha256()
        self._walk(lambda name, info, chunks: _hash_member(h, name, info, chunks))
        return h.hexdigest()

    def pack(self) -> "PackedContext":
        """The context as a tar in a temporary file (never in memory), with the digest of what
        it holds. Blocking."""
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
                        what = name or "The Dockerfile"
                        raise ContextChanged(f"{what} changed while it was packed ({exc})") from None
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
        """Drop the temporary file (the build job does, once the engine has read it)."""
        self.file.close()


# How the walk opens what it reads: never through a link, never blocking on a FIFO someone put there.
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
    """``visit`` the member ``entry`` of the open folder ``parent`` as ``name``, then (a folder)
    everything under it, in name order. Called by :meth:`BuildContext._walk` and
    :func:`_walk_folder`; ``recurse=False`` (the Dockerfile) accepts a regular file only."""
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
    """``visit`` everything in ``folder`` as members under ``prefix`` (the wheelhouse, which
    :meth:`BuildContext.pack` adds as ``./wheelhouse`` though it lives anywhere)."""
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
    """The bytes of the open file ``fd``, 1 MiB at a time (a context is never held in memory)."""
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            return
        yield data


def _hash_member(h: Any, name: str, info: tarfile.TarInfo, chunks: Iterable[bytes] | None) -> None:
    """Feed one member to the digest: its name, a link's target, a file's bytes (what
    :meth:`BuildContext.digest` hashes; :class:`_Chunks` hashes a packed file the same way)."""
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


def _copied_sources(dockerfile: str, folder: str) -> list[str]:
    """The names (relative to ``folder``) that the COPY/ADD lines of ``dockerfile`` match, in
    order, each checked to resolve inside ``folder``; lines copying from a stage (--from) name
    nothing of the context. Called by :func:`collect_context`."""
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
    return sorted(sources)


def _checked_size(dockerfile: str, folder: str, sources: list[str], wheelhouse: str | None, limit_mb: int) -> int:
    """The bytes the context's files add up to; :class:`ContextTooLarge` as soon as they pass
    ``limit_mb`` (before anything is packed). Called by :func:`collect_context`."""
    size = os.path.getsize(dockerfile)
    limit = limit_mb * 1024 * 1024
    members = list(_context_members(folder, sources))
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
    return size


def collect_context(
    dockerfile: str, wheelhouse: str | None = None, limit_mb: int = DEFAULT_CONTEXT_LIMIT_MB
) -> BuildContext:
    """Check and measure the context of ``dockerfile``. Blocking (reads the folder). Called by a
    build job before it starts (:meth:`JobRegistry.build`) and by restore for its plan.

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
    ordered = _copied_sources(dockerfile, folder)
    size = _checked_size(dockerfile, folder, ordered, wheelhouse, limit_mb)
    parents = {}
    for name in ordered:
        real = os.path.relpath(os.path.realpath(os.path.join(folder, os.path.dirname(name))), folder)
        parents[name] = "" if real == "." else real
    return BuildContext(dockerfile, folder, ordered, size, wheelhouse, parents)


def build_context(
    dockerfile: str, wheelhouse: str | None = None, limit_mb: int = DEFAULT_CONTEXT_LIMIT_MB
) -> IO[bytes]:
    """The checked context of ``dockerfile`` packed into a temporary file. Blocking. (The tests
    of the context's rules call it; a build job packs in its own thread.)"""
    return collect_context(dockerfile, wheelhouse, limit_mb).pack().file
