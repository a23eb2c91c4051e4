"""Freeze a running container kernel into a pinned Dockerfile and requirements file.

Only what changed since the base image is written: Python distributions added or changed
(read from package metadata, the same records ``pip inspect`` reports) pinned ``==version``,
Debian packages marked manual and added pinned ``=version``, environment variables the user
set. What cannot be reproduced is listed as a warning with what to do, never dropped silently:
editable installs, local-file wheels, the user site, files changed outside package managers.
The base image's inventory is probed once per image id and cached.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .dockerfile import (
    FILE_NAME, IMAGE_REF, SAFE_PATH, USER_SPEC, Unrepresentable, apt_pin, checked, comment, env_instruction,
    label_instruction, requirement_line, visible,
)
from .engine import LABEL_IMAGE, LABEL_INJECTED_ENV, LABEL_ROLE, LABEL_WORKSPACE, Engine, EngineError
from .gpu import get_monitor
from .images import probe_image_sync
from .policy import write_text_safely
from .state import state_dir

INVENTORY_VERSION = 2

# Runs inside the image or container with its own Python; prints one JSON line.
INVENTORY_SCRIPT = r"""
import json, os, site, subprocess, sys
try:
    from importlib import metadata as md
except ImportError:
    md = None
user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else ""
packages = {}
for dist in (md.distributions() if md else []):
    name = dist.metadata["Name"]
    if not name:
        continue
    key = name.lower().replace("_", "-").replace(".", "-")
    if key in packages:
        continue  # the first on sys.path wins, as for imports
    location = str(getattr(dist, "_path", ""))
    try:
        direct_url = json.loads(dist.read_text("direct_url.json") or "null")
    except Exception:
        direct_url = None
    packages[key] = {
        "name": name, "version": dist.version, "location": location, "direct_url": direct_url,
        "installer": (dist.read_text("INSTALLER") or "").strip(),
        "user_site": bool(user_site) and location.startswith(user_site),
    }
def conda_inventory():
    # conda, mamba and micromamba keep one JSON record per installed package in
    # PREFIX/conda-meta; reading them needs no conda at all.
    for prefix in (sys.prefix, os.environ.get("CONDA_PREFIX"), os.environ.get("MAMBA_ROOT_PREFIX"), "/opt/conda"):
        meta = os.path.join(prefix or "", "conda-meta")
        if prefix and os.path.isdir(meta):
            break
    else:
        return None
    records, owned = {}, []
    for fn in sorted(os.listdir(meta)):
        if not fn.endswith(".json"):
            continue
        try:
            with open(os.path.join(meta, fn)) as f:
                rec = json.load(f)
        except Exception:
            continue
        name = rec.get("name")
        if not name:
            continue
        records[name] = {key: str(rec.get(key) or "") for key in ("version", "build", "channel", "subdir")}
        for path in rec.get("files") or []:
            part = path.split("/")
            for i, piece in enumerate(part):
                if piece.endswith((".dist-info", ".egg-info")):
                    owned.append(os.path.join(prefix, *part[: i + 1]))
                    break
    from shutil import which
    tool = None
    for exe in ("micromamba", "mamba", "conda"):
        candidates = [os.path.join(prefix, "bin", exe), which(exe)]
        tool = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
        if tool:
            break
    return {"prefix": prefix, "packages": records, "owned": sorted(set(owned)), "tool": tool}
conda = conda_inventory()
owned = set((conda or {}).get("owned") or [])
for info in packages.values():
    info["conda"] = info["installer"] == "conda" or info["location"] in owned
