"""A kernel launch's decisions, as pure functions: settings + image facts + what the backend says
about itself -> what to create. No engine, no files, no clock: unit-tested without Docker.

The launcher (launcher.py) gathers the inputs (it probes the image, asks the backend, writes the
kernel's folder), asks this module, and carries the plan out. What is decided here:

* which folder is the workspace (:func:`choose_workspace`);
* how the server reaches the kernel, Unix sockets or published ports (:func:`choose_transport`);
* which GPUs ``auto`` means (:func:`resolve_gpus`), and whether to check them against this host's;
* the container: environment, mounts, user, limits, labels, ports, network, entrypoint
  (:func:`plan_launch`, :func:`kernel_container`), and whether it may join its network after
  start (:func:`network_after_start`) or come from the warm pool.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..cache.paths import DEFAULT_MOUNT_PATH, is_host_folder
from ..core.errors import EngineError
from ..core.identity import HostUser
from ..core.labels import (
    LABEL_CACHE_VOLUME,
    LABEL_GPUS,
    LABEL_IMAGE,
    LABEL_INJECTED_ENV,
    LABEL_KERNEL_ID,
    LABEL_KERNEL_NAME,
    LABEL_LIMITS_IGNORED,
    LABEL_OWNER,
    LABEL_OWNER_USER,
    LABEL_ROLE,
    LABEL_WORKSPACE,
)
from ..core.names import slug
from ..core.settings import DEFAULT_VOLUME
from ..engines.base import (
    CONNECTION_DIR_IN_CONTAINER,
    CONNECTION_FILE_IN_CONTAINER,
    ContainerSpec,
    EngineKind,
    EngineLocation,
    FileSpec,
    GpuRequest,
    MountSpec,
)
from ..images.probe import ImageFacts
from .bootstrap import BOOTSTRAP, KEEPER_ENV, NETWORK_GATE_ENV, NETWORK_GATE_IN_CONTAINER, NO_PIP_ENV
from .container_spec import (
    CONTAINER_PORTS,
    KERNEL_NETWORK,
    LENT_PIP_ENV,
    LENT_PIP_IN_CONTAINER,
    KernelEnvironment,
    container_user_for,
    gpu_requests,
    kernel_environment,
    shm_size_for,
    venv_cache_mount,
)


@dataclass(frozen=True)
class LaunchSettings:
    """The provisioner's traits one launch reads (the kernelspec's config applied)."""

    image: str
    gpus: str = "auto"
    memory: str = ""
    cpus: str = ""
    shm_size: str = "auto"
    env: Mapping[str, str] = field(default_factory=dict)
    cache_volume: str = DEFAULT_VOLUME
    cache_mount_path: str = DEFAULT_MOUNT_PATH
    network: str = ""  # a network the user named; "" for the kernels' own
    kernel_transport: str = "auto"
    use_init: bool = True
    placement_timeout: float = 60.0
    warm_pool_size: int = 0
    slurm: Mapping[str, str] = field(default_factory=dict)  # a batch scheduler's options (ContainerSpec.scheduler)
    host_pip_wheel: str = ""  # this host's pip wheel, lent to a venv without pip (lent_pip_wheel)
    pull: str = "auto"  # a missing image: "auto" pulls it at start (launcher.py), "never" fails
    warm_restart: bool = True  # a keeper in the container, for restarts in it (kernels/restarts.py)


@dataclass(frozen=True)
class BackendFacts:
    """What the backend says about itself, asked once per launch by the launcher."""

    location: EngineLocation
    kind: EngineKind = EngineKind()
    memory_total: int = 0  # the engine's memory (MemTotal), what 'auto' /dev/shm is half of
    desktop_vm: bool = False  # Docker Desktop: its VM's bind mounts carry no Unix sockets
    gpus_placed_by_scheduler: bool = False
    joins_network_after_start: bool = False
    kernel_network: str = KERNEL_NETWORK  # the network kernels join when none is configured ("": none)


@dataclass(frozen=True)
class KernelLaunch:
    """This kernel and this launch, as the launcher found them."""

    kernel_id: str
    command: list[str]
    user: HostUser
    cwd: str
    workspace: str
    connection_dir: str
    transport: str  # choose_transport's answer
    gpus: str  # resolve_gpus's answer
    kernel_name: str = ""
    restarts: int = 0
    owner: str = ""
    launch_env: Mapping[str, str] = field(default_factory=dict)  # the kernel manager's (the kernelspec's env, JPY_*)
    kernelspec_env: Mapping[str, str] = field(default_factory=dict)
    host_ports: Mapping[str, int] | None = None  # the previous launch's, asked for again at a restart
    passwd_group: tuple[str, str] | None = None  # the folder's passwd/group files, for a non-root user
    connection_files: Mapping[str, bytes] | None = None  # the folder's files, for a backend elsewhere


@dataclass
class LaunchPlan:
    """What the launcher creates, and what it checks and says first."""

    spec: ContainerSpec  # the kernel's container (a spare's template is made from it)
    cold_spec: ContainerSpec  # the same, as created for a cold start (network_after_start)
    gpu_requests: list[GpuRequest]
    check_host_gpus: bool  # refuse GPUs this host does not have, before asking the engine
    may_use_spare: bool  # the warm pool may hand over a spare (its FIFO is in a folder of this host)
    restarts_in_place: bool  # the kernel runs under a keeper: a restart may reuse its container
    memory_limit: str  # for a death's message ('8g')
    warnings: list[str] = field(default_factory=list)


def choose_workspace(configured: str, server_root: str | None, cwd: str) -> str:
    """The folder bind-mounted at its own path: the configured one, else the server's root, else
    the kernel's working directory; a kernel started outside it still sees its own folder.
    Never the host's /."""
    workspace = os.path.abspath(os.path.expanduser(configured or server_root or cwd))
    if not (cwd == workspace or cwd.startswith(workspace.rstrip("/") + "/")):
        workspace = cwd
    if workspace == "/":
        raise EngineError(
            "Refusing to mount the host's / into a kernel container: start Jupyter in your "
            "project folder or set c.DockerKernelProvisioner.workspace"
        )
    return workspace


