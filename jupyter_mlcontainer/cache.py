"""The shared model cache: one named volume (or host folder) mounted into every container kernel.

Hugging Face, torch hub, pip, Triton/inductor and other caches point into it, so a model
downloaded by one kernel is there for every later kernel, whatever its image and whoever its
user, and survives the removal of every container. It follows /tmp's rules throughout (the
README says why): root's folders with mode 1777, files as their writer's umask leaves them,
lock files 0666, ``home/<user>`` private. :func:`ensure_cache_volume` sets it up (and repairs a
cache made by an earlier version) once, with a throw-away root helper container, and keeps the
cache's keeper running (cache_keeper.py: it makes each new folder the box's).

With an engine per user (rootless Docker, Podman) no engine's named volume can be shared:
then the cache is a host folder that every user's engine mounts (``cache_volume`` = its
absolute path), made once by an admin, whose host service is its keeper.
"""

from __future__ import annotations

import json
import os
import re
import threading

from .container_spec import is_host_folder
from .engine import LABEL_CACHE_VOLUME, LABEL_ROLE, LABEL_VOLUME_CACHE, Engine, EngineError
from .policy import write_json_safely
from .state import state_dir

DEFAULT_VOLUME = "mlcontainer-cache"
ROLE_KEEPER = "cache-keeper"
DEFAULT_MOUNT_PATH = "/opt/mlcontainer/cache"

# Cache variables and their folder inside the volume.
CACHE_ENV = {
    "HF_HOME": "huggingface",
    "TORCH_HOME": "torch",
    "PIP_CACHE_DIR": "pip",
    "UV_CACHE_DIR": "uv",
    "XDG_CACHE_HOME": "xdg",
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "CUDA_CACHE_PATH": "nv/ComputeCache",
    "KERAS_HOME": "keras",
    "CONDA_PKGS_DIRS": "conda/pkgs",
}

# Marks in volumes.json: the layout a cache was last set up for. "initialised" (earlier
# versions: only the top and home/ were open, every other folder its creator's) gets repaired.
LAYOUT = "shared-v2"
HOST_FOLDER_REFUSED_EXIT = 3
KEEPER_MOUNT = "/cache"

# Run the keeper's own file (its source is the first argument) with the rest as its argv.
_RUN_KEEPER = (
    "import sys\n"
    "keeper = {'__name__': 'mlc_cache_keeper'}\n"
    "exec(compile(sys.argv[1], 'cache_keeper.py', 'exec'), keeper)\n"
    "sys.exit(keeper['main'](sys.argv[2:]))\n"
)
# A rootless engine's container root is its user, not the host's root: it cannot make folders
# the box's (the admin's keeper on the host does), so it only checks that the top is shared.
_CHECK_SHARED_TOP = (
    "import os, stat, sys\n"
    "st = os.stat(sys.argv[1])\n"
    "if stat.S_IMODE(st.st_mode) & 0o1777 != 0o1777:\n"
    "    print('it is mode %o, owned by uid %d' % (stat.S_IMODE(st.st_mode), st.st_uid))\n"
    f"    sys.exit({HOST_FOLDER_REFUSED_EXIT})\n"
)


def cache_mount(cache: str, target: str) -> dict[str, str]:
    """The engine's mount of the cache: a named volume, or a host folder bind-mounted."""
    return {"Type": "bind" if is_host_folder(cache) else "volume", "Source": cache, "Target": target}


def _keeper_source() -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache_keeper.py")) as f:
        return f.read()


_lock = threading.Lock()
_ready: set[tuple[str, str]] = set()  # (engine address, volume): one server may use two engines


def cache_env(mount_path: str) -> dict[str, str]:
    """Environment variables that send the usual ML caches into the volume."""
    return {key: f"{mount_path}/{sub}" for key, sub in CACHE_ENV.items()}


def home_in_cache(mount_path: str, user_name: str) -> str:
    """The kernel user's HOME: persistent, in the cache volume, one per user."""
    return f"{mount_path}/home/{user_name}"


def _marks_path() -> str:
    return os.path.join(state_dir(), "volumes.json")