def run(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
        return out.stdout.decode() if out.returncode == 0 else None
    except Exception:
        return None
print(json.dumps({
    "python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable,
    "packages": packages, "user_site": user_site,
    "dpkg": run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n"]),
    "apt_manual": run(["apt-mark", "showmanual"]),
    "conda": conda,
}))
"""

# Environment variables that Jupyter, the engine, the GPU runtime, IPython or our provisioner
# set: never the user's own settings.
_NOT_USER_ENV = re.compile(
    r"^(JPY_.*|KERNEL_.*|JUPYTER_.*|IPY.*|PYDEVD_.*|MPLBACKEND|CLICOLOR|CLICOLOR_FORCE|FORCE_COLOR|PAGER|GIT_PAGER|TERM|"
    r"COLUMNS|LINES|HOSTNAME|HOME|USER|LOGNAME|PWD|OLDPWD|SHLVL|_|PATH|LANG|LC_.*|"
    r"NVIDIA_.*|CUDA_VISIBLE_DEVICES|PYTHONUSERBASE)$"
)
_SECRET = re.compile(r"(TOKEN|SECRET|PASSW|PASSWORD|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|AUTH|COOKIE|SESSION)", re.I)

# Paths a running kernel changes that say nothing about its environment.
_DIFF_NOISE = re.compile(
    r"^/(tmp|run|proc|sys|dev|var/(tmp|cache|log|lib/(apt|dpkg|pip))|root/\.cache|root/\.ipython|root/\.local/share/jupyter)(/|$)"
    r"|/__pycache__(/|$)|\.pyc$|/site-packages(/|$)|/dist-packages(/|$)|/\.cache(/|$)|^/usr/sbin/docker-init$"
    r"|^/etc/(ld\.so\.cache|passwd|group|hostname|hosts|resolv\.conf|mtab)$"
)


class FreezeError(EngineError):
    """Freeze cannot proceed (image without Python, container not running...)."""

    http_status = 400


class OutputExists(FreezeError):
    """The Dockerfile or requirements file exists and overwriting was not asked for."""

    http_status = 409


class KernelContainerNotFound(FreezeError):
    """No running container for that kernel or container id."""

    http_status = 404


class RestoreError(FreezeError):
    """A notebook's environment record is missing or cannot be made available here."""


class RestorePlanChanged(RestoreError):
    """The notebook, its Dockerfile or the images changed after the restore plan was shown."""

    http_status = 409


@dataclass
class FreezeResult:
    dockerfile: str
    requirements: str
    dockerfile_path: str | None = None
    requirements_path: str | None = None
    base_image: str = ""
    base_digest: str | None = None
    pinned_from: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # name -> version, what the build installs
    apt_packages: dict[str, str] = field(default_factory=dict)
    conda_packages: dict[str, str] = field(default_factory=dict)  # name -> "version=build"
    env: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


# -- inventories -----------------------------------------------------------------------------


def _inventory_cache(image_id: str) -> str:
    return os.path.join(state_dir(), "inventories", f"{image_id.replace(':', '_')}.json")


def image_inventory(engine: Engine, image: str) -> dict[str, Any]:
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
        facts.image_id, [facts.python, "-c", INVENTORY_SCRIPT], user="0:0", labels={LABEL_ROLE: "probe"}, cap_drop=["ALL"]
    )
    if code != 0:
        raise FreezeError(f"Could not list the packages of {image}: {(err or out).strip()[-500:]}")
    inventory = json.loads(out.strip().splitlines()[-1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"version": INVENTORY_VERSION, "inventory": inventory}, f)
    os.replace(path + ".tmp", path)
    return inventory


def _exec(engine: Engine, container_id: str, cmd: list[str]) -> tuple[int | None, str, str]:
    """Run ``cmd`` in the running container as its user: (exit code, stdout, stderr). Blocking."""
    return engine.exec_sync(container_id, cmd)


def container_inventory(engine: Engine, container_id: str, python: str) -> dict[str, Any]:
    """The inventory of a running container, as its own user (so the user site is seen)."""
    code, out, err = _exec(engine, container_id, [python, "-c", INVENTORY_SCRIPT])
    if code != 0:
        raise FreezeError(f"Could not list the container's packages: {err[-500:]}")
    return json.loads(out.strip().splitlines()[-1])


# -- diffing ---------------------------------------------------------------------------------