def choose_transport(
    wanted: str, location: EngineLocation, folder: str, folder_fits: bool, *, on_linux: bool, desktop_vm: bool,
) -> tuple[str, str]:
    """``kernel_transport`` for this launch and a warning to log ("" for none): ipc needs the
    engine on this host (the folder is bind-mounted), on Linux, and a folder path short enough
    for a Unix socket (``folder_fits``)."""
    if wanted == "tcp":
        return "tcp", ""
    if not location.local:
        if wanted == "ipc":
            raise EngineError("kernel_transport 'ipc' needs the engine on this host (the kernel's sockets are in a "
                              "folder of this host): use 'tcp' or 'auto' for a remote engine or a Swarm")
        return "tcp", ""
    if not folder_fits:
        if wanted == "ipc":
            raise EngineError(f"kernel_transport 'ipc': the kernel's folder {folder} is too long a path for a Unix "
                              "socket (107 bytes): set JUPYTER_RUNTIME_DIR to a shorter one, or use 'tcp'")
        return "tcp", (f"its folder {folder} is too deep for Unix sockets (107 bytes), and no shorter private "
                       "folder was found: publishing its ports on 127.0.0.1 instead, where other local users "
                       "reach them (a shorter JUPYTER_RUNTIME_DIR avoids it)")
    if wanted == "auto" and (not on_linux or desktop_vm):
        return "tcp", ""
    return "ipc", ""


