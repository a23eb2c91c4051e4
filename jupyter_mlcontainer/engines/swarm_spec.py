"""A :class:`~.base.ContainerSpec` as a Swarm service: its task template (container, limits, GPUs
as generic resources, placement), its published ports, and its files as secret and config
references. Plain data for :class:`~.swarm.SwarmBackend` (and the image probes of
:mod:`.swarm_images`) to send; nothing here calls the manager.
"""

from __future__ import annotations

import posixpath
from typing import Any

from docker.types import (
    ConfigReference,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    SecretReference,
    TaskTemplate,
)
from docker.types import (
    ContainerSpec as SwarmContainerSpec,
)

from ..core.errors import GpuRequestUnsatisfiable
from .base import (
    CONNECTION_FILE_IN_CONTAINER,
    CONNECTION_SECRET_ENV,
    NO_NEW_PRIVS_ENV,
    ContainerSpec,
    FileSpec,
    parse_size,
)

GPU_RESOURCE = "NVIDIA-GPU"  # the generic resource nodes advertise (dockerd --node-generic-resource)
LABEL_SERVICE = "org.jupyter.mlcontainer.service"  # on a kernel's secrets and configs: their service's name
SECRET_PATH = "/run/secrets/mlcontainer-kernel.json"  # the bootstrap copies it where the kernel writes


def helper_task(container: SwarmContainerSpec, *, memory: str | None, pids: int | None, restart: str) -> TaskTemplate:
    """The task of a helper service of ours (the cache keeper, an image probe): its container as
    given (capabilities dropped, read-only), with a memory and a process limit. A service of API
    1.41 can be put on no network only by giving it none of its own (it keeps the node's bridge),
    and has no no-new-privileges field: the keeper sets that on itself; a probe runs with every
    capability dropped, no mount and no secret, for the milliseconds of an empty program."""
    resources = Resources(mem_limit=_bytes(memory))
    if pids:
        resources.setdefault("Limits", {})["Pids"] = pids
    return TaskTemplate(container, resources=resources, restart_policy=RestartPolicy(condition=restart))


def keeper_container(spec: ContainerSpec) -> SwarmContainerSpec:
    """The container of a long-running helper (the cache keeper) that runs on every node."""
    return SwarmContainerSpec(
        spec.image, command=spec.entrypoint, args=spec.command, user=spec.user, labels=spec.labels,
        mounts=_mounts(spec), cap_add=spec.cap_add, cap_drop=spec.cap_drop, read_only=spec.read_only,
    )


def kernel_task(spec: ContainerSpec, secrets: list[SecretReference], configs: list[ConfigReference],
                constraints: list[str]) -> TaskTemplate:
    """The task of a kernel's service: never restarted by Swarm (Jupyter's restarter decides),
    its GPUs a reservation of N generic resources, /dev/shm a tmpfs of the spec's size, and the
    connection file a secret the bootstrap copies into a private writable folder."""
    gpus = sum(max(request.count or len(request.device_ids), 0) for request in spec.gpus)
    if any(request.count == -1 for request in spec.gpus):
        raise GpuRequestUnsatisfiable("On a Swarm cluster a kernel asks for a number of GPUs (--gpus 2), not all")
    mounts = _mounts(spec)
    env = {**spec.env, NO_NEW_PRIVS_ENV: "1"}  # the bootstrap sets it: services have no such option
    if spec.shm_size:  # a service has no --shm-size: /dev/shm as a tmpfs of that size
        mounts.append(Mount(target="/dev/shm", source=None, type="tmpfs", tmpfs_size=_bytes(spec.shm_size),
                            tmpfs_mode=0o1777))
    if secrets:  # the kernel rewrites its connection file: a private, writable folder for it
        mounts.append(Mount(target=posixpath.dirname(CONNECTION_FILE_IN_CONTAINER), source=None, type="tmpfs",
                            tmpfs_mode=0o1777, tmpfs_size=1 << 20))
        env[CONNECTION_SECRET_ENV] = SECRET_PATH
    container = SwarmContainerSpec(
        spec.image, command=spec.entrypoint, args=spec.command, env=env, workdir=spec.working_dir,
        user=spec.user, labels=spec.labels, secrets=secrets, configs=configs, init=spec.init,
        mounts=mounts, cap_drop=spec.cap_drop, read_only=spec.read_only,
    )
    return TaskTemplate(
        container, restart_policy=RestartPolicy(condition="none"),
        resources=Resources(
            mem_limit=_bytes(spec.memory), cpu_limit=spec.nano_cpus,
            generic_resources={GPU_RESOURCE: gpus} if gpus else None,
        ),
        placement=Placement(constraints=constraints),
    )


def kernel_endpoint(spec: ContainerSpec) -> dict[str, Any]:
    """The kernel's ports in host mode: each on the task's node, chosen by the node unless the
    spec asks for one (a restart asks for its previous ports); read back from the task."""
    return {"Ports": [{"Protocol": "tcp", "TargetPort": port, "PublishMode": "host",
                       **({"PublishedPort": host} if host else {})} for port, host in spec.ports.items()]}


def holds_secret(file: FileSpec) -> bool:
    """Whether ``file`` goes in as a secret (the connection file: it holds the kernel's key)
    rather than as a config."""
    return file.path == CONNECTION_FILE_IN_CONTAINER


def file_reference(file: FileSpec, object_id: str, name: str) -> SecretReference | ConfigReference:
    """Where the secret or config ``name`` made of ``file`` is mounted, owned by the file's
    owner: the secret at :data:`SECRET_PATH`, read-only, for the bootstrap to copy; a config
    at the file's own path and mode."""
    if holds_secret(file):
        return SecretReference(object_id, name, filename=SECRET_PATH, uid=str(file.uid), gid=str(file.gid),
                               mode=0o400)
    return ConfigReference(object_id, name, filename=file.path, uid=str(file.uid), gid=str(file.gid),
                           mode=file.mode)


def _mounts(spec: ContainerSpec) -> list[Mount]:
    return [Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts]


def _bytes(size: str | None) -> int | None:
    return parse_size(size) if size else None
