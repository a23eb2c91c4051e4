"""A fake NVML binding with the subset of pynvml's API that :mod:`jupyter_mlcontainer.machine.gpu` uses.

For CI and demos on machines without a GPU. Describe GPUs in a JSON file::

    {"driver": "550.54.15", "cuda": 12040,
     "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total": 85899345920,
               "memory_used": 1073741824, "utilization": 37, "temperature": 41,
               "power": 120000, "power_limit": 700000, "mig": 0, "compute_capability": "9.0",
               "processes": [{"pid": 1234, "used": 536870912}]}]}

or ``{"error": "LibraryNotFound"}`` to act like a host without the driver. Errors are
pynvml's own exception classes, so the code under test handles exactly what it would get.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pynvml


def _error(name: str) -> pynvml.NVMLError:
    code = getattr(pynvml, "NVML_ERROR_" + "".join("_" + c if c.isupper() else c for c in name).lstrip("_").upper())
    return pynvml.NVMLError(code)


class FakeNVML:
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    nvmlMemory_v2 = pynvml.nvmlMemory_v2
    NVMLError = pynvml.NVMLError

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.initialised = 0
        self.shutdowns = 0

    @classmethod
    def from_file(cls, path: str) -> "FakeNVML":
        with open(path) as f:
            return cls(json.load(f))

    def _gpu(self, handle: int) -> dict[str, Any]:
        if not self.initialised:
            raise _error("Uninitialized")
        return self.spec["gpus"][handle]

    def _maybe(self, gpu: dict[str, Any], key: str) -> Any:
        if key not in gpu or gpu[key] is None:
            raise _error("NotSupported")
        return gpu[key]

    def nvmlInit(self) -> None:
        if self.spec.get("error"):
            raise _error(self.spec["error"])
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        self.initialised = 0

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialised:
            raise _error("Uninitialized")
        return len(self.spec.get("gpus", []))

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.spec.get("driver", "550.54.15")

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return int(self.spec.get("cuda", 12040))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._gpu(index)
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu(handle).get("name", "NVIDIA Fake GPU")

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._gpu(handle).get("uuid", f"GPU-fake-{handle}")

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        gpu = self._gpu(handle)
        return SimpleNamespace(gpu=self._maybe(gpu, "utilization"), memory=gpu.get("memory_utilization", 0))

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: Any = None) -> Any:
        gpu = self._gpu(handle)
        total = self._maybe(gpu, "memory_total")
        used = gpu.get("memory_used", 0)
        reserved = gpu.get("memory_reserved", 0)
        if version is None:  # v1 counts reserved memory as used
            return SimpleNamespace(total=total, used=used + reserved, free=total - used - reserved)
        return SimpleNamespace(total=total, used=used, reserved=reserved, free=total - used - reserved)

    def nvmlDeviceGetTemperatureV(self, handle: int, sensor: int) -> int:
        return self._maybe(self._gpu(handle), "temperature")

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return self._maybe(self._gpu(handle), "temperature")

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._maybe(self._gpu(handle), "power")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return self._maybe(self._gpu(handle), "power_limit")

    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        mig = self._maybe(self._gpu(handle), "mig")
        return [mig, mig]

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        major, _, minor = str(self._gpu(handle).get("compute_capability", "9.0")).partition(".")
        return int(major), int(minor or 0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return [
            SimpleNamespace(pid=p["pid"], usedGpuMemory=p.get("used"))
            for p in self._gpu(handle).get("processes", [])
        ]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list[Any]:
        return []
