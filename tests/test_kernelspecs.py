"""Kernelspecs and the command line: add, list, remove, probe, prepare, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from jupyter_mlcontainer.images.probe import default_prepared_tag
from jupyter_mlcontainer.core.errors import KernelSpecError
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec, list_kernelspecs, remove_kernelspec

from .conftest import BASE_IMAGE, NOIPYKERNEL_IMAGE, NOPYTHON_IMAGE, TORCH_IMAGE, execute, running_kernel


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )


def test_add_writes_an_ordinary_kernelspec(engine):
    spec = add_kernelspec(engine, TORCH_IMAGE, options={"gpus": "none", "memory": "8g", "env": {"A": "1"}})
    assert spec.name == "mlc-mlcontainer-test-torch-2-13-cpu"
    assert spec.display_name == f"{TORCH_IMAGE} (Python 3.11, PyTorch 2.13.0, CPU)"
    on_disk = KernelSpecManager().get_kernel_spec(spec.name)
    provisioner = on_disk.metadata["kernel_provisioner"]
    assert provisioner["provisioner_name"] == "mlcontainer-docker"
    assert provisioner["config"] == {"image": TORCH_IMAGE, "gpus": "none", "memory": "8g", "env": {"A": "1"}}
    assert on_disk.argv[-2:] == ["-f", "{connection_file}"]
    assert on_disk.argv[0].startswith("/usr/bin/python3")
    assert [s.name for s in list_kernelspecs()] == [spec.name]
    # The provisioner is registered where jupyter_client looks it up.
    from jupyter_client.provisioning import KernelProvisionerFactory

    assert "mlcontainer-docker" in KernelProvisionerFactory.instance().get_provisioner_entries()


def test_bad_options_are_refused(engine):
    with pytest.raises(KernelSpecError, match="--gpus"):
        add_kernelspec(engine, BASE_IMAGE, options={"gpus": "lots"})
    with pytest.raises(KernelSpecError, match="--memory"):
        add_kernelspec(engine, BASE_IMAGE, options={"memory": "huge"})
    with pytest.raises(KernelSpecError, match="--cpus"):
        add_kernelspec(engine, BASE_IMAGE, options={"cpus": "-1"})
    with pytest.raises(KernelSpecError, match="Kernel name"):
        add_kernelspec(engine, BASE_IMAGE, name="bad name!")
    with pytest.raises(KernelSpecError, match="kernel_transport 'udp'"):
        add_kernelspec(engine, BASE_IMAGE, options={"kernel_transport": "udp"})
    assert list_kernelspecs() == []


def test_remove_only_container_kernels(engine):
    spec = add_kernelspec(engine, BASE_IMAGE, name="to-remove")
    assert os.path.isdir(spec.resource_dir)
    remove_kernelspec("to-remove")
    assert not os.path.exists(spec.resource_dir)
    with pytest.raises(KernelSpecError, match="No kernelspec"):
        remove_kernelspec("to-remove")
    with pytest.raises(KernelSpecError, match="not a container kernel"):
        remove_kernelspec("echo")  # pytest-jupyter's plain kernelspec


def test_cli_kernel_add_list_remove(engine):
    result = cli("kernel", "add", BASE_IMAGE, "--name", "cli-kernel", "--gpus", "none", "--env", "X=1",
                 "--option", "kernel_transport=tcp", "--option", "transport_encryption=disabled", "--json")
    assert result.returncode == 0, result.stderr
    added = json.loads(result.stdout)
    assert added["config"] == {"gpus": "none", "env": {"X": "1"}, "kernel_transport": "tcp",
                               "transport_encryption": "disabled"}
    listed = cli("kernel", "list")
    assert "cli-kernel" in listed.stdout and BASE_IMAGE in listed.stdout
    ks = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], capture_output=True, text=True)
    assert "cli-kernel" in json.loads(ks.stdout)["kernelspecs"]
    assert cli("kernel", "remove", "cli-kernel").returncode == 0
    assert "cli-kernel" not in cli("kernel", "list").stdout


def test_cli_errors_are_messages_not_tracebacks(engine):
    for args, expected in (
        (("kernel", "add", "mlcontainer-test/nope:1"), "not present on the Docker engine"),
        (("kernel", "add", NOIPYKERNEL_IMAGE), "image prepare"),
        (("kernel", "add", NOPYTHON_IMAGE), "no Python interpreter"),
        (("kernel", "add", BASE_IMAGE, "--env", "NOEQUALS"), "expected KEY=VALUE"),
        (("kernel", "add", BASE_IMAGE, "--option", "colour=blue"), "Unknown kernel option 'colour'"),
        (("kernel", "remove", "nothing-here"), "No kernelspec"),
    ):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout)
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


def test_cli_engine_unreachable(engine, tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "kernel", "add", BASE_IMAGE],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 1
    assert "Docker engine not reachable" in result.stderr and "Traceback" not in result.stderr
    status = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "status"], capture_output=True, text=True, env=env
    )
    assert status.returncode == 0 and "not reachable" in status.stdout


def test_cli_probe_and_status(engine):
    result = cli("image", "probe", TORCH_IMAGE, "--json")
    facts = json.loads(result.stdout)
    assert facts["torch"].startswith("2.13.0") and facts["ipykernel"] and facts["python_version"].startswith("3.11")
    status = cli("status", "--json")
    data = json.loads(status.stdout)
    assert data["engine"]["reachable"] is True and data["engine"]["nvidia_runtime"] is False
    assert data["nvml"]["available"] is False and data["nvml"]["reason"]


def test_default_prepared_tag():
    assert default_prepared_tag("pytorch/pytorch:2.4.0-cuda12.1") == "pytorch/pytorch:2.4.0-cuda12.1-ipykernel"
    assert default_prepared_tag("localhost:5000/img") == "localhost:5000/img:latest-ipykernel"


async def test_prepare_makes_an_image_usable(engine, workspace, ipykernel_wheelhouse):
    tag = f"mlcontainer-test/noipykernel:prepared-{os.getpid()}"
    result = cli("kernel", "add", NOIPYKERNEL_IMAGE, "--prepare", "--tag", tag, "--wheelhouse", ipykernel_wheelhouse, "--name", "prepared")
    try:
        assert result.returncode == 0, result.stderr
        assert "Installed kernelspec prepared" in result.stdout
        async with running_kernel(engine, tag, workspace) as (km, kc):
            out, reply = await execute(kc, "import ipykernel; print('ok')")
            assert out.strip() == "ok"
    finally:
        engine.api.remove_image(tag, force=True)