def _read_marks() -> dict[str, str]:
    try:
        with open(_marks_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_mark(key: str) -> None:
    marks = _read_marks()
    marks[key] = LAYOUT
    path = _marks_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_safely(path, marks)


def ensure_cache_volume(engine: Engine, name: str, helper_image: str, python: str) -> None:
    """Create the cache volume if needed, set it up for every kernel user (repairing one that
    an earlier version made) and keep its keeper running. Blocking.

    ``name``: a named volume, or a host folder's absolute path (which must exist on the
    engine's host). ``helper_image``/``python``: an image known to have Python (the kernel's
    own) for the one-off set-up and the keeper. Later calls in this process cost one look at
    the keeper (another user's server may have removed it with its image).
    """
    ready_key = (engine.base_url or "", name)
    rootless = engine.kind_sync().rootless
    if ready_key in _ready:
        if not rootless:
            keep_cache(engine, name, helper_image, python)
        return
    with _lock:
        if ready_key in _ready:
            return
        if is_host_folder(name):
            key = f"{engine.address}|{name}|host-folder"
        else:
            volume = engine.call_sync(engine.inspect_volume_sync, name)
            if volume is None:
                volume = engine.call_sync(
                    engine.create_volume_sync, name, {LABEL_VOLUME_CACHE: "true"}
                )
            # A volume re-created under the same name has a new CreatedAt: set it up again.
            key = f"{engine.base_url or 'default'}|{name}|{volume.get('CreatedAt', '')}"
        if rootless and is_host_folder(name):
            _check_shared_top(engine, name, helper_image, python)
        elif _read_marks().get(key) != LAYOUT:
            _run_helper(engine, name, helper_image, [python, "-c", _RUN_KEEPER, _keeper_source(), KEEPER_MOUNT, "--once"])
            _write_mark(key)
        if not rootless:  # under a rootless engine only its own user's kernels use the volume
            keep_cache(engine, name, helper_image, python)
        _ready.add(ready_key)


def keeper_name(cache: str) -> str:
    """The keeper container's name for ``cache`` (one per cache and engine), at most 63
    characters (a Swarm service name's limit): a long one ends in a digest of the whole."""
    import hashlib

    name = "mlc-cache-keeper-" + re.sub(r"[^a-zA-Z0-9_.-]+", "-", cache).strip("-.")
    if len(name) > 63:
        name = f"{name[:52].rstrip('-.')}-{hashlib.sha256(cache.encode()).hexdigest()[:10]}"
    return name


def keep_cache(engine: Engine, name: str, helper_image: str, python: str) -> None:
    """Start the cache's keeper container unless it runs (cache_keeper.py says what it does):
    root with only the capabilities it needs, no network, read-only, restarted with the engine."""
    from .container_spec import ContainerSpec, MountSpec

    spec = ContainerSpec(
        image=helper_image,
        name=keeper_name(name),
        entrypoint=[python, "-c", _RUN_KEEPER],
        command=[_keeper_source(), KEEPER_MOUNT],
        user="0:0",
        labels={LABEL_ROLE: ROLE_KEEPER, LABEL_CACHE_VOLUME: name},
        mounts=[MountSpec(target=KEEPER_MOUNT, source=name, kind="bind" if is_host_folder(name) else "volume")],
        cap_drop=["ALL"],
        cap_add=["CHOWN", "FOWNER", "DAC_READ_SEARCH"],
        network="none",
        read_only=True,
        memory="128m",
        pids_limit=8,
        restart_policy="unless-stopped",
    )
    engine.call_sync(engine.ensure_service_sync, spec)


def remove_cache_keeper(engine: Engine, name: str) -> bool:
    """Remove the keeper of ``name`` (before the volume, or its image); the next kernel start
    brings it back. Returns whether there was one. Blocking."""
    removed = False
    for container in engine.call_sync(engine.our_containers_sync, ROLE_KEEPER):
        if (container.get("Labels") or {}).get(LABEL_CACHE_VOLUME) == name:
            engine.call_sync(engine.remove_container_sync, container["Id"])
            removed = True
    _ready.difference_update({key for key in _ready if key[1] == name})
    return removed


def remove_cache_volume(engine: Engine, name: str) -> None:
    """Remove a named cache volume and its keeper (the engine refuses while a kernel uses it:
    Conflict). Blocking."""
    import time

    from .errors import Conflict

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


def _run_helper(engine: Engine, name: str, helper_image: str, command: list[str]) -> tuple[int, str, str]:
    try:
        code, out, err = engine.run_to_completion_sync(
            helper_image,
            command,
            user="0:0",
            mounts=[cache_mount(name, KEEPER_MOUNT)],
            labels={LABEL_ROLE: "init"},
            cap_drop=["ALL"],
            cap_add=["CHOWN", "FOWNER", "DAC_READ_SEARCH"],
        )
    except EngineError as exc:
        if is_host_folder(name) and "does not exist" in str(exc):
            raise EngineError(
                f"The cache folder {name} does not exist on the engine's host ({engine.address}). "
                f"An admin makes it once, for every user: mkdir -p {name} && chmod 1777 {name}"
            ) from exc
        raise
    if code != 0 and code != HOST_FOLDER_REFUSED_EXIT:
        raise EngineError(
            f"Could not set up the cache {name!r} for kernels "
            f"(exit code {code}): {(err or out).strip()[-500:]}"
        )
    return code, out, err


def _check_shared_top(engine: Engine, name: str, helper_image: str, python: str) -> None:
    code, out, _ = _run_helper(engine, name, helper_image, [python, "-c", _CHECK_SHARED_TOP, KEEPER_MOUNT])
    if code == HOST_FOLDER_REFUSED_EXIT:
        raise EngineError(
            f"The cache folder {name} is not shared: {out.strip()}. An admin makes it shared once, "
            f"for every user: chmod 1777 {name}, and runs its keeper: jupyter mlcontainer cache-keeper {name}"
        )
