"""What a kernel container is, as plain data: built here, started by an engine.

:func:`kernel_container` turns a kernel start (image, command, user, folders, options) into a
:class:`ContainerSpec`: environment, mounts, user, limits, GPUs, labels, published ports,
network, entrypoint. It is pure (no engine, no files), so it is unit-tested without Docker,
and any engine behind :class:`~jupyter_mlcontainer.engines.docker.Engine` (the local engine today; a
cluster or a pool of pre-started containers later) receives the same description.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field

from ..cache.paths import CACHE_MOUNT_ENV, is_host_folder
from ..engines.base import (
    CONNECTION_DIR_IN_CONTAINER, CONNECTION_FILE_IN_CONTAINER, CONNECTION_SECRET_ENV, ContainerSpec, EngineKind,
    EngineLocation, FileSpec, GpuRequest, MountSpec, NO_NEW_PRIVS_ENV, parse_size,
)
from ..core.labels import (
    LABEL_CACHE_VOLUME, LABEL_GPUS, LABEL_IMAGE, LABEL_INJECTED_ENV, LABEL_KERNEL_ID, LABEL_KERNEL_NAME,
    LABEL_LIMITS_IGNORED, LABEL_OWNER, LABEL_OWNER_USER, LABEL_ROLE, LABEL_WORKSPACE,
)
from ..core.identity import HostUser
from ..core.errors import BadRequest


# Ports the kernel binds inside its own network namespace; the host side is chosen by the engine.
# Below the ephemeral range (32768-60999 in every new network namespace): ipykernel connects a
# socket to its own shell port before it binds iopub and heartbeat, and that connection's source
# port, drawn from the ephemeral range, once took iopub's port (50002) and the kernel died at start.
CONTAINER_PORTS = {"shell_port": 20001, "iopub_port": 20002, "stdin_port": 20003, "control_port": 20004, "hb_port": 20005}
# The network kernel containers join unless configured otherwise (engine.ensure_kernel_network_sync).
KERNEL_NETWORK = "mlcontainer-kernels"

# The container's first process: make HOME (in the cache), check that it is this user's own
# private folder, then exec the kernel. HOME is where a kernel reads code it runs at start
# (IPython startup files, .pth files in the user site, matplotlib config) and every cache that can
# hold code or credentials, and the cache's home/ is open to every user of the engine (sticky,
# like /tmp): a HOME that someone else created, that others can write, or that is reached through
# a link, could hold their code, so the kernel refuses to start and says why; so it does when
# HOME cannot be made (never a kernel without it). Every folder between the cache and HOME must
# be a real folder, root's (65534 under a rootless engine's user namespace: root of the host) or
# the user's, and sticky if others may add to it. Fixed text, no user input; the kernel argv
# follows as arguments.
HOME_REFUSED_EXIT = 78
_HOME_CHECK = (
    "import os, stat, sys\n"
    "def refuse(why):\n"
    "    sys.stderr.write('jupyter-mlcontainer: refusing to start: %s\\n' % why)\n"
    f"    sys.exit({HOME_REFUSED_EXIT})\n"
    "home = os.environ.get('HOME')\n"
    "if home:\n"
    "    me = os.getuid()\n"
    f"    top = (os.environ.get({CACHE_MOUNT_ENV!r}) or '').rstrip('/')\n"
    "    path = top if top and home.startswith(top + '/') else ''\n"
    "    for part in home[len(path) + 1:].split('/')[:-1] if path else ():\n"
    "        path += '/' + part\n"
    "        try:\n"
    "            st = os.lstat(path)\n"
    "        except FileNotFoundError:\n"
    "            break\n"
    "        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, me, 65534) or st.st_mode & 0o1002 == 0o002:\n"
    "            refuse('%s, above your HOME, is not a safe folder (mode %o, owner uid %d): someone could '\n"
    "                   'replace your HOME through it' % (path, st.st_mode, st.st_uid))\n"
    "    try:\n"
    "        os.makedirs(os.path.dirname(home), exist_ok=True)\n"
    "        os.mkdir(home, 0o700)\n"
    "    except FileExistsError:\n"
    "        pass\n"
    "    except OSError as exc:\n"
    "        refuse('cannot make your HOME %s: %s' % (home, exc))\n"
    "    st = os.lstat(home)\n"
    "    if not stat.S_ISDIR(st.st_mode) or st.st_uid != me or st.st_mode & 0o022:\n"
    "        refuse('HOME %s is not your private folder (%s, owner uid %d, you are uid %d, mode %o). Someone '\n"
    "               'else may have put files there that a kernel would run at start (IPython startup, .pth). '\n"
    "               'A start sets such a folder aside where it can (a rootful engine, a host folder whose '\n"
    "               'keeper runs); elsewhere an admin moves it away'\n"
    "               % (home, 'a link' if stat.S_ISLNK(st.st_mode) else 'a folder' if stat.S_ISDIR(st.st_mode) else 'a file',\n"
    "                  st.st_uid, me, stat.S_IMODE(st.st_mode)))\n"
)


def _script_source(name: str) -> str:
    """The text of an in-container script of the cache (the bootstrap runs it with the image's Python)."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cache", "scripts", name)) as f:
        return f.read()


# Then the model store's verified blobs are linked into the user's own hub cache
# (cache/scripts/link_models.py: a model another user downloaded loads without a download).
_LINK_MODELS = _script_source("link_models.py") + (
    "try:\n"
    "    link_models_from_env(os.environ)\n"
    "except Exception as exc:  # a kernel starts whatever the store holds\n"
    "    sys.stderr.write('jupyter-mlcontainer: shared models not linked: %s\\n' % exc)\n"
)
# Then the user site, where `%pip install` goes (kernel_environment): Python puts it on sys.path
# at start only if it exists, so without it a kernel could not import the first package
# installed there until a restart.
# A venv's persistent prefix (PIP_PREFIX, its site folder on PYTHONPATH) likewise.
_USER_SITE = (
    "import site\n"
    "if site.ENABLE_USER_SITE:\n"
    "    try:\n"
    "        os.makedirs(site.getusersitepackages(), exist_ok=True)\n"
    "    except OSError:\n"
    "        pass\n"
    "made_prefix_site = False\n"
    "pip_prefix = os.environ.get('PIP_PREFIX')\n"
    "for entry in os.environ.get('PYTHONPATH', '').split(os.pathsep) if pip_prefix else ():\n"
    "    if entry.startswith(pip_prefix + '/') and not os.path.isdir(entry):\n"
    "        try:\n"
    "            os.makedirs(entry)\n"
    "            made_prefix_site = True\n"
    "        except OSError:\n"
    "            pass\n"
)
# On a Swarm node the task's GPUs are the generic resources the scheduler assigned it, whatever
# the node's runtime shows: they become the kernel's visible devices.
_SWARM_GPUS = (
    "assigned = os.environ.get('DOCKER_RESOURCE_NVIDIA-GPU')\n"
    "if assigned:\n"
    "    os.environ['CUDA_VISIBLE_DEVICES'] = assigned\n"
)
# A Swarm task gets its connection file as a (read-only) secret; the kernel writes its file
# back, so it is copied to the writable place its argv names, for the kernel's user alone.
_CONNECTION_FROM_SECRET = (
    f"secret = os.environ.pop({CONNECTION_SECRET_ENV!r}, None)\n"
    "if secret:\n"
    "    with open(secret, 'rb') as f:\n"
    "        data = f.read()\n"
    f"    fd = os.open({CONNECTION_FILE_IN_CONTAINER!r}, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n"
    "    os.write(fd, data)\n"
    "    os.close(fd)\n"
)
# Docker's no-new-privileges, where the engine cannot set it (a Swarm service's container spec has
# no field for it in API 1.41): the bootstrap sets it on itself before the kernel, which inherits
# it with everything it starts (a setuid binary such as sudo no longer raises privileges). A
# kernel that cannot have it does not start.
_NO_NEW_PRIVS = (
    f"if os.environ.pop({NO_NEW_PRIVS_ENV!r}, None):\n"
    "    try:\n"
    "        import ctypes\n"
    "        libc = ctypes.CDLL(None, use_errno=True)\n"
    "        failed = libc.prctl(38, *(ctypes.c_ulong(v) for v in (1, 0, 0, 0)))  # PR_SET_NO_NEW_PRIVS\n"
    "        why = os.strerror(ctypes.get_errno()) if failed else ''\n"
    "    except (ImportError, OSError, AttributeError) as exc:\n"
    "        why = str(exc) or type(exc).__name__\n"
    "    if why:\n"
    "        sys.stderr.write('jupyter-mlcontainer: refusing to start: cannot set no-new-privileges: %s\\n' % why)\n"
    "        sys.exit(1)\n"
)
# A kernel whose container joins its network after it started (the provisioner's cold start
# on Unix sockets) waits for the file this variable names, written once the engine attached the
# network, before it runs: code it runs at start (IPython startup files) finds the network up.
# Meanwhile an ipykernel imports, the longest part of its start.
NETWORK_GATE_ENV = "MLCONTAINER_NETWORK_GATE"
NETWORK_GATE_IN_CONTAINER = f"{CONNECTION_DIR_IN_CONTAINER}/network-ready"
NETWORK_GATE_TIMEOUT = 60
_NETWORK_GATE = (
    f"gate = os.environ.pop({NETWORK_GATE_ENV!r}, None)\n"
    "if gate:\n"
    "    if in_process and argv[2] in ('ipykernel_launcher', 'ipykernel'):\n"
    "        try:\n"
    "            import ipykernel.kernelapp  # noqa: F401  (while the engine attaches the network)\n"
    "        except Exception:\n"
    "            pass  # the kernel's own start says why\n"
    "    import time\n"
    f"    deadline = time.monotonic() + {NETWORK_GATE_TIMEOUT}\n"
    "    while not os.path.exists(gate):\n"
    "        if time.monotonic() > deadline:\n"
    f"            sys.stderr.write('jupyter-mlcontainer: the kernel\\'s network was not attached within {NETWORK_GATE_TIMEOUT} s\\n')\n"
    "            sys.exit(1)\n"
    "        time.sleep(0.002)\n"
)
# ``argv`` (``python -m module ...``) in this process when ``in_process``, else exec'ed.
_RUN_OR_EXEC = (
    "if in_process:\n"
    "    import runpy\n"
    "    sys.argv = [argv[2]] + argv[3:]\n"
    "    runpy.run_module(argv[2], run_name='__main__', alter_sys=True)\n"
    "else:\n"
    "    os.execvp(argv[0], argv)\n"
)

# Then the kernel. Its usual argv, this same Python with ``-m module``, runs in this process: one
# interpreter start less (~0.03 s of every cold start). Not when this Python started before the
# user site (or a venv's prefix site) it has just made existed: Python puts those on sys.path at
# start only, so then the kernel starts afresh; nor for any other argv.
_RUN_KERNEL = (
    "argv = sys.argv[1:]\n"
    "usersite = site.getusersitepackages() if site.ENABLE_USER_SITE else None\n"
    "in_process = (len(argv) >= 3 and argv[1] == '-m' and os.path.realpath(argv[0]) == os.path.realpath(sys.executable)\n"
    "              and not made_prefix_site and not (usersite and usersite not in sys.path))\n"
) + _NETWORK_GATE + _RUN_OR_EXEC
BOOTSTRAP = _HOME_CHECK + _NO_NEW_PRIVS + _USER_SITE + _SWARM_GPUS + _CONNECTION_FROM_SECRET + _LINK_MODELS + _RUN_KERNEL

# A spare of the warm pool (pool.py): the same HOME check, then the imports a kernel start
# spends most of its time on (ipykernel and IPython: ~0.3 s), then it waits on a FIFO in its
# private folder for the per-kernel part (environment, working directory, argv), which the
# claiming provisioner writes after the connection file. ``python -m module`` argvs run
# in this process, already warm; any other argv is exec'ed. Fixed text, no user input.
CLAIM_FIFO_IN_CONTAINER = f"{CONNECTION_DIR_IN_CONTAINER}/claim"
#
# The user site (where `%pip install` goes) must be on sys.path as at a cold start: when this
# Python started before the folder existed, it re-executes itself once (so too when it made a
# venv's prefix site: Python takes a PYTHONPATH folder that is missing at start for empty for
# good). A package installed
# there after the spare imported ipykernel could shadow what it imported: then (the folder
# changed since) the claimed spare execs the kernel afresh in place, still without a new container.
SPARE_BOOTSTRAP = _HOME_CHECK + _USER_SITE + (
    "usersite = site.getusersitepackages() if site.ENABLE_USER_SITE else next(\n"
    "    (e for e in os.environ.get('PYTHONPATH', '').split(os.pathsep) if pip_prefix and e.startswith(pip_prefix + '/')), None)\n"
    "if ((usersite and os.path.isdir(usersite) and usersite not in sys.path or made_prefix_site)\n"
    "        and getattr(sys, 'orig_argv', None) and not os.environ.get('MLCONTAINER_SPARE_REEXEC')):\n"
    "    os.environ['MLCONTAINER_SPARE_REEXEC'] = '1'  # once\n"
    "    os.execv(sys.executable, sys.orig_argv)\n"
    "os.environ.pop('MLCONTAINER_SPARE_REEXEC', None)\n"
    "def site_mark():\n"
    "    try:\n"
    "        return os.stat(usersite).st_mtime_ns if usersite else None\n"
    "    except OSError:\n"
    "        return None\n"
    "mark = site_mark()\n"
    "import json\n"
    "try:\n"
    "    import ipykernel.kernelapp, ipykernel.ipkernel  # noqa: F401  (a warm start's whole point)\n"
    "except Exception:\n"
    "    pass  # not an ipykernel image: its kernel imports after the claim\n"
    f"fifo = {CLAIM_FIFO_IN_CONTAINER!r}\n"
    "if not os.path.exists(fifo):\n"
    "    os.mkfifo(fifo, 0o600)\n"
    "with open(fifo) as f:\n"
    "    claim = json.load(f)\n"
    "os.environ.update(claim['env'])  # the image's and the spare's own are the cold start's too\n"
) + _LINK_MODELS + (
    "os.chdir(claim['cwd'])\n"
    "argv = claim['argv']\n"
    "in_process = len(argv) >= 3 and argv[1] == '-m' and site_mark() == mark\n"
) + _RUN_OR_EXEC



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
) -> KernelEnvironment:
    """The container's environment. The host's environment is not copied in: only the
    kernelspec's env (which ``launch_env`` carries), the configured env, Jupyter's JPY_*
    variables, and ours (cache locations, HOME, USER, where pip installs, GPU visibility).
    ``python``/``conda``/``venv``/``python_version``: the image's Python as the probe found it
    (see :func:`has_user_site` and :func:`venv_pip_prefix`)."""
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
    theirs = (image_env, kernelspec_env, configured_env)
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
        if "PATH" not in kernelspec_env and "PATH" not in configured_env:
            env["PATH"] = f"{prefix}/bin:{image_env.get('PATH') or ENGINE_DEFAULT_PATH}"
            injected.append("PATH")
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
    return KernelEnvironment(env, injected, overridden)


