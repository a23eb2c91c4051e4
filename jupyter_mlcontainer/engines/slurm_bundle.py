"""A kernel's OCI bundle on Slurm: the ``config.json`` that slurmd's crun runs (docs/slurm.md).

An image becomes one root file system in the shared image store (unpacked once per digest, as
the user, read-only after); each kernel gets a folder of its own holding only a ``config.json``
whose root is that shared file system. Slurm mounts nothing into a container, so the config
carries what a local container kernel gets from its engine: the workspace at its own path, the
cache, the private connection folder's files, the GPUs' device nodes (Slurm's device cgroup
still lets the job open only its own), the environment, the working directory, the user.
Pure: the image's own ``config.json`` (umoci's) and a :class:`~.base.ContainerSpec` in, a dict out.
"""

from __future__ import annotations

import copy
from typing import Any

from .base import ContainerSpec

# The container's own /dev/shm: a kernel's DataLoader workers need more than the runtime's 64 MB.
DEFAULT_SHM = "1g"


def kernel_bundle_config(
    image_config: dict[str, Any], spec: ContainerSpec, *, rootfs: str, uid: int, gid: int,
    gpu_devices: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """The ``config.json`` of one kernel's bundle.

    ``image_config``: the config umoci wrote for the image (``umoci unpack --rootless``: a user
    namespace mapping the unpacking user to root); ``rootfs``: the image's shared root file
    system (absolute); ``uid``/``gid``: the Jupyter user's, who runs the job; ``gpu_devices``:
    the node's GPU device nodes to bind (``/dev/nvidia0``...; Slurm confines the job to its own).
    """
    config = copy.deepcopy(image_config)
    config["root"] = {"path": rootfs, "readonly": True}
    process = config.setdefault("process", {})
    # Slurm runs the job's command in place of these; a bundle from umoci asks for a terminal,
    # which a batch job has none of ("tcgetattr: Inappropriate ioctl for device").
    process["terminal"] = False
    process["args"] = [*(spec.entrypoint or []), *spec.command]
    process["cwd"] = spec.working_dir or "/"
    process["env"] = [f"{key}={value}" for key, value in spec.env.items()]
    # The kernel runs as the user's own uid inside, as on a local engine: the user namespace maps
    # that uid (and gid) to itself, not to root.
    process["user"] = {"uid": uid, "gid": gid}
    process["noNewPrivileges"] = True
    process.pop("capabilities", None)  # none: a kernel needs no capability
    linux = config.setdefault("linux", {})
    linux["uidMappings"] = [{"containerID": uid, "hostID": uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": gid, "hostID": gid, "size": 1}]
    # No network namespace: the kernel listens on its node's address (the cluster network).
    linux["namespaces"] = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
    mounts = [m for m in config.get("mounts", []) if m.get("destination") != "/dev/shm"]
    mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                   "options": ["nosuid", "nodev", "mode=1777", f"size={spec.shm_size or DEFAULT_SHM}"]})
    for mount in spec.mounts:
        options = ["rbind", "ro" if mount.read_only else "rw", "nosuid", "nodev"]
        mounts.append({"destination": mount.target, "type": "bind", "source": mount.source, "options": options})
    for device in gpu_devices:
        mounts.append({"destination": device, "type": "bind", "source": device, "options": ["bind", "rw", "nosuid"]})
    config["mounts"] = mounts
    config["hostname"] = spec.name or config.get("hostname", "kernel")
    config.setdefault("annotations", {}).update({f"org.jupyter.mlcontainer.label.{k}": v for k, v in spec.labels.items()})
    return config