def _pin(info: dict[str, Any]) -> tuple[str | None, str | None]:
    """(requirement line or None, warning or None) for one changed distribution. The line is
    made by dockerfile.requirement_line: metadata that pip would read as more than one
    requirement (a newline in a direct_url.json URL, an option) is left out with a warning."""
    name, version = str(info["name"]), str(info["version"])
    direct = info.get("direct_url") or {}
    url = str(direct.get("url", ""))
    if (direct.get("dir_info") or {}).get("editable"):
        return None, (
            f"{name} {version} is an editable install from {url}: not reproducible from an image. "
            "Install a released version (pip install NAME==VERSION) or COPY its source and pip install it."
        )
    try:
        if "vcs_info" in direct:
            vcs = direct["vcs_info"]
            line = requirement_line(name, url=url, vcs=str(vcs.get("vcs", "git")), commit=str(vcs.get("commit_id", "")))
            return line, None
        line = requirement_line(name, version, url="" if url.startswith("file://") else url)
    except Unrepresentable as exc:
        return None, f"{exc}: {visible(name)} {visible(version)} was not pinned; install it by hand."
    warning = None
    if url.startswith("file://"):
        warning = (
            f"{name} {version} was installed from a local file ({url}): pinned as {line}; the build "
            "needs that wheel in a wheelhouse (jupyter mlcontainer build --wheelhouse DIR) or on an index."
        )
    if info.get("user_site"):
        note = (
            f"{name} {version} lives in the kernel's user site ({info.get('location')}), in the cache "
            "volume rather than the image; the Dockerfile installs it into the image."
        )
        warning = f"{warning} {note}" if warning else note
    if "+" in version:
        note = (
            f"{name}=={version} has a local version: the build needs the index that serves it "
            "(for PyTorch: --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/<cuda tag>)."
        )
        warning = f"{warning} {note}" if warning else note
    return line, warning


def diff_packages(base: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], dict[str, str], list[str]]:
    """(requirement lines, name -> version installed by them, warnings)."""
    lines, installed, warnings = [], {}, []
    base_pkgs = base.get("packages") or {}
    for key, info in sorted((current.get("packages") or {}).items()):
        before = base_pkgs.get(key)
        if before and before["version"] == info["version"] and not info.get("user_site"):
            continue
        if info.get("conda"):
            continue  # pinned with the conda packages, by conda's own record
        line, warning = _pin(info)
        if warning:
            warnings.append(warning)
        if line:
            lines.append(line)
            installed[info["name"]] = info["version"]
    for key, info in sorted(base_pkgs.items()):
        if key not in (current.get("packages") or {}) and not info.get("conda"):
            warnings.append(
                f"{info['name']} {info['version']} is in the base image but was removed in the container; "
                "the Dockerfile keeps it."
            )
    return lines, installed, warnings


def diff_apt(base: dict[str, Any], current: dict[str, Any]) -> dict[str, str]:
    """Debian packages marked manual in the container and not in the base: name -> version."""
    if not current.get("dpkg"):
        return {}
    versions = dict(line.split("=", 1) for line in current["dpkg"].splitlines() if "=" in line)
    base_versions = dict(line.split("=", 1) for line in (base.get("dpkg") or "").splitlines() if "=" in line)
    manual = set((current.get("apt_manual") or "").split()) - set((base.get("apt_manual") or "").split())
    return {name: versions[name] for name in sorted(manual) if name in versions and base_versions.get(name) != versions[name]}


# What a conda name, version, build or channel may hold; anything else is not written into a
# RUN line (the records come from the container, which the user controls).
_CONDA_TOKEN = re.compile(r"^[A-Za-z0-9_.+!-]+$")
_CONDA_CHANNEL = re.compile(r"^[A-Za-z0-9_.:/+-]+$")


def conda_channel(channel_url: str, subdir: str) -> str:
    """The channel to name in a spec: ``conda-forge`` for anaconda.org channels, the URL
    (without the platform folder) for others, "" when the record names none."""
    channel = channel_url.rstrip("/")
    if subdir and channel.endswith("/" + subdir):
        channel = channel[: -len(subdir) - 1]
    for host in ("https://conda.anaconda.org/", "http://conda.anaconda.org/", "https://repo.anaconda.com/"):
        if channel.startswith(host):
            return channel[len(host):]
    return channel


