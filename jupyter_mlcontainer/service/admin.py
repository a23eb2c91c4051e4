"""Where kernels run (backends), orphan clean-up, the cache keeper, the server extension's hooks."""

from __future__ import annotations

from typing import Any, Callable

from ..core.errors import EngineError
from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
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


def run_cache_keeper(path: str, *, max_watches: int = 0) -> int:
    """Keep the host-folder cache at ``path`` (an admin's service on the host, as root: `jupyter
    mlcontainer cache-keeper PATH`): runs until killed (cache/scripts/keeper.py). It knows the
    host's users, so it also sets aside a HOME that is not its user's."""
    from ..cache.scripts import keeper

    return keeper.main([path, "--police-homes", "--max-watches", str(max_watches)])
