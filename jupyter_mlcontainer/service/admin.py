"""Where kernels run (backends), orphan clean-up, the cache keeper, the server extension's hooks."""

from __future__ import annotations

from typing import Any, Callable

from ..core.errors import EngineError
from ..core.settings import MLContainer
from ..engines.base import ClusterBackend, ContainerBackend
from ..engines.registry import DEFAULT_PLACEMENT, address_setting, backend_class, backend_for, placements
from ..kernels.orphans import Orphan, find_orphans, forget_dead_leases, reap_orphans


class AdminMixin:
    """Part of :class:`~jupyter_mlcontainer.service.MLContainerService`."""

    engine: ContainerBackend
    settings: MLContainer

    def adapt_kernel_start_errors(self, adapter: Callable[[Exception], Exception]) -> None:
        """Called by the server extension at its start: a container kernel's failed start
        raises ``adapter(error)`` (an error jupyter_server answers with its message)."""
        from ..kernels.provisioner import DockerKernelProvisioner

        DockerKernelProvisioner.start_error_adapter = staticmethod(adapter)

    def backends(self) -> list[ContainerBackend]:
        """Every place this server's kernels may run: the engine, and the clusters that container
        kernelspecs name (a placement whose backend ``is_cluster``, their docker_host its
        manager). Blocking (reads the kernelspecs)."""
        return [self.engine, *self.clusters()]

    def clusters(self, specs: list[Any] | None = None) -> list[ClusterBackend]:
        """The cluster backends that ``specs`` (default: every container kernelspec) name, once each."""
        found: dict[tuple[str, str], ClusterBackend] = {}
        for spec in self.kernelspecs() if specs is None else specs:
            placement = spec.config.get("placement") or DEFAULT_PLACEMENT
            if placement not in placements():
                continue  # a hand-edited kernelspec: its start says why; the lists stay usable
            setting = address_setting(placement)
            address = spec.config.get(setting) or getattr(self.settings, setting, "")
            # An empty docker_host is this host's engine, never a cluster; an empty Slurm login is
            # Slurm's tools on this host (the setting the shared settings do not hold).
            if not address and hasattr(self.settings, setting):
                continue
            if backend_class(placement).is_cluster and (placement, address) not in found:
                found[(placement, address)] = backend_for(placement, address)  # type: ignore[assignment]
        return [found[key] for key in sorted(found)]

    def cancel_queued_kernel(self, kernel_id: str) -> bool:
        """Cancel the job of this server's kernel ``kernel_id`` while it waits in a cluster's queue
        (the panel's and REST's cancel: the kernel's start then fails saying so). False when no
        queued kernel of this server has that id. Blocking."""
        from ..core.identity import owner_id
        from ..core.labels import LABEL_KERNEL_ID, LABEL_OWNER

        for backend in self.clusters():
            try:
                rows = backend.containers_sync([f"{LABEL_KERNEL_ID}={kernel_id}", f"{LABEL_OWNER}={owner_id()}"])
            except EngineError:
                continue
            for row in rows:
                if row.get("State") == "created":  # queued (a started kernel stops through its manager)
                    backend.remove_container_sync(row["Id"])
                    return True
        return False

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


def run_cache_keeper(path: str, *, max_watches: int = 0) -> int:
    """Keep the host-folder cache at ``path`` (an admin's service on the host, as root: `jupyter
    mlcontainer cache-keeper PATH`): runs until killed (cache/scripts/keeper.py). It knows the
    host's users, so it also sets aside a HOME that is not its user's."""
    from ..cache.scripts import keeper

    return keeper.main([path, "--police-homes", "--max-watches", str(max_watches)])
