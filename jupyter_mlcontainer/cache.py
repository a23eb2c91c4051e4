"""The shared model cache: one named volume mounted into every container kernel.

Hugging Face, torch hub, pip, Triton/inductor and other caches point into it, so a model
downloaded by one kernel is there for every later kernel, whatever its image, and survives
the removal of every container. A fresh named volume is root-owned; :func:`ensure_cache_volume`
makes its top level world-writable with the sticky bit (like /tmp) once, with a throw-away
root helper container that has no capabilities but CHOWN/FOWNER and no network.
"""

from __future__ import annotations

import json
import os
import threading

from .engine import LABEL_ROLE, LABEL_VOLUME_CACHE, Engine, EngineError
from .policy import write_json_safely
from .state import state_dir

DEFAULT_VOLUME = "mlcontainer-cache"
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

_INIT_SCRIPT = (
    "import os, sys\n"
    "root = sys.argv[1]\n"
    "os.chmod(root, 0o1777)\n"
    "for sub in ('home',):\n"
    "    path = os.path.join(root, sub)\n"
    "    os.makedirs(path, exist_ok=True)\n"
    "    os.chmod(path, 0o1777)\n"
)

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
    marks[key] = "initialised"
    path = _marks_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_safely(path, marks)


def ensure_cache_volume(engine: Engine, name: str, helper_image: str, python: str) -> None:
    """Create the cache volume if needed and make it writable for kernel users. Blocking.

    ``helper_image``/``python``: an image known to have Python (the kernel's own), used once
    per volume to chmod its top level. Later calls cost one volume inspect, or nothing.
    """
    ready_key = (engine.base_url or "", name)
    if ready_key in _ready:
        return
    with _lock:
        if ready_key in _ready:
            return
        volume = engine.call_sync(engine.inspect_volume_sync, name)
        if volume is None:
            volume = engine.call_sync(
                engine.create_volume_sync, name, {LABEL_VOLUME_CACHE: "true"}
            )
        # A volume re-created under the same name has a new CreatedAt: initialise it again.
        key = f"{engine.base_url or 'default'}|{name}|{volume.get('CreatedAt', '')}"
        if _read_marks().get(key) != "initialised":
            code, out, err = engine.run_to_completion_sync(
                helper_image,
                [python, "-c", _INIT_SCRIPT, "/volume"],
                user="0:0",
                mounts=[{"Type": "volume", "Source": name, "Target": "/volume"}],
                labels={LABEL_ROLE: "init"},
                cap_drop=["ALL"],
                cap_add=["CHOWN", "FOWNER"],
            )
            if code != 0:
                raise EngineError(
                    f"Could not make the cache volume {name!r} writable for kernels "
                    f"(exit code {code}): {(err or out).strip()[-500:]}"
                )
            _write_mark(key)
        _ready.add(ready_key)
