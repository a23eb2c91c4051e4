"""Whether this host can run a frozen notebook's GPU code: checks of its recorded machine facts
(facts.py) against this host's GPUs and driver (NVML). Pure: no engine, no NVML call here.

Restore calls :func:`check_host` before it builds or pulls anything (a check that ``blocks``
stops it), a kernel's start calls it for an image that carries the facts as a LABEL, and
``jupyter mlcontainer doctor --notebook`` shows the same checks. Each check says what holds or
not, why, and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .facts import FRAMEWORK_NAMES, MachineFacts, RecordedGpu, describe_gpu, major_minor, version_tuple
from .gpu import GpuInfo, GpuState

HOLDS, WARNING, BLOCKS = "holds", "warning", "blocks"

# The driver each CUDA release needs in full (Linux, the release notes' "toolkit driver version"
# table), and the lowest driver of a CUDA major that runs its later minors under minor-version
# compatibility. A driver between the two runs the image, except PTX that must be JIT-compiled
# for a newer CUDA and the APIs a newer driver brings.
FULL_SUPPORT_DRIVER = {
    (11, 0): "450.36.06", (11, 1): "455.23", (11, 2): "460.27.03", (11, 3): "465.19.01", (11, 4): "470.42.01",
    (11, 5): "495.29.05", (11, 6): "510.39.01", (11, 7): "515.43.04", (11, 8): "520.61.05",
    (12, 0): "525.60.13", (12, 1): "530.30.02", (12, 2): "535.54.03", (12, 3): "545.23.06", (12, 4): "550.54.14",
    (12, 5): "555.42.02", (12, 6): "560.28.03", (12, 8): "570.26", (12, 9): "575.51.03", (13, 0): "580.65.06",
}
MINOR_COMPAT_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}


@dataclass
class HostCheck:
    """One check: ``verdict`` is holds / warning / blocks; ``fix`` what to do when it does not hold."""

    name: str
    verdict: str
    reason: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.verdict}: {self.reason}" + (f" {self.fix}" if self.fix else "")


def blocking(checks: list[HostCheck]) -> list[HostCheck]:
    return [check for check in checks if check.verdict == BLOCKS]


def gpu_count_wanted(gpus_option: str | None, facts: MachineFacts | None) -> int | None:
    """How many GPUs the notebook's kernel used: from its ``gpus`` option, else the GPUs
    recorded; -1 for "all"; None when neither says."""
    option = (gpus_option or "").strip().lower()
    if option in ("none", "0", "void"):
        return 0
    if option == "all":
        return -1
    if option.isdigit():
        return int(option)
    if option and option != "auto":
        return len([part for part in option.split(",") if part.strip()])
    if facts is not None and facts.gpus_known:
        return len(facts.gpus)
    return None


def check_host(facts: MachineFacts | None, state: GpuState, *, gpus: int | None,
               cuda_cells: list[int] | None = None) -> list[HostCheck]:
    """The checks of ``facts`` (None: an older record, nothing to check) on a host whose GPUs
    are ``state``, for a kernel that gets ``gpus`` of them (-1 all, 0 none, None unknown: as
    recorded). ``cuda_cells``: the notebook's cells that use CUDA (named when there is no GPU)."""
    if facts is None:
        return []
    here = state.gpus
    wanted = len(facts.gpus) if gpus is None else (len(here) if gpus == -1 else gpus)
    if not wanted and not facts.gpus:
        return [HostCheck("gpu", HOLDS, "The notebook ran without a GPU; so will the restored kernel.")]
    if not here:
        return [_no_gpu(facts, state, cuda_cells or [])]
    given = here[:wanted] if wanted else here
    checks = [HostCheck("gpu", HOLDS, f"{len(given)} GPU{'s' if len(given) != 1 else ''} here for the kernel: "
                        + "; ".join(_host_gpu(gpu) for gpu in given) + ".")]
    if wanted > len(here):
        checks.append(HostCheck("gpu-count", WARNING,
                                f"The notebook's kernel had {wanted} GPUs; this host has {len(here)}: the kernel gets {len(here)}.",
                                "Multi-GPU cells (DataParallel, DDP with a fixed world size) may need a smaller count."))
    checks += _driver_checks(facts, state)
    checks += _arch_checks(facts, given)
    checks += _model_checks(facts.gpus, given)
    return checks


