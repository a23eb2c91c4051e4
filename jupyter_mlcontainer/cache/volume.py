"""Setting the cache up for a kernel start: the volume, the user's HOME, the keeper.

Called by the provisioner before each start (and by doctor). What is done depends on who may
act with root's rights over the cache:

* a **rootful engine** (``docker`` group): this server runs the helpers itself, in the trusted
  helper image (helper_image.py), never in a kernel's image: once per user, ``keeper.py
  --prepare-home`` makes the layout and the user's HOME (setting aside what someone else put at
  its name), then the keeper container runs for as long as the engine does;
* **rootless engines sharing a host folder**: nobody here has root's rights; the admin runs the
  keeper on the host, and host_folder.py checks the folder and makes the HOME on this host;
* a **rootless engine's own volume**: only this user's kernels use it; the kernel's bootstrap
  makes its HOME, and there is nothing to share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time

from ..core.errors import Conflict, ContainerNotFound, EngineError
from ..core.identity import HostUser
from ..core.labels import LABEL_CACHE_VOLUME, LABEL_HELPER, LABEL_HELPER_SCRIPTS, LABEL_ROLE, LABEL_VOLUME_CACHE
from ..core.policy import write_json_safely
from ..core.state import state_dir
from ..engines.base import ContainerSpec, MountSpec
from .helper_image import HelperImage, helper_image
from .paths import is_host_folder
from .scripts.layout import LAYOUT

log = logging.getLogger("jupyter_mlcontainer.cache")

ROLE_KEEPER = "cache-keeper"
ROLE_HELPER = "cache-helper"
KEEPER_MOUNT = "/cache"
# The keeper reads every HOME (to find blobs to verify) and moves an earlier layout aside:
# DAC_OVERRIDE and nothing else; the one-shot helper also gives a new HOME to its user (CHOWN).
KEEPER_CAPS = ["DAC_OVERRIDE"]
HELPER_CAPS = ["DAC_OVERRIDE", "CHOWN"]

_lock = threading.Lock()
_ready: set[tuple[str, str, int]] = set()  # (engine address, cache, uid): HOME made in this process


def cache_mount(cache: str, target: str) -> dict[str, str]:
    """The engine's mount of the cache: a named volume, or a host folder bind-mounted."""
    return {"Type": "bind" if is_host_folder(cache) else "volume", "Source": cache, "Target": target}


def ensure_cache(engine, cache: str, user: HostUser, helper_setting: str = "") -> list[str]:
    """Make ``cache`` ready for a kernel of ``user`` on ``engine``. Blocking. Returns what was set
    aside to do so (already logged), for the caller to report.

    ``helper_setting``: ``c.MLContainer.helper_image`` (an image pinned by digest), or empty for
    the image made from this server's Python."""
    from . import host_folder

    kind = engine.kind_sync()
    if kind.rootless:
        if is_host_folder(cache):
            return host_folder.prepare_home(engine, cache, user)
        return []  # only this user's kernels use it: the bootstrap makes the HOME
    key = (engine.base_url or "", cache, user.uid)
    helper = helper_image(engine, helper_setting)
    if key in _ready:
        keep_cache(engine, cache, helper)
        return []
    with _lock:
        notes: list[str] = []
        mark = _mark_key(engine, cache, user)
        if engine.helpers_reach_kernels and _read_marks().get(mark) != LAYOUT:
            notes = prepare_home(engine, cache, user, helper)
            _write_mark(mark)
        keep_cache(engine, cache, helper)
        _ready.add(key)
    return notes


def forget_home(engine, cache: str, user: HostUser) -> None:
    """The kernel refused its HOME (someone put something at its name since it was made): the
    next :func:`ensure_cache` makes it again."""
    _ready.discard((engine.base_url or "", cache, user.uid))
    marks = _read_marks()
    if marks.pop(_mark_key(engine, cache, user), None) is not None:
        write_json_safely(_marks_path(), marks)


def prepare_home(engine, cache: str, user: HostUser, helper: HelperImage) -> list[str]:
    """Run ``keeper.py --prepare-home`` in the helper image: the layout, and ``user``'s HOME as
    theirs alone. Returns (and logs) what it set aside."""
    try:
        command = helper.command("keeper.py", KEEPER_MOUNT, "--prepare-home", user.name, str(user.uid), str(user.gid))
        code, out, err = engine.run_to_completion_sync(
            helper.image, command,
            user="0:0", mounts=[cache_mount(cache, KEEPER_MOUNT)], labels={LABEL_ROLE: ROLE_HELPER},
            cap_drop=["ALL"], cap_add=HELPER_CAPS, read_only=True, pids_limit=16, memory="128m",
        )
    except EngineError as exc:
        if is_host_folder(cache) and "does not exist" in str(exc):
            raise EngineError(
                f"The cache folder {cache} does not exist on the engine's host ({engine.address}). "
                f"An admin makes it once, for every user: mkdir -p {cache}"
            ) from exc
        raise
    if code != 0:
        raise EngineError(f"Could not set up the cache {cache!r} for {user.name} (exit code {code}): "
                          f"{(err or out).strip()[-500:]}")
    report = json.loads(out.strip().splitlines()[-1])
    for line in report.get("set_aside") or []:
        log.warning("Cache %s: %s (only an admin can see it there; nothing of it is used)", cache, line)
    return list(report.get("set_aside") or [])


