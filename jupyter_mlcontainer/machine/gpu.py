"""GPUs as NVML sees them; "no GPU" is a normal state with a reason, never an error.

:class:`GpuMonitor` initialises NVML once and answers snapshots. The NVML layer is
injectable: tests pass :class:`jupyter_mlcontainer.testing.fake_nvml.FakeNVML` (or set
``JUPYTER_MLCONTAINER_FAKE_NVML`` to a JSON description) because CI has no GPU; on a
machine with one, the real ``pynvml`` is used.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

FAKE_NVML_ENV = "JUPYTER_MLCONTAINER_FAKE_NVML"


def load_nvml() -> Any:
    """The NVML binding to use: the fake one when the environment asks for it, else pynvml."""
    fake = os.environ.get(FAKE_NVML_ENV)
    if fake:
        from ..testing.fake_nvml import FakeNVML

        return FakeNVML.from_file(fake)
    import pynvml

    return pynvml


@dataclass
class GpuProcess:
    pid: int
    used_memory: int | None  # bytes; None when NVML cannot tell (e.g. in a VM or container)
    kind: str  # "compute" | "graphics"


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str
    utilization_gpu: int | None = None  # percent
    utilization_memory: int | None = None
    memory_used: int | None = None  # bytes
    memory_total: int | None = None
    memory_reserved: int | None = None
    temperature: int | None = None  # Celsius
    power_usage: float | None = None  # watts
    power_limit: float | None = None
    mig_mode: bool | None = None
    compute_capability: str | None = None  # "9.0": which GPU code (sm_90) it runs
    processes: list[GpuProcess] = field(default_factory=list)


@dataclass
class GpuState:
    available: bool
    reason: str = ""  # why there are no GPUs, when available is False
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuMonitor:
    """NVML, initialised once (lazily) and shut down with :meth:`close`. Thread-safe."""

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._initialised = False
        self._init_error: str | None = None

    def _ensure_init(self) -> str | None:
        """Initialise NVML; return the reason it is unusable, or None."""
        if self._initialised or self._init_error is not None:
            return self._init_error
        try:
            if self._nvml is None:
                self._nvml = load_nvml()
            self._nvml.nvmlInit()
            self._initialised = True
        except Exception as exc:  # NVMLError and friends, or no pynvml at all
            self._init_error = self._reason(exc)
        return self._init_error

    def _reason(self, exc: Exception) -> str:
        name = type(exc).__name__
        if "LibraryNotFound" in name:
            return "No NVIDIA GPU: NVML library not found (no NVIDIA driver on this host)"
        if "DriverNotLoaded" in name:
            return "No NVIDIA GPU: the NVIDIA driver is not loaded"
        if "NoPermission" in name:
            return "NVML: no permission to query the GPUs"
        if isinstance(exc, ImportError):
            return "No NVIDIA GPU support: nvidia-ml-py is not installed"
        return f"NVML unavailable: {exc}"

    def _field(self, fn, *args, default=None):
        try:
            return fn(*args)
        except Exception:  # NotSupported and friends: N/A for this field only
            return default

    def snapshot(self, with_processes: bool = True) -> GpuState:
        """Current GPU state. Blocking (NVML calls); cheap enough for a poll."""
        with self._lock:
            reason = self._ensure_init()
            if reason:
                return GpuState(available=False, reason=reason)
            nv = self._nvml
            try:
                count = nv.nvmlDeviceGetCount()
            except Exception as exc:
                return GpuState(available=False, reason=self._reason(exc))
            state = GpuState(
                available=count > 0,
                reason="" if count else "NVML found no GPU",
                driver_version=self._field(lambda: _text(nv.nvmlSystemGetDriverVersion())),
                cuda_driver_version=self._field(self._cuda_driver_version),
            )
            for index in range(count):
                state.gpus.append(self._gpu(index, with_processes))
            return state

    def _cuda_driver_version(self) -> str:
        version = self._nvml.nvmlSystemGetCudaDriverVersion()
        return f"{version // 1000}.{(version % 1000) // 10}"

    def _gpu(self, index: int, with_processes: bool) -> GpuInfo:
        nv = self._nvml
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        info = GpuInfo(
            index=index,
            name=_text(self._field(nv.nvmlDeviceGetName, handle, default="?")),
            uuid=_text(self._field(nv.nvmlDeviceGetUUID, handle, default="")),
        )
        util = self._field(nv.nvmlDeviceGetUtilizationRates, handle)
        if util is not None:
            info.utilization_gpu, info.utilization_memory = int(util.gpu), int(util.memory)
        memory = self._memory(handle)
        if memory is not None:
            info.memory_used = int(memory.used)
            info.memory_total = int(memory.total)
            info.memory_reserved = int(getattr(memory, "reserved", 0) or 0) or None
        info.temperature = self._temperature(handle)
        power = self._field(nv.nvmlDeviceGetPowerUsage, handle)
        info.power_usage = power / 1000.0 if power is not None else None
        limit = self._field(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
        info.power_limit = limit / 1000.0 if limit is not None else None
        mig = self._field(nv.nvmlDeviceGetMigMode, handle)
        info.mig_mode = bool(mig[0]) if mig is not None else None
        capability = self._field(nv.nvmlDeviceGetCudaComputeCapability, handle)
        info.compute_capability = f"{int(capability[0])}.{int(capability[1])}" if capability else None
        if with_processes:
            info.processes = self._processes(handle)
        return info

    def _memory(self, handle):
        nv = self._nvml
        # v2 excludes driver-reserved memory from `used` (v1 counts it on R510+ drivers).
        version = getattr(nv, "nvmlMemory_v2", None)
        if version is not None:
            memory = self._field(lambda: nv.nvmlDeviceGetMemoryInfo(handle, version=version))
            if memory is not None:
                return memory
        return self._field(nv.nvmlDeviceGetMemoryInfo, handle)

    def _temperature(self, handle) -> int | None:
        nv = self._nvml
        getter_v = getattr(nv, "nvmlDeviceGetTemperatureV", None)
        if getter_v is not None:
            value = self._field(getter_v, handle, nv.NVML_TEMPERATURE_GPU)
            if value is not None:
                return int(value)
        value = self._field(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        return int(value) if value is not None else None

    def _processes(self, handle) -> list[GpuProcess]:
        nv = self._nvml
        found: dict[int, GpuProcess] = {}
        for kind, getter in (
            ("compute", "nvmlDeviceGetComputeRunningProcesses"),
            ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
        ):
            fn = getattr(nv, getter, None)
            for proc in (self._field(fn, handle, default=[]) if fn else []) or []:
                used = getattr(proc, "usedGpuMemory", None)
                if used is not None and used >= (1 << 63):  # NVML_VALUE_NOT_AVAILABLE
                    used = None
                found.setdefault(int(proc.pid), GpuProcess(int(proc.pid), used, kind))
        return list(found.values())

    def gpu_count(self) -> int:
        """How many GPUs NVML sees (0 when there is no NVML)."""
        return len(self.snapshot(with_processes=False).gpus)

    def close(self) -> None:
        """Shut NVML down (called when the extension stops)."""
        with self._lock:
            if self._initialised:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:
                    pass
            self._initialised = False
            self._init_error = None


_monitor: GpuMonitor | None = None
_monitor_lock = threading.Lock()


def get_monitor() -> GpuMonitor:
    """The process-wide monitor."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            _monitor = GpuMonitor()
        return _monitor


