"""A :class:`~.base.ContainerSpec` as the Docker API's create call: its host config (ports,
mounts, limits, GPUs the way the engine's kind takes them) and the tar of the files copied in
before start. :meth:`~.docker.Engine.create_and_start_sync` uses it for every engine but a Podman
asked for GPUs (:func:`.podman.create_container`).
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import docker
from docker.types import DeviceRequest, Mount

from .base import ContainerSpec, EngineKind, FileSpec, GpuRequest, cdi_devices


def create_container(api: docker.APIClient, spec: ContainerSpec, kind: EngineKind) -> str:
    """Create ``spec`` on the engine of ``kind`` (which says how it takes GPUs); the container's
    id. Blocking: the engine calls it inside its ``call_sync``."""
    host_config = api.create_host_config(
        port_bindings={port: (spec.publish_ip, host) for port, host in spec.ports.items()},
        mounts=[Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts],
        **_gpu_options(spec.gpus, kind),
        mem_limit=spec.memory,
        nano_cpus=spec.nano_cpus,
        shm_size=spec.shm_size,
        security_opt=spec.security_opt,
        cap_drop=spec.cap_drop,
        cap_add=spec.cap_add,
        read_only=spec.read_only or None,
        pids_limit=spec.pids_limit,
        restart_policy={"Name": spec.restart_policy} if spec.restart_policy else None,
        init=spec.init,
        network_mode=spec.network,
    )
    if spec.userns:  # the SDK refuses values other than "host"; Podman takes keep-id
        host_config["UsernsMode"] = spec.userns
    return api.create_container(
        spec.image, name=spec.name, entrypoint=spec.entrypoint, command=spec.command,
        environment=spec.env, working_dir=spec.working_dir, user=spec.user, labels=spec.labels,
        ports=list(spec.ports), host_config=host_config,
    )["Id"]


def _gpu_options(gpus: list[GpuRequest], kind: EngineKind) -> dict[str, Any]:
    """The host-config options that ask a Docker engine of ``kind`` for ``gpus``: the NVIDIA
    runtime's device requests, or CDI device names in a device request of the "cdi" driver.
    (Podman's Docker-compatible API takes neither: GPU kernels there go through
    :func:`.podman.create_container`.)"""
    if not gpus:
        return {}
    if kind.gpu_devices != "cdi":
        return {"device_requests": [
            DeviceRequest(count=g.count, device_ids=list(g.device_ids) or None, capabilities=[["gpu"]]) for g in gpus
        ]}
    return {"device_requests": [DeviceRequest(driver="cdi", device_ids=cdi_devices(gpus))]}


def tar_of(files: list[FileSpec]) -> bytes:
    """A tar of ``files`` (with their parent folders, owned by the file's owner, mode 0700) to
    extract at the container's root: an engine on another host cannot bind-mount this host's
    connection folder, so its files are copied in between create and start."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders: set[str] = set()
        for spec in files:
            parts = spec.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder in folders or folder in ("etc", "run", "tmp"):
                    continue  # the image's own system folders keep their owner and mode
                folders.add(folder)
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, spec.uid, spec.gid
                tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.uid, info.gid = len(spec.content), spec.mode, spec.uid, spec.gid
            tar.addfile(info, io.BytesIO(spec.content))
    return buffer.getvalue()
