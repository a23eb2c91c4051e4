"""A kernel's Slurm job from a :class:`~.base.ContainerSpec`, and what is read back from Slurm's
text answers: pure, unit-tested (tests/unit/test_slurm_spec.py); engines/slurm.py runs them.

* the job's ``sbatch`` options (resources, the scheduler options, the kernel's labels in its
  comment) and what a held job must match for a kernel to start in it (:func:`warm_key`);
* the connection file the kernel gets (the ports it binds on its node) and the ports it names;
* the GPUs Slurm allocated (``scontrol -d show job``) and a node's address (``scontrol show node``).
"""

from __future__ import annotations

import dataclasses
import json
import re

from ..core.errors import EngineError, GpuRequestUnsatisfiable
from ..core.labels import LABEL_IMAGE, LABEL_KERNEL_ID, LABEL_OWNER, LABEL_ROLE
from .base import CONNECTION_DIR_IN_CONTAINER, ContainerSpec, MountSpec, parse_size

# What a kernel's job runs besides the kernel: nothing, until the job is cancelled.
HOLDER_SCRIPT = "exec sleep infinity"
# A kernel's labels that go with its job (its --comment), and the label naming its store: a later
# server (the orphan clean-up, `status`) reads the job by them.
COMMENT_LABELS = (LABEL_ROLE, LABEL_OWNER, LABEL_KERNEL_ID, LABEL_IMAGE)
STORE_LABEL = "org.jupyter.mlcontainer.slurm-store"
FOLDER_LABEL = "org.jupyter.mlcontainer.slurm-folder"  # the kernel's folder's name in the store
SCHEDULER_OPTIONS = ("partition", "time", "account", "qos")  # passed to sbatch as they are


def job_comment(spec: ContainerSpec, name: str, store: str) -> str:
    """The job's ``--comment``: the labels a later server reads a kernel's job by, its store and
    its folder there (set again when a held job is given to another kernel)."""
    return json.dumps({**{key: spec.labels[key] for key in COMMENT_LABELS if key in spec.labels},
                       STORE_LABEL: store, FOLDER_LABEL: name}, separators=(",", ":"))


def sbatch_options(spec: ContainerSpec, name: str, folder: str, store: str) -> list[str]:
    """The options of the job that holds a kernel's allocation (its script: :data:`HOLDER_SCRIPT`)."""
    comment = job_comment(spec, name, store)
    # --no-requeue: a kernel's state dies with its node, and that death is named, not hidden by a
    # silent restart elsewhere (Slurm requeues by default).
    options = ["--parsable", "--no-requeue", "-J", name, "-N1", "-n1", f"--output={folder}/job.log",
               f"--comment={comment}"]
    if spec.nano_cpus:
        options.append(f"--cpus-per-task={max(1, round(spec.nano_cpus / 1e9))}")
    if spec.memory:
        options.append(f"--mem={max(1, parse_size(spec.memory) // (1024 * 1024))}M")
    count = gpu_count(spec)
    if count:  # typed (gpu:h100:1) when the kernelspec names the type
        kind = spec.scheduler.get("gpu_type")
        options.append(f"--gres=gpu:{kind}:{count}" if kind else f"--gres=gpu:{count}")
    for option in SCHEDULER_OPTIONS:
        if spec.scheduler.get(option):
            options.append(f"--{option}={spec.scheduler[option]}")
    return options


def gpu_count(spec: ContainerSpec) -> int:
    """How many GPUs the kernel asks for; Slurm picks which (ids or 'all' are refused)."""
    count = 0
    for request in spec.gpus:
        if request.device_ids:
            raise GpuRequestUnsatisfiable("A Slurm kernel asks for a number of GPUs (--gpus N): Slurm picks which")
        if request.count == -1:
            raise GpuRequestUnsatisfiable("A Slurm kernel asks for a number of GPUs (--gpus N), not all of a node's")
        count += request.count or 0
    return count


