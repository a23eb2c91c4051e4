"""A container kernelspec's options as the front doors take them (CLI flags, a REST body): the
one place where they become the kernelspec's ``config``. Pure; kernels/kernelspecs.py checks
each value."""

from __future__ import annotations

from typing import Any

from .errors import KernelSpecError

# Options a kernelspec may carry; each is a config trait of DockerKernelProvisioner.
OPTION_KEYS = ("gpus", "memory", "cpus", "shm_size", "env", "cache_volume", "network", "workspace", "placement",
               "docker_host", "placement_timeout", "kernel_transport", "transport_encryption", "slurm_login", "slurm", "pull")
# What a kernel's Slurm job may be asked ("slurm" option; engines/slurm.py).
SLURM_KEYS = ("partition", "time", "account", "qos", "gpu_type", "store", "hold")


def parse_env_pairs(pairs: list[str] | None) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> dict, with a clear error for a pair without '='."""
    env = {}
    for pair in pairs or []:
        if not isinstance(pair, str):
            raise KernelSpecError(f"env {pair!r}: expected KEY=VALUE")
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise KernelSpecError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def kernel_options(
    *, gpus: Any = None, memory: Any = None, cpus: Any = None, shm_size: Any = None, env: Any = None,
    options: Any = None,
) -> dict[str, Any]:
    """The options of a kernelspec from the front doors' values: the usual ones by name, ``env``
    as a mapping or as ``KEY=VALUE`` strings, any other option (placement, docker_host, ...) in
    ``options``, a mapping or ``KEY=VALUE`` strings (``slurm.partition=gpu`` is a part of the
    ``slurm`` option). Unknown names are refused when the
    kernelspec is written (KernelSpecError)."""
    config: dict[str, Any] = {"gpus": gpus, "memory": memory, "cpus": cpus, "shm_size": shm_size,
                              "env": _pairs(env, "env") or {}}
    for key, value in _pairs(options, "option").items():
        group, dot, part = key.partition(".")
        if dot and group == "slurm":  # slurm.partition=gpu (a CLI pair) -> {"slurm": {"partition": "gpu"}}
            config.setdefault("slurm", {})[part] = value
        else:
            config[key] = value
    return config


def _pairs(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return parse_env_pairs(list(value))
    raise KernelSpecError(f"{what}: give names and values ({{\"NAME\": \"value\"}} or [\"NAME=value\"])")
