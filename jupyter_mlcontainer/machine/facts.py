"""The machine side of a frozen notebook: what its image's GPU stack was built for and what it
ran on, as recorded by freeze and read back by restore and by a kernel's start.

Freeze puts these facts into the notebook's record (``metadata.mlcontainer.machine``) and, as
one JSON LABEL (plus readable ones), into the frozen Dockerfile, so an image built from it
carries them. Both come back from someone else: :func:`machine_from_record` keeps only values
of the shapes written here, so nothing else reaches a check, a message or a file.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .gpu import GpuState

FACTS_VERSION = 1
MACHINE_LABEL = "org.jupyter.mlcontainer.machine"

_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}$")
_ARCH = re.compile(r"^(sm|compute)_\d{2,3}[a-z]?$")
_NAME = re.compile(r"^[A-Za-z0-9 ._()/+-]{1,80}$")
_CAPABILITY = re.compile(r"^\d{1,2}\.\d{1,2}$")
_OPTION = re.compile(r"^[0-9A-Za-z.,:_-]{0,80}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}$")
FRAMEWORKS = ("torch", "tensorflow", "jax")
FRAMEWORK_NAMES = {"torch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX"}


def _version(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if _VERSION.match(text) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 50 else None


@dataclass
class Framework:
    """A GPU framework in the image: its version, the CUDA it was built with (None: a CPU
    build) and the GPU architectures it carries code for (``sm_90``: binary; ``compute_90``: PTX)."""

    version: str
    cuda: str | None = None
    cudnn: str | None = None
    arch: list[str] = field(default_factory=list)


@dataclass
class RecordedGpu:
    """One GPU the kernel had when it was frozen."""

    name: str
    compute_capability: str | None = None  # "9.0"
    memory_total: int | None = None  # bytes
    mig: bool = False


@dataclass
class MachineFacts:
    """What freeze records about the machine side of a kernel (see the module docstring)."""

    cuda_runtime: str | None = None  # the image's CUDA toolkit runtime (nvidia/cuda images)
    cudnn: str | None = None
    nccl: str | None = None
    frameworks: dict[str, Framework] = field(default_factory=dict)
    gpus: list[RecordedGpu] = field(default_factory=list)
    gpus_known: bool = True  # False: the kernel ran on a cluster node, whose GPUs NVML here does not see
    driver: str | None = None
    driver_cuda: str | None = None  # the highest CUDA the driver supports (NVML)
    version: int = FACTS_VERSION

    def needed_cuda(self) -> tuple[str, str] | None:
        """(the highest CUDA version the image's GPU code needs, what needs it), or None for a
        CPU-only image: the toolkit runtime, or a framework's own CUDA build (pip wheels of
        PyTorch bring their runtime, whatever the image's toolkit)."""
        wanted = [(self.cuda_runtime, "the image's CUDA runtime")] if self.cuda_runtime else []
        wanted += [(fw.cuda, f"{FRAMEWORK_NAMES.get(name, name)} {fw.version}")
                   for name, fw in self.frameworks.items() if fw.cuda]
        if not wanted:
            return None
        return max(wanted, key=lambda pair: version_tuple(pair[0]))

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: ``CUDA 12.4.1, cuDNN 9.1.0, NCCL 2.21.5; PyTorch 2.5.1+cu124 (CUDA 12.4,
        sm_80 sm_90); on NVIDIA H100 80GB HBM3 (sm_90, 80 GiB), driver 550.54.15 (CUDA 12.4)``."""
        stack = ", ".join(f"{name} {value}" for name, value in
                          (("CUDA", self.cuda_runtime), ("cuDNN", self.cudnn), ("NCCL", self.nccl)) if value)
        builds = "; ".join(
            f"{FRAMEWORK_NAMES.get(name, name)} {fw.version} ("
            + (f"CUDA {fw.cuda}" + (f", {' '.join(fw.arch)}" if fw.arch else "") if fw.cuda else "CPU build") + ")"
            for name, fw in self.frameworks.items())
        if not self.gpus_known:
            where = "on a cluster node (its GPUs and driver are not recorded)"
        elif self.gpus:
            where = "on " + "; ".join(describe_gpu(gpu) for gpu in self.gpus)
        else:
            where = "without a GPU"
        if self.gpus_known and self.driver:
            where += f", driver {self.driver}" + (f" (CUDA {self.driver_cuda})" if self.driver_cuda else "")
        return "; ".join(part for part in (stack or "no CUDA toolkit in the image", builds, where) if part)

    def labels(self) -> dict[str, str]:
        """LABELs for the frozen Dockerfile: the whole facts as JSON (what restore and a
        kernel's start read back) and readable ones for ``docker inspect``."""
        labels = {MACHINE_LABEL: json.dumps(self.to_record(), sort_keys=True, separators=(",", ":"))}
        for key, value in (("cuda-runtime", self.cuda_runtime), ("cudnn", self.cudnn), ("nccl", self.nccl),
                           ("driver-cuda", self.driver_cuda)):
            if value:
                labels[f"org.jupyter.mlcontainer.{key}"] = value
        for name, fw in self.frameworks.items():
            if fw.cuda:
                labels[f"org.jupyter.mlcontainer.{name}-cuda"] = fw.cuda
            if fw.arch:
                labels[f"org.jupyter.mlcontainer.{name}-arch"] = " ".join(fw.arch)
        if self.gpus:
            labels["org.jupyter.mlcontainer.gpus"] = "; ".join(describe_gpu(gpu) for gpu in self.gpus)
        return labels


def version_tuple(text: str | None) -> tuple[int, ...]:
    """``"12.4.1"`` -> (12, 4, 1); the leading numbers of a version ("2.4.0+cu121" -> (2, 4, 0))."""
    numbers = re.match(r"^(\d+(?:\.\d+)*)", text or "")
    return tuple(int(n) for n in numbers.group(1).split(".")) if numbers else ()


def major_minor(text: str | None) -> str | None:
    parts = version_tuple(text)
    return ".".join(str(n) for n in parts[:2]) if len(parts) >= 2 else (str(parts[0]) if parts else None)


def describe_gpu(gpu: RecordedGpu) -> str:
    """``NVIDIA H100 80GB HBM3 (sm_90, 80 GiB, MIG)``."""
    details = [f"sm_{gpu.compute_capability.replace('.', '')}"] if gpu.compute_capability else []
    if gpu.memory_total:
        details.append(f"{gpu.memory_total / 2**30:.0f} GiB")
    if gpu.mig:
        details.append("MIG")
    return gpu.name + (f" ({', '.join(details)})" if details else "")


def _framework(raw: Any) -> Framework | None:
    if not isinstance(raw, dict) or not _version(raw.get("version")):
        return None
    arch = [a for a in raw.get("arch") or [] if isinstance(a, str) and _ARCH.match(a)] if isinstance(raw.get("arch"), list) else []
    cudnn = raw.get("cudnn")
    return Framework(version=str(raw["version"]).strip(), cuda=_version(raw.get("cuda")),
                     cudnn=_version(cudnn) if cudnn is not None else None, arch=arch[:64])


def machine_facts(stack: dict[str, Any], state: GpuState | None, kernel_gpus: list[int] | None) -> MachineFacts:
    """The facts of a kernel being frozen: ``stack`` is gpu_stack.py's answer from inside its
    container (untrusted text, cleaned here); ``state`` this host's GPUs (None: the kernel runs
    elsewhere, a cluster node); ``kernel_gpus`` the indices of the GPUs the kernel had."""
    wheels = stack.get("wheels") if isinstance(stack.get("wheels"), dict) else {}
    raw_frameworks = stack.get("frameworks") if isinstance(stack.get("frameworks"), dict) else {}
    frameworks = {name: fw for name in FRAMEWORKS if (fw := _framework(raw_frameworks.get(name))) is not None}
    facts = MachineFacts(
        cuda_runtime=_version(stack.get("cuda_runtime")),
        cudnn=_version(stack.get("cudnn")) or _version(wheels.get("cudnn")),
        nccl=_version(stack.get("nccl")) or _version(wheels.get("nccl")),
        frameworks=frameworks,
        gpus_known=state is not None,
    )
    if state is not None:
        facts.driver, facts.driver_cuda = _version(state.driver_version), _version(state.cuda_driver_version)
        for gpu in state.gpus:
            if kernel_gpus is not None and gpu.index in kernel_gpus:
                facts.gpus.append(RecordedGpu(
                    name=gpu.name if _NAME.match(gpu.name or "") else "unnamed GPU",
                    compute_capability=gpu.compute_capability if _CAPABILITY.match(gpu.compute_capability or "") else None,
                    memory_total=_int(gpu.memory_total), mig=bool(gpu.mig_mode)))
    return facts


def machine_from_record(raw: Any) -> MachineFacts | None:
    """The facts a record (or a LABEL's JSON) holds, keeping only values of the shapes freeze
    writes; None when there are none (an older record) or they are not facts at all."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict) or not isinstance(raw.get("version"), int):
        return None
    frameworks = raw.get("frameworks") if isinstance(raw.get("frameworks"), dict) else {}
    gpus = []
    for gpu in raw.get("gpus") if isinstance(raw.get("gpus"), list) else []:
        if isinstance(gpu, dict) and isinstance(gpu.get("name"), str) and _NAME.match(gpu["name"]):
            capability = gpu.get("compute_capability")
            gpus.append(RecordedGpu(
                name=gpu["name"], compute_capability=capability if isinstance(capability, str) and _CAPABILITY.match(capability) else None,
                memory_total=_int(gpu.get("memory_total")), mig=gpu.get("mig") is True))
    return MachineFacts(
        cuda_runtime=_version(raw.get("cuda_runtime")), cudnn=_version(raw.get("cudnn")), nccl=_version(raw.get("nccl")),
        frameworks={name: fw for name in FRAMEWORKS if (fw := _framework(frameworks.get(name))) is not None},
        gpus=gpus[:64], gpus_known=raw.get("gpus_known") is not False,
        driver=_version(raw.get("driver")), driver_cuda=_version(raw.get("driver_cuda")), version=raw["version"],
    )


def kernel_options(raw: Any) -> dict[str, Any]:
    """The kernelspec options a record holds (how the notebook's kernel ran: ``gpus``,
    ``memory``, ``cpus``, ``shm_size``, and the names of the variables it set), kept only in
    the shapes freeze writes."""
    if not isinstance(raw, dict):
        return {}
    options: dict[str, Any] = {
        key: raw[key] for key in ("gpus", "memory", "cpus", "shm_size")
        if isinstance(raw.get(key), str) and _OPTION.match(raw[key])
    }
    if isinstance(raw.get("env"), list):
        options["env"] = [name for name in raw["env"] if isinstance(name, str) and _ENV_NAME.match(name)][:200]
    return options