def resolve_gpus(setting: str, backend: BackendFacts, host_has_gpus: Callable[[], bool]) -> str:
    """The ``gpus`` setting with ``auto`` decided: all GPUs when the engine can give them and
    this host has some (``host_has_gpus``, asked only for 'auto'), else none; a scheduler's GPUs
    are asked for by number, so there 'auto' is none. Other values are checked, not changed."""
    value = (setting or "auto").strip()
    if value.lower() != "auto":
        gpu_requests(value)  # refuse a bad value early, with a clear message
        return value
    if backend.gpus_placed_by_scheduler:
        return "none"
    return "all" if host_has_gpus() else "none"


def limits_ignored_note(memory: str | None, cpus: str, kind: EngineKind) -> str:
    """What the engine will not enforce of the limits asked for, and why ("" when all are)."""
    if not (memory or cpus.strip()) or not kind.limits_ignored_reason:
        return ""
    asked = ", ".join(f"{name} {value}" for name, value in (("memory", memory), ("cpus", cpus.strip())) if value)
    return f"{asked} not enforced: {kind.limits_ignored_reason}"


def copying_storage_note(kind: EngineKind, warm_pool_size: int, local: bool) -> str:
    """The start's warning on an engine whose storage copies the whole image into each container
    (vfs), with what the warm pool does about it here and the fix ("" elsewhere)."""
    if not kind.copying_storage_reason:
        return ""
    if warm_pool_size > 0 and local:
        pool = ("the warm pool keeps a spare of this kernelspec ready, so only a start that finds none waits (the "
                "kernelspec's first, a restart, one before the last claimed spare is replaced)")
    elif local:
        pool = ("the warm pool is off here (warm_pool_size 0: a kernel manager of its own, such as nbclient or "
                "papermill, or MLCONTAINER_WARM_POOL=0), so every start waits; a Jupyter server keeps a spare ready")
    else:
        pool = "the warm pool does not serve an engine on another host, so every start waits"
    return f"{kind.copying_storage_reason}; {pool}. Fix: {kind.copying_storage_fix}"


def lent_pip_wheel(settings: LaunchSettings, backend: BackendFacts, image: ImageFacts) -> str:
    """The pip wheel (a path in the container) lent to a venv image without pip for `%pip`
    (container_spec.LENT_PIP_IN_CONTAINER): the image's own, else this host's where the engine
    can bind-mount it (on this host; not through Docker Desktop's VM, which shares only some
    folders), else "" (none)."""
    if not image.venv or image.conda or image.pip:
        return ""
    if image.pip_wheel:
        return image.pip_wheel
    local = backend.location.local and not backend.desktop_vm
    return LENT_PIP_IN_CONTAINER if settings.host_pip_wheel and local else ""