def kernel_container(
    *, image: str, python: str, kernel_id: str, kernel_name: str, restarts: int, owner: str, command: list[str],
    environment: KernelEnvironment, user: HostUser, cwd: str, workspace: str, cache_volume: str,
    cache_mount_path: str, connection_dir: str, passwd_group: tuple[str, str] | None, gpus_setting: str,
    gpus: list[GpuRequest], memory: str | None, cpus: str, shm_size: str | None, use_init: bool, network: str,
    host_ports: dict[str, int] | None = None, engine_kind: EngineKind = EngineKind(), limits_ignored: str = "",
    location: EngineLocation = EngineLocation(True, "127.0.0.1"), connection_files: dict[str, bytes] | None = None,
    venv: str = "", publish_ports: bool = True,
) -> ContainerSpec:
    """The container of one kernel launch: the workspace at its own path, the cache volume,
    the private connection folder, passwd/group entries for a non-root user, limits, GPUs,
    the labels every other part of the project reads, and the five kernel ports published on
    127.0.0.1 (``host_ports``: the previous launch's, so clients reconnect after a restart;
    none with ``publish_ports`` false: the ipc transport's sockets are in the folder).
    The container user is the one that is ``user`` on the host under ``engine_kind``.
    An engine on another host (``location``) gets the folder's files (``connection_files``:
    name in the folder -> content) copied in instead of mounted (nothing of this host but the
    workspace is assumed there) and publishes the ports on its own address."""
    from ..core.names import slug

    container_user = container_user_for(user, engine_kind)
    mounts = [
        MountSpec(target=workspace, source=workspace),
        MountSpec(target=cache_mount_path, source=cache_volume, kind="bind" if is_host_folder(cache_volume) else "volume"),
    ]
    if "PIP_PREFIX" in environment.injected and venv:  # where `%pip install` goes (venv_pip_prefix)
        mounts.append(MountSpec(target=venv_cache_mount(venv), source=cache_volume, kind=mounts[-1].kind))
    files: list[FileSpec] = []
    if location.local:
        mounts.append(MountSpec(target=CONNECTION_DIR_IN_CONTAINER, source=connection_dir))
        if passwd_group is not None:
            mounts += [
                MountSpec(target="/etc/passwd", source=passwd_group[0], read_only=True),
                MountSpec(target="/etc/group", source=passwd_group[1], read_only=True),
            ]
    else:
        uid, gid = (int(part) for part in container_user.split(":"))
        contents = connection_files or {}
        files.append(FileSpec(CONNECTION_FILE_IN_CONTAINER, contents["kernel.json"], 0o600, uid, gid))
        for target, source in zip(("/etc/passwd", "/etc/group"), passwd_group or ()):
            files.append(FileSpec(target, contents[os.path.basename(source)], 0o644, 0, 0))
    labels = {
        LABEL_ROLE: "kernel",
        LABEL_KERNEL_ID: kernel_id,
        LABEL_KERNEL_NAME: kernel_name,
        LABEL_OWNER: owner,
        LABEL_OWNER_USER: user.name,
        LABEL_WORKSPACE: workspace,
        LABEL_CACHE_VOLUME: cache_volume,
        LABEL_IMAGE: image,
        LABEL_INJECTED_ENV: ",".join(sorted(environment.injected)),
        LABEL_GPUS: gpus_setting,
    }
    if limits_ignored:
        labels[LABEL_LIMITS_IGNORED] = limits_ignored
    return ContainerSpec(
        image=image,
        name=f"mlc-{slug(image)[:40]}-{kernel_id[:8]}-{restarts}",
        entrypoint=[python, "-c", BOOTSTRAP],
        command=list(command),
        env=environment.env,
        working_dir=cwd,
        user=container_user,
        labels=labels,
        # On the ipc transport the kernel's sockets are in its folder: nothing is published.
        ports={port: (host_ports or {}).get(name) for name, port in CONTAINER_PORTS.items()} if publish_ports else {},
        mounts=mounts,
        gpus=gpus,
        memory=memory,
        nano_cpus=int(float(cpus) * 1e9) if cpus.strip() else None,
        shm_size=shm_size,
        # A non-root kernel needs no capability; root keeps the engine's reduced default set
        # (under a rootless engine those act inside the user's own namespace only).
        cap_drop=["ALL"] if container_user != "0:0" else None,
        init=use_init,
        network=network,
        userns="keep-id" if engine_kind.uid_model == "keep-id" else None,
        files=files,
        publish_ip=location.address,
    )


def container_user_for(user: HostUser, engine_kind: EngineKind) -> str:
    """The ``uid:gid`` a kernel container runs as so that its files are ``user``'s on the host."""
    return "0:0" if engine_kind.uid_model == "root-is-user" else user.docker_user
