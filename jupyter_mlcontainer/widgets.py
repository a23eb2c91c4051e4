"""The panel's state as ipywidgets, for front ends without the JupyterLab panel (VS Code,
Notebook 7, Colab-style hosts): run ``from jupyter_mlcontainer.widgets import Dashboard;
Dashboard()`` in a kernel on the host.

Where the data comes from (:func:`default_source`):

* a running Jupyter server with this extension (found with ``list_running_servers``): the same
  REST API the panel uses, so kernels come with their notebook paths;
* otherwise the Docker engine and NVML directly (VS Code runs kernels without a Jupyter
  server): images, this user's container kernels, GPUs.

A kernel inside a container has neither (no engine socket, by design); the dashboard then says
so rather than failing.
"""

from __future__ import annotations

import html
import json
import urllib.error
import urllib.request
from typing import Any, Protocol

import ipywidgets as w


class Source(Protocol):
    """Where a dashboard reads its state: the REST endpoints' JSON, by endpoint name."""

    description: str

    def fetch(self, endpoint: str) -> dict[str, Any]: ...


class SourceError(Exception):
    """A source could not answer; the message says why and is shown as is."""


class RestSource:
    """The extension's REST API on a Jupyter server (``{url}mlcontainer/api/``)."""

    def __init__(self, url: str, token: str = "", timeout: float = 10) -> None:
        self.url = url.rstrip("/") + "/"
        self.token = token
        self.timeout = timeout
        self.description = f"Jupyter server {self.url}"

    def fetch(self, endpoint: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}mlcontainer/api/{endpoint}")
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                message = json.load(exc).get("message") or exc.reason
            except Exception:
                message = exc.reason
            raise SourceError(f"{endpoint}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SourceError(f"{self.description} did not answer: {exc}") from None


class EngineSource:
    """The engine and NVML read directly through the service the REST API uses (no Jupyter
    server needed); kernels are all of this user's, as no server tells which are its own."""

    description = "Docker engine (no Jupyter server with jupyter-mlcontainer found)"

    def __init__(self) -> None:
        from .service import cli_service

        self.service = cli_service()

    def fetch(self, endpoint: str) -> dict[str, Any]:
        from .core.errors import EngineError
        from .core.identity import current_user

        user = current_user().name
        try:
            if endpoint == "status":
                return self.service.status()
            if endpoint == "images":
                return {"images": self.service.images()}
            if endpoint == "kernels":
                return {"kernels": self.service.kernels({}, user=user, live=False)}
            if endpoint == "gpus":
                return self.service.gpus({}, user=user)
        except EngineError as exc:
            raise SourceError(str(exc)) from None
        return {}


def default_source() -> Source:
    """A running Jupyter server with this extension if there is one, else the engine."""
    try:
        from jupyter_server.serverapp import list_running_servers

        servers = list(list_running_servers())
    except Exception:
        servers = []
    for info in servers:
        source = RestSource(info.get("url", ""), info.get("token", ""), timeout=3)
        try:
            source.fetch("status")
            return source
        except SourceError:
            continue
    return EngineSource()


def _e(value: Any) -> str:
    return html.escape("—" if value is None or value == "" else str(value))


def _bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "—"


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<p><i>{html.escape(empty)}</i></p>"
    head = "".join(f"<th style='text-align:left;padding-right:1em'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding-right:1em'>{cell}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Dashboard(w.VBox):
    """Images, container kernels, GPUs and the cache volume, as ipywidgets.

    ``source``: where to read (default :func:`default_source`). :meth:`refresh` (also the
    Refresh button) reads it again; sections that fail show their reason.
    """

    def __init__(self, source: Source | None = None, **kwargs: Any) -> None:
        self.source = source or default_source()
        self.header = w.HTML()
        self.images = w.HTML()
        self.kernels = w.HTML()
        self.gpus = w.VBox()
        self.volumes = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh", tooltip="Read the state again")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__(
            [
                w.HBox([w.HTML("<b>ML Containers</b>"), self.refresh_button]),
                self.header,
                w.HTML("<h4>Images</h4>"), self.images,
                w.HTML("<h4>Kernels</h4>"), self.kernels,
                w.HTML("<h4>GPUs</h4>"), self.gpus,
                w.HTML("<h4>Volumes</h4>"), self.volumes,
            ],
            **kwargs,
        )
        self.refresh()

    def _get(self, endpoint: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return self.source.fetch(endpoint), None
        except SourceError as exc:
            return None, str(exc)

    def refresh(self) -> None:
        """Read every section again (blocking: a few engine / HTTP round trips)."""
        status, error = self._get("status")
        if error or not status:
            self.header.value = f"<p style='color:var(--jp-error-color1,#c00)'>{_e(error)}</p>"
        else:
            engine = status.get("engine") or {}
            nvml = status.get("nvml") or {}
            if engine.get("reachable"):
                line = (
                    f"Docker {_e(engine.get('version'))} · NVIDIA runtime "
                    f"{'yes' if engine.get('nvidia_runtime') else 'no'} · GPUs {_e(nvml.get('gpu_count'))}"
                )
            else:
                line = (
                    "Docker engine not reachable: is dockerd running and is your user in the docker "
                    f"group? ({_e(engine.get('reason'))})"
                )
            self.header.value = f"<p>{line}<br><small>from {_e(self.source.description)}</small></p>"
        self._images()
        self._kernels()
        self._gpus()
        self._volumes()

    def _table_section(self, target: w.HTML, endpoint: str, headers: list[str], row, empty: str) -> None:
        """Fill ``target`` with one table row per item of ``endpoint``'s list (or its error)."""
        data, error = self._get(endpoint)
        if error:
            target.value = f"<p>{_e(error)}</p>"
            return
        target.value = _table(headers, [row(item) for item in (data or {}).get(endpoint, [])], empty)

    def _images(self) -> None:
        def row(image: dict[str, Any]) -> list[str]:
            facts = image.get("facts") or {}
            return [
                "<br>".join(_e(t) for t in image.get("tags") or []) or _e(image.get("id", "")[:19]),
                _bytes(image.get("size")),
                _e(facts.get("python_version")), _e(facts.get("torch")),
                _e(facts.get("cuda") or facts.get("torch_cuda")),
                _e(facts.get("ipykernel") or ("no" if facts.get("probe") == "done" else "")),
                _e(", ".join(image.get("kernelspecs") or [])),
            ]

        self._table_section(
            self.images, "images", ["Image", "Size", "Python", "PyTorch", "CUDA", "ipykernel", "Kernels"], row,
            "No local images. Pull one: jupyter mlcontainer kernel add IMAGE --prepare",
        )

    def _kernels(self) -> None:
        def row(kernel: dict[str, Any]) -> list[str]:
            death = kernel.get("death") or {}
            return [
                _e(kernel.get("notebook_path") or kernel.get("kernel_id", "")[:8]),
                _e(kernel.get("image")), _e((kernel.get("container_id") or "")[:12]),
                _e(kernel.get("state")), _e(kernel.get("gpus")),
                _bytes(kernel.get("memory_usage")),
                _e(death.get("message") if death else ""),
            ]

        self._table_section(
            self.kernels, "kernels", ["Notebook", "Image", "Container", "State", "GPUs", "Memory", "Ended"], row,
            "No container kernels running.",
        )

    def _gpus(self) -> None:
        data, error = self._get("gpus")
        if error or not data:
            self.gpus.children = [w.HTML(f"<p>{_e(error)}</p>")]
            return
        if not data.get("available"):
            self.gpus.children = [w.HTML(f"<p>{_e(data.get('reason'))}</p>")]
            return
        rows = []
        for gpu in data.get("gpus", []):
            used, total = gpu.get("memory_used") or 0, gpu.get("memory_total") or 0
            users = sorted({p.get("notebook_path") or p.get("kernel_id") or f"pid {p.get('pid')}" for p in gpu.get("processes", [])})
            rows.append(w.VBox([
                w.HTML(f"<b>{_e(gpu.get('index'))}: {_e(gpu.get('name'))}</b> · {_e(gpu.get('temperature'))} °C · "
                       f"{_e(gpu.get('power_usage'))} / {_e(gpu.get('power_limit'))} W"),
                w.IntProgress(value=int(gpu.get("utilization_gpu") or 0), min=0, max=100, description="Util %"),
                w.FloatProgress(value=float(used), min=0.0, max=float(total or 1), description="Memory",
                                tooltip=f"{_bytes(used)} of {_bytes(total)}"),
                w.HTML(f"<small>{_bytes(used)} of {_bytes(total)} · used by: {_e(', '.join(users) or 'nobody')}</small>"),
            ]))
        self.gpus.children = rows

    def _volumes(self) -> None:
        if isinstance(self.source, EngineSource):
            self.volumes.value = "<p><i>Volume sizes come from the Jupyter server's extension.</i></p>"
            return
        data, error = self._get("volumes")
        if error or not data:
            self.volumes.value = f"<p>{_e(error)}</p>"
            return
        cache = data.get("cache") or {}
        self.volumes.value = (
            f"<p>Model cache <code>{_e(cache.get('name'))}</code>: {_bytes(cache.get('size'))}"
            f" at {_e(cache.get('mountpoint'))}</p>"
        )