def _host_gpu(gpu: GpuInfo) -> str:
    return describe_gpu(RecordedGpu(gpu.name, gpu.compute_capability, gpu.memory_total, bool(gpu.mig_mode)))


def _no_gpu(facts: MachineFacts, state: GpuState, cuda_cells: list[int]) -> HostCheck:
    ran_on = "; ".join(describe_gpu(gpu) for gpu in facts.gpus) or "a GPU"
    cells = (f" Cells that use CUDA and may fail: {', '.join(str(n) for n in cuda_cells)}." if cuda_cells
             else " No cell names CUDA; code that picks the GPU when there is one runs on the CPU.")
    return HostCheck(
        "gpu", WARNING,
        f"No GPU here ({state.reason or 'NVML sees none'}); the notebook ran on {ran_on}. The restored kernel runs on the CPU."
        + cells,
        "Restore on a machine with an NVIDIA GPU and its driver to run it as it ran.")


def _driver_checks(facts: MachineFacts, state: GpuState) -> list[HostCheck]:
    needed = facts.needed_cuda()
    if needed is None:
        return [HostCheck("driver", HOLDS, "The image's GPU code needs no CUDA runtime of its own (no CUDA build found).")]
    cuda, what = needed
    need = version_tuple(cuda)[:2]
    have = version_tuple(state.cuda_driver_version)[:2]
    driver = state.driver_version or "unknown"
    if not have:
        return [HostCheck("driver", WARNING, f"{what} needs CUDA {major_minor(cuda)}; this host's driver ({driver}) "
                          "did not say which CUDA it supports.", "Check `nvidia-smi`'s CUDA Version.")]
    full = FULL_SUPPORT_DRIVER.get(need)
    update = f"Update the driver to {full} or newer" if full else f"Update the driver to one for CUDA {major_minor(cuda)}"
    if have >= need:
        return [HostCheck("driver", HOLDS, f"Driver {driver} supports CUDA up to {major_minor(state.cuda_driver_version)}; "
                          f"{what} needs {major_minor(cuda)}.")]
    compat = f"cuda-compat-{need[0]}-{need[1]}"
    minimum = MINOR_COMPAT_DRIVER.get(need[0])
    if have[0] == need[0] and minimum and version_tuple(driver) >= version_tuple(minimum):
        return [HostCheck(
            "driver", WARNING,
            f"Driver {driver} supports CUDA {major_minor(state.cuda_driver_version)}; {what} needs {major_minor(cuda)}. "
            f"It runs under CUDA's minor-version compatibility (drivers {minimum} and newer run any CUDA {need[0]}.x), "
            f"except PTX that must be JIT-compiled for CUDA {major_minor(cuda)} and features new in it.",
            f"{update} for full support, or on a data-center GPU add {compat} to the image (forward compatibility).")]
    return [HostCheck(
        "driver", BLOCKS,
        f"Driver {driver} supports CUDA up to {major_minor(state.cuda_driver_version)}; {what} needs {major_minor(cuda)}: "
        "CUDA fails to initialise (torch.cuda.is_available() is False, 'CUDA driver version is insufficient').",
        f"{update}, or on a data-center GPU add {compat} to the image (forward compatibility), or restore "
        f"from an image built for CUDA {major_minor(state.cuda_driver_version)} or older.")]


