"""The image probe is a real file (images/scripts/probe_image.py) run with plain Python: here with
this host's interpreter, as a probe runs it in an image (``python -c TEXT``), and through
``probe_image_sync`` with an engine that runs the command on the host instead of in a container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

from jupyter_mlcontainer.core.state import STATE_DIR_ENV
from jupyter_mlcontainer.images import probe
from jupyter_mlcontainer.kernels.launcher import host_pip_wheel

KEYS = {
    "executable", "python_version", "ipykernel", "curve", "pip", "pip_wheel", "torch", "torch_cuda", "conda", "venv",
    "externally_managed", "passwd", "group",
}


def run_probe(*options: str) -> dict:
    done = subprocess.run([sys.executable, *options, "-c", probe.PROBE_SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # one JSON line, nothing else
    return json.loads(lines[0])


def test_the_probe_reports_this_hosts_python():
    out = run_probe()
    assert set(out) == KEYS
    assert out["executable"] == sys.executable
    assert out["python_version"] == "%d.%d.%d" % sys.version_info[:3]
    assert out["ipykernel"] == metadata.version("ipykernel")  # a test dependency: installed here
    assert out["pip"] == metadata.version("pip") and out["pip_wheel"] is None  # a wheel only without pip
    assert isinstance(out["curve"], bool) and isinstance(out["conda"], bool)
    assert out["venv"] == (sys.prefix if sys.prefix != sys.base_prefix else "")
    assert "root:" in out["passwd"] and "root:" in out["group"]


def test_without_pip_the_probe_finds_the_pip_wheel_its_python_ships():
    """A venv without pip (`uv venv`) is lent the pip wheel its Python ships (ensurepip's, or
    Debian's python3-pip-whl): here this Python without its site-packages (-I -S), so without pip."""
    out = run_probe("-I", "-S")
    assert out["pip"] is None  # this host (the kernel side: launcher.py) looks in the same places
    assert (os.path.realpath(out["pip_wheel"]) if out["pip_wheel"] else "") == host_pip_wheel(), out["pip_wheel"]


def test_the_probe_text_is_the_packaged_file():
    path = probe.resources.files("jupyter_mlcontainer.images.scripts") / "probe_image.py"
    assert probe.PROBE_SCRIPT == path.read_text(encoding="utf-8")
    assert probe.PROBE_SCRIPT.isascii()  # it travels in argv, decoded by whatever locale the image has


class HostEngine:
    """Just what probe_image_sync asks of an engine; the "image" is this host's Python."""

    def inspect_image_sync(self, image):
        return {"Id": "sha256:" + "0" * 64, "Config": {"User": "1000", "Env": ["CUDA_VERSION=12.4.1", "A=b=c"]}}

    def run_to_completion_sync(self, image, command, **kwargs):
        candidate, *rest = command
        if candidate != "python3":
            return 127, "", f"exec: {candidate}: not found"
        done = subprocess.run([sys.executable, *rest], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr


def test_probe_image_sync_reads_the_answer_into_facts(tmp_path, monkeypatch):
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    facts = probe.probe_image_sync(HostEngine(), "host:python")
    assert facts.python == sys.executable and facts.usable
    assert facts.ipykernel == metadata.version("ipykernel")
    assert facts.cuda == "12.4.1" and facts.user == "1000" and facts.env["A"] == "b=c"
    assert "root:" in facts.passwd and not facts.probe_error
    assert probe._load_cached(facts.image_id) == facts  # cached: the next call does not probe