def plan_launch(settings: LaunchSettings, backend: BackendFacts, image: ImageFacts, launch: KernelLaunch) -> LaunchPlan:
    """The container of this launch, and what to check and warn about before creating it."""
    from ..cache.paths import home_in_cache

    requests = gpu_requests(launch.gpus)
    home = home_in_cache(settings.cache_mount_path, launch.user.name)
    environment = kernel_environment(
        image=settings.image, kernel_id=launch.kernel_id, user=launch.user, home=home,
        cache_mount_path=settings.cache_mount_path, launch_env=dict(launch.launch_env),
        kernelspec_env=dict(launch.kernelspec_env), configured_env=dict(settings.env), gpus=requests,
        image_env=image.env, externally_managed=image.externally_managed, python=image.python or "",
        conda=image.conda, venv=image.venv, python_version=image.python_version or "",
        pip_wheel=lent_pip_wheel(settings, backend, image),
    )
    warnings = []
    if image.venv and not image.conda and not image.pip and LENT_PIP_ENV not in environment.env:
        no_pip = (f"The image's venv {image.venv} has no pip and none could be lent to it here, so `%pip install` "
                  "cannot install: install pip into the image's venv (uv venv --seed), or use "
                  "`!uv pip install --prefix $PIP_PREFIX ...` where the image has uv")
        warnings.append(no_pip)
        # The kernel's `%pip` says the same, and fails, instead of "No module named pip" (bootstrap).
        environment.env[NO_PIP_ENV] = no_pip
        environment.injected.append(NO_PIP_ENV)
    # A restart in the kernel's container talks to its keeper through files of its folder: only
    # where that folder is this host's (no spare's FIFO, no keeper on an engine elsewhere).
    restarts_in_place = settings.warm_restart and backend.location.local and launch.connection_files is None
    if restarts_in_place:
        environment.env[KEEPER_ENV] = "1"
        environment.injected.append(KEEPER_ENV)
    if environment.overridden_gpu_env:
        warnings.append(f"NVIDIA_VISIBLE_DEVICES={environment.overridden_gpu_env} from the kernelspec is overridden "
                        "with 'void' because the kernel has no GPUs (--gpus none); use --gpus to give it GPUs")
    copying = copying_storage_note(backend.kind, settings.warm_pool_size, backend.location.local)
    if copying:
        warnings.append(copying)
    memory = settings.memory.strip() or None
    limits_ignored = limits_ignored_note(memory, settings.cpus, backend.kind)
    if limits_ignored:
        warnings.append(limits_ignored)
    spec = kernel_container(settings, backend, image, launch, environment, requests, limits_ignored)
    return LaunchPlan(
        spec=spec,
        cold_spec=network_after_start(spec, settings, backend, launch),
        gpu_requests=requests,
        check_host_gpus=bool(requests) and not backend.gpus_placed_by_scheduler,
        may_use_spare=settings.warm_pool_size > 0 and backend.location.local,
        restarts_in_place=restarts_in_place,
        memory_limit=memory or "",
        warnings=warnings,
    )


def kernel_container(
    settings: LaunchSettings, backend: BackendFacts, image: ImageFacts, launch: KernelLaunch,
    environment: KernelEnvironment, gpus: list[GpuRequest], limits_ignored: str = "",
) -> ContainerSpec:
    """The container of one kernel launch: the workspace at its own path, the cache volume, the
    private connection folder, passwd/group entries for a non-root user, limits, GPUs, the labels
    every other part of the project reads, and the five kernel ports published (the previous
    launch's host ports at a restart, so clients reconnect; none on Unix sockets, which are in
    the folder). The container user is the one that is the launch's user on the host under the
    engine's kind. A backend on another host gets the folder's files copied in instead of mounted
    (nothing of this host but the workspace is assumed there) and publishes on its own address."""
    container_user = container_user_for(launch.user, backend.kind)
    cache_kind = "bind" if is_host_folder(settings.cache_volume) else "volume"
    mounts = [
        MountSpec(target=launch.workspace, source=launch.workspace),
        MountSpec(target=settings.cache_mount_path, source=settings.cache_volume, kind=cache_kind),
    ]
    if "PIP_PREFIX" in environment.injected and image.venv:  # where `%pip install` goes (venv_pip_prefix)
        mounts.append(MountSpec(target=venv_cache_mount(image.venv), source=settings.cache_volume, kind=cache_kind))
    if environment.env.get(LENT_PIP_ENV) == LENT_PIP_IN_CONTAINER:  # this host's pip, lent (lent_pip_wheel)
        mounts.append(MountSpec(target=LENT_PIP_IN_CONTAINER, source=settings.host_pip_wheel, read_only=True))
    mounts, files = _private_files(mounts, launch, container_user, backend.location)
    labels = _kernel_labels(settings, launch, environment, limits_ignored)
    memory = settings.memory.strip() or None
    publish = launch.transport == "tcp"  # on Unix sockets the kernel's sockets are in its folder
    return ContainerSpec(
        image=settings.image,
        name=f"mlc-{slug(settings.image)[:40]}-{launch.kernel_id[:8]}-{launch.restarts}",
        entrypoint=[image.python or "python3", "-c", BOOTSTRAP],
        command=list(launch.command),
        env=environment.env,
        working_dir=launch.cwd,
        user=container_user,
        labels=labels,
        ports={port: (launch.host_ports or {}).get(name) for name, port in CONTAINER_PORTS.items()} if publish else {},
        mounts=mounts,
        gpus=gpus,
        memory=memory,
        nano_cpus=int(float(settings.cpus) * 1e9) if settings.cpus.strip() else None,
        shm_size=shm_size_for(settings.shm_size, memory, backend.memory_total),
        # A non-root kernel needs no capability; root keeps the engine's reduced default set
        # (under a rootless engine those act inside the user's own namespace only).
        cap_drop=["ALL"] if container_user != "0:0" else None,
        init=settings.use_init,
        network=settings.network or backend.kernel_network,
        userns="keep-id" if backend.kind.uid_model == "keep-id" else None,
        files=files,
        publish_ip=backend.location.address,
        placement_timeout=settings.placement_timeout,
        scheduler=dict(settings.slurm),
    )


