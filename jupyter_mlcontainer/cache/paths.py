"""Where things are in the cache, as a kernel sees it. Pure: no engine, no files."""

from __future__ import annotations

from ..core.settings import DEFAULT_VOLUME, is_host_folder
from .scripts.layout import HOMES, STORE_HUB, USER_HUB

# DEFAULT_VOLUME and is_host_folder: the cache setting's meaning, re-exported for the cache's users.
__all__ = [
    "CACHE_ENV", "CACHE_MOUNT_ENV", "DEFAULT_MOUNT_PATH", "DEFAULT_VOLUME", "cache_env", "home_in_cache",
    "is_host_folder", "store_hub",
]

DEFAULT_MOUNT_PATH = "/opt/mlcontainer/cache"
# The variable that tells a kernel's bootstrap where the cache is mounted (popped before the
# kernel runs): it links the model store's blobs into the user's hub cache (link_models.py).
CACHE_MOUNT_ENV = "MLCONTAINER_CACHE"

# The usual ML caches, each in the user's own HOME: every one of them can hold code (Python and
# compiler caches, torch hub's hubconf.py, Triton's .so files, pip's and conda's packages) or
# credentials (Hugging Face's token), so none is shared. Models are shared through the store.
CACHE_ENV = {
    "XDG_CACHE_HOME": ".cache",
    "HF_HOME": ".cache/huggingface",
    "HF_HUB_CACHE": "/".join(USER_HUB),
    "TORCH_HOME": ".cache/torch",
    "PIP_CACHE_DIR": ".cache/pip",
    "UV_CACHE_DIR": ".cache/uv",
    "TRITON_CACHE_DIR": ".cache/triton",
    "TORCHINDUCTOR_CACHE_DIR": ".cache/torchinductor",
    "CUDA_CACHE_PATH": ".cache/nv/ComputeCache",
    "KERAS_HOME": ".cache/keras",
    "CONDA_PKGS_DIRS": ".cache/conda/pkgs",
}


def cache_env(home: str, mount_path: str) -> dict[str, str]:
    """Environment variables that send the usual ML caches into ``home`` (the user's HOME in
    the cache), and tell the bootstrap where the cache is mounted."""
    env = {key: f"{home}/{sub}" for key, sub in CACHE_ENV.items()}
    env[CACHE_MOUNT_ENV] = mount_path
    return env


def home_in_cache(mount_path: str, user_name: str) -> str:
    """The kernel user's HOME: persistent, in the cache, one per user, private."""
    return f"{mount_path}/{HOMES}/{user_name}"


def store_hub(mount_path: str) -> str:
    """The model store's hub folder (verified blobs, read-only) as a kernel sees it."""
    return "/".join((mount_path, *STORE_HUB))
