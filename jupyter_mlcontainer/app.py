"""The Jupyter server extension: settings, routes, start-up clean-up and shutdown."""

from __future__ import annotations

import threading

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Integer, Unicode, default

from .engine import EngineError, get_engine
from .gpu import GpuMonitor, get_monitor
from .handlers import route_table
from .images import ImageInventory
from .jobs import DEFAULT_CONTEXT_LIMIT_MB, JobRegistry
from .kernels import StatsCollector
from .orphans import reap_orphans
from .volumes import VolumeSizes


class MLContainerApp(ExtensionApp):
    """jupyter-mlcontainer's server extension (``c.MLContainerApp.*``)."""

    name = "jupyter_mlcontainer"

    reap_orphans_on_start = Bool(
        True,
        config=True,
        help="At server start, remove kernel containers left behind by Jupyter processes of this "
        "host that died (e.g. a server killed with SIGKILL). Containers of live servers and of "
        "other hosts are never touched.",
    )
    docker_host = Unicode(
        "", config=True, help="Engine address for the REST API (default: DOCKER_HOST or the local socket)."
    )
    cache_volume = Unicode(
        config=True, help="Name of the shared cache volume shown by the API (default: MLCONTAINER_CACHE_VOLUME or mlcontainer-cache)."
    )

    build_context_limit_mb = Integer(
        DEFAULT_CONTEXT_LIMIT_MB,
        min=1,
        config=True,
        help="Largest build context (the Dockerfile and what its COPY/ADD lines name) that a "
        "build or a restore sends to the engine, in MB. Larger ones are refused before anything "
        "is packed, with a message naming this setting. The context is packed to a temporary "
        "file and streamed, so the limit bounds disk use and transfer time, not memory.",
    )

    @default("cache_volume")
    def _cache_volume_default(self) -> str:
        import os

        from .cache import DEFAULT_VOLUME

        return os.environ.get("MLCONTAINER_CACHE_VOLUME", DEFAULT_VOLUME)

    @property
    def engine(self):
        return get_engine(self.docker_host or None)

    def _service(self, cls):
        """One ``cls(engine)`` per engine address (the address is configurable at run time)."""
        key = (cls, self.docker_host)
        services = self.__dict__.setdefault("_services", {})
        if key not in services:
            services[key] = cls(self.engine)
        return services[key]

    @property
    def jobs(self) -> JobRegistry:
        registry = self._service(JobRegistry)
        registry.context_limit_mb = self.build_context_limit_mb
        return registry

    @property
    def stats(self) -> StatsCollector:
        return self._service(StatsCollector)

    @property
    def inventory(self) -> ImageInventory:
        return self._service(ImageInventory)

    @property
    def volume_sizes(self) -> VolumeSizes:
        return self._service(VolumeSizes)

    @property
    def gpu_monitor(self) -> GpuMonitor:
        return get_monitor()

    def initialize_settings(self) -> None:
        self.settings["mlcontainer"] = self
        if self.reap_orphans_on_start:  # in the background: the server starts without waiting for it
            threading.Thread(target=self._reap, name="mlcontainer-reap-orphans", daemon=True).start()

    def _reap(self) -> None:
        try:
            reap_orphans(self.engine, self.log)
        except EngineError as exc:
            self.log.warning("jupyter-mlcontainer: skipped orphan clean-up: %s", exc)

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table())

    async def stop_extension(self) -> None:
        self.gpu_monitor.close()
