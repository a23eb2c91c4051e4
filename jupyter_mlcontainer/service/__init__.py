"""One service layer for every front door: the REST handlers (the panel), the CLI and the
ipywidgets dashboard call these methods, so an operation exists once and behaves the same
wherever it is started.

Every method is blocking: the REST handlers run them in the engine's thread pool, the CLI and
the widgets call them directly. Methods take plain values and return plain data or the
domain's objects (jobs, freeze results, restore plans); errors are the typed errors of
:mod:`.errors` and the domain modules, which each front door reports in its own way.
"""

from __future__ import annotations

from typing import Any

from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..engines.registry import DEFAULT_PLACEMENT, backend_for
from ..images.jobs import JobRegistry, start_pulls
from ..images.probe import ImageInventory
from ..kernels.listing import StatsCollector
from ..machine.gpu import GpuMonitor, get_monitor
from .admin import AdminMixin
from .images import ImagesMixin
from .kernelspecs import KernelspecsMixin
from .looking import LookingMixin
from .sharing import KernelContainer, SharingMixin
from .volumes import VolumeSizes


class MLContainerService(LookingMixin, ImagesMixin, KernelspecsMixin, SharingMixin, AdminMixin):
    """The operations of jupyter-mlcontainer on one engine and one cache volume, both from
    ``settings`` (``c.MLContainer``): the server, its kernels and the CLI share them. Each
    group of operations is in a module of its own (looking, images, kernelspecs, sharing, admin)."""

    def __init__(self, settings: MLContainer | None = None, kernel_spec_manager: Any = None) -> None:
        self.settings = settings or MLContainer()
        self.engine: ContainerBackend = backend_for(DEFAULT_PLACEMENT, self.settings.docker_host or None)
        self.kernel_spec_manager = kernel_spec_manager  # the server's, when there is one
        # With the pulls this process's kernel starts make: the panel shows and cancels them too.
        self.jobs = JobRegistry(self.engine, context_limit_mb=self.settings.build_context_limit_mb,
                                also=start_pulls(self.engine))
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


def cli_service() -> MLContainerService:
    """The service as the CLI sees it: ``c.MLContainer`` from the server's config files and
    the environment, so the CLI acts on the engine and volume the server uses."""
    from ..core.settings import server_config

    return MLContainerService(MLContainer(config=server_config()))


__all__ = ["KernelContainer", "MLContainerService", "cli_service"]
