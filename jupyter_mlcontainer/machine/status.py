"""One summary of the machine's state for every front door (REST ``status``, CLI ``status``)."""

from __future__ import annotations

from typing import Any

from ..core.errors import EngineError
from ..core.settings import DEFAULT_VOLUME, is_host_folder
from ..engines.base import ContainerBackend
from .gpu import GpuMonitor


def machine_status(engine: ContainerBackend, monitor: GpuMonitor, cache_volume: str = DEFAULT_VOLUME) -> dict[str, Any]:
    """Engine reachability and version, NVIDIA runtime, NVML state and the cache volume. Blocking.

    Never raises for an unreachable engine or a missing GPU: those are states with a reason.
    """
    result: dict[str, Any] = {"engine": {"reachable": False}, "cache_volume": {"name": cache_volume}}
    try:
        info = engine.info_sync()
        version = engine.version_sync()
        kind = engine.kind_sync()
        result["engine"] = {
            "reachable": True,
            "kind": kind.title,
            "address": engine.address,
            "host": info.get("Name"),
            "version": version.get("Version"),
            "api_version": version.get("ApiVersion"),
            "os": info.get("OperatingSystem"),
            "storage_driver": info.get("Driver"),
            # vfs: every cold start copies the whole image (the panel's engine line says so, with the fix)
            "storage_warning": kind.copying_storage_reason or None,
            "storage_fix": kind.copying_storage_fix or None,
            "cgroup_version": info.get("CgroupVersion"),
            "runtimes": sorted((info.get("Runtimes") or {}).keys()),
            "nvidia_runtime": engine.has_nvidia_runtime_sync(),
            "containers_running": info.get("ContainersRunning"),
        }
        if is_host_folder(cache_volume):  # on the engine's host, which may not be this one
            result["cache_volume"].update({"host_folder": True, "exists": None, "mountpoint": cache_volume})
        else:
            volume = engine.call_sync(engine.inspect_volume_sync, cache_volume)
            result["cache_volume"].update(
                {"exists": volume is not None, "mountpoint": (volume or {}).get("Mountpoint")}
            )
    except EngineError as exc:
        result["engine"]["reason"] = str(exc)
    gpus = monitor.snapshot(with_processes=False)
    result["nvml"] = {
        "available": gpus.available,
        "reason": gpus.reason,
        "driver_version": gpus.driver_version,
        "cuda_driver_version": gpus.cuda_driver_version,
        "gpu_count": len(gpus.gpus),
    }
    return result
