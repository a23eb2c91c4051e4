"""The trusted helper image: what runs with root's rights over the cache (its keeper, the
one-shot HOME set-up), never a kernel's image.

A kernel's image is anybody's (a colleague's, a restored notebook's): a ``.pth`` file or a
patched ``os.py`` in it runs at its Python's start. Run as root over every user's HOME, it could
read their files and plant code there (the second review's finding 3). So helpers run an image
made here from two trusted things only: this server's own Python interpreter (the one running
this code, as trusted as the server itself), copied with just the standard-library modules and
shared libraries the helper scripts load, and the scripts in ``cache/scripts``. No registry, no
base image, no package index: it is made offline, on any engine this server reaches (remote
ones too: the engine's API takes the file system as a tar), tagged by the SHA-256 of its content
(``mlcontainer-helper:<hash>``) and run by image id. An engine of another CPU architecture than
this host cannot run it, and a Swarm's nodes need one image that every user's server runs:
``c.MLContainer.helper_image`` then names an image pinned by digest (``jupyter mlcontainer
helper-image`` makes one and prints its id).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import threading
from dataclasses import dataclass

from ..core.errors import EngineError
from ..core.labels import LABEL_HELPER, LABEL_HELPER_PYTHON, LABEL_HELPER_SCRIPTS

HELPER_REPOSITORY = "mlcontainer-helper"
SCRIPTS_IN_IMAGE = "/mlc"
# The keeper and every sibling it imports (as plain files, side by side in the image); all of them
# count in scripts_digest, so a keeper running older scripts is replaced.
SCRIPTS = ("layout.py", "fsops.py", "model_store.py", "watches.py", "keeper.py")
_SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
_PINNED = re.compile(r"(^sha256:[0-9a-f]{64}$)|(@sha256:[0-9a-f]{64}$)")


@dataclass(frozen=True)
class HelperImage:
    """An image to run helpers in: its id, a name for it (what a Swarm's nodes look up), its
    Python."""

    image: str
    ref: str
    python: str
    digest: str  # what the containers are labelled with (LABEL_HELPER)
    scripts: str = ""  # the helper scripts' version (LABEL_HELPER_SCRIPTS): a keeper of another is replaced

    def command(self, script: str, *args: str) -> list[str]:
        """The argv that runs helper ``script`` in this image (the keeper's, the HOME set-up's)."""
        # -S: no site (no .pth, no sitecustomize); -E: no PYTHON* variables; -s: no user site.
        return [self.python, "-S", "-E", "-s", f"{SCRIPTS_IN_IMAGE}/{script}", *args]


def scripts_digest() -> str:
    """The SHA-256 of the helper scripts: which keeper a running one is, whatever its Python."""
    h = hashlib.sha256()
    for name in SCRIPTS:
        with open(os.path.join(_SCRIPTS_DIR, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def _interpreter() -> str:
    """This server's own interpreter, the real file (a venv's python is a link to its base)."""
    return os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)


def _loaded_files(python: str) -> list[str]:
    """The files of every module the helper scripts import, as that Python loads them with -S."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {_SCRIPTS_DIR!r})\n"
        "import keeper, ctypes, pwd, encodings.utf_8, encodings.ascii, encodings.latin_1, encodings.aliases\n"
        "files = sorted({getattr(m, '__file__', None) for m in list(sys.modules.values())} - {None})\n"
        "print(json.dumps(files))\n"
    )
    out = subprocess.run([python, "-S", "-E", "-s", "-c", code], check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def _shared_libraries(binaries: list[str]) -> list[str]:
    """What the dynamic loader maps for ``binaries`` (``ldd``), the loader itself included."""
    found: set[str] = set()
    for binary in binaries:
        try:
            out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise EngineError(f"Cannot make the cache's helper image: ldd {binary} failed ({exc}); set "
                              "c.MLContainer.helper_image to an image with Python 3, pinned by digest") from None
        for line in out.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(match.group(1))
    return sorted(found)


def _rootfs() -> tuple[bytes, str, str]:
    """(the helper image's file system as a tar, the path of its Python in it, the folders of its
    shared libraries). Deterministic: the same interpreter and scripts give the same bytes."""
    python = _interpreter()
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    files = [os.path.realpath(f) for f in _loaded_files(python)]
    modules = sorted({f for f in files if f.startswith(stdlib + os.sep) and not f.startswith(_SCRIPTS_DIR)})
    extensions = [f for f in modules if f.endswith(".so")]
    # Python looks for its prefix by this landmark; lib-dynload marks the platform prefix.
    landmarks = [os.path.join(stdlib, "os.py")]
    members: dict[str, tuple[str, int]] = {}  # path in the image -> (source, mode)
    libraries = _shared_libraries([python, *extensions])
    for path in [python, *libraries, *landmarks, *modules]:
        members[path] = (path, 0o755 if os.access(path, os.X_OK) and not path.endswith(".py") else 0o644)
    for name in SCRIPTS:
        members[f"{SCRIPTS_IN_IMAGE}/{name}"] = (os.path.join(_SCRIPTS_DIR, name), 0o644)
    folders = {os.path.join(stdlib, "lib-dynload")}
    for path in members:
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            folders.add(parent)
            parent = os.path.dirname(parent)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder.lstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path in sorted(members):
            source, mode = members[path]
            with open(source, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), python, ":".join(sorted({os.path.dirname(lib) for lib in libraries}))


_lock = threading.Lock()
_made: dict[str, HelperImage] = {}  # engine address -> the image made on it


def helper_image(engine, configured: str = "", python: str = "python3") -> HelperImage:
    """The trusted helper image on ``engine``: ``configured`` (one that `jupyter mlcontainer
    helper-image` made, with these helper scripts, pinned by digest) or the one made from this
    server's Python, imported once per engine. Blocking."""
    if configured:
        if not _PINNED.search(configured.strip()):
            raise EngineError(f"c.MLContainer.helper_image {configured!r} must be pinned by digest "
                              "(name@sha256:... or sha256:<image id>): it runs with root's rights over the cache")
        attrs = engine.inspect_image_sync(configured.strip())
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_HELPER_SCRIPTS) != scripts_digest():
            raise EngineError(
                f"c.MLContainer.helper_image {configured!r} is not this version's helper image (it carries "
                f"{'other helper scripts' if LABEL_HELPER_SCRIPTS in labels else 'no helper scripts'}): make it with "
                "`jupyter mlcontainer helper-image` and name the id it prints")
        return HelperImage(attrs["Id"], configured.strip(), labels.get(LABEL_HELPER_PYTHON) or python, attrs["Id"],
                           labels[LABEL_HELPER_SCRIPTS])
    key = engine.base_url or "default"
    with _lock:
        if key in _made:
            return _made[key]
        data, interpreter, library_path = _rootfs()
        digest = hashlib.sha256(data).hexdigest()
        tag = f"{HELPER_REPOSITORY}:{digest[:16]}"
        try:
            attrs = engine.inspect_image_sync(tag)
            if ((attrs.get("Config") or {}).get("Labels") or {}).get(LABEL_HELPER) != digest:
                attrs = None
        except EngineError:
            attrs = None
        scripts = scripts_digest()
        if attrs is None:
            engine.import_image_sync(data, tag, changes=[
                f"LABEL {LABEL_HELPER}={digest}", f"LABEL {LABEL_HELPER_SCRIPTS}={scripts}",
                f"LABEL {LABEL_HELPER_PYTHON}={interpreter}", "ENV LANG=C.UTF-8",
                f"ENV LD_LIBRARY_PATH={library_path}"])
            attrs = engine.inspect_image_sync(tag)
            _remove_older(engine, scripts)
        made = _made[key] = HelperImage(attrs["Id"], tag, interpreter, digest, scripts)
        return made


def _remove_older(engine, scripts: str) -> None:
    """Remove helper images of other helper scripts (earlier versions'), where no container uses
    them; those of other Pythons with these scripts stay (another user's server runs one)."""
    for image in engine.images_sync():
        labels = image.get("Labels") or {}
        if LABEL_HELPER in labels and labels.get(LABEL_HELPER_SCRIPTS) != scripts:
            try:
                engine.remove_image_sync(image["Id"])
            except EngineError:
                pass  # a keeper still runs it: the next kernel start replaces that keeper


def forget_helper_images() -> None:
    """For tests: make the next call look at the engine again."""
    with _lock:
        _made.clear()
