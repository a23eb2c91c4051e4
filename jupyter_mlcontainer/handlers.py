"""Thin REST handlers under ``{base_url}mlcontainer/api/``: parse, call the domain, map errors.

Domain errors become JSON ``{"message": ...}`` responses (statuses from :mod:`.http_errors`);
blocking domain calls run in the engine's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .engine import EngineError
from .http_errors import status_for
from .kernelspecs import KernelSpecError
from .status import machine_status


class BaseHandler(APIHandler):
    @property
    def mlcontainer(self):
        return self.settings["mlcontainer"]

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.mlcontainer.engine._pool, fn, *args)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, (EngineError, KernelSpecError, ValueError)):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": str(exc), "error": type(exc).__name__}))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:  # domain errors are expected: no traceback
        if isinstance(value, (EngineError, KernelSpecError, ValueError)):
            self.log.warning("%s %s: %s", self.request.method, self.request.uri, value)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], Exception) and status_code == 500:
            status_code = status_for(exc_info[1])
        super().send_error(status_code, **kwargs)


class StatusHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        app = self.mlcontainer
        data = await self.run_blocking(machine_status, app.engine, app.gpu_monitor, app.cache_volume)
        self.finish(json.dumps(data))


def route_table() -> list[tuple[str, type]]:
    """Routes relative to the server's base_url (ExtensionApp prepends it)."""
    prefix = "/mlcontainer/api"
    return [(url_path_join(prefix, "status"), StatusHandler)]