def _kernel_labels(settings: LaunchSettings, launch: KernelLaunch, environment: KernelEnvironment,
                   limits_ignored: str) -> dict[str, str]:
    """The labels every other part of the project reads a kernel's container by."""
    labels = {
        LABEL_ROLE: "kernel",
        LABEL_KERNEL_ID: launch.kernel_id,
        LABEL_KERNEL_NAME: launch.kernel_name,
        LABEL_OWNER: launch.owner,
        LABEL_OWNER_USER: launch.user.name,
        LABEL_WORKSPACE: launch.workspace,
        LABEL_CACHE_VOLUME: settings.cache_volume,
        LABEL_IMAGE: settings.image,
        LABEL_INJECTED_ENV: ",".join(sorted(environment.injected)),
        LABEL_GPUS: launch.gpus,
    }
    if limits_ignored:
        labels[LABEL_LIMITS_IGNORED] = limits_ignored
    return labels


def _private_files(
    mounts: list[MountSpec], launch: KernelLaunch, container_user: str, location: EngineLocation,
) -> tuple[list[MountSpec], list[FileSpec]]:
    """The kernel's folder (its connection file) and passwd/group: bind-mounted from this host,
    or for a backend elsewhere copied in as files owned by the kernel's user."""
    files: list[FileSpec] = []
    if location.local:
        mounts = mounts + [MountSpec(target=CONNECTION_DIR_IN_CONTAINER, source=launch.connection_dir)]
        if launch.passwd_group is not None:
            mounts += [
                MountSpec(target="/etc/passwd", source=launch.passwd_group[0], read_only=True),
                MountSpec(target="/etc/group", source=launch.passwd_group[1], read_only=True),
            ]
        return mounts, files
    uid, gid = (int(part) for part in container_user.split(":"))
    contents = launch.connection_files or {}
    files.append(FileSpec(CONNECTION_FILE_IN_CONTAINER, contents["kernel.json"], 0o600, uid, gid))
    for target, source in zip(("/etc/passwd", "/etc/group"), launch.passwd_group or ()):
        files.append(FileSpec(target, contents[os.path.basename(source)], 0o644, 0, 0))
    return mounts, files


def network_after_start(
    spec: ContainerSpec, settings: LaunchSettings, backend: BackendFacts, launch: KernelLaunch,
) -> ContainerSpec:
    """``spec`` to start on no network and join the kernels' network right after: the engine's
    network set-up then overlaps the kernel's imports (0.06-0.08 s of a cold start). Only where
    nothing needs the network at create: Unix sockets (no published ports), our own kernels'
    network (a user-defined bridge: the container's DNS and hosts entries end up as when created
    on it, tested), on a backend that says it can."""
    if (launch.transport != "ipc" or settings.network or spec.network != KERNEL_NETWORK or spec.ports
            or not backend.joins_network_after_start or not launch.connection_dir):
        return spec
    return dataclasses.replace(
        spec, network="none", network_after_start=spec.network,
        env={**spec.env, NETWORK_GATE_ENV: NETWORK_GATE_IN_CONTAINER},
    )
