"""The Jupyter server extension: routes, the service behind them, start-up clean-up, shutdown."""

from __future__ import annotations

import threading

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Unicode

from ..core.errors import EngineError
from ..core.settings import MLContainer
from ..service import MLContainerService
from .handlers import route_table
from .http_errors import as_http_error


class MLContainerApp(ExtensionApp):
    """jupyter-mlcontainer's server extension (``c.MLContainerApp.*``). The engine, the cache
    volume and the build limit are ``c.MLContainer.*`` (settings.py), shared with the kernels
    and the CLI."""

    name = "jupyter_mlcontainer"

    reap_orphans_on_start = Bool(
        True,
        config=True,
        help="At server start, remove kernel containers left behind by this user's Jupyter "
        "processes that died (e.g. a server killed with SIGKILL). Containers of live servers, "
        "of other users and of other hosts are never touched.",
    )
    docker_host = Unicode(
        "", config=True, help="Deprecated: set c.MLContainer.docker_host (shared with the kernels and the CLI)."
    )
    cache_volume = Unicode(
        "", config=True, help="Deprecated: set c.MLContainer.cache_volume (shared with the kernels and the CLI)."
    )

    _service_instance: MLContainerService | None = None

    @property
    def service(self) -> MLContainerService:
        """The one service the REST handlers call (created on first use)."""
        if self._service_instance is None:
            settings = MLContainer(parent=self)
            for name in ("docker_host", "cache_volume"):
                if getattr(self, name):
                    self.log.warning(
                        "c.MLContainerApp.%s is deprecated: set c.MLContainer.%s, which the kernels and "
                        "the CLI read too", name, name,
                    )
                    setattr(settings, name, getattr(self, name))
            ksm = getattr(self.serverapp, "kernel_spec_manager", None) if self.serverapp else None
            self._service_instance = MLContainerService(settings, kernel_spec_manager=ksm)
        return self._service_instance

    def initialize_settings(self) -> None:
        self.settings["mlcontainer"] = self.service
        self.service.adapt_kernel_start_errors(as_http_error)
        if self.reap_orphans_on_start:  # in the background: the server starts without waiting for it
            threading.Thread(target=self._reap, name="mlcontainer-reap-orphans", daemon=True).start()

    def _reap(self) -> None:
        try:
            removed = self.service.orphans(remove=True, logger=self.log)
            self.log.info("jupyter-mlcontainer: orphan clean-up done (%d removed)", len(removed))
        except EngineError as exc:
            self.log.warning("jupyter-mlcontainer: skipped orphan clean-up: %s", exc)

    def initialize_handlers(self) -> None:
        self.handlers.extend(route_table())

    async def stop_extension(self) -> None:
        self.service.gpu_monitor.close()
