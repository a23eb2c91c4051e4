"""What a spare is: the *template* of a kernelspec's cold start (its container spec less what
differs per kernel, whose key says whether a spare fits a start), a spare's record, and the
one safe way to write a spare's (or a kernel keeper's) claim FIFO. Values only; the pool
(pool.py) keeps and claims them.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field

from ..core.labels import LABEL_INJECTED_ENV, LABEL_KERNEL_ID
from ..engines.base import ContainerSpec

CLAIM_FIFO = "claim"  # in the spare's private folder (the container's CONNECTION_DIR_IN_CONTAINER)
# Variables that differ per kernel: set at the claim, left out of the template.
PER_KERNEL_ENV = ("JUPYTER_MLCONTAINER_KERNEL_ID",)
PER_KERNEL_ENV_PREFIXES = ("JPY_",)


def per_kernel(name: str) -> bool:
    """Whether variable ``name`` is set per kernel at the claim (left out of the template)."""
    return name in PER_KERNEL_ENV or name.startswith(PER_KERNEL_ENV_PREFIXES)


@dataclass
class Template:
    """What a cold start of one kernelspec would create, less what differs per kernel."""

    key: str
    spec: ContainerSpec  # the cold spec it came from (kernel-specific fields are replaced per spare)
    image_id: str
    files: dict[str, str]  # container path -> content of read-only files mounted from the launch folder
    workspace: str


@dataclass
class Spare:
    container_id: str
    conn_dir: str
    host_ports: dict[str, int]
    image_id: str
    key: str
    created: float = field(default_factory=time.monotonic)
    pid: int = 0  # its first process, as the engine (a host PID where the engine is this host's)


def template_of(spec: ContainerSpec, image_id: str, connection_dir: str, workspace: str) -> Template:
    """The template of a cold start's ``spec``; its key changes with anything but the kernel id,
    the working directory, the per-kernel variables and the launch's own folder."""
    files = {}
    for mount in spec.mounts:
        if mount.read_only and os.path.dirname(mount.source) == connection_dir:
            with open(mount.source) as f:
                files[mount.target] = f.read()
    env = {k: v for k, v in spec.env.items() if not per_kernel(k)}
    labels = {k: v for k, v in spec.labels.items() if k != LABEL_KERNEL_ID}
    injected = labels.get(LABEL_INJECTED_ENV, "")
    labels[LABEL_INJECTED_ENV] = ",".join(n for n in injected.split(",") if n and not n.startswith(PER_KERNEL_ENV_PREFIXES))
    mounts = [
        dataclasses.asdict(m) | {"source": "<launch folder>" if os.path.dirname(m.source) == connection_dir or m.source == connection_dir else m.source}
        for m in spec.mounts
    ]
    shape = {
        "image": spec.image, "image_id": image_id, "command": spec.command, "env": env, "user": spec.user,
        "labels": labels, "mounts": mounts, "files": files, "gpus": [dataclasses.asdict(g) for g in spec.gpus],
        "memory": spec.memory, "nano_cpus": spec.nano_cpus, "shm_size": spec.shm_size, "cap_drop": spec.cap_drop,
        "init": spec.init, "network": spec.network, "security_opt": spec.security_opt, "userns": spec.userns,
        "python": (spec.entrypoint or [""])[0], "workspace": workspace, "published": sorted(spec.ports),
    }
    key = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    return Template(key=key, spec=spec, image_id=image_id, files=files, workspace=workspace)


def open_fifo_for_writing(path: str) -> int:
    """An fd to write into the FIFO at ``path``, which lies in a folder the spare's container
    writes: whatever else is there (a symlink to a file of this host, a regular file, a device
    node) is refused with OSError, never opened for writing. The entry is pinned without
    following a link (O_PATH), checked, then opened through that pin, so it cannot be swapped
    in between."""
    pin = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISFIFO(os.fstat(pin).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not the spare's FIFO (a symlink or another file there): refused")
        return os.open(f"/proc/self/fd/{pin}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(pin)


def write_claim(path: str, claim: dict, wait: float = 1.0) -> None:
    """Write ``claim`` (JSON) into the FIFO at ``path``, which a spare or a kernel's keeper reads:
    the per-kernel part of a start. Waits up to ``wait`` s for the reader to be in its open().
    Raises OSError when nothing reads it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = open_fifo_for_writing(path)
            break
        except OSError as exc:  # ENXIO: the FIFO exists but its reader is not in open() yet
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        data = json.dumps(claim).encode()
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
