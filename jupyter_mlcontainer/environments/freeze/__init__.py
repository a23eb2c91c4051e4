"""Freeze a running container kernel into a pinned Dockerfile and requirements file.

The parts, one concept each: ``inventory`` (what an image or container holds, read by scripts
that run inside it), ``diff`` (what changed, pure), ``render`` (the Dockerfile, through the
escaping writer), ``kernel_env`` (the kernel's own environment); this module puts them
together and writes the files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import (
    EngineError,
    FreezeError,
    KernelContainerNotFound,
    KernelEnvironmentUnavailable,
    OutputExists,
    RestoreError,
    RestorePlanChanged,
)
from ...core.labels import LABEL_IMAGE, LABEL_INJECTED_ENV, LABEL_OWNER, LABEL_OWNER_USER, LABEL_ROLE, LABEL_WORKSPACE
from ...core.names import reference_parts
from ...core.policy import write_text_safely
from ...engines.base import ContainerBackend
from ...images.probe import probe_image_sync
from ...kernels.claims import kernel_containers
from .diff import CondaChanges, conda_channel, diff_apt, diff_conda, diff_packages, user_env
from .inventory import changed_files, conda_owned_files, container_inventory, image_inventory, package_owned_files
from .kernel_env import kernel_environment
from .machine import frozen_machine, kernel_options_of
from .render import render_dockerfile
from .runner import KernelRunner, Runner, engine_runner

__all__ = [
    "FreezeError", "FreezeResult", "KernelContainerNotFound", "OutputExists", "RestoreError", "RestorePlanChanged",
    "KernelEnvironmentUnavailable", "KernelRunner", "CondaChanges", "engine_runner", "conda_channel", "container_inventory", "container_of_kernel", "diff_apt", "diff_conda",
    "diff_packages", "freeze_container", "image_inventory", "kernel_environment",
    "render_dockerfile", "user_env",
]


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
    machine: dict[str, Any] = field(default_factory=dict)  # machine/facts.py's MachineFacts, as recorded
    machine_summary: str = ""  # the same in one line, for people
    kernel_options: dict[str, Any] = field(default_factory=dict)  # how the kernel ran (gpus, memory, ...)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


# Its length is the signature and docstring; each step is a named helper below.
def freeze_container(
    engine: ContainerBackend,
    container_id: str,
    *,
    output_dir: str | None = None,
    dockerfile_name: str = "Dockerfile",
    overwrite: bool = False,
    runtime_env: dict[str, str] | None = None,
    runner: Runner | None = None,
) -> FreezeResult:
    """Freeze the running container kernel ``container_id`` of backend ``engine``. Blocking.

    ``runtime_env``: the kernel process's ``os.environ`` (asked from the kernel by the caller);
    without it the container's configured environment is used. ``runner`` runs the inventory
    scripts in the container: ``docker exec`` by default; for a kernel the engine cannot reach
    into (on a Swarm node), a :class:`~.runner.KernelRunner` (then the files changed outside
    package managers are not checked: that needs ``docker diff`` on the kernel's node). Files
    are written into ``output_dir`` (default: the kernel's working directory) unless they exist
    and not ``overwrite``.
    """
    started = time.perf_counter()
    try:
        attrs = engine.inspect_container_sync(container_id)
    except EngineError as exc:
        raise KernelContainerNotFound(f"No container {container_id!r}: {exc}") from None
    if not (attrs.get("State") or {}).get("Running"):
        raise FreezeError(f"Container {container_id[:12]} is not running: start the kernel to freeze it")
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    image_id = attrs["Image"]
    output_dir = output_dir or attrs["Config"].get("WorkingDir") or labels.get(LABEL_WORKSPACE) or os.getcwd()
    dockerfile_path, requirements_name, requirements_path = _output_paths(output_dir, dockerfile_name, overwrite)

    facts = probe_image_sync(engine, image_id)
    base = image_inventory(engine, image_id)
    run = runner or engine_runner(engine, container_id)
    current = container_inventory(run, facts.python or "python3")
    requirements, installed, warnings = diff_packages(base, current)
    apt = diff_apt(base, current)
    conda = diff_conda(base, current)
    warnings += conda.warnings
    env = _frozen_env(attrs, labels, facts.env, runtime_env, warnings)
    if runner is None:
        warnings += _changed_file_warnings(engine, container_id, attrs, run, facts.python or "python3",
                                           conda, installed, apt)
    else:
        warnings.append(
            "Files changed outside package managers were not checked: the kernel runs on a cluster node, "
            "out of the reach of `docker diff` (packages installed with pip, conda or apt are pinned)."
        )
    on_this_host = runner is None and engine.location.local
    machine, kernel_gpus = frozen_machine(run, facts.python or "python3", attrs, on_this_host=on_this_host,
                                          warnings=warnings)
    base_ref, digest = _pinned_base(engine, labels.get(LABEL_IMAGE) or attrs["Config"]["Image"], image_id, warnings)
    out_labels = _frozen_labels(base_ref, digest, image_id, current, facts, driver=machine.driver,
                                on_this_host=on_this_host)
    out_labels.update(machine.labels())
    dockerfile = render_dockerfile(
        base_ref=base_ref, base_digest=digest, base_user=facts.user, python=facts.python or "python3",
        requirements_name=requirements_name, requirements=requirements, apt=apt, env=env, labels=out_labels,
        externally_managed=facts.externally_managed, warnings=warnings, conda=conda,
        has_pip=bool(facts.pip) or not facts.venv, pip_wheel=facts.pip_wheel or "",
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
        packages=installed, apt_packages=apt, conda_packages=conda.pinned, env=env, machine=machine.to_record(),
        machine_summary=machine.summary(),
        kernel_options=kernel_options_of(attrs, kernel_gpus, list(env)), warnings=warnings, seconds=time.perf_counter() - started,
    )


def _frozen_labels(base_ref: str, digest: str | None, image_id: str, current: dict[str, Any], facts: Any,
                   *, driver: str | None, on_this_host: bool) -> dict[str, str]:
    """The LABELs of the frozen image: where it came from and the machine facts it ran with.
    ``driver``: this host's GPU driver as the machine facts read it (NVML); a kernel on a
    cluster node has its node's, unknown here."""
    return {
        "org.jupyter.mlcontainer.frozen-from": base_ref,
        "org.jupyter.mlcontainer.frozen-from-digest": digest or f"none (local image {image_id})",
        "org.jupyter.mlcontainer.python": current.get("python") or "",
        "org.jupyter.mlcontainer.torch": (current.get("packages", {}).get("torch") or {}).get("version", "") or "none",
        "org.jupyter.mlcontainer.cuda": facts.cuda or facts.torch_cuda or "none",
        "org.jupyter.mlcontainer.gpu-driver": driver or ("none" if on_this_host else "unknown"),
        "org.jupyter.mlcontainer.frozen-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _output_paths(output_dir: str, dockerfile_name: str, overwrite: bool) -> tuple[str, str, str]:
    """(the Dockerfile's path, the requirements file's name, its path), refused before any work
    when either is a symlink or exists and not ``overwrite``."""
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
    return dockerfile_path, requirements_name, requirements_path


def _frozen_env(attrs: dict[str, Any], labels: dict[str, str], image_env: dict[str, str],
                runtime_env: dict[str, str] | None, warnings: list[str]) -> dict[str, str]:
    """The variables the user set (the kernel's own environment when read, else the container's
    configured one), less the image's and those the provisioner injected; warnings appended."""
    container_env = dict(item.split("=", 1) for item in attrs["Config"].get("Env") or [] if "=" in item)
    injected = set(filter(None, labels.get(LABEL_INJECTED_ENV, "").split(",")))
    env, env_warnings = user_env(runtime_env if runtime_env is not None else container_env, image_env, injected)
    warnings += env_warnings
    if runtime_env is None:
        warnings.append(
            "The kernel's own environment was not read (no connection to the kernel): variables set "
            "in the kernel (%env, os.environ) are not in this Dockerfile, only the container's configured ones."
        )
    return env


def _changed_file_warnings(engine: ContainerBackend, container_id: str, attrs: dict[str, Any], run: Runner,
                           python: str, conda: Any, installed: dict[str, Any], apt: Any) -> list[str]:
    """One warning per file changed in the container outside a package manager (``docker diff``
    less the mounts and the files the packages own)."""
    mounts = [m.get("Destination", "") for m in attrs.get("Mounts") or []]
    owned = conda_owned_files(run, python, conda)
    owned |= package_owned_files(run, python, list(installed), list(apt))
    return [f"{path} was changed outside a package manager: COPY it into the image or script its creation."
            for path in changed_files(engine.container_diff_sync(container_id), mounts, owned)]


def _pinned_base(engine: ContainerBackend, base_ref: str, image_id: str, warnings: list[str]) -> tuple[str, str | None]:
    """(the base reference, its registry digest or None): the digest of the kernel's image under
    its own name, else under another name it was pushed as (then that name); warned when none."""
    image_attrs = engine.inspect_image_sync(image_id)
    repo, tag, _ = reference_parts(base_ref)
    digests = [reference_parts(d) for d in image_attrs.get("RepoDigests") or []]
    digest = next((d for r, _, d in digests if r == repo), None)
    if digest is None and digests:  # pushed under another name: pin that one
        other, _, digest = digests[0]
        base_ref = other + (f":{tag}" if tag else "")
    if digest is None:
        warnings.append(
            f"The base image {base_ref} was built locally and has no registry digest: the Dockerfile is "
            "not portable until the image is pushed to a registry (then freeze again)."
        )
    return base_ref, digest


def container_of_kernel(engine: ContainerBackend, kernel_id: str, owner: str | None = None, user: str | None = None) -> str:
    """The running container of container kernel ``kernel_id``; with ``owner``, only one that
    process started (the server passes its own identity); with ``user``, only one of that user."""
    labels = [f"{LABEL_ROLE}=kernel"]
    labels += [f"{LABEL_OWNER}={owner}"] if owner else []
    labels += [f"{LABEL_OWNER_USER}={user}"] if user else []
    # A claimed spare carries no kernel-id label: claims.py knows which kernel it runs.
    found = kernel_containers(engine.containers_sync(labels, all=False), kernel_id)
    if not found:
        raise KernelContainerNotFound(f"No running container kernel with id {kernel_id}")
    return found[0]["Id"]
