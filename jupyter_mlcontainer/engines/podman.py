"""Podman's differences from Docker, behind the same :class:`~.docker.Engine`.

Podman answers the Docker API well enough for everything but these, which the engine asks here
where its kind is Podman (``EngineKind.product == "podman"``):

* whether it runs rootless: in its own (libpod) info, not in Docker's security options;
* GPUs: its Docker-compatible API drops GPU requests, so a GPU kernel is created through its own
  API with CDI device names; and it lists no CDI devices, so those are read from this host's
  CDI specs;
* its events: a container's exit is reported as ``die`` but filtered on as ``died``.

Each function takes the engine's SDK client (blocking; the engine calls them through its
``call_sync``, which translates errors).
"""

from __future__ import annotations

import os
from typing import Any

import docker

from .base import CDI_GPU_KIND, NO_NEW_PRIVILEGES, ContainerSpec, cdi_devices, parse_size

CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")  # where Podman (and Docker 25+) read CDI specs


def is_podman(version: dict[str, Any]) -> bool:
    """Whether an engine's ``version`` answer is Podman's: it names itself in its components."""
    return any("podman" in (c.get("Name") or "").lower() for c in version.get("Components") or [])


def is_rootless(api: docker.APIClient) -> bool:
    """Whether this Podman runs rootless, from its own info (``/libpod/info``). Blocking."""
    libpod = api._result(api._get(api._url("/libpod/info")), json=True)
    return bool(((libpod.get("host") or {}).get("security") or {}).get("rootless"))


def local_cdi_gpu_specs() -> list[str]:
    """This host's CDI spec files that describe NVIDIA GPUs (for an engine on this host that
    does not list its CDI devices: Podman)."""
    found = []
    for folder in CDI_SPEC_DIRS:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, errors="replace") as f:
                    if CDI_GPU_KIND in f.read(1 << 20):
                        found.append(path)
            except OSError:
                continue
    return found


def event_filter(events: list[str]) -> list[str]:
    """Docker's event names as Podman's events filter takes them (``die`` is ``died`` there)."""
    return ["died" if event == "die" else event for event in events]


def create_container(api: docker.APIClient, spec: ContainerSpec) -> str:
    """Create ``spec`` through Podman's own API; the new container's id. Its Docker-compatible
    API drops GPU requests without a word (DeviceRequests are ignored, CDI names in Devices
    refused; podman#19338, #22645); its own API takes CDI devices (nvidia.com/gpu=0), as
    `podman run --device` does. Blocking. The SDK has no call for it: its private request helpers
    (``_post_json``, ``_url``, ``_result``) send it, as they send the SDK's own calls."""
    body: dict[str, Any] = {
        "name": spec.name, "image": spec.image, "entrypoint": spec.entrypoint, "command": spec.command,
        "env": spec.env, "work_dir": spec.working_dir, "user": spec.user, "labels": spec.labels,
        "portmappings": [
            {"host_ip": spec.publish_ip, "container_port": port, "host_port": host or 0, "protocol": "tcp"}
            for port, host in spec.ports.items()
        ],
        "mounts": [{"destination": m.target, "source": m.source, "type": "bind",
                    "options": ["rbind"] + (["ro"] if m.read_only else [])} for m in spec.mounts if m.kind == "bind"],
        "volumes": [{"Name": m.source, "Dest": m.target, "Options": ["ro"] if m.read_only else []}
                    for m in spec.mounts if m.kind == "volume"],
        "devices": [{"path": name} for name in cdi_devices(spec.gpus)],
        "resource_limits": _limits(spec) or None,
        "shm_size": parse_size(spec.shm_size) if spec.shm_size else None,
        "cap_drop": spec.cap_drop, "cap_add": spec.cap_add,
        "no_new_privileges": NO_NEW_PRIVILEGES in spec.security_opt,
        "init": spec.init,
        "read_only_filesystem": spec.read_only,
        "restart_policy": spec.restart_policy,
        "userns": {"nsmode": spec.userns} if spec.userns else None,
    }
    if spec.network and spec.network != "none":
        body["netns"] = {"nsmode": "bridge"}
        body["Networks"] = {spec.network: {}}
    body = {key: value for key, value in body.items() if value not in (None, [], {})}
    response = api._post_json(api._url("/libpod/containers/create"), data=body)
    return api._result(response, json=True)["Id"]


def _limits(spec: ContainerSpec) -> dict[str, Any]:
    """The memory, CPU and process limits of ``spec`` in libpod's ``resource_limits`` form."""
    limits: dict[str, Any] = {}
    if spec.memory:
        limits["memory"] = {"limit": parse_size(spec.memory)}
    if spec.nano_cpus:
        limits["cpu"] = {"period": 100000, "quota": spec.nano_cpus * 100000 // 1_000_000_000}
    if spec.pids_limit:
        limits["pids"] = {"limit": spec.pids_limit}
    return limits
