"""The options of a container kernel: every trait of :class:`~.provisioner.DockerKernelProvisioner`
with its documentation, and their defaults (from ``c.MLContainer`` and ``MLCONTAINER_*``).

Set as ``c.DockerKernelProvisioner.<name>`` in a Jupyter config file, from an ``MLCONTAINER_*``
environment variable where noted, and per kernel in the kernelspec's
``metadata.kernel_provisioner.config`` (which wins). What one launch reads of them is
:class:`~.launch_plan.LaunchSettings`.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Bool, CaselessStrEnum, CFloat, Dict, Float, Integer, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..cache import paths as cache_paths
from ..core.errors import ConfigurationError
from ..core.settings import MLContainer
from ..engines.registry import placements


def _env_default(name: str, fallback: str) -> str:
    return os.environ.get(name, fallback)


class ContainerKernelOptions(LoggingConfigurable):
    """The traits of :class:`~.provisioner.DockerKernelProvisioner` (its config section)."""

    image = Unicode(
        "",
        config=True,
        help="Image the kernel runs in (e.g. pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime). "
        "Must contain Python with ipykernel; `jupyter mlcontainer image prepare IMAGE` adds it.",
    )
    gpus = Unicode(
        config=True,
        help="GPUs for the kernel: 'auto' (all GPUs when the engine has an NVIDIA runtime and "
        "NVML sees GPUs, else none), 'all', 'none', a count ('2'), or device indices / UUIDs "
        "('0,1', 'GPU-...'). Env: MLCONTAINER_GPUS.",
    )
    memory = Unicode(
        config=True,
        help="Memory limit for the kernel container ('8g', '512m'); empty for none. A kernel "
        "that exceeds it is OOM-killed and the reason is reported. Env: MLCONTAINER_MEMORY.",
    )
    cpus = Unicode(
        config=True,
        help="CPU limit as a number of CPUs ('4', '0.5'); empty for none. Env: MLCONTAINER_CPUS.",
    )
    shm_size = Unicode(
        config=True,
        help="Size of /dev/shm. Docker's 64 MB default makes PyTorch DataLoader workers die with "
        "'Bus error'. 'auto' = half of the memory limit, or half of the engine's memory when "
        "there is no limit (what --ipc=host would give, without sharing IPC). Env: MLCONTAINER_SHM_SIZE.",
    )
    env = Dict(
        config=True,
        help="Extra environment variables for the kernel (added to the kernelspec's env).",
    )
    cache_volume = Unicode(
        config=True,
        help="Named volume shared by every container kernel for model and package caches "
        "(HF_HOME, TORCH_HOME, PIP_CACHE_DIR, ...) and the kernel user's HOME. Created on first "
        "use; an absolute path names a host folder on the engine's host instead. Default: "
        "c.MLContainer.cache_volume (shared with the panel and the CLI), which defaults to "
        "MLCONTAINER_CACHE_VOLUME; a kernelspec may name another.",
    )
    cache_mount_path = Unicode(
        cache_paths.DEFAULT_MOUNT_PATH, config=True, help="Where the cache volume is mounted in the container."
    )
    workspace = Unicode(
        "",
        config=True,
        help="Host folder bind-mounted read-write at the same absolute path. Default: the Jupyter "
        "server's root directory, or the kernel's working directory for a standalone kernel manager.",
    )
    network = Unicode(
        "",
        config=True,
        help="Docker network for kernel containers (their own outbound access: pip, model downloads). "
        "Default: 'mlcontainer-kernels', a bridge made on first use with inter-container traffic off, "
        "so no other container (another user's kernels included) reaches a kernel's published ports "
        "(kernel_transport 'tcp'; on Unix sockets there are none). Name another network (e.g. "
        "'bridge', or one your services are on) to let containers on it reach a kernel on 'tcp'.",
    )
    transport_encryption = CaselessStrEnum(
        ["auto", "required", "disabled"],
        "auto",
        config=True,
        help="CurveZMQ encryption of the kernel's traffic, with keys provisioned per kernel as "
        "jupyter_client's local provisioner does: 'auto' encrypts whenever the image's kernel can "
        "(ipykernel 7.4 or newer with a CURVE-enabled libzmq; the probe tells), and where the "
        "kernel's ports are published on a network other machines share (an engine on another "
        "host, a Swarm) refuses to start one that cannot; 'required' refuses that everywhere; "
        "'disabled' never encrypts (the only way to run an older ipykernel on a shared network, "
        "where anyone who reaches the node reads the kernel's output). A kernel manager whose "
        "transport_encryption is 'required' makes it required too.",
    )
    kernel_transport = CaselessStrEnum(
        ["auto", "ipc", "tcp"],
        "auto",
        config=True,
        help="How the server reaches the kernel. 'ipc': the kernel binds its five sockets as Unix "
        "sockets in its private connection folder (0700, bind-mounted into the container), so no "
        "TCP port exists: no other user of this host and no container can reach the kernel, "
        "encrypted or not, and the start skips publishing ports (~0.06 s). 'tcp': five ports "
        "published on 127.0.0.1 (on the engine's address for a remote engine). 'auto': ipc for an "
        "engine on this Linux host, tcp for a remote engine, a Swarm, or Docker Desktop (its VM's "
        "bind mounts carry no Unix sockets), and when the folder's path is too long for a Unix socket.",
    )
    use_init = Bool(
        True,
        config=True,
        help="Run an init process (docker --init) as PID 1 so that processes the kernel spawns "
        "are reaped and signals are forwarded.",
    )
    docker_host = Unicode(
        config=True,
        help="Engine address for this kernel. Default: c.MLContainer.docker_host (shared with the "
        "panel and the CLI), which defaults to DOCKER_HOST.",
    )
    placement = Unicode(
        "local",
        config=True,
        help="Where the kernel runs (engines/registry.py): 'local' (a container on the engine at docker_host) or "
        "'swarm' (a service task on the Docker Swarm whose manager is docker_host, on whichever node has room and "
        "the GPUs asked for: --gpus N reserves N of the nodes' NVIDIA-GPU generic resources). Swarm "
        "kernels need the workspace at the same path on every node; their cache is each node's own "
        "volume, or a folder every node mounts (cache_volume = its path); they are interrupted by "
        "message. docs/swarm.md.",
    )
    placement_timeout = CFloat(
        60.0,
        config=True,
        help="placement 'swarm' or 'slurm': seconds a kernel's task (its Slurm job) may wait for a node "
        "with room (and its GPUs) before the start fails with the scheduler's reason (Slurm's: why the "
        "job waits and its estimated start); the job is then cancelled.",
    )
    slurm_login = Unicode(
        config=True,
        help="placement 'slurm': how this server runs Slurm's tools (sbatch, srun, squeue, scancel) as "
        "the user on the cluster's login node, as a command line split into an argv (never run by a "
        "shell here): empty when the server runs on the login node, 'ssh login1' where it runs "
        "elsewhere. The kernel runs as the user the login node says (`id`). Default: MLCONTAINER_SLURM_LOGIN.",
    )
    slurm = Dict(
        per_key_traits={key: Unicode() for key in ("partition", "time", "account", "qos", "gpu_type", "store", "hold")},
        config=True,
        help="placement 'slurm': what the kernel's job asks of Slurm besides --gpus, memory and cpus: "
        "'partition', 'time' (the time limit, as sbatch takes it: '2:00:00'), 'account', 'qos', 'gpu_type' "
        "(the GPUs' gres type, e.g. 'h100': --gpus 1 asks for gpu:h100:1); and "
        "'store', the user's own folder on the cluster's shared file system for unpacked images, "
        "kernels' bundles and the cache ('{user}' is the user's name; default "
        "~/.cache/mlcontainer/slurm); 'hold', seconds a shut-down kernel's job stays allocated for the "
        "next kernel of this kernelspec, which then starts in it without queueing (a warm start; off by "
        "default: the held job counts against the user's share while it waits). The workspace must be "
        "on the shared file system, at the same path.",
    )
    pull = Unicode(
        "auto",
        config=True,
        help="What a start does when the kernel's image is not on the engine: 'auto' pulls it "
        "(progress in the server log, and in the panel as a pull job that Cancel stops, which "
        "fails the start), except the images this project builds here (mlcontainer-…/, "
        "…-ipykernel), which no registry has; 'never' fails the start at once, as "
        "`jupyter mlcontainer pull` would be needed first. A pull that fails gives the "
        "registry's reason (not found, no access, no registry reachable).",
    )
    startup_timeout = Float(
        120.0,
        config=True,
        help="Seconds a starting kernel may take to open all five of its ports (checked through "
        "the published ports, for any kernel). Past it the start fails with the kernel's last "
        "output and the container is removed; raise it for images that import slowly from slow disks.",
    )

    warm_pool_size = Integer(
        min=0,
        config=True,
        help="Spare containers kept started for this kernelspec once it has been used, so that the "
        "next start claims one instead of waiting for a container and the image's imports (a warm "
        "start answers in a fraction of a cold start's time). Each idle spare holds a Python process "
        "with ipykernel imported (30-60 MB). 0 turns the pool off. Default: MLCONTAINER_WARM_POOL, else 1 "
        "in a Jupyter server (a kernel manager made by a MultiKernelManager) and 0 for a kernel manager "
        "of its own (nbclient, nbconvert --execute, papermill, jupyter console): its first start is cold "
        "either way and the spare would be removed unused at exit. See the README's warm pool section.",
    )
    warm_pool_idle_timeout = Float(
        3600.0,
        config=True,
        help="Seconds after the last start of a kernelspec when its spares are removed: "
        "kernelspecs nobody used for that long hold no containers.",
    )
    warm_restart = Bool(
        True,
        config=True,
        help="Restart a kernel in its own container where the engine is on this host: the kernel runs "
        "under a small keeper process, and a restart (JupyterLab's, or any restart that first asks the "
        "kernel to shut down) forks the new kernel from it, already imported, so connected clients "
        "keep their ports or sockets and the restart costs about a warm start. As on a local kernel's "
        "restart, files the old kernel left in the container's own /tmp stay; what it left running is "
        "killed. A restart after a kernel died, a forced one, or one whose kernelspec, settings or "
        "image changed starts a new container (logged with the reason). False: every restart starts "
        "a new container.",
    )
    engine_return_timeout = Float(
        120.0,
        config=True,
        help="Seconds the automatic restart of a kernel whose container went away with its engine "
        "(dockerd stopped or restarted) waits for the engine to answer again; the notebook shows "
        "the kernel restarting meanwhile. 0: do not wait (the restart fails at once and is retried).",
    )

    @validate("placement")
    def _valid_placement(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).lower()
        if value not in placements():
            raise TraitError(f"placement {proposal['value']!r}: one of {', '.join(map(repr, placements()))}")
        return value

    @default("docker_host")
    def _docker_host_default(self) -> str:
        return MLContainer(parent=self).docker_host

    @default("slurm_login")
    def _slurm_login_default(self) -> str:
        return _env_default("MLCONTAINER_SLURM_LOGIN", "")

    @default("warm_pool_size")
    def _warm_pool_default(self) -> int:
        # A Jupyter server starts kernels all day: one spare per used kernelspec. A batch run
        # (nbconvert, papermill: a kernel manager of its own) would make a spare only to throw
        # it away at exit, so it makes none unless asked.
        from jupyter_client.multikernelmanager import MultiKernelManager

        served = isinstance(getattr(self.parent, "parent", None), MultiKernelManager)
        raw = _env_default("MLCONTAINER_WARM_POOL", "1" if served else "0")
        try:
            return max(0, int(raw))
        except ValueError:
            raise ConfigurationError(f"MLCONTAINER_WARM_POOL={raw!r}: give a number of spares (0 turns the pool off)") from None

    @default("gpus")
    def _gpus_default(self) -> str:
        return _env_default("MLCONTAINER_GPUS", "auto")

    @default("memory")
    def _memory_default(self) -> str:
        return _env_default("MLCONTAINER_MEMORY", "")

    @default("cpus")
    def _cpus_default(self) -> str:
        return _env_default("MLCONTAINER_CPUS", "")

    @default("shm_size")
    def _shm_default(self) -> str:
        return _env_default("MLCONTAINER_SHM_SIZE", "auto")

    @default("cache_volume")
    def _cache_volume_default(self) -> str:
        return MLContainer(parent=self).cache_volume
