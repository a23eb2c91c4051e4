"""What the panel, the CLI and the widgets show: status, images, kernels, GPUs, volumes, spares."""

from __future__ import annotations

import logging
from typing import Any

from ..core.errors import EngineError, EngineUnavailable
from ..core.labels import LABEL_IMAGE, LABEL_KERNEL_NAME, LABEL_OWNER_USER, LABEL_SPARE
from ..core.settings import MLContainer
from ..engines.base import ClusterBackend, ContainerBackend
from ..images.probe import ImageInventory
from ..kernels.claims import kernel_id_of
from ..kernels.listing import container_kernels, kernel_ids_by_container, list_kernel_containers, rows_without_engine
from ..kernels.orphans import find_orphans
from ..kernels.pool import get_pool
from ..machine.gpu import attribute_processes
from ..machine.status import machine_status
from .volumes import volume_report

log = logging.getLogger("jupyter_mlcontainer.service")


class LookingMixin:
    """Part of :class:`~jupyter_mlcontainer.service.MLContainerService`."""

    engine: ContainerBackend
    settings: MLContainer

    def status(self) -> dict[str, Any]:
        """Engine, NVIDIA runtime, GPUs (NVML), the cache volume and the warm pool's spares
        (with the memory each holds); never raises for a state."""
        status = machine_status(self.engine, self.gpu_monitor, self.cache_volume)
        status["warm_pool"] = {"spares": self.spares(with_memory=status["engine"].get("reachable", False))}
        status["clusters"] = []
        for backend in self.backends()[1:]:  # the Swarms that container kernelspecs name
            try:
                status["clusters"].append(backend.cluster_sync())
            except EngineError as exc:
                status["clusters"].append({"manager": backend.address, "reachable": False, "reason": str(exc)})
        return status

    def live_spares(self, *, user: str) -> list[dict[str, Any]]:
        """Idle spares of ``user``'s running servers, with the memory each holds (the CLI's view;
        orphaned ones are :meth:`orphans`)."""
        found = self.engine.containers_sync([LABEL_SPARE, f"{LABEL_OWNER_USER}={user}"])
        dead = {o.container_id for o in find_orphans(self.engine)}
        rows = [
            {"container_id": c["Id"], "kernelspec": (c.get("Labels") or {}).get(LABEL_KERNEL_NAME),
             "image": (c.get("Labels") or {}).get(LABEL_IMAGE) or c.get("Image")}
            for c in found if not kernel_id_of(c) and c["Id"] not in dead
        ]
        return self._with_memory(rows)

    def spares(self, *, with_memory: bool = True) -> list[dict[str, Any]]:
        """This process's idle spares (pool.py), so nobody is surprised by idle containers."""
        rows = get_pool(self.engine).describe()
        if not with_memory:
            return [dict(row, memory_usage=None) for row in rows]
        return self._with_memory(rows)

    def _with_memory(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for row in rows:
            row["memory_usage"] = None
            try:
                row["memory_usage"] = self.engine.memory_usage_sync(row["container_id"])
            except EngineError:
                pass  # removed meanwhile (claimed, expired)
        return rows

    def images(self) -> list[dict[str, Any]]:
        """Local images with their probed facts and the kernelspecs that use each; an image that
        cluster kernelspecs name also says, per cluster, which nodes hold it (``swarm``: from a
        cache refreshed in the background, see engines/swarm_images.py)."""
        by_image: dict[str, list[str]] = {}
        clusters: dict[str, list[ClusterBackend]] = {}  # image -> the clusters its kernelspecs name
        for spec in self.kernelspecs():
            by_image.setdefault(spec.image, []).append(spec.name)
            for backend in self.clusters([spec]):
                if backend not in clusters.setdefault(spec.image, []):
                    clusters[spec.image].append(backend)
        rows = self.inventory.list(by_image)
        # An image only a cluster holds (a login node's engine may hold none): its manager's
        # row, marked with the engine it is on.
        listed = {tag for row in rows for tag in row["tags"]}
        for image, backends in sorted(clusters.items()):
            for backend in sorted(backends, key=lambda b: b.address):
                if image in listed:
                    break
                inventory = self._cluster_inventories.setdefault(backend.address, ImageInventory(backend))
                try:
                    row = inventory.row_of(image, by_image)
                except EngineError as exc:  # a cluster down says so in its rows; this engine's list stays
                    log.info("Cluster manager %s did not answer for %s: %s", backend.address, image, exc)
                    continue
                if row is not None:
                    rows.append({**row, "engine": backend.address})
                    listed.update(row["tags"])
        for row in rows:
            for tag in row["tags"]:
                for backend in sorted(clusters.get(tag, ()), key=lambda b: b.address):
                    python = (row["facts"] or {}).get("python") or "python3"
                    answer = backend.cached_node_images(tag, python)
                    if answer:  # a cluster with images per node (a Swarm; Slurm's nodes run the user's store)
                        row.setdefault("swarm", []).append({"manager": backend.address, "image": tag, **answer})
        return rows

    def kernels(
        self, notebook_paths: dict[str, str], *, user: str | None = None, live: bool = True,
        known: dict[str, dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """This server's container kernels (``user``: every kernel of that user), with
        notebook paths, live CPU and memory (``live``) and reasons of death. While the engine
        does not answer: the ``known`` kernels (the server's kernel manager's), with the
        engine's state as their status; EngineUnavailable when there are none."""
        try:
            rows = container_kernels(self.engine, self.stats if live else None, notebook_paths, user=user)
        except EngineUnavailable as exc:
            if not known:
                raise
            rows = rows_without_engine(known, notebook_paths, str(exc))
        for cluster in self.backends()[1:]:  # Swarm kernels, with their node (no live CPU/memory)
            try:
                rows += container_kernels(cluster, None, notebook_paths, user=user)
            except EngineError:
                continue  # a Swarm that does not answer: the status says so
        return rows

    def gpus(self, notebook_paths: dict[str, str], *, user: str | None = None) -> dict[str, Any]:
        """NVML's GPUs with their processes mapped to container kernels and notebooks."""
        state = self.gpu_monitor.snapshot()
        data = state.to_dict()
        if state.gpus:
            try:
                containers = list_kernel_containers(self.engine, user=user)
            except EngineError:
                containers = []  # GPUs are still worth showing without the engine
            data["gpus"] = attribute_processes(state, kernel_ids_by_container(containers), notebook_paths)
        data["clusters"] = self._cluster_gpus(notebook_paths)
        return data

    def _cluster_gpus(self, notebook_paths: dict[str, str]) -> list[dict[str, Any]]:
        """Each Swarm's GPUs (node, id), with the kernel and notebook holding each."""
        rows = []
        for cluster in self.backends()[1:]:
            try:
                nodes = cluster.cluster_sync()["nodes"]
            except EngineError:
                continue  # the status says why
            rows += [{"manager": cluster.address, "node": node["hostname"], "node_state": node["state"], "id": gpu["id"],
                      "kernel_id": gpu["kernel_id"], "notebook_path": notebook_paths.get(gpu["kernel_id"] or "")}
                     for node in nodes for gpu in node["gpus"]]
        return rows

    def volumes(self) -> dict[str, Any]:
        """The cache volume (size, kernels mounting it) and each kernel's workspace mount."""
        return volume_report(self.engine, self.volume_sizes, self.cache_volume, list_kernel_containers(self.engine))

    def container_kernels(self, kernel_manager: Any) -> dict[str, dict[str, Any]]:
        """kernel id -> kernelspec, image, container id of the container kernels ``kernel_manager``
        (a server's) runs, wherever they run: which kernels are this server's own."""
        from ..kernels.provisioner import DockerKernelProvisioner

        known = {}
        for kernel_id in kernel_manager.list_kernel_ids():
            km = kernel_manager.get_kernel(kernel_id)
            provisioner = getattr(km, "provisioner", None)
            if isinstance(provisioner, DockerKernelProvisioner):
                known[kernel_id] = {"kernelspec": km.kernel_name, "image": provisioner.image,
                                    "container_id": provisioner.container_id}
        return known
