"""Container kernels as the server sees them: one engine round trip per listing.

:func:`container_kernels` lists every kernel container of this server with one
``containers`` call; live CPU and memory come from :class:`StatsCollector`, which follows the
engine's stats stream of each kernel container in a background thread (the stats API is
per container and takes a second per sample, far too slow to call during a request).
"""

from __future__ import annotations

import threading
from typing import Any

from ..core.identity import owner_id
from ..core.labels import (
    LABEL_CACHE_VOLUME,
    LABEL_GPUS,
    LABEL_IMAGE,
    LABEL_LIMITS_IGNORED,
    LABEL_OWNER,
    LABEL_OWNER_USER,
    LABEL_PREFIX,
    LABEL_WORKSPACE,
)
from ..engines.base import ContainerBackend
from .claims import kernel_id_of, kernel_name_of
from .deaths import last_death


class StatsCollector:
    """Latest CPU % and memory of each followed container. Thread-safe."""

    def __init__(self, engine: ContainerBackend) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._threads: dict[str, threading.Thread] = {}

    def follow(self, container_ids: list[str]) -> None:
        """Make sure each running container has a follower; forget the others."""
        with self._lock:
            for cid in container_ids:
                thread = self._threads.get(cid)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=self._run, args=(cid,), name=f"mlcontainer-stats-{cid[:12]}", daemon=True)
                    self._threads[cid] = thread
                    thread.start()
            for cid in list(self._latest):
                if cid not in container_ids:
                    self._latest.pop(cid, None)

    def latest(self, container_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._latest.get(container_id)

    def _run(self, cid: str) -> None:
        try:
            stream = self.engine.stats_stream(cid)
            for sample in stream:
                if not sample.get("read") or sample.get("read", "").startswith("0001-"):
                    break  # the container stopped
                with self._lock:
                    self._latest[cid] = _summarise(sample)
        except Exception:
            pass
        finally:
            with self._lock:
                self._threads.pop(cid, None)


def _summarise(sample: dict[str, Any]) -> dict[str, Any]:
    cpu = sample.get("cpu_stats") or {}
    pre = sample.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    percent = (cpu_delta / system_delta) * cpus * 100.0 if system_delta > 0 and cpu_delta >= 0 else None
    memory = sample.get("memory_stats") or {}
    usage = memory.get("usage")
    stats = memory.get("stats") or {}
    # Page cache is reclaimable: report what `docker stats` reports.
    cache = stats.get("total_inactive_file", stats.get("inactive_file", 0)) or 0
    return {
        "cpu_percent": round(percent, 1) if percent is not None else None,
        "memory_usage": usage - cache if usage is not None else None,
        "memory_limit": memory.get("limit"),
    }


def list_kernel_containers(engine: ContainerBackend, owner: str | None = None, *, user: str | None = None) -> list[dict[str, Any]]:
    """This server's kernel containers (one engine call); with ``user``, every kernel container
    that user started, from any server or front end."""
    mine = f"{LABEL_OWNER_USER}={user}" if user else f"{LABEL_OWNER}={owner or owner_id()}"
    return engine.containers_sync([f"{LABEL_PREFIX}.role=kernel", mine])


def kernel_ids_by_container(containers: list[dict[str, Any]]) -> dict[str, str | None]:
    """Container id -> kernel id, from the labels of :func:`list_kernel_containers`' answer
    (what :func:`gpu.attribute_processes` maps GPU processes with)."""
    return {c["Id"]: kernel_id_of(c) for c in containers}


def container_kernels(
    engine: ContainerBackend,
    stats: StatsCollector | None,
    notebook_paths: dict[str, str],
    kernelspec_of: dict[str, str] | None = None,
    *,
    user: str | None = None,
) -> list[dict[str, Any]]:
    """Rows for the ``kernels`` endpoint. ``notebook_paths``: kernel id -> path, from the sessions.
    Without ``stats`` the CPU and memory fields are None; ``user`` as in :func:`list_kernel_containers`."""
    # Spares nobody has claimed are not kernels (the status lists them); claimed ones are.
    containers = [c for c in list_kernel_containers(engine, user=user) if kernel_id_of(c)]
    if stats is not None:
        stats.follow([c["Id"] for c in containers if c.get("State") == "running"])
    rows = []
    for container in containers:
        labels = container.get("Labels") or {}
        kernel_id = kernel_id_of(container) or ""
        live = (stats.latest(container["Id"]) if stats is not None else None) or {}
        rows.append(_row(
            kernel_id, notebook_paths,
            kernelspec=kernel_name_of(container) or (kernelspec_of or {}).get(kernel_id),
            image=labels.get(LABEL_IMAGE) or container.get("Image"),
            container_id=container["Id"],
            state=container.get("State"),
            status=container.get("Status"),
            gpus=labels.get(LABEL_GPUS, "none"),
            cpu_percent=live.get("cpu_percent"),
            memory_usage=live.get("memory_usage"),
            memory_limit=live.get("memory_limit"),
            workspace=labels.get(LABEL_WORKSPACE),
            cache_volume=labels.get(LABEL_CACHE_VOLUME),
            limits_ignored=labels.get(LABEL_LIMITS_IGNORED) or None,
            node=container.get("Node") or None,  # a Swarm task's node (swarm.py)
        ))
    return rows


ROW_FIELDS = (
    "kernelspec", "image", "container_id", "state", "status", "gpus", "cpu_percent", "memory_usage",
    "memory_limit", "workspace", "cache_volume", "limits_ignored", "node",
)


def _row(kernel_id: str, notebook_paths: dict[str, str], **fields: Any) -> dict[str, Any]:
    """One row of the ``kernels`` endpoint: ``fields`` (the others None), the kernel's notebook
    and its recorded death."""
    death = last_death(kernel_id)
    return {
        "kernel_id": kernel_id,
        "notebook_path": notebook_paths.get(kernel_id),
        **dict.fromkeys(ROW_FIELDS),
        **fields,
        "death": death.to_dict() if death else None,
    }


def rows_without_engine(known: dict[str, dict[str, Any]], notebook_paths: dict[str, str], reason: str) -> list[dict[str, Any]]:
    """Rows for the ``kernels`` endpoint while the engine does not answer: what the server's
    kernel manager knows of its container kernels (``known``: kernel id -> kernelspec, image,
    container id), each with its recorded death, and ``reason`` as its status. The panel
    keeps showing the kernels, and why they stopped, through an engine outage."""
    return [
        _row(kernel_id, notebook_paths, kernelspec=facts.get("kernelspec"), image=facts.get("image"),
             container_id=facts.get("container_id"), state="unknown", status=reason)
        for kernel_id, facts in known.items()
    ]