def keeper_name(cache: str) -> str:
    """The keeper container's name for ``cache`` (one per cache and engine), at most 63
    characters (a Swarm service name's limit): a long one ends in a digest of the whole."""
    name = "mlc-cache-keeper-" + re.sub(r"[^a-zA-Z0-9_.-]+", "-", cache).strip("-.")
    if len(name) > 63:
        name = f"{name[:52].rstrip('-.')}-{hashlib.sha256(cache.encode()).hexdigest()[:10]}"
    return name


def keeper_spec(cache: str, helper: HelperImage) -> ContainerSpec:
    """The keeper's container: the helper image as root with DAC_OVERRIDE only, no network,
    read-only, 128 MB, 16 processes, restarted with the engine."""
    return ContainerSpec(
        image=helper.ref,
        name=keeper_name(cache),
        entrypoint=helper.command("keeper.py", KEEPER_MOUNT),
        command=[],
        user="0:0",
        labels={LABEL_ROLE: ROLE_KEEPER, LABEL_CACHE_VOLUME: cache, LABEL_HELPER: helper.digest,
                LABEL_HELPER_SCRIPTS: helper.scripts},
        mounts=[MountSpec(target=KEEPER_MOUNT, source=cache, kind="bind" if is_host_folder(cache) else "volume")],
        cap_drop=["ALL"],
        cap_add=KEEPER_CAPS,
        network="none",
        read_only=True,
        memory="128m",
        pids_limit=16,
        restart_policy="unless-stopped",
    )


def keep_cache(engine, cache: str, helper: HelperImage) -> None:
    """Start the cache's keeper unless it runs. One that an earlier version started (from a
    kernel's image: no helper label), or one of other scripts, is replaced; one that another
    user's server started from its own Python, with the same scripts, is kept."""
    spec = keeper_spec(cache, helper)
    attrs = engine.call_sync(engine.ensure_service_sync, spec)
    labels = (attrs.get("Config") or {}).get("Labels") or (attrs.get("Spec") or {}).get("Labels") or {}
    if LABEL_HELPER not in labels or labels.get(LABEL_HELPER_SCRIPTS) != helper.scripts:
        log.info("Cache %s: replacing its keeper %s, which runs another image", cache, spec.name)
        remove_cache_keeper(engine, cache)
        engine.call_sync(engine.ensure_service_sync, spec)


def remove_cache_keeper(engine, name: str) -> bool:
    """Remove the keeper of ``name`` (before the volume, or its image); the next kernel start
    brings it back. Returns whether there was one. Blocking."""
    removed = False
    for container in engine.call_sync(engine.our_containers_sync, ROLE_KEEPER):
        if (container.get("Labels") or {}).get(LABEL_CACHE_VOLUME) == name:
            try:
                engine.call_sync(engine.remove_container_sync, container["Id"])
            except ContainerNotFound:
                pass
            removed = True
    for key in [key for key in _ready if key[1] == name]:
        _ready.discard(key)
    return removed


def create_cache_volume(engine, name: str) -> dict:
    """The named volume ``name``, made (labelled as ours) when absent. Blocking."""
    volume = engine.call_sync(engine.inspect_volume_sync, name)
    if volume is None:
        volume = engine.call_sync(engine.create_volume_sync, name, {LABEL_VOLUME_CACHE: "true"})
    return volume


def remove_cache_volume(engine, name: str) -> None:
    """Remove a named cache volume and its keeper (the engine refuses while a kernel uses it:
    Conflict). Blocking."""
    remove_cache_keeper(engine, name)
    deadline = time.monotonic() + 15  # a Swarm stops the keeper's tasks a moment after its removal
    while True:
        try:
            engine.call_sync(engine.remove_volume_sync, name)
            return
        except Conflict as exc:
            if "in use" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- marks: the HOMEs made (per engine, cache and user), kept across processes ---------------

def _mark_key(engine, cache: str, user: HostUser) -> str:
    if is_host_folder(cache):
        return f"{engine.base_url or 'default'}|{cache}|host-folder|{user.uid}"
    volume = create_cache_volume(engine, cache)
    # A volume made again under the same name has a new CreatedAt: its HOMEs are made again.
    return f"{engine.base_url or 'default'}|{cache}|{volume.get('CreatedAt', '')}|{user.uid}"


def _marks_path() -> str:
    return os.path.join(state_dir(), "volumes.json")


def _read_marks() -> dict[str, str]:
    try:
        with open(_marks_path()) as f:
            marks = json.load(f)
        return marks if isinstance(marks, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_mark(key: str) -> None:
    marks = _read_marks()
    marks[key] = LAYOUT
    os.makedirs(os.path.dirname(_marks_path()), exist_ok=True)
    write_json_safely(_marks_path(), marks)
