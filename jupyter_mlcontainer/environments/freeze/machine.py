"""The machine side of a freeze: the GPU stack read inside the kernel's container
(scripts/gpu_stack.py), the GPUs the kernel had and the options it ran with, read from its
container; machine/facts.py turns them into the record's facts."""

from __future__ import annotations

import json
from typing import Any

from ...machine.facts import MachineFacts, machine_facts
from ...machine.gpu import GpuState, get_monitor
from .inventory import script
from .runner import Runner


def gpu_stack(run: Runner, python: str, warnings: list[str]) -> dict[str, Any]:
    """gpu_stack.py's answer from inside the container; {} (and a warning) when it gives none."""
    code, out, err = run([python, "-c", script("gpu_stack")])
    lines = (out or "").strip().splitlines()
    if code == 0 and lines:
        try:
            answer = json.loads(lines[-1])
            if isinstance(answer, dict):
                return answer
        except ValueError:
            pass
    warnings.append("The image's CUDA, cuDNN and framework builds could not be read: the record names none of "
                    "them, so a restore cannot check this host's driver and GPUs against them.")
    return {}


def kernel_gpu_indices(attrs: dict[str, Any], state: GpuState) -> list[int]:
    """The indices of this host's GPUs the container was given (its device requests: a count,
    "all", indices, UUIDs or CDI names)."""
    everything = [gpu.index for gpu in state.gpus]
    by_uuid = {gpu.uuid.upper(): gpu.index for gpu in state.gpus if gpu.uuid}
    found: list[int] = []
    for request in (attrs.get("HostConfig") or {}).get("DeviceRequests") or []:
        ids = [str(device).rpartition("=")[2] for device in request.get("DeviceIDs") or []]
        count = request.get("Count") or 0
        if "all" in ids or (not ids and count == -1):
            return everything
        if not ids:
            found += everything[:count]
        for device in ids:
            if device.isdigit() and int(device) in everything:
                found.append(int(device))
            elif device.upper() in by_uuid:
                found.append(by_uuid[device.upper()])
    return sorted(set(found))


def _size(value: Any) -> str:
    """Bytes as an option value ("8g", "512m"); "" for none."""
    if not isinstance(value, int) or value <= 0:
        return ""
    for unit, size in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def kernel_options_of(attrs: dict[str, Any], gpus: list[int] | None, env_names: list[str]) -> dict[str, Any]:
    """The options the kernel ran with, as kernelspec option values: what a restored kernelspec
    gets (``gpus``: a count, "none"; memory, CPUs and /dev/shm as the container had them) and
    the names of the variables the user set (their values may be secrets: never recorded)."""
    host = attrs.get("HostConfig") or {}
    options: dict[str, Any] = {}
    if gpus is not None:
        options["gpus"] = str(len(gpus)) if gpus else "none"
    nano = host.get("NanoCpus") or 0
    for key, value in (("memory", _size(host.get("Memory"))), ("shm_size", _size(host.get("ShmSize"))),
                       ("cpus", f"{nano / 1e9:g}" if isinstance(nano, int) and nano > 0 else "")):
        if value:
            options[key] = value
    options["env"] = sorted(env_names)
    return options


def frozen_machine(run: Runner, python: str, attrs: dict[str, Any], *, on_this_host: bool,
                   warnings: list[str]) -> tuple[MachineFacts, list[int] | None]:
    """(the machine facts of the kernel in the container ``attrs``, the indices of its GPUs or
    None when unknown: a kernel on a cluster node has its node's GPUs, which NVML here does not see)."""
    stack = gpu_stack(run, python, warnings)
    if not on_this_host:
        return machine_facts(stack, None, None), None
    state = get_monitor().snapshot(with_processes=False)
    indices = kernel_gpu_indices(attrs, state)
    return machine_facts(stack, state, indices), indices
