"""The panel in a real Chromium (Playwright Test) against a real JupyterLab and real containers.

Runs tests/ui/panel.spec.mjs: open the panel, see a running container kernel, pull an image
from the local registry with visible progress, add a kernel, open a notebook in it, run a cell,
save a screenshot of the panel (into docs/ with MLC_UPDATE_SCREENSHOT=1), find the commands in
the command palette and change the poll interval in the settings editor. GPUs come from the fake NVML layer, with a
process that is the running kernel's host PID, so the GPU row names its notebook.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import BASE_IMAGE, IPYKERNEL7_IMAGE, REPO_ROOT, add_spec
from .test_pull_on_start import forget, kernel_image_in_registry
from .test_rest import _unique_image

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "ui-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(port: int, path: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


@pytest.fixture
def restored_images(engine):
    """Removes what the spec's restore built (labelled restored-ui-<stamp>) once the server is
    gone: set up before ``lab``, so torn down after it (its warm spare uses the image until then)."""
    yield
    for image in engine.api.images(filters={"label": "org.jupyter.mlcontainer.test"}):
        if (image.get("Labels") or {}).get("org.jupyter.mlcontainer.test", "").startswith("restored-ui"):
            engine.api.remove_image(image["Id"], force=True)


@pytest.fixture
def lab(engine, workspace, tmp_path):
    """A JupyterLab subprocess serving ``workspace``, with the fake NVML file it will read."""
    nvml = tmp_path / "nvml.json"
    nvml.write_text(json.dumps({"gpus": []}))
    port = _free_port()
    # The spec changes the extension's settings: they go to a folder of this test, not the user's.
    # The warm pool as users get it (the rest of the suite turns it off).
    env = dict(os.environ, JUPYTER_MLCONTAINER_FAKE_NVML=str(nvml), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               MLCONTAINER_WARM_POOL="1")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={workspace}", "--no-browser",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.getuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(300):
            try:
                _api(port, "api/status")
                break
            except Exception:
                time.sleep(0.2)
        yield port, nvml
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_panel_in_chromium(engine, registry, slow_registry, swarm, restored_images, lab, workspace, tmp_path):
    port, nvml = lab
    assert os.path.exists(CHROMIUM), "Debian's chromium is needed for the UI test (scripts/test.sh installs it)"
    npx = shutil.which("npx")
    assert npx, "node/npx are needed for the UI test"
    assert os.path.isdir(os.path.join(REPO_ROOT, "node_modules", "@playwright", "test")), "run npm install (dev dependencies)"
    name = add_spec(engine, IPYKERNEL7_IMAGE, name="ui-base")  # encrypted (CurveZMQ): the panel works through it
    # A kernelspec for the test Swarm: the banner and the GPU view show its nodes and GPUs.
    add_spec(engine, BASE_IMAGE, name="ui-swarm", placement="swarm", docker_host=swarm.manager_url, gpus="1")
    pull_image = _unique_image(engine, registry, megabytes=16)
    # A kernelspec whose image is only in the registry, behind a 2 MB/s link: its start pulls it.
    pushed = kernel_image_in_registry(engine, registry, megabytes=16)
    start_pull_image = pushed.replace(registry, f"127.0.0.1:{slow_registry.port}")
    engine.api.tag(pushed, *start_pull_image.rsplit(":", 1))
    start_pull_kernel = add_spec(engine, start_pull_image, name="ui-start-pull", gpus="none")
    forget(engine, pushed, start_pull_image)
    # A notebook whose container kernel holds the (fake) GPU.
    session = _api(port, "api/sessions", "POST", {"path": "train.ipynb", "name": "train.ipynb", "type": "notebook", "kernel": {"name": name}})
    kernel_id = session["kernel"]["id"]
    container = next(k for k in _api(port, "mlcontainer/api/kernels")["kernels"] if k["kernel_id"] == kernel_id)
    pid = engine.api.inspect_container(container["container_id"])["State"]["Pid"]
    nvml.write_text(json.dumps({
        "driver": "550.54.15", "cuda": 12040,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-5d8c", "memory_total": 80 << 30, "memory_used": 21 << 30,
                  "utilization": 63, "temperature": 52, "power": 310000, "power_limit": 700000, "mig": 0,
                  "processes": [{"pid": pid, "used": 20 << 30}]}],
    }))
    # docs/panel.png is refreshed only on request (MLC_UPDATE_SCREENSHOT=1): a test run leaves
    # the working tree as it found it.
    docs_png = os.path.join(REPO_ROOT, "docs", "panel.png")
    screenshot = docs_png if os.environ.get("MLC_UPDATE_SCREENSHOT") else str(tmp_path / "panel.png")
    env = dict(
        os.environ, MLC_LAB_URL=f"http://127.0.0.1:{port}/", MLC_LAB_TOKEN=TOKEN, MLC_PULL_IMAGE=pull_image,
        MLC_KERNEL_IMAGE=IPYKERNEL7_IMAGE, MLC_SCREENSHOT=screenshot, CHROMIUM=CHROMIUM,
        MLC_RESTORE_SCREENSHOT=str(tmp_path / "restore-dialog.png"),
        MLC_START_PULL_KERNEL=start_pull_kernel, MLC_START_PULL_IMAGE=start_pull_image,
    )
    try:
        result = subprocess.run(
            [npx, "playwright", "test", "-c", "tests/ui"], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
        assert " passed" in result.stdout and " failed" not in result.stdout
        assert os.path.getsize(screenshot) > 10_000
        assert "encrypted (CurveZMQ)" in (tmp_path / "lab.log").read_text()  # the panel's kernels were
    finally:
        _api(port, f"api/sessions/{session['id']}", "DELETE")
        forget(engine, pull_image, start_pull_image)  # what the spec pulled
