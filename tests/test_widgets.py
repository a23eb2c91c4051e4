"""The ipywidgets front door: the same state as the panel, read through a real Jupyter server's
REST API or straight from the engine, with real container kernels."""

from __future__ import annotations

import asyncio
import json

import ipywidgets as w

from jupyter_mlcontainer.machine import gpu
from jupyter_mlcontainer.widgets import Dashboard, EngineSource, RestSource

from .conftest import BASE_IMAGE, CACHE_VOLUME, add_spec, our_kernel_containers, running_kernel


def fake_gpu(tmp_path, monkeypatch, pid: int) -> None:
    fake = tmp_path / "nvml.json"
    fake.write_text(json.dumps({
        "driver": "550.54.15", "cuda": 12040,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total": 80 << 30, "memory_used": 20 << 30,
                  "utilization": 37, "temperature": 41, "power": 120000, "power_limit": 700000, "mig": 0,
                  "processes": [{"pid": pid, "used": 1 << 30}]}],
    }))
    monkeypatch.setenv(gpu.FAKE_NVML_ENV, str(fake))
    monkeypatch.setattr(gpu, "_monitor", None)


async def test_dashboard_through_the_server(engine, jp_fetch, jp_serverapp, tmp_path, monkeypatch):
    name = add_spec(engine, BASE_IMAGE)
    body = json.dumps({"path": "widgets.ipynb", "type": "notebook", "name": "widgets.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    try:
        container = our_kernel_containers(engine, session["kernel"]["id"])[0]
        fake_gpu(tmp_path, monkeypatch, engine.api.inspect_container(container["Id"])["State"]["Pid"])
        source = RestSource(jp_serverapp.connection_url, jp_serverapp.identity_provider.token)
        # The server runs on this event loop: the dashboard's blocking HTTP calls go to a thread.
        dashboard = await asyncio.to_thread(Dashboard, source)
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")
    assert "from Jupyter server" in dashboard.header.value and "Docker " in dashboard.header.value
    assert BASE_IMAGE in dashboard.images.value and name in dashboard.images.value
    assert "widgets.ipynb" in dashboard.kernels.value and container["Id"][:12] in dashboard.kernels.value
    (card,) = dashboard.gpus.children
    text = " ".join(c.value for c in card.children if isinstance(c, w.HTML))
    assert "NVIDIA H100 80GB HBM3" in text and "used by: widgets.ipynb" in text
    util = next(c for c in card.children if isinstance(c, w.IntProgress))
    memory = next(c for c in card.children if isinstance(c, w.FloatProgress))
    assert util.value == 37 and memory.value == 20 << 30 and memory.max == 80 << 30
    assert CACHE_VOLUME in dashboard.volumes.value


async def test_dashboard_reads_the_engine_without_a_server(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        dashboard = Dashboard(EngineSource())
        container = km.provisioner.container_id
        assert container[:12] in dashboard.kernels.value
        assert "running" in dashboard.kernels.value
    assert BASE_IMAGE in dashboard.images.value
    (note,) = dashboard.gpus.children
    assert note.value.startswith("<p>No NVIDIA GPU")  # CI: no NVML library, a state with its reason
    dashboard.refresh()  # the kernel is gone: its row goes with it
    assert container[:12] not in dashboard.kernels.value


async def test_dashboard_shows_why_a_source_fails(jp_fetch, jp_serverapp):  # jp_fetch: the server listens
    wrong_token = await asyncio.to_thread(Dashboard, RestSource(jp_serverapp.connection_url, "not-the-token"))
    assert "HTTP 403" in wrong_token.header.value and "Traceback" not in wrong_token.header.value
    nobody = Dashboard(RestSource("http://127.0.0.1:9/", timeout=2))
    assert "did not answer" in nobody.header.value and "did not answer" in nobody.images.value
