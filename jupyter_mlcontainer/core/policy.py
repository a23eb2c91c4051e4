"""Trust rules in one place: which paths a request or a shared notebook may name.

A notebook someone sends (its metadata, its folder) and the body of a REST request are
untrusted: every path they name is resolved, symlinks included, and refused unless it stays
inside the folder it belongs to (the server root, the notebook's folder, a Dockerfile's
folder). Refusals say which path, where it leads and why. docs/security.md has the threat model.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, TextIO

from .errors import PathRefused


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


def write_text_safely(path: str, text: str, mode: int = 0o644) -> None:
    """Write a file whole or not at all, never through a symlink: a link at ``path`` (a shared
    notebook folder may hold one pointing anywhere) is refused, and the text goes to a new file
    (``mode``) that replaces ``path`` atomically, so a reader, or a process killed mid-write,
    never leaves half a file. Every file the project writes goes through here."""
    if os.path.islink(path):
        raise PathRefused(f"{path} is a symlink (to {os.readlink(path)}): refusing to write through it")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def write_json_safely(path: str, data: Any, mode: int = 0o644) -> None:
    """:func:`write_text_safely` for JSON (state files, caches, connection files)."""
    write_text_safely(path, json.dumps(data), mode)


# What a terminal acts on instead of showing: C0 controls but newline and tab (ESC starts the
# sequences that erase and move: "ESC[2K ESC[1G" after a "#" hid the line before it; CR returns
# to the line's start), DEL, C1 controls, and the invisible Unicode marks that reorder or hide
# text (bidirectional overrides and isolates, zero-width characters).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def printable(text: str) -> str:
    """``text`` as a terminal shows it and nothing more: every control or invisible character
    written as a visible escape (``\\x1b``, ``\\u202e``), newlines and tabs kept."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class PrintableStream:
    """A text stream that writes :func:`printable` text: the CLI's stdout and stderr, so that no
    text from a notebook, an image or an engine (a Dockerfile, a build's output, a file name)
    moves the cursor or hides a line. ``raw`` is the stream itself, for the CLI's own progress
    bar (its carriage returns are ours)."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        return self.raw.write(printable(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