_CGROUP_ID = re.compile(r"(?:/docker/|docker-|/containerd/|cri-containerd-)([0-9a-f]{64})")


def container_id_of_pid(pid: int, proc: str = "/proc") -> str | None:
    """The Docker container a host PID runs in, from its cgroup path (None for host processes).

    Handles cgroupfs (``/docker/<id>``), systemd (``docker-<id>.scope``) and cgroup v2 (``0::/...``)
    layouts. NVML reports host PIDs, so this works only in the host's PID namespace.
    """
    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    match = _CGROUP_ID.search(text)
    return match.group(1) if match else None


def attribute_processes(
    state: GpuState, kernel_of_container: dict[str, str], notebook_paths: dict[str, str]
) -> list[dict[str, Any]]:
    """GPU rows with each process mapped to its container, kernel and notebook where known."""
    rows = []
    for gpu in asdict(state)["gpus"]:
        for process in gpu["processes"]:
            cid = container_id_of_pid(process["pid"])
            kernel_id = kernel_of_container.get(cid) if cid else None
            process.update(
                container_id=cid,
                kernel_id=kernel_id,
                notebook_path=notebook_paths.get(kernel_id) if kernel_id else None,
            )
        rows.append(gpu)
    return rows


def _gpu_line(gpu: GpuInfo) -> str:
    busy = len(gpu.processes)
    use = "free" if not busy else f"in use by {busy} process{'es' if busy > 1 else ''}"
    return f"{gpu.index}: {gpu.name} {gpu.uuid} ({use})"


def describe_gpus(state: GpuState) -> str:
    """One line per GPU with whether it is free, for error messages."""
    if not state.gpus:
        return "This host has no GPU" + (f" ({state.reason})" if state.reason else "")
    count = len(state.gpus)
    lines = "; ".join(_gpu_line(gpu) for gpu in state.gpus)
    return f"This host has {count} GPU{'s' if count > 1 else ''}: {lines}"


def unsatisfiable_reason(requests: list[Any], state: GpuState) -> str | None:
    """Why the GPU requests of a ``--gpus`` value (``container_spec.gpu_requests``)
    cannot be met on this host.

    Called by the provisioner before it asks the engine, so that a request for more GPUs than
    there are gets a message naming the GPUs instead of the runtime's "OCI runtime create
    failed". None when the requests fit, or when NVML cannot tell (the engine decides then).
    """
    if not state.available and not state.reason.startswith("NVML found no GPU"):
        return None  # no NVML here: nothing to compare against
    indices = {str(gpu.index) for gpu in state.gpus}
    uuids = {gpu.uuid.upper() for gpu in state.gpus}
    for request in requests:
        wanted = request.count or 0
        if wanted > len(state.gpus):  # count -1 is "all"
            return f"{wanted} GPU{'s' if wanted > 1 else ''} requested. {describe_gpus(state)}."
        unknown = [
            device for device in request.device_ids or []
            if device not in indices and device.upper() not in uuids
            and not device.upper().startswith("MIG-")  # MIG devices are not listed by index
        ]
        if unknown:
            verb = "does" if len(unknown) == 1 else "do"
            return f"GPU {', '.join(unknown)} {verb} not exist. {describe_gpus(state)}."
    return None
