"""The shared cache volume and the workspace mounts of container kernels."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..cache.paths import is_host_folder
from ..core.labels import LABEL_WORKSPACE
from ..engines.base import ContainerBackend
from ..kernels.claims import kernel_id_of

_SIZE_TTL = 60.0  # `docker system df -v` walks every volume: ask at most once a minute


class VolumeSizes:
    """Volume sizes from the engine's disk-usage report, refreshed in the background."""

    def __init__(self, engine: ContainerBackend) -> None:
        self.engine = engine
        self._sizes: dict[str, int] = {}
        self._fetched = 0.0
        self._busy = threading.Lock()

    def get(self, name: str) -> int | None:
        if time.monotonic() - self._fetched > _SIZE_TTL and self._busy.acquire(blocking=False):
            threading.Thread(target=self._refresh, daemon=True).start()
        return self._sizes.get(name)

    def _refresh(self) -> None:
        try:
            report = self.engine.disk_usage_sync()
            self._sizes = {
                v["Name"]: (v.get("UsageData") or {}).get("Size", -1)
                for v in report.get("Volumes") or []
            }
            self._fetched = time.monotonic()
        except Exception:
            self._fetched = time.monotonic()
        finally:
            self._busy.release()


def volume_report(engine: ContainerBackend, sizes: VolumeSizes, cache_volume: str, kernel_containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The cache volume (mountpoint, size, kernels mounting it) and each kernel's workspace.

    ``kernel_containers`` are the rows of one ``containers`` call (their Mounts are included).
    """
    host_folder = is_host_folder(cache_volume)
    volume = None if host_folder else engine.call_sync(engine.inspect_volume_sync, cache_volume)
    cache_users, workspaces = [], []
    for container in kernel_containers:
        labels = container.get("Labels") or {}
        kernel_id = kernel_id_of(container) or ""
        for mount in container.get("Mounts") or []:
            if (mount.get("Name") == cache_volume if mount.get("Type") == "volume"
                    else host_folder and mount.get("Source") == cache_volume):
                cache_users.append(kernel_id)
            elif mount.get("Type") == "bind" and mount.get("Destination") == labels.get(LABEL_WORKSPACE):
                workspaces.append(
                    {"kernel_id": kernel_id, "source": mount.get("Source"), "target": mount.get("Destination"), "rw": mount.get("RW")}
                )
    size = sizes.get(cache_volume)
    return {
        "cache": {
            "name": cache_volume,
            "exists": None if host_folder else volume is not None,  # a host folder is on the engine's host
            "host_folder": host_folder,
            "mountpoint": cache_volume if host_folder else (volume or {}).get("Mountpoint"),
            "created": (volume or {}).get("CreatedAt"),
            "size": size if size is not None and size >= 0 else None,
            "kernels": cache_users,
        },
        "workspaces": workspaces,
    }
