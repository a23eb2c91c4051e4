"""What changed between an image and a running kernel: pure functions over two inventories.

Only what changed since the base image is pinned: Python distributions added or changed,
Debian packages marked manual, conda packages with their build, the environment variables the
user set. What cannot be reproduced is a warning saying what to do, never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..dockerfile import Unrepresentable, requirement_line, visible

# Environment variables that Jupyter, the engine, the GPU runtime, IPython or our provisioner
# set: never the user's own settings. A Slurm step gets Slurm's own (SLURM_*, the MPI launchers'
# bootstrap hints, its TMPDIR): the machine's, not the notebook's.
_NOT_USER_ENV = re.compile(
    r"^(JPY_.*|KERNEL_.*|JUPYTER_.*|IPY.*|PYDEVD_.*|MPLBACKEND|CLICOLOR|CLICOLOR_FORCE|FORCE_COLOR|PAGER|GIT_PAGER|TERM|"
    r"COLUMNS|LINES|HOSTNAME|HOME|USER|LOGNAME|PWD|OLDPWD|SHLVL|_|PATH|LANG|LC_.*|"
    r"NVIDIA_.*|CUDA_VISIBLE_DEVICES|PYTHONUSERBASE|DOCKER_RESOURCE_.*|MLCONTAINER_.*|"
    r"SLURM_.*|SLURMD_.*|SRUN_.*|HYDRA_.*|I_MPI_.*|OMPI_MCA_.*|PRTE_MCA_.*|PMIX?_.*|TMPDIR)$"
)
# Names that hold credentials: *_TOKEN, *_SECRET, *_PASS*, *_KEY (KAGGLE_KEY, AWS keys),
# *_CREDENTIALS, *_DSN (SENTRY_DSN carries a key), connection strings, cookies and sessions.
_SECRET = re.compile(
    r"(TOKEN|SECRET|PASS|CREDENTIAL|(^|_)KEY($|_)|APIKEY|ACCESSKEY|PRIVATE|AUTH|COOKIE|SESSION|(^|_)DSN$"
    r"|CONNECTION_?STRING|(^|_)CONN_?STR|SAS($|_)|SIGNATURE)",
    re.I,
)
# Values that are credentials whatever the variable is called: a URL with a password
# (postgres://u:pw@h/db), a connection string's key, a bearer token, a private key.
_SECRET_VALUE = re.compile(
    r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"
    r"|(AccountKey|SharedAccessKey|Password|Pwd|SharedAccessSignature|sig)=[^;&\s]+"
    r"|\bBearer\s+\S{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(ghp|gho|github_pat|glpat|hf|sk|xox[abp]|AKIA)[-_][A-Za-z0-9_-]{10,}|\bAKIA[0-9A-Z]{16}\b",
    re.I,
)


def looks_secret(name: str, value: str) -> bool:
    """True when the variable's name or its value looks like a credential (both are checked:
    DATABASE_URL=postgres://u:pw@h/db is one by its value)."""
    return bool(_SECRET.search(name) or _SECRET_VALUE.search(value or ""))

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
    if info.get("user_site") or info.get("pip_prefix"):
        where = "user site" if info.get("user_site") else "venv's prefix for %pip"
        note = (
            f"{name} {version} lives in the kernel's {where} ({info.get('location')}), in the cache "
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
        if before and before["version"] == info["version"] and not (info.get("user_site") or info.get("pip_prefix")):
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
        if looks_secret(key, value):
            warnings.append(f"Environment variable {key} looks like a secret and was not written; pass it at run time.")
            continue
        kept[key] = value
    return kept, warnings
