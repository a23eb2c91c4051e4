"""One service layer for every front door: the REST handlers (the panel), the CLI and the
ipywidgets dashboard call these methods, so an operation exists once and behaves the same
wherever it is started.

Every method is blocking: the REST handlers run them in the engine's thread pool, the CLI and
the widgets call them directly. Methods take plain values and return plain data or the
domain's objects (jobs, freeze results, restore plans); errors are the typed errors of
:mod:`.errors` and the domain modules, which each front door reports in its own way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..engines.base import ContainerBackend
from ..engines.docker import get_engine
from ..cache.volume import ROLE_KEEPER, remove_cache_keeper
from ..kernels.claims import is_spare, kernel_id_of
from ..core.labels import (
    LABEL_CACHE_VOLUME, LABEL_IMAGE, LABEL_KERNEL_NAME, LABEL_OWNER, LABEL_OWNER_USER, LABEL_ROLE, LABEL_SPARE,
)
from ..engines.docker import check_reference
from ..core.errors import Conflict, EngineError, EngineUnavailable
from ..core.errors import FreezeError, KernelContainerNotFound
from ..environments.freeze import FreezeResult, KernelRunner, container_of_kernel, freeze_container
from ..machine.gpu import GpuMonitor, attribute_processes, get_monitor
from ..core.identity import owner_id
from ..images.probe import ImageInventory
from ..images.jobs import Job, JobRegistry
from ..kernels.listing import (
    StatsCollector, container_kernels, kernel_ids_by_container, list_kernel_containers, rows_without_engine,
)
from ..kernels.kernelspecs import ContainerKernelSpec, add_kernelspec, list_kernelspecs, remove_kernelspec
from ..kernels.orphans import Orphan, find_orphans, forget_dead_leases, reap_orphans
from ..kernels.pool import get_pool
from ..environments.restore import RestorePlan, plan_restore, restore, start_restore
from ..core.settings import MLContainer
from ..environments.sharing import environment_record, frozen_names, record_in_notebook
from ..machine.status import machine_status
from .volumes import VolumeSizes, volume_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelContainer:
    """A kernel's container and the backend it runs on (the engine, or a Swarm: its service)."""

    backend: ContainerBackend
    id: str


