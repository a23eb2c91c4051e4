"""What an image or a running kernel container holds: Python distributions, Debian packages,
conda records, and files changed outside package managers.

The scripts that run inside the container are real Python files in ``scripts/`` (run with the
container's own Python, standard library only). An image's inventory is read once per image
id and cached.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from ...core.errors import FreezeError
from ...core.labels import LABEL_ROLE
from ...core.policy import write_json_safely
from ...core.state import state_dir
from ...engines.base import ContainerBackend
from ...images.probe import probe_image_sync
from .diff import CondaChanges
from .runner import Runner

INVENTORY_VERSION = 2

# Paths a running kernel changes that say nothing about its environment.
_DIFF_NOISE = re.compile(
    r"^/(tmp|run|proc|sys|dev|var/(tmp|cache|log|lib/(apt|dpkg|pip))|root/\.cache|root/\.ipython|root/\.local/share/jupyter)(/|$)"
    r"|/__pycache__(/|$)|\.pyc$|/site-packages(/|$)|/dist-packages(/|$)|/\.cache(/|$)|^/usr/sbin/docker-init$"
    r"|^/etc/(ld\.so\.cache|passwd|group|hostname|hosts|resolv\.conf|mtab)$"
)



@lru_cache(maxsize=None)
def script(name: str) -> str:
    """The text of ``scripts/<name>.py``, run inside containers with ``python -c``."""
    return resources.files(__package__).joinpath("scripts", f"{name}.py").read_text()


def _inventory_cache(image_id: str) -> str:
    return os.path.join(state_dir(), "inventories", f"{image_id.replace(':', '_')}.json")


def image_inventory(engine: ContainerBackend, image: str) -> dict[str, Any]:
    """The inventory of ``image`` as built (cached per image id). Blocking."""
    facts = probe_image_sync(engine, image)
    if not facts.python:
        raise FreezeError(f"Image {image!r} has no Python: nothing to freeze")
    path = _inventory_cache(facts.image_id)
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached.get("version") == INVENTORY_VERSION:
            return cached["inventory"]
    except (OSError, ValueError):
        pass
    code, out, err = engine.run_to_completion_sync(
        facts.image_id, [facts.python, "-c", script("inventory")], user="0:0", labels={LABEL_ROLE: "probe"}, cap_drop=["ALL"]
    )
    if code != 0:
        raise FreezeError(f"Could not list the packages of {image}: {(err or out).strip()[-500:]}")
    inventory = json.loads(out.strip().splitlines()[-1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_safely(path, {"version": INVENTORY_VERSION, "inventory": inventory})
    return inventory


def container_inventory(run: Runner, python: str) -> dict[str, Any]:
    """The inventory of a running container, as its own user (so the user site is seen);
    ``run`` runs a command in it (runner.py)."""
    code, out, err = run([python, "-c", script("inventory")])
    if code != 0:
        raise FreezeError(f"Could not list the container's packages: {err[-500:]}")
    return json.loads(out.strip().splitlines()[-1])


def conda_owned_files(run: Runner, python: str, changes: "CondaChanges") -> set[str]:
    """Paths installed by the conda packages that changed, plus conda's own folders (owned with
    everything in them): changes a package manager made, which ``docker diff`` must not report
    as hand-made."""
    if not changes.prefix:
        return set()
    owned = {os.path.join(changes.prefix, "conda-meta"), os.path.join(changes.prefix, "pkgs")}
    if not changes.pinned:
        return owned
    _, out, _ = run([python, "-c", script("conda_files"), changes.prefix, *sorted(changes.pinned)])
    try:
        owned.update(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        pass  # then they are reported as changed files, which is safe
    return owned


def package_owned_files(run: Runner, python: str, distributions: list[str], debian: list[str]) -> set[str]:
    """Paths that pip (its RECORD) and dpkg (its file lists) installed for the changed packages:
    a console script pip wrote into /usr/local/bin is pip's, and the rebuilt image has it."""
    if not distributions and not debian:
        return set()
    _, out, _ = run([python, "-c", script("package_files"), *sorted(distributions), "--", *sorted(debian)])
    try:
        return set(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return set()  # then they are reported as changed files, which is safe


def _ancestors(paths) -> set[str]:
    """Every folder above each of ``paths`` (absolute, "/"-separated)."""
    found: set[str] = set()
    for path in paths:
        parts = path.rstrip("/").split("/")
        found.update("/".join(parts[:i]) for i in range(2, len(parts)))
    return found


def changed_files(changes: list[dict[str, Any]], mounts: list[str], owned: set[str] = frozenset()) -> list[str]:
    """Files added or changed in the container outside package managers, from its ``docker
    diff`` (``changes``).

    ``owned``: paths a package manager installed; a path is owned with everything under it.
    """
    owned_dirs = _ancestors(owned)  # the folders above an owned file change with it
    parents = _ancestors(c.get("Path", "") for c in changes)
    mount_points = set(mounts) | _ancestors(mounts)  # their parent folders are created for the mount too
    kinds: dict[str, int] = {}
    for change in changes:
        path = change.get("Path", "")
        if change.get("Kind") == 2 or path in mount_points or _DIFF_NOISE.search(path):
            continue
        if path in owned_dirs or path in owned or not _ancestors([path]).isdisjoint(owned):
            continue
        if change.get("Kind") == 0 and path in parents:
            continue  # a folder marked changed because something inside it changed
        if any(path.startswith(m.rstrip("/") + "/") for m in mounts):
            continue
        kinds[path] = change.get("Kind", 0)
    # A changed folder is only the parent of a change: keep the leaves, and report an added
    # folder once rather than every file inside it.
    leaves = [p for p in kinds if not any(q.startswith(p + "/") for q in kinds)]
    reported = set()
    for leaf in leaves:
        top, parent = leaf, leaf.rsplit("/", 1)[0]
        while parent and kinds.get(parent) == 1:
            top, parent = parent, parent.rsplit("/", 1)[0]
        reported.add(top)
    return sorted(reported)
