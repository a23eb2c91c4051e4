"""Container kernelspecs: ordinary kernelspecs on disk whose provisioner is ``mlcontainer-docker``.

Because they are plain kernelspecs, container kernels appear in the JupyterLab launcher and
kernel picker, ``jupyter kernelspec list``, ``jupyter console --kernel``, nbconvert, nbclient
and papermill without any of them knowing about containers.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from ..core.errors import BadRequest, ImageNotUsable, KernelSpecError
from ..core.names import check_reference, slug
from ..core.options import OPTION_KEYS, SLURM_KEYS
from ..engines.base import CONNECTION_FILE_IN_CONTAINER, ContainerBackend, parse_size
from ..engines.registry import backend_class, placements
from ..images.probe import ImageFacts, display_name, probe_image_sync, unusable_reason
from .container_spec import gpu_requests
from .provisioner import PROVISIONER_NAME


@dataclass
class ContainerKernelSpec:
    name: str
    display_name: str
    image: str
    resource_dir: str
    config: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "image": self.image,
            "resource_dir": self.resource_dir,
            "config": self.config,
            "facts": self.facts,
        }


def default_kernel_name(image: str) -> str:
    return f"mlc-{slug(image)}"


def _validate_options(options: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in options.items():
        if key not in OPTION_KEYS:
            raise KernelSpecError(f"Unknown kernel option {key!r}; known: {', '.join(OPTION_KEYS)}")
        if value is None or value == "" or value == {}:
            continue
        if key == "env":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items()
            ):
                raise KernelSpecError(f"env {value!r}: give names and values, {{\"NAME\": \"value\"}} or KEY=VALUE pairs")
        elif key == "slurm":
            if not isinstance(value, dict) or any(k not in SLURM_KEYS or not isinstance(v, str) for k, v in value.items()):
                raise KernelSpecError(f"slurm {value!r}: give some of {', '.join(SLURM_KEYS)} as strings "
                                      '({"partition": "gpu", "time": "2:00:00"})')
            if not re.fullmatch(r"[A-Za-z0-9_.-]*", value.get("gpu_type", "")):
                raise KernelSpecError(f"slurm gpu_type {value['gpu_type']!r}: a gres type such as h100")
            if "hold" in value:
                _positive(value["hold"], f"slurm hold {value['hold']!r}: give the seconds a job stays held, e.g. 600")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise KernelSpecError(f"{key} {value!r}: give a string or a number")
        if key == "gpus":
            try:
                gpu_requests(value) if str(value).lower() != "auto" else None
            except BadRequest as exc:
                raise KernelSpecError(str(exc)) from None
        if key in ("memory", "shm_size") and str(value).lower() != "auto":
            try:
                parse_size(str(value))
            except BadRequest:
                raise KernelSpecError(f"--{key.replace('_', '-')} {value!r}: use a size like 512m or 8g") from None
        if key == "placement" and str(value).lower() not in placements():
            raise KernelSpecError(f"placement {value!r}: 'local' (this engine), 'swarm' (a Swarm's manager as "
                                  "docker_host) or 'slurm' (a Slurm cluster through slurm_login)")
        if key == "kernel_transport" and value not in ("auto", "ipc", "tcp"):
            raise KernelSpecError(f"kernel_transport {value!r}: 'auto', 'ipc' (Unix sockets in the kernel's folder) "
                                  "or 'tcp' (published ports)")
        if key == "pull" and value not in ("auto", "never"):
            raise KernelSpecError(f"pull {value!r}: 'auto' (a missing image is pulled at start) or 'never'")
        if key == "placement_timeout":
            _positive(value, f"placement_timeout {value!r}: use a positive number of seconds")
        if key == "cpus":
            _positive(value, f"--cpus {value!r}: use a positive number such as 4 or 0.5")
        if key == "env":
            value = {str(k): str(v) for k, v in dict(value).items()}
        config[key] = value if key in ("env", "slurm") else str(value)
    return config


def _positive(value: Any, refusal: str) -> None:
    try:
        if float(value) <= 0:
            raise ValueError
    except ValueError:
        raise KernelSpecError(refusal) from None


def kernelspec_json(image: str, facts: ImageFacts, display: str, config: dict[str, Any]) -> dict[str, Any]:
    """The kernel.json content for ``image``."""
    return {
        "argv": [facts.python or "python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display,
        "language": "python",
        # No signal reaches a container on another node through a Swarm's manager.
        "interrupt_mode": "signal" if backend_class(config.get("placement", "local")).delivers_signals else "message",
        "env": {},
        "metadata": {
            "debugger": True,
            # jupyter_client's kernel manager provisions CurveZMQ keys for kernels declaring this.
            **({"supported_encryption": ["curve"]} if facts.curve else {}),
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": {"image": image, **config},
            },
            "mlcontainer": {
                "image": image,
                "image_id": facts.image_id,
                "python_version": facts.python_version,
                "torch": facts.torch,
                "cuda": facts.cuda or facts.torch_cuda,
                "connection_file_in_container": CONNECTION_FILE_IN_CONTAINER,
            },
        },
    }


def add_kernelspec(
    engine: ContainerBackend,
    image: str,
    *,
    name: str | None = None,
    display: str | None = None,
    options: dict[str, Any] | None = None,
    user: bool = True,
    prefix: str | None = None,
    facts: ImageFacts | None = None,
    ksm: KernelSpecManager | None = None,
) -> ContainerKernelSpec:
    """Write a kernelspec for ``image`` (blocking: probes the image once).

    Raises ImageNotFound / EngineUnavailable / ImageNotUsable / KernelSpecError with messages.
    ``user`` installs for the current user; ``prefix`` installs under that prefix (sys.prefix
    for a venv/conda env); neither is system-wide.
    """
    check_reference(image)
    if name is not None and not isinstance(name, str):
        raise KernelSpecError(f"Kernel name {name!r}: give a string of letters, digits, '.', '_' and '-'")
    if display is not None and not isinstance(display, str):
        raise KernelSpecError(f"Display name {display!r}: give a string")
    config = _validate_options(options or {})
    facts = facts or probe_image_sync(engine, image)
    reason = unusable_reason(image, facts)
    if reason:
        raise ImageNotUsable(reason)
    name = (name or default_kernel_name(image)).lower()
    if not name or any(not (ch.isalnum() or ch in "._-") for ch in name):
        raise KernelSpecError(f"Kernel name {name!r}: use letters, digits, '.', '_' and '-'")
    display = display or display_name(image, facts)
    spec = kernelspec_json(image, facts, display, config)
    ksm = ksm or KernelSpecManager()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kernel.json"), "w") as f:
            json.dump(spec, f, indent=1)
        resource_dir = ksm.install_kernel_spec(tmp, name, user=user and prefix is None, prefix=prefix)
    return ContainerKernelSpec(name, display, image, resource_dir, config, facts.public())


def _as_container_spec(name: str, resource_dir: str, spec: dict[str, Any]) -> ContainerKernelSpec | None:
    meta = spec.get("metadata") or {}
    prov = meta.get("kernel_provisioner") or {}
    if prov.get("provisioner_name") != PROVISIONER_NAME:
        return None
    config = dict(prov.get("config") or {})
    image = config.pop("image", "")
    return ContainerKernelSpec(
        name=name,
        display_name=spec.get("display_name", name),
        image=image,
        resource_dir=resource_dir,
        config=config,
        facts=meta.get("mlcontainer") or {},
    )


def list_kernelspecs(ksm: KernelSpecManager | None = None) -> list[ContainerKernelSpec]:
    """Every installed container kernelspec, sorted by name (``ksm``: the server's kernelspec
    manager, so its configuration applies; a default one otherwise). Blocking: reads files."""
    found = []
    for name, entry in sorted((ksm or KernelSpecManager()).get_all_specs().items()):
        spec = _as_container_spec(name, entry["resource_dir"], entry["spec"])
        if spec is not None:
            found.append(spec)
    return found


def installed_kernelspecs(ksm: KernelSpecManager | None = None) -> dict[str, str]:
    """Every installed kernelspec's name, lowercased (names are case-insensitive on disk), ->
    the image it runs for a container kernelspec, "" for any other kernel."""
    found = {}
    for name, entry in (ksm or KernelSpecManager()).get_all_specs().items():
        spec = _as_container_spec(name, entry["resource_dir"], entry["spec"])
        found[name.lower()] = spec.image if spec is not None else ""
    return found


def remove_kernelspec(name: str, ksm: KernelSpecManager | None = None) -> str:
    """Remove container kernelspec ``name``; return the folder removed. Refuses other kernels."""
    ksm = ksm or KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(name)
    except NoSuchKernel:
        raise KernelSpecError(f"No kernelspec named {name!r} (see `jupyter mlcontainer kernel list`)") from None
    if _as_container_spec(name, spec.resource_dir, spec.to_dict()) is None:
        raise KernelSpecError(
            f"Kernelspec {name!r} is not a container kernel; remove it with `jupyter kernelspec remove {name}`"
        )
    return ksm.remove_kernel_spec(name)