class MLContainerService:
    """The operations of jupyter-mlcontainer on one engine and one cache volume, both from
    ``settings`` (``c.MLContainer``): the server, its kernels and the CLI share them."""

    def __init__(self, settings: MLContainer | None = None, kernel_spec_manager: Any = None) -> None:
        self.settings = settings or MLContainer()
        self.engine: ContainerBackend = get_engine(self.settings.docker_host or None)
        self.kernel_spec_manager = kernel_spec_manager  # the server's, when there is one
        self.jobs = JobRegistry(self.engine, context_limit_mb=self.settings.build_context_limit_mb)
        self.stats = StatsCollector(self.engine)
        self.inventory = ImageInventory(self.engine)
        self._cluster_inventories: dict[str, ImageInventory] = {}  # Swarm manager -> its images
        self.volume_sizes = VolumeSizes(self.engine)

    @property
    def cache_volume(self) -> str:
        return self.settings.cache_volume

    @property
    def gpu_monitor(self) -> GpuMonitor:
        return get_monitor()

    # -- looking ---------------------------------------------------------------------------

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
        Swarm kernelspecs name also says, per Swarm, which nodes hold it (``swarm``: from a
        cache refreshed in the background, see :mod:`.swarm_images`)."""
        by_image: dict[str, list[str]] = {}
        managers: dict[str, set[str]] = {}  # image -> the Swarm managers its kernelspecs name
        for spec in self.kernelspecs():
            by_image.setdefault(spec.image, []).append(spec.name)
            if spec.config.get("placement") == "swarm":
                managers.setdefault(spec.image, set()).add(spec.config.get("docker_host") or self.settings.docker_host)
        rows = self.inventory.list(by_image)
        if managers:
            from ..engines.swarm import get_swarm
            from ..engines.swarm_images import node_images

            # An image only the cluster holds (a login node's engine may hold none): its
            # manager's row, marked with the engine it is on.
            listed = {tag for row in rows for tag in row["tags"]}
            for image, image_managers in sorted(managers.items()):
                for manager in sorted(m for m in image_managers if m):
                    if image in listed:
                        break
                    backend = get_swarm(manager)
                    inventory = self._cluster_inventories.setdefault(backend.address, ImageInventory(backend.engine))
                    try:
                        row = inventory.row_of(image, by_image)
                    except EngineError as exc:  # a Swarm down says so in its rows; this engine's list stays
                        log.info("Swarm manager %s did not answer for %s: %s", backend.address, image, exc)
                        continue
                    if row is not None:
                        rows.append({**row, "engine": backend.address})
                        listed.update(row["tags"])
            for row in rows:
                for tag in row["tags"]:
                    for manager in sorted(m for m in managers.get(tag, ()) if m):
                        backend = get_swarm(manager)
                        python = (row["facts"] or {}).get("python") or "python3"
                        answer = node_images().states(backend, tag, python)
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

    # -- images: pull and build as jobs ---------------------------------------------------

    def pull(self, image: str) -> Job:
        return self.jobs.pull(image)

    def build(
        self, dockerfile: str, tag: str, *, build_args: dict[str, str] | None = None, wheelhouse: str | None = None,
    ) -> Job:
        """Start building ``dockerfile`` (its context checked and packed here) as ``tag``."""
        return self.jobs.build(dockerfile, tag, build_args=build_args, wheelhouse=wheelhouse)

    def remove_image(self, image: str) -> dict[str, Any]:
        """Remove an image (a tag, or an id) unless a container kernelspec or a kernel uses it:
        the refusal (409) names them. Returns what was removed."""
        check_reference(image)
        attrs = self.engine.inspect_image_sync(image)
        image_id = attrs["Id"]
        names = set(attrs.get("RepoTags") or []) | {image, image_id}
        specs = [s.name for s in self.kernelspecs() if s.image in names or (s.facts or {}).get("image_id") == image_id]
        if specs:
            raise Conflict(f"{image} is the image of kernelspec(s) {', '.join(sorted(specs))}: remove them first "
                           "(jupyter mlcontainer kernel remove NAME)")
        users = [c for c in self.engine.containers_sync([f"{LABEL_ROLE}=kernel"]) if c.get("ImageID") == image_id]
        pool = get_pool(self.engine)
        for spare in [c for c in users if is_spare(c) and not kernel_id_of(c)]:
            if (spare.get("Labels") or {}).get(LABEL_OWNER) == owner_id():
                pool.forget(container_id=spare["Id"])  # this server's own spare goes with the image
                users.remove(spare)
        if users:
            kernels = ", ".join(sorted(kernel_id_of(c) or c["Id"][:12] for c in users))
            raise Conflict(f"{image} is used by kernel container(s) of kernel(s) {kernels}: stop them first")
        for keeper in self.engine.containers_sync([f"{LABEL_ROLE}={ROLE_KEEPER}"]):
            if keeper.get("ImageID") == image_id:  # the next kernel start runs it again, from the helper image
                remove_cache_keeper(self.engine, (keeper.get("Labels") or {}).get(LABEL_CACHE_VOLUME, ""))
        self.engine.remove_image_sync(image)
        return {"removed": image, "id": image_id}

    def adapt_kernel_start_errors(self, adapter: Callable[[Exception], Exception]) -> None:
        """Called by the server extension at its start: a container kernel's failed start
        raises ``adapter(error)`` (an error jupyter_server answers with its message)."""
        from ..kernels.provisioner import DockerKernelProvisioner

        DockerKernelProvisioner.start_error_adapter = staticmethod(adapter)

    # -- kernelspecs -------------------------------------------------------------------------

    def kernelspecs(self) -> list[ContainerKernelSpec]:
        return list_kernelspecs(self.kernel_spec_manager)

    def add_kernelspec(self, image: str, **kwargs: Any) -> ContainerKernelSpec:
        return add_kernelspec(self.engine, image, ksm=self.kernel_spec_manager, **kwargs)

    def remove_kernelspec(self, name: str) -> str:
        """Remove a container kernelspec; this server's spares of it go too."""
        path = remove_kernelspec(name, self.kernel_spec_manager)
        get_pool(self.engine).forget(kernelspec=name)
        return path

    # -- freeze ------------------------------------------------------------------------------

    def container_of_kernel(self, kernel_id: str, *, user: str | None = None) -> KernelContainer:
        """The running container of ``kernel_id``, on the engine or a Swarm a kernelspec names:
        one this process started, or with ``user`` one that user started from any of their
        servers (the CLI's view)."""
        owner = None if user else owner_id()
        for backend in self.backends():
            try:
                return KernelContainer(backend, container_of_kernel(backend, kernel_id, owner=owner, user=user))
            except KernelContainerNotFound:
                continue
            except EngineError:
                if backend is self.engine:
                    raise  # a Swarm that does not answer: the kernel is not found there
        raise KernelContainerNotFound(f"No running container kernel with id {kernel_id}")

    def freeze(
        self, container: KernelContainer, runtime_env: dict[str, str] | None, *, connection_info: dict[str, Any] | None = None,
        output_dir: str | None = None, dockerfile_name: str = "Dockerfile", force: bool = False,
        notebook: str | None = None, write_notebook: bool = False,
    ) -> tuple[FreezeResult, dict[str, Any] | None]:
        """Freeze a running container kernel into a Dockerfile and requirements; with
        ``notebook``, also the environment record for its metadata (written into the file with
        ``write_notebook``; the panel puts it into the open document instead). A kernel on a
        Swarm node runs freeze's scripts itself, through ``connection_info`` (its connection)."""
        runner = None
        if container.backend is not self.engine:
            if connection_info is None:
                raise FreezeError("A kernel on a Swarm node is frozen through its connection; none was given "
                                  "(freeze it by kernel id, from the server that started it)")
            runner = KernelRunner(connection_info)
        try:
            result = freeze_container(
                container.backend, container.id, output_dir=output_dir, dockerfile_name=dockerfile_name,
                overwrite=force, runtime_env=runtime_env, runner=runner,
            )
        finally:
            if runner is not None:
                runner.close()
        record = None
        if notebook:
            tag, kernelspec = frozen_names(notebook, result.dockerfile)
            record = environment_record(result, notebook, tag, kernelspec)
            if write_notebook:
                record_in_notebook(notebook, record)
        return result, record

    # -- restore a shared notebook -------------------------------------------------------------

    def restore_plan(self, notebook: str, *, pull: bool = True, wheelhouse: str | None = None) -> RestorePlan:
        return plan_restore(self.engine, notebook, pull=pull, wheelhouse=wheelhouse,
                            context_limit_mb=self.jobs.context_limit_mb)

    def start_restore(self, notebook: str, fingerprint: str, **kwargs: Any) -> dict[str, Any]:
        return start_restore(self.engine, self.jobs, notebook, fingerprint, **kwargs)

    def restore(self, notebook: str, confirm: Callable[[RestorePlan], bool], **kwargs: Any) -> dict[str, Any]:
        return restore(self.engine, notebook, confirm=confirm, jobs=self.jobs, **kwargs)

    # -- clean-up ----------------------------------------------------------------------------

    def backends(self) -> list[ContainerBackend]:
        """Every place this server's kernels may run: the engine, and the Swarms that container
        kernelspecs name (placement 'swarm', their docker_host the manager). Blocking (reads
        the kernelspecs)."""
        found: list[ContainerBackend] = [self.engine]
        managers = {spec.config.get("docker_host") or self.settings.docker_host
                    for spec in self.kernelspecs() if spec.config.get("placement") == "swarm"}
        if managers:
            from ..engines.swarm import get_swarm

            found += [get_swarm(manager) for manager in sorted(m for m in managers if m)]
        return found

    def orphans(self, *, remove: bool, logger: Any = None) -> list[Orphan]:
        """Containers (and Swarm services) whose owning process died, on every backend;
        removed with ``remove``. A Swarm that does not answer is skipped (logged)."""
        found: list[Orphan] = []
        skipped = False
        for backend in self.backends():
            try:
                found += reap_orphans(backend, logger, forget_leases=False) if remove else find_orphans(backend)
            except EngineError as exc:
                if backend is self.engine:
                    raise
                skipped = True
                if logger is not None:
                    logger.warning("jupyter-mlcontainer: skipped orphan clean-up on %s: %s", backend.address, exc)
        if remove and not skipped:  # a lease kept, its owner's services are reaped when the Swarm answers
            forget_dead_leases()
        return found


def cli_service() -> MLContainerService:
    """The service as the CLI sees it: ``c.MLContainer`` from the server's config files and
    the environment, so the CLI acts on the engine and volume the server uses."""
    from ..core.settings import server_config

    return MLContainerService(MLContainer(config=server_config()))


__all__ = ["KernelContainer", "MLContainerService", "cli_service"]
