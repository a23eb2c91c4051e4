"""Which kernel a claimed spare now runs.

A spare of the warm pool (pool.py) is created before its kernel exists, and an engine's labels
are fixed at creation: its kernel-id label is empty. The provisioner that claims it records the
kernel here, one small file per container in the user's private Jupyter runtime folder, where
every process of that user (the server, the CLI) reads it. Everything that maps containers to
kernels goes through :func:`kernel_id_of` and :func:`kernel_containers`, so a claimed spare is
the same kernel to the kernel list, GPU attribution, freeze and the panel as a cold start.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..core.labels import LABEL_KERNEL_ID, LABEL_KERNEL_NAME, LABEL_SPARE
from ..core.policy import write_json_safely


def claims_dir() -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    return os.path.join(jupyter_runtime_dir(), "mlcontainer-claims")


def _path(container_id: str) -> str:
    if not container_id.isalnum():
        raise ValueError(f"not a container id: {container_id!r}")
    return os.path.join(claims_dir(), container_id)


def record_claim(container_id: str, kernel_id: str, kernel_name: str) -> None:
    """Called by the provisioner when it hands spare ``container_id`` to ``kernel_id``."""
    os.makedirs(claims_dir(), mode=0o700, exist_ok=True)
    write_json_safely(_path(container_id), {"kernel_id": kernel_id, "kernel_name": kernel_name}, 0o600)


def forget_claim(container_id: str) -> None:
    """Called when the container is removed."""
    try:
        os.unlink(_path(container_id))
    except (FileNotFoundError, ValueError):
        pass


def claim_of(container_id: str) -> dict[str, str] | None:
    try:
        with open(_path(container_id)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_spare(container: dict[str, Any]) -> bool:
    """A container the warm pool made (claimed or not)."""
    return bool((container.get("Labels") or {}).get(LABEL_SPARE))


def kernel_id_of(container: dict[str, Any]) -> str | None:
    """The kernel a kernel container runs (``containers`` or inspect data); None for a spare
    nobody has claimed (yet, or that another user's process claimed)."""
    labels = container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_SPARE):
        claim = claim_of(container.get("Id", ""))
        return claim["kernel_id"] if claim else None
    return labels.get(LABEL_KERNEL_ID) or None


def kernel_name_of(container: dict[str, Any]) -> str | None:
    labels = container.get("Labels") or {}
    if labels.get(LABEL_SPARE):
        claim = claim_of(container.get("Id", ""))
        return claim.get("kernel_name") if claim else None
    return labels.get(LABEL_KERNEL_NAME) or None


def kernel_containers(containers: list[dict[str, Any]], kernel_id: str) -> list[dict[str, Any]]:
    """Those of ``containers`` that run ``kernel_id``."""
    return [c for c in containers if kernel_id_of(c) == kernel_id]
