"""The pieces of a kernel's container that are plain values: its ports and network, the ``--gpus``
grammar, /dev/shm, where `%pip install` goes, its environment, its user. Pure (no engine, no
files); launch_plan.py puts them together into a :class:`~..engines.base.ContainerSpec`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..core.errors import BadRequest
from ..core.identity import HostUser
from ..engines.base import EngineKind, GpuRequest, parse_size

# Ports the kernel binds inside its own network namespace; the host side is chosen by the engine.
# Below the ephemeral range (32768-60999 in every new network namespace): ipykernel connects a
# socket to its own shell port before it binds iopub and heartbeat, and that connection's source
# port, drawn from the ephemeral range, once took iopub's port (50002) and the kernel died at start.
CONTAINER_PORTS = {"shell_port": 20001, "iopub_port": 20002, "stdin_port": 20003, "control_port": 20004, "hb_port": 20005}
# The network kernel containers join unless configured otherwise (engine.ensure_kernel_network_sync).
KERNEL_NETWORK = "mlcontainer-kernels"

def gpu_requests(spec: str) -> list[GpuRequest]:
    """Map a ``--gpus`` value to GPU requests.

    ``all`` -> every GPU; ``none``/``0``/empty -> no GPU; ``N`` -> N GPUs; ``ID,ID`` or
    ``device=ID,ID`` -> those device indices or UUIDs. ``auto`` must be resolved by the
    caller before (it depends on the engine and NVML).
    """
    value = (spec or "").strip().lower()
    if value.startswith("device="):
        ids = tuple(part.strip() for part in spec.strip()[len("device="):].split(",") if part.strip())
        if not ids:
            raise BadRequest(f"--gpus {spec!r}: no device listed after 'device='")
        return [GpuRequest(device_ids=ids)]
    if value in ("", "none", "0"):
        return []
    if value == "all":
        return [GpuRequest(count=-1)]
    if value == "auto":
        raise ValueError("'auto' must be resolved before asking the engine for GPUs")
    if value.isdigit():
        return [GpuRequest(count=int(value))]
    ids = tuple(part.strip() for part in spec.split(",") if part.strip())
    if ids and all(part.isdigit() or part.upper().startswith(("GPU-", "MIG-")) for part in ids):
        return [GpuRequest(device_ids=ids)]
    raise BadRequest(
        f"--gpus {spec!r} is not understood: use all, none, a count (2), or device indices / "
        "UUIDs separated by commas (0,1 or GPU-xxxx)"
    )


def shm_size_for(setting: str, memory: str | None, engine_memory: int) -> str | None:
    """``/dev/shm`` for a kernel: the setting, or for ``auto``/empty half of the memory limit
    (half of the engine's memory without one), at least 64 MB: what --ipc=host would give,
    without sharing IPC. Docker's 64 MB default makes DataLoader workers die with 'Bus error'."""
    value = (setting or "").strip().lower()
    if value and value != "auto":
        parse_size(value)
        return value
    total = parse_size(memory) if memory else engine_memory
    if total <= 0:
        return "1g"
    return str(max(64 * 1024 * 1024, total // 2))


# Where `%pip install` goes: the Python's user site under PYTHONUSERBASE (per image, in the
# cache volume, so it survives a restart) with PIP_USER=1, for the Pythons that have a user site:
# a system Python (Debian's, Ubuntu's, the python images', NGC's: in one of these folders) or a
# conda prefix. Without it pip writes the image's site-packages whenever it may (a root kernel,
# a user who owns the conda prefix), which the next container does not have. A venv has no user
# site (pip refuses --user there), so pip's own choice stands: the venv, until the restart.
SYSTEM_PYTHON_DIRS = ("/usr/bin", "/usr/local/bin", "/bin")
# Set by the image or the user, these say where pip installs (or that there is no user site):
# PIP_USER would contradict them, so it is left out.
PIP_LOCATION_ENV = ("PIP_USER", "PIP_PREFIX", "PIP_TARGET", "PYTHONNOUSERSITE", "VIRTUAL_ENV")
ENGINE_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # an image without PATH


def has_user_site(python: str, conda: bool) -> bool:
    """Whether pip may install into the user site of the image's Python ``python`` (the probe's
    sys.executable; ``conda``: it is a conda prefix): not for a venv, nor for a Python we do not
    know (a venv would refuse every `%pip install` with PIP_USER=1)."""
    return conda or bool(python) and posixpath.dirname(python) in SYSTEM_PYTHON_DIRS


# A venv has no user site, so `%pip install` goes to a prefix in the cache volume instead
# (PIP_PREFIX, on PYTHONPATH). pip upgrades and uninstalls only what lies under the venv's
# sys.prefix ("outside environment" otherwise: a second copy's metadata would pile up), so the
# cache volume is mounted a second time inside the venv, at this folder, and the prefix is
# reached through it.
VENV_CACHE_MOUNT = ".mlcontainer-cache"


# A venv without pip (what `uv venv` and `uv sync` make) is lent one for `%pip` (ipykernel runs
# `python -m pip`): a pip wheel on PYTHONPATH after the prefix's site folder, which Python imports
# from as from a zip, read-only; it installs into PIP_PREFIX like the venv's own pip would, and a
# pip upgraded there comes first. The image's own wheel where its Python ships one (ensurepip's),
# else this host's, bind-mounted read-only at LENT_PIP_IN_CONTAINER (launch_plan.py). Freeze
# leaves the lent pip out (LENT_PIP_ENV names it): the image has none.
LENT_PIP_IN_CONTAINER = "/opt/mlcontainer-pip/pip-py3-none-any.whl"
LENT_PIP_ENV = "MLCONTAINER_LENT_PIP"


def venv_cache_mount(venv: str) -> str:
    return f"{venv.rstrip('/')}/{VENV_CACHE_MOUNT}"


def venv_pip_prefix(venv: str, home: str, cache_mount_path: str, image: str) -> str:
    """Where `%pip install` goes in a kernel of a venv image: per user and image, in the cache
    volume (the user's HOME there), through the mount inside the venv."""
    from ..core.names import slug

    inside = posixpath.relpath(home, cache_mount_path)
    return f"{venv_cache_mount(venv)}/{inside}/.local/mlcontainer/{slug(image)}/venv"


@dataclass
class KernelEnvironment:
    """The kernel's environment, and which names we injected (freeze leaves those out)."""

    env: dict[str, str]
    injected: list[str]
    overridden_gpu_env: str | None = None  # the kernelspec's NVIDIA_VISIBLE_DEVICES we replaced


def kernel_environment(
    *, image: str, kernel_id: str, user: HostUser, home: str, cache_mount_path: str, launch_env: dict[str, str],
    kernelspec_env: dict[str, str], configured_env: dict[str, str], gpus: list[GpuRequest], image_env: dict[str, str],
    externally_managed: bool = False, python: str = "", conda: bool = False, venv: str = "", python_version: str = "",
    pip_wheel: str = "",
) -> KernelEnvironment:
    """The container's environment. The host's environment is not copied in: only the
    kernelspec's env (which ``launch_env`` carries), the configured env, Jupyter's JPY_*
    variables, and ours (cache locations, HOME, USER, where pip installs, GPU visibility).
    ``python``/``conda``/``venv``/``python_version``: the image's Python as the probe found it
    (see :func:`has_user_site` and :func:`venv_pip_prefix`); ``pip_wheel``: for a venv without
    pip, the pip wheel (a path in the container) it is lent, "" for none (LENT_PIP_IN_CONTAINER)."""
    from ..cache.paths import cache_env
    from ..core.names import slug

    env: dict[str, str] = {}
    injected: list[str] = []
    for key, value in launch_env.items():
        if key.startswith("JPY_") and key != "JPY_PARENT_PID":
            env[key] = value
            injected.append(key)
    ours = dict(cache_env(home, cache_mount_path))
    ours.update(
        HOME=home,
        USER=user.name,
        LOGNAME=user.name,
        PYTHONUSERBASE=f"{home}/.local/mlcontainer/{slug(image)}",
        JUPYTER_MLCONTAINER_IMAGE=image,
        JUPYTER_MLCONTAINER_KERNEL_ID=kernel_id,
    )
    if externally_managed:
        # PEP 668 images (Debian, Ubuntu 24.04, nvidia/cuda + apt Python) refuse `%pip install`;
        # in a throw-away container whose user site lives in the cache volume that refusal
        # protects nothing, so pip is told so (freeze leaves this variable out).
        ours["PIP_BREAK_SYSTEM_PACKAGES"] = "1"
    env.update(ours)
    injected += list(ours)
    for key in kernelspec_env:  # the user's variables win over ours
        if key in launch_env:
            env[key] = launch_env[key]
    env.update({str(k): str(v) for k, v in configured_env.items()})
    injected = [name for name in injected if name not in kernelspec_env and name not in configured_env]
    _point_pip(env, injected, image, home, cache_mount_path, (image_env, kernelspec_env, configured_env),
               python=python, conda=conda, venv=venv, python_version=python_version, pip_wheel=pip_wheel)
    overridden = _gpu_visibility(env, injected, gpus, image_env)
    return KernelEnvironment(env, injected, overridden)


def _point_pip(env: dict[str, str], injected: list[str], image: str, home: str, cache_mount_path: str,
               theirs: tuple[dict[str, str], dict[str, str], dict[str, str]], *, python: str, conda: bool,
               venv: str, python_version: str, pip_wheel: str = "") -> None:
    """Where ``%pip install`` goes (the user site, else a venv's prefix in the cache, with
    ``pip_wheel`` lent to a venv without pip), set in ``env`` unless the image, kernelspec or
    configuration (``theirs``) already says."""
    image_env, kernelspec_env, configured_env = theirs
    if has_user_site(python, conda) and not any(name in env_ for env_ in theirs for name in PIP_LOCATION_ENV):
        env["PIP_USER"] = "1"
        injected.append("PIP_USER")
        if "PATH" not in kernelspec_env and "PATH" not in configured_env:
            # The user site's console scripts, first as its packages are on sys.path.
            env["PATH"] = f"{env['PYTHONUSERBASE']}/bin:{image_env.get('PATH') or ENGINE_DEFAULT_PATH}"
            injected.append("PATH")
    elif venv and not conda and python_version and not any(
        name in env_ for env_ in theirs for name in PIP_LOCATION_ENV + ("PYTHONPATH",) if name != "VIRTUAL_ENV"
    ):
        prefix = venv_pip_prefix(venv, home, cache_mount_path, image)
        env["PIP_PREFIX"] = prefix
        env["PYTHONPATH"] = f"{prefix}/lib/python{'.'.join(python_version.split('.')[:2])}/site-packages"
        injected += ["PIP_PREFIX", "PYTHONPATH"]
        if pip_wheel:
            env["PYTHONPATH"] += f":{pip_wheel}"
            env[LENT_PIP_ENV] = pip_wheel
            injected.append(LENT_PIP_ENV)
        if "PATH" not in kernelspec_env and "PATH" not in configured_env:
            env["PATH"] = f"{prefix}/bin:{image_env.get('PATH') or ENGINE_DEFAULT_PATH}"
            injected.append("PATH")


def _gpu_visibility(env: dict[str, str], injected: list[str], gpus: list[GpuRequest],
                    image_env: dict[str, str]) -> str | None:
    """The NVIDIA variables for ``gpus`` set in ``env``; returns the image's or user's
    NVIDIA_VISIBLE_DEVICES that "no GPU" overrode (for a warning), else None."""
    overridden = None
    if gpus:
        if "NVIDIA_DRIVER_CAPABILITIES" not in image_env:
            env["NVIDIA_DRIVER_CAPABILITIES"] = "compute,utility"
            injected.append("NVIDIA_DRIVER_CAPABILITIES")
    else:
        # No GPU means none, whatever the image's ENV says and whatever the host's default
        # runtime is: nvidia/cuda and pytorch/pytorch set NVIDIA_VISIBLE_DEVICES=all, which the
        # NVIDIA runtime honours for every container when it is the default runtime. ``void`` is
        # the toolkit's documented "no GPU" (no device nodes, no driver libraries).
        asked = env.get("NVIDIA_VISIBLE_DEVICES")
        if asked not in (None, "void", "none"):
            overridden = asked
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
        if "NVIDIA_VISIBLE_DEVICES" not in injected:
            injected.append("NVIDIA_VISIBLE_DEVICES")
    return overridden


def container_user_for(user: HostUser, engine_kind: EngineKind) -> str:
    """The ``uid:gid`` a kernel container runs as so that its files are ``user``'s on the host."""
    return "0:0" if engine_kind.uid_model == "root-is-user" else user.docker_user