@dataclass
class CondaChanges:
    specs: list[str] = field(default_factory=list)  # channel::name=version=build
    pinned: dict[str, str] = field(default_factory=dict)  # name -> version=build
    prefix: str = ""
    tool: str | None = None
    warnings: list[str] = field(default_factory=list)


def diff_conda(base: dict[str, Any], current: dict[str, Any]) -> CondaChanges:
    """Conda packages added or changed in the container, pinned to version and build."""
    now = current.get("conda") or {}
    before = ((base.get("conda") or {}).get("packages")) or {}
    changes = CondaChanges(prefix=now.get("prefix") or "", tool=now.get("tool"))
    for name, rec in sorted((now.get("packages") or {}).items()):
        old = before.get(name)
        if old and (old.get("version"), old.get("build")) == (rec.get("version"), rec.get("build")):
            continue
        channel = conda_channel(rec.get("channel", ""), rec.get("subdir", ""))
        parts = [name, rec.get("version", ""), rec.get("build", "")]
        if not all(_CONDA_TOKEN.match(p) for p in parts) or (channel and not _CONDA_CHANNEL.match(channel)):
            changes.warnings.append(
                f"conda package record {name!r} has characters a spec cannot hold; install it by hand."
            )
            continue
        spec = "=".join(parts)
        changes.specs.append(f"{channel}::{spec}" if channel else spec)
        changes.pinned[name] = f"{parts[1]}={parts[2]}"
    for name, rec in sorted(before.items()):
        if name not in (now.get("packages") or {}):
            changes.warnings.append(
                f"conda package {name} {rec.get('version')} is in the base image but was removed in the "
                "container; the Dockerfile keeps it."
            )
    if changes.specs and not changes.tool:
        changes.warnings.append(
            f"conda packages were added in {changes.prefix} but the image has no conda, mamba or micromamba: "
            "the Dockerfile lists them in a comment; install them in the image by hand."
        )
    return changes


def user_env(runtime_env: dict[str, str], image_env: dict[str, str], injected: set[str]) -> tuple[dict[str, str], list[str]]:
    """Variables the user set: not the image's own, not injected by us / Jupyter / the runtime,
    nothing that looks like a secret (those are named in a warning, without their value)."""
    kept, warnings = {}, []
    cache_like = {"HF_HOME", "TORCH_HOME", "PIP_CACHE_DIR", "UV_CACHE_DIR", "XDG_CACHE_HOME", "TRITON_CACHE_DIR",
                  "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH", "KERAS_HOME", "CONDA_PKGS_DIRS"}
    for key, value in sorted(runtime_env.items()):
        if key in injected or key in cache_like or _NOT_USER_ENV.match(key):
            continue
        if image_env.get(key) == value:
            continue
        if _SECRET.search(key):
            warnings.append(f"Environment variable {key} looks like a secret and was not written; pass it at run time.")
            continue
        kept[key] = value
    return kept, warnings


# Prints, for the conda records named in argv[2:] under prefix argv[1], the absolute paths of
# their files (conda's own record of what it installed).
CONDA_FILES_SCRIPT = r"""
import json, os, sys
prefix, names = sys.argv[1], set(sys.argv[2:])
meta = os.path.join(prefix, "conda-meta")
files = []
for fn in os.listdir(meta):
    if fn.endswith(".json"):
        try:
            with open(os.path.join(meta, fn)) as f:
                rec = json.load(f)
        except Exception:
            continue
        if rec.get("name") in names:
            files += [os.path.join(prefix, p) for p in rec.get("files") or []]
print(json.dumps(files))
"""