def warm_key(spec: ContainerSpec) -> str:
    """What a held job must match for a kernel to start in it: the image and every resource and
    scheduler option its job was submitted with."""
    return "warm:" + json.dumps([spec.image, spec.memory, spec.nano_cpus, gpu_count(spec),
                                 sorted(spec.scheduler.items())], default=str)


def hold_seconds(spec: ContainerSpec) -> float:
    """The kernelspec's 'hold' (seconds a shut-down kernel's job stays allocated); 0: off."""
    try:
        return max(0.0, float(spec.scheduler.get("hold") or 0))
    except ValueError:
        return 0.0


def comment_labels(comment: str) -> dict[str, str]:
    """The labels a kernel's job carries in its comment ({} for any other job of the user's)."""
    try:
        labels = json.loads(comment) if comment.startswith("{") else {}
    except ValueError:
        return {}
    if not isinstance(labels, dict) or LABEL_ROLE not in labels:
        return {}
    return {str(key): str(value) for key, value in labels.items()}


def matches(labels: dict[str, str], wanted: str) -> bool:
    """``wanted`` (``key`` or ``key=value``, as an engine's label filter) holds for ``labels``."""
    key, _, value = wanted.partition("=")
    return key in labels and (not value or labels[key] == value)


def ports_of(spec: ContainerSpec) -> dict[str, int]:
    """The ports the launch's connection file names (field -> port): the launcher reads the
    kernel's ports back as these container ports' published ones."""
    for file in spec.files:
        if file.path.startswith(CONNECTION_DIR_IN_CONTAINER + "/") and file.path.endswith(".json"):
            info = json.loads(file.content)
            return {field: int(value) for field, value in info.items() if field.endswith("_port")}
    raise EngineError("A Slurm kernel's launch has no connection file to give it (the tcp transport is needed)")


def ports_asked(connection: bytes, spec: ContainerSpec) -> bytes:
    """The connection file with the ports the kernel binds on its node: a restart's previous ones
    (``spec.ports``' host ports: on the same node, its clients keep working), else 0 for each, so
    that the kernel binds ports its node has free (there is no network namespace to give it fixed
    ones) and writes them back."""
    info = json.loads(connection)
    for field in list(info):
        if field.endswith("_port"):
            info[field] = spec.ports.get(int(info[field])) or 0
    return json.dumps(info).encode()


def with_mounts(spec: ContainerSpec, mounts: list[MountSpec]) -> ContainerSpec:
    return dataclasses.replace(spec, mounts=mounts)


_GPU_INDICES = re.compile(r"(?:^|,)gpu(?::[^:(,]+)?:\d+\(IDX:([0-9,-]+)\)")
_GPU_COUNT = re.compile(r"(?:^|,)gpu(?::[^:(,]+)?:(\d+)")


def allocated_gpu_devices(scontrol_job: str) -> list[str]:
    """The device nodes of the GPUs ``scontrol -d show job`` says the job holds
    (``GRES=gpu:2(IDX:0-1)``, ``gpu:h100:3(IDX:0,2-3)``, other gres such as ``shard:...`` beside
    them). Slurm's index is the GPU's place in gres.conf's ``File=/dev/nvidia[0-N]`` (docs/slurm.md)."""
    devices: list[str] = []
    for field in scontrol_job.split():
        if not field.startswith("GRES="):
            continue
        for indices in _GPU_INDICES.findall(field[len("GRES="):]):
            for part in filter(None, indices.split(",")):
                first, _, last = part.partition("-")
                devices += [f"/dev/nvidia{i}" for i in range(int(first), int(last or first) + 1)]
    return devices


def node_gpu_count(sinfo_gres: str) -> int:
    """How many GPUs a node has, from ``sinfo``'s ``%G`` (``gpu:h100:4(S:0-1),shard:8``)."""
    return sum(int(count) for count in _GPU_COUNT.findall(sinfo_gres))


def node_address(scontrol_node: str, node: str) -> str:
    """A node's ``NodeAddr`` from ``scontrol show node`` (its name when there is none)."""
    fields = scontrol_node.split()
    return next((f.split("=", 1)[1] for f in fields if f.startswith("NodeAddr=")), node)
