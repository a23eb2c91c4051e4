"""Restarting a kernel in its own container: the host's side of the keeper.

A kernel on an engine of this host runs under a keeper (kernels/scripts/bootstrap.py ``keep``):
the container's process that forks the kernel from a Python that has imported it. A restart
that asks the kernel to shut down first (JupyterLab's) leaves the container running:

1. the provisioner's ``shutdown_requested(restart=True)`` says "restart" (:func:`say_restart`)
   and its ``poll`` sees the kernel end (:func:`kernel_ended`), before the container would;
2. its ``cleanup(restart=True)`` keeps the container (:class:`HeldContainer`) where the keeper
   holds it, its folder and host ports with it;
3. the restart's launch plans as any launch; when the plan's template and image are those the
   container was made from, it writes the connection file and hands the keeper the per-kernel
   part (:func:`hand_restart`), and waits for the kernel's sockets, which are where they were:
   connected clients get their next reply without reconnecting. Otherwise the container is
   removed and the restart is a cold one, logged with the reason (:func:`why_not_in_place`).

Every file here lies in the kernel's private folder, which the kernel's own user can write
too: only their presence is read, and the FIFO is opened as the pool opens a spare's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..core.policy import write_text_safely
from .bootstrap import RESTART_FILES_IN_CONTAINER
from .spares import write_claim

RESTART_FIFO, RESTART_HOLD, SHUTDOWN_MARK, KERNEL_ENDED = (os.path.basename(p) for p in RESTART_FILES_IN_CONTAINER)


@dataclass(frozen=True)
class HeldContainer:
    """A kernel's container kept by its keeper across a restart, with what it was made from."""

    container_id: str
    template_key: str  # spares.template_of(...).key of the launch that made it
    image_id: str


def say_restart(conn_dir: str, restart: bool) -> None:
    """Called by the provisioner right after its shutdown request: tell the keeper whether the
    kernel's end is a restart's (hold the container) or a shutdown's (end with the kernel)."""
    write_text_safely(os.path.join(conn_dir, RESTART_HOLD if restart else SHUTDOWN_MARK), "", 0o600)


def kernel_ended(conn_dir: str) -> bool:
    """Whether the keeper says its kernel ended and it holds the container for the restart."""
    return os.path.lexists(os.path.join(conn_dir, KERNEL_ENDED))


def why_not_in_place(held: HeldContainer, template_key: str, image_id: str, image: str, running: bool,
                     ended: bool) -> str:
    """Why this restart cannot reuse ``held`` ("" when it can): what a restart in place must keep
    is what a new container of this launch would be."""
    if not running:
        return "its container stopped"
    if not ended:
        return "its container's keeper did not hold it"
    if image_id != held.image_id:
        return f"{image} now names another image ({image_id[:19]}, was {held.image_id[:19]})"
    if template_key != held.template_key:
        return "its kernelspec or its settings changed since the container was made"
    return ""


def hand_restart(conn_dir: str, claim: dict[str, Any]) -> None:
    """Give the keeper the restarted kernel's environment, working directory and argv (the
    connection file is already written); it forks the kernel. OSError when the keeper is not
    listening."""
    write_claim(os.path.join(conn_dir, RESTART_FIFO), claim)