def conda_owned_files(engine: Engine, container_id: str, python: str, changes: "CondaChanges") -> set[str]:
    """Paths installed by the conda packages that changed, plus conda's own folders (owned with
    everything in them): changes a package manager made, which ``docker diff`` must not report
    as hand-made."""
    if not changes.prefix:
        return set()
    owned = {os.path.join(changes.prefix, "conda-meta"), os.path.join(changes.prefix, "pkgs")}
    if not changes.pinned:
        return owned
    _, out, _ = _exec(engine, container_id, [python, "-c", CONDA_FILES_SCRIPT, changes.prefix, *sorted(changes.pinned)])
    try:
        owned.update(json.loads(out.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        pass  # then they are reported as changed files, which is safe
    return owned


def _ancestors(paths) -> set[str]:
    """Every folder above each of ``paths`` (absolute, "/"-separated)."""
    found: set[str] = set()
    for path in paths:
        parts = path.rstrip("/").split("/")
        found.update("/".join(parts[:i]) for i in range(2, len(parts)))
    return found


def changed_files(engine: Engine, container_id: str, mounts: list[str], owned: set[str] = frozenset()) -> list[str]:
    """Files added or changed in the container outside package managers (``docker diff``).

    ``owned``: paths a package manager installed; a path is owned with everything under it.
    """
    changes = engine.container_diff_sync(container_id)
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


# -- writing ---------------------------------------------------------------------------------


def render_dockerfile(
    *, base_ref: str, base_digest: str | None, base_user: str, python: str, requirements_name: str,
    requirements: list[str], apt: dict[str, str], env: dict[str, str], labels: dict[str, str],
    externally_managed: bool, warnings: list[str], conda: CondaChanges | None = None,
) -> str:
    """The frozen Dockerfile. Every value goes through the escaping writer (dockerfile.py): one
    that cannot be written exactly is left out and added to ``warnings`` (shown as escaped
    comments at the top), so the rebuild runs only the instructions written here."""
    body: list[str] = []

    def refused(exc: Unrepresentable, what: str) -> None:
        warnings.append(f"{exc}: {what}")

    if base_digest:
        from_ref = f"{base_ref.split('@', 1)[0]}@{base_digest}" if "@" not in base_ref else base_ref
    else:
        from_ref = base_ref
    checked(from_ref, IMAGE_REF, "Base image")
    checked(requirements_name, FILE_NAME, "Requirements file name")
    if not SAFE_PATH.match(python or ""):
        warnings.append(f"The image's Python {visible(python)!r} is not a plain path: the Dockerfile runs python3")
        python = "python3"
    body += [f"FROM {from_ref}", "", label_instruction(labels), "", "USER root"]
    pins = []
    for name, version in apt.items():
        try:
            pins.append(apt_pin(name, version))
        except Unrepresentable as exc:
            refused(exc, "that Debian package was left out; install it by hand")
    if pins:
        body.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{' '.join(pins)} && rm -rf /var/lib/apt/lists/*"
        )
    if conda and conda.specs:
        specs = " ".join(conda.specs)
        if conda.tool and SAFE_PATH.match(conda.tool) and SAFE_PATH.match(conda.prefix):
            # Name, version and build as the kernel had them: the solver has nothing to choose.
            body.append(f"RUN {conda.tool} install -y -p {conda.prefix} {specs} && {conda.tool} clean -afy")
        else:
            body.append(comment(f"conda packages to install into {conda.prefix}: {specs}"))
    if requirements:
        body += [
            "# Offline builds: put wheels in ./wheelhouse and build with --build-arg PIP_NO_INDEX=1",
            "ARG PIP_INDEX_URL",
            "ARG PIP_EXTRA_INDEX_URL",
            "ARG PIP_NO_INDEX",
        ]
        if externally_managed:
            body.append("ARG PIP_BREAK_SYSTEM_PACKAGES=1")
        body.append(f"COPY {requirements_name} wheelhous[e] /tmp/mlcontainer-freeze/")
        body.append(
            f"RUN {python} -m pip install --no-cache-dir --find-links /tmp/mlcontainer-freeze "
            f"-r /tmp/mlcontainer-freeze/{requirements_name} && rm -rf /tmp/mlcontainer-freeze"
        )
    for key, value in env.items():
        try:
            body.append(env_instruction(key, value))
        except Unrepresentable as exc:
            refused(exc, "that variable was not written; set it at run time")
    final_user = base_user if base_user and base_user not in ("root", "0", "0:0") else "1000:1000"
    if not USER_SPEC.match(final_user):
        warnings.append(f"The image's user {visible(final_user)!r} cannot be written: the Dockerfile ends as 1000:1000")
        final_user = "1000:1000"
    body.append(f"USER {final_user}")

    head = ["# Generated by `jupyter mlcontainer freeze`: the environment of a running kernel, pinned."]
    if not base_digest:
        head.append(comment(
            "NOT PORTABLE UNTIL PUSHED: the base image was built locally and has no registry digest."
            f" Push it (docker push {base_ref}) and freeze again to pin it."
        ))
    head += [comment(f"WARNING: {warning}") for warning in warnings]
    return "\n".join(head + body) + "\n"


def freeze_container(
    engine: Engine,
    container_id: str,
    *,
    output_dir: str | None = None,
    dockerfile_name: str = "Dockerfile",
    overwrite: bool = False,
    runtime_env: dict[str, str] | None = None,
) -> FreezeResult:
    """Freeze the running container kernel ``container_id``. Blocking.

    ``runtime_env``: the kernel process's ``os.environ`` (asked from the kernel by the caller);
    without it the container's configured environment is used. Files are written into
    ``output_dir`` (default: the kernel's working directory) unless they exist and not
    ``overwrite``.
    """
    started = time.perf_counter()
    try:
        attrs = engine.inspect_container_sync(container_id)
    except EngineError as exc:
        raise KernelContainerNotFound(f"No container {container_id!r}: {exc}") from None
    if not (attrs.get("State") or {}).get("Running"):
        raise FreezeError(f"Container {container_id[:12]} is not running: start the kernel to freeze it")
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    base_ref = labels.get(LABEL_IMAGE) or attrs["Config"]["Image"]
    image_id = attrs["Image"]
    output_dir = output_dir or attrs["Config"].get("WorkingDir") or labels.get(LABEL_WORKSPACE) or os.getcwd()
    dockerfile_path = os.path.join(output_dir, dockerfile_name)
    requirements_name = "requirements-frozen.txt" if dockerfile_name == "Dockerfile" else f"{dockerfile_name}.requirements.txt"
    requirements_path = os.path.join(output_dir, requirements_name)
    for path in (dockerfile_path, requirements_path):
        if os.path.islink(path):
            raise FreezeError(f"{path} is a symlink (to {os.readlink(path)}): freeze never writes through one")
    if not overwrite:
        for path in (dockerfile_path, requirements_path):
            if os.path.exists(path):
                raise OutputExists(f"{path} exists; choose another output (-o) or overwrite it explicitly (--force)")

    facts = probe_image_sync(engine, image_id)
    base = image_inventory(engine, image_id)
    current = container_inventory(engine, container_id, facts.python or "python3")
    requirements, installed, warnings = diff_packages(base, current)
    apt = diff_apt(base, current)
    conda = diff_conda(base, current)
    warnings += conda.warnings

    image_env = facts.env
    container_env = dict(item.split("=", 1) for item in attrs["Config"].get("Env") or [] if "=" in item)
    injected = set(filter(None, labels.get(LABEL_INJECTED_ENV, "").split(",")))
    env, env_warnings = user_env(runtime_env if runtime_env is not None else container_env, image_env, injected)
    warnings += env_warnings

    mounts = [m.get("Destination", "") for m in attrs.get("Mounts") or []]
    owned = conda_owned_files(engine, container_id, facts.python or "python3", conda)
    for path in changed_files(engine, container_id, mounts, owned):
        warnings.append(
            f"{path} was changed outside a package manager: COPY it into the image or script its creation."
        )

    image_attrs = engine.inspect_image_sync(image_id)
    repo = base_ref.split("@", 1)[0].rsplit(":", 1)[0] if ":" in base_ref.split("/")[-1] else base_ref.split("@", 1)[0]
    digests = image_attrs.get("RepoDigests") or []
    digest = next((d.split("@", 1)[1] for d in digests if d.split("@", 1)[0] == repo), None)
    if digest is None and digests:
        digest = digests[0].split("@", 1)[1]
        base_ref = digests[0].split("@", 1)[0] + (":" + base_ref.rsplit(":", 1)[1] if ":" in base_ref.split("/")[-1] else "")
    if digest is None:
        warnings.append(
            f"The base image {base_ref} was built locally and has no registry digest: the Dockerfile is "
            "not portable until the image is pushed to a registry (then freeze again)."
        )
    gpu_state = get_monitor().snapshot(with_processes=False)
    out_labels = {
        "org.jupyter.mlcontainer.frozen-from": base_ref,
        "org.jupyter.mlcontainer.frozen-from-digest": digest or f"none (local image {image_id})",
        "org.jupyter.mlcontainer.python": current.get("python") or "",
        "org.jupyter.mlcontainer.torch": (current.get("packages", {}).get("torch") or {}).get("version", "") or "none",
        "org.jupyter.mlcontainer.cuda": facts.cuda or facts.torch_cuda or "none",
        "org.jupyter.mlcontainer.gpu-driver": gpu_state.driver_version or "none",
        "org.jupyter.mlcontainer.frozen-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    dockerfile = render_dockerfile(
        base_ref=base_ref, base_digest=digest, base_user=facts.user, python=facts.python or "python3",
        requirements_name=requirements_name, requirements=requirements, apt=apt, env=env, labels=out_labels,
        externally_managed=facts.externally_managed, warnings=warnings, conda=conda,
    )
    requirements_text = (
        f"# Frozen from {base_ref} by `jupyter mlcontainer freeze`: packages added or changed in the kernel.\n"
        + "".join(line + "\n" for line in requirements)
    )
    os.makedirs(output_dir, exist_ok=True)
    write_text_safely(dockerfile_path, dockerfile)
    write_text_safely(requirements_path, requirements_text)
    return FreezeResult(
        dockerfile=dockerfile, requirements=requirements_text, dockerfile_path=dockerfile_path,
        requirements_path=requirements_path, base_image=base_ref, base_digest=digest, pinned_from=image_id,
        packages=installed, apt_packages=apt, conda_packages=conda.pinned, env=env, warnings=warnings, seconds=time.perf_counter() - started,
    )




ENV_CODE = "import json as _j, os as _o; print('MLCONTAINER-ENV ' + _j.dumps(dict(_o.environ)))"


def _parse_env_output(text: str) -> dict[str, str] | None:
    for line in text.splitlines():
        if line.startswith("MLCONTAINER-ENV "):
            return json.loads(line[len("MLCONTAINER-ENV "):])
    return None


async def kernel_environment(client: Any, timeout: float = 30) -> dict[str, str] | None:
    """The kernel process's current ``os.environ`` (variables set with %env or os.environ
    included), asked through an async kernel client; None if the kernel does not answer."""
    chunks: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"].get("text", ""))

    try:
        await client.execute_interactive(ENV_CODE, silent=True, store_history=False, output_hook=collect, timeout=timeout)
    except Exception:
        return None
    return _parse_env_output("".join(chunks))


def kernel_environment_from_file(connection_file: str, timeout: float = 30) -> dict[str, str] | None:
    """Same as :func:`kernel_environment`, from a kernel's connection file (CLI use)."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels()
    try:
        chunks: list[str] = []
        client.execute_interactive(
            ENV_CODE, silent=True, store_history=False, timeout=timeout,
            output_hook=lambda msg: chunks.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
        )
        return _parse_env_output("".join(chunks))
    except Exception:
        return None
    finally:
        client.stop_channels()


def container_of_kernel(engine: Engine, kernel_id: str, owner: str | None = None, user: str | None = None) -> str:
    """The running container of container kernel ``kernel_id``; with ``owner``, only one that
    process started (the server passes its own identity); with ``user``, only one of that user."""
    from .engine import LABEL_KERNEL_ID, LABEL_OWNER, LABEL_OWNER_USER

    labels = [f"{LABEL_KERNEL_ID}={kernel_id}"]
    labels += [f"{LABEL_OWNER}={owner}"] if owner else []
    labels += [f"{LABEL_OWNER_USER}={user}"] if user else []
    found = engine.containers_sync(labels, all=False)
    if not found:
        raise KernelContainerNotFound(f"No running container kernel with id {kernel_id}")
    return found[0]["Id"]