def _arch_number(arch: str, prefix: str) -> tuple[int, int] | None:
    """``sm_86`` -> (8, 6); ``sm_90a`` (code for that GPU alone) -> (9, 0); else None."""
    digits = arch[len(prefix):].rstrip("abcdefghijklmnopqrstuvwxyz")
    return (int(digits) // 10, int(digits) % 10) if arch.startswith(prefix) and digits.isdigit() else None


def _runs_on(arch: list[str], capability: str) -> tuple[str, str]:
    """(verdict, how) for code built for ``arch`` on a GPU of ``capability`` ("8.6"): binary
    code runs on its own major and any later minor; PTX is JIT-compiled for newer GPUs."""
    major, minor = (int(n) for n in capability.split("."))
    binaries = [number for a in arch if (number := _arch_number(a, "sm_"))]
    portable = [number for a in arch if a[-1].isdigit() and (number := _arch_number(a, "sm_"))]
    ptx = [number for a in arch if (number := _arch_number(a, "compute_"))]
    if (major, minor) in binaries:
        return HOLDS, f"sm_{major}{minor} is in its build"
    same_major = [b for b in portable if b[0] == major and b[1] <= minor]
    if same_major:
        b = max(same_major)
        return HOLDS, f"its sm_{b[0]}{b[1]} code runs on sm_{major}{minor}"
    older_ptx = [p for p in ptx if p <= (major, minor)]
    if older_ptx:
        p = max(older_ptx)
        return WARNING, (f"it has no sm_{major}{minor} code; its compute_{p[0]}{p[1]} PTX is JIT-compiled at first use "
                         "(a slow first run, and slower kernels than a native build)")
    return BLOCKS, f"it has no code for sm_{major}{minor}"


def _arch_checks(facts: MachineFacts, given: list[GpuInfo]) -> list[HostCheck]:
    checks = []
    for name, fw in facts.frameworks.items():
        label = f"{FRAMEWORK_NAMES.get(name, name)} {fw.version}"
        if not fw.cuda:
            checks.append(HostCheck(f"arch-{name}", WARNING, f"{label} is a CPU build: it will not use the GPU here.",
                                    "Install a CUDA build of it to use the GPU."))
            continue
        if not fw.arch:
            continue  # JAX names no architectures; nothing to compare
        built = f"{label} was built for {' '.join(fw.arch)}"
        for gpu in given:
            if not gpu.compute_capability:
                continue
            verdict, how = _runs_on(fw.arch, gpu.compute_capability)
            reason = f"{built}; GPU {gpu.index} ({gpu.name}) is sm_{gpu.compute_capability.replace('.', '')}: {how}."
            fix = ""
            if verdict == BLOCKS:
                reason += " Its GPU code fails with 'no kernel image is available for execution on the device'."
                fix = (f"Use a {FRAMEWORK_NAMES.get(name, name)} build that includes "
                       f"sm_{gpu.compute_capability.replace('.', '')} (usually one for a newer CUDA), or a GPU it was built for.")
            checks.append(HostCheck(f"arch-{name}", verdict, reason, fix))
    return _one_per_name(checks)


def _one_per_name(checks: list[HostCheck]) -> list[HostCheck]:
    """The worst check of each name (several GPUs give several lines for one framework)."""
    order = {HOLDS: 0, WARNING: 1, BLOCKS: 2}
    worst: dict[str, HostCheck] = {}
    for check in checks:
        if check.name not in worst or order[check.verdict] > order[worst[check.name].verdict]:
            worst[check.name] = check
    return list(worst.values())


def _model_checks(recorded: list[RecordedGpu], given: list[GpuInfo]) -> list[HostCheck]:
    if not recorded:
        return []
    checks = []
    before = recorded[0]
    models_here = sorted({gpu.name for gpu in given})
    if any(name != before.name for name in models_here):
        checks.append(HostCheck(
            "gpu-model", WARNING,
            f"The notebook ran on {describe_gpu(before)}; here: {', '.join(models_here)}. Numbers may differ "
            "(other kernels and TF32/matmul defaults chosen per GPU), and timings will.",
            "Compare results with a tolerance; pin torch.backends.cuda.matmul.allow_tf32 if it matters."))
    smallest = min((gpu.memory_total for gpu in given if gpu.memory_total), default=None)
    if before.memory_total and smallest and smallest < before.memory_total * 0.95:
        checks.append(HostCheck(
            "gpu-memory", WARNING,
            f"The notebook's GPU had {before.memory_total / 2**30:.0f} GiB; here {smallest / 2**30:.0f} GiB: "
            "a model or batch that fit may not ('CUDA out of memory').",
            "Lower the batch size, or use mixed precision or gradient checkpointing."))
    mig_then = any(gpu.mig for gpu in recorded)
    mig_now = any(gpu.mig_mode for gpu in given)
    if mig_then or mig_now:
        checks.append(HostCheck(
            "mig", WARNING,
            ("The notebook ran on a MIG slice" if mig_then else "The notebook ran on a whole GPU")
            + ("; here the GPU is in MIG mode" if mig_now else "; here on a whole GPU")
            + ": memory and compute differ from what it had, and a MIG slice has no peer-to-peer or NVLink.",
            "Give the kernel a MIG device of the same profile (--gpus MIG-...) to run it as it ran."))
    return checks
