"""Trust rules in one place: which paths a request or a shared notebook may name.

A notebook someone sends (its metadata, its folder) and the body of a REST request are
untrusted: every path they name is resolved, symlinks included, and refused unless it stays
inside the folder it belongs to (the server root, the notebook's folder, a Dockerfile's
folder). Refusals say which path, where it leads and why. docs/security.md has the threat model.
"""

from __future__ import annotations

import os


class PathRefused(ValueError):
    """A path that leaves the folder it must stay in (a client's mistake or an attack: 400)."""


def resolve_under(
    base: str, path: str, what: str, *, allow_absolute: bool = True, base_name: str = ""
) -> str:
    """The real path of ``path`` (relative to ``base``), refused unless it lies under ``base``.

    Symlinks are resolved first, so a link inside ``base`` that points out is refused like a
    ``../`` path. ``allow_absolute=False`` refuses absolute paths outright (a notebook's record
    names files relative to the notebook). ``base_name`` says in the refusal what ``base`` is.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise PathRefused(f"{what} {path!r} is not a file name")
    if os.path.isabs(path) and not allow_absolute:
        raise PathRefused(f"{what} {path!r} is absolute: it must be a path relative to {base}")
    root = os.path.realpath(base)
    real = os.path.realpath(os.path.join(root, path))
    if not is_within(real, root):
        where = f"{base_name} ({root})" if base_name else root
        raise PathRefused(f"{what} {path!r} resolves to {real}, outside {where}: refused")
    return real


def is_within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def write_text_safely(path: str, text: str) -> None:
    """Write a generated file without ever writing through a symlink: a link at ``path`` (a
    shared notebook folder may hold one pointing anywhere) is refused, and the text goes to a
    new file that replaces ``path`` atomically (a reader never sees half a file)."""
    if os.path.islink(path):
        raise PathRefused(f"{path} is a symlink (to {os.readlink(path)}): refusing to write through it")
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
