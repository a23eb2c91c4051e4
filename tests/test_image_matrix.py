"""Every kernel test on every image kind users run: start, execute, interrupt, restart with a
client connected, shutdown and freeze, on Debian's ipykernel 6.17 (the oldest supported),
today's ipykernel 7.x from PyPI, Debian trixie (Python 3.13, ipykernel 6.29), a venv image, a
pytorch/pytorch-shaped conda prefix, a docker-stacks-shaped image with USER 1000 and an
nvidia/cuda-shaped image with a banner ENTRYPOINT and NVIDIA_VISIBLE_DEVICES=all.

One kernel per image goes through the whole lifecycle (each step asserts on its own), so the
matrix costs seven kernel starts plus one restart each, and one freeze each.
"""

from __future__ import annotations

import ast
import asyncio
import glob
import os

import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir

from jupyter_mlcontainer.environments.freeze import freeze_container, kernel_environment
from jupyter_mlcontainer.images.probe import probe_image_sync
from jupyter_mlcontainer.kernels.container_spec import CONTAINER_PORTS

from .conftest import (
    CONDA_IMAGE,
    CUDA_IMAGE,
    IPYKERNEL7_IMAGE,
    JOVYAN_IMAGE,
    MATRIX_IMAGES,
    SESSION_TAG,
    TRIXIE_IMAGE,
    UVVENV_IMAGE,
    VENV_IMAGE,
    add_spec,
    execute,
    execute_after_error,
    our_kernel_containers,
    running_kernel,
    start_running_cell,
    wait_for_status,
)
from .test_freeze import hadolint_errors, make_wheel

# What each image's kernel must run with (sys.executable, ipykernel major.minor).
EXPECTED_PYTHON = {
    IPYKERNEL7_IMAGE: ("/usr/bin/python3", "7."),
    TRIXIE_IMAGE: ("/usr/bin/python3", "6.29"),
    VENV_IMAGE: ("/opt/venv/bin/python3", "7."),
    UVVENV_IMAGE: ("/app/.venv/bin/python3", "7."),
    CONDA_IMAGE: ("/opt/conda/bin/python3", "7."),
    JOVYAN_IMAGE: ("/opt/conda/bin/python3", "7."),
    CUDA_IMAGE: ("/usr/bin/python3", "7."),
}

matrix = pytest.mark.parametrize("image", MATRIX_IMAGES, ids=lambda image: image.split("/")[-1])


def connection_folders() -> set[str]:
    """This user's per-launch connection folders (they hold the kernel's key)."""
    return set(glob.glob(os.path.join(jupyter_runtime_dir(), "mlcontainer-*-*")))  # mlcontainer-<kernel>-<random>


@matrix
async def test_kernel_lifecycle(engine, workspace, image):
    nb_dir = workspace / "notebooks"
    name = add_spec(engine, image, gpus="none", workspace=str(workspace))
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=str(nb_dir))
    kc = km.client()
    kc.start_channels()
    try:
        # -- start: ready, one private connection folder
        await kc.wait_for_ready(timeout=60)
        first_folder = km.provisioner._conn_dir
        assert connection_folders() == {first_folder}
        assert os.stat(first_folder).st_mode & 0o777 == 0o700

        # -- execute: the image's own Python and ipykernel, in the notebook's folder, as the user
        out, reply = await execute(
            kc,
            "import ipykernel, os, sys\n"
            "print(sys.executable); print(ipykernel.__version__); print(os.getcwd())\n"
            "print(os.getuid(), os.getgid()); print(os.environ.get('NVIDIA_VISIBLE_DEVICES'))\n"
            "open('from-kernel.txt', 'w').write('hi')\n"
            "print(open('/proc/sys/net/ipv4/ip_local_port_range').read().split())",
        )
        assert reply["status"] == "ok", out
        executable, version, cwd, ids, visible, local_ports = out.splitlines()
        # The ports the kernel binds are outside the range its own outgoing connections draw
        # from (one of them once took iopub's port first and the kernel died at start).
        low, high = (int(p) for p in ast.literal_eval(local_ports))
        assert not [p for p in CONTAINER_PORTS.values() if low <= p <= high], (low, high)
        facts = probe_image_sync(engine, image)
        assert version == facts.ipykernel
        # Encrypted (CurveZMQ) exactly when the image's kernel can: ipykernel 7.4 or newer.
        can_encrypt = tuple(int(x) for x in version.split(".")[:2]) >= (7, 4)
        assert facts.curve == can_encrypt and (km.curve_publickey is not None) == can_encrypt
        if image in EXPECTED_PYTHON:
            want_python, want_version = EXPECTED_PYTHON[image]
            assert os.path.realpath(executable) == os.path.realpath(want_python) or executable == want_python, executable
            assert version.startswith(want_version), version
        assert cwd == str(nb_dir)
        assert ids == f"{os.getuid()} {os.getgid()}"  # not the image's USER
        assert visible == "void"  # --gpus none: no GPU whatever the image's ENV says
        written = nb_dir / "from-kernel.txt"
        assert (written.stat().st_uid, written.stat().st_gid) == (os.getuid(), os.getgid())

        # -- interrupt a running cell
        msg_id = await start_running_cell(kc)
        await km.interrupt_kernel()
        while True:
            reply_msg = await kc.get_shell_msg(timeout=20)
            if reply_msg["parent_header"].get("msg_id") == msg_id:
                break
        assert reply_msg["content"]["status"] == "error"
        assert reply_msg["content"]["ename"] == "KeyboardInterrupt"
        await wait_for_status(kc, "idle")
        out, reply = await execute_after_error(kc, "x = 41; print('alive')")
        assert out.strip() == "alive", (out, reply)

        # -- restart with this client connected: same sockets (in the same folder) and key, new container
        before = km.get_connection_info()
        first_container = km.provisioner.container_id
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "import os; print(os.getcwd(), 'x' in globals())")
        assert reply["status"] == "ok", out
        assert out.split() == [str(nb_dir), "False"]
        after = km.get_connection_info()
        for key in ("ip", "key", *CONTAINER_PORTS, "curve_publickey"):
            assert after.get(key) == before.get(key), key  # the client above reconnects as it was
        assert km.provisioner.container_id != first_container
        assert after["transport"] == "ipc" and after["ip"] == os.path.join(first_folder, "zmq")
        assert connection_folders() == {first_folder}  # the sockets' folder is the connection: kept
        assert len(our_kernel_containers(engine, km.kernel_id)) == 1
    finally:
        kc.stop_channels()
        # -- shutdown: nothing of the kernel is left
        await km.shutdown_kernel()
    assert our_kernel_containers(engine, km.kernel_id) == []
    assert connection_folders() == set()


@matrix
async def test_freeze(engine, workspace, image):
    wheelhouse = workspace / "wheelhouse"
    wheelhouse.mkdir()
    wheel = make_wheel(str(wheelhouse))
    # Its own cache volume: what `pip install` puts in the user site stays there for the next
    # kernels of the image (test_pip_persistence.py), and would be in other tests' freezes.
    async with running_kernel(engine, image, workspace, cache_volume=f"mlctest-installs-{SESSION_TAG}") as (km, kc):
        out, reply = await execute(
            kc,
            "import os, subprocess, sys\n"
            # What `%pip install` runs: no --break-system-packages, also on PEP 668 images (trixie).
            f"r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-index', {wheel!r}],"
            " capture_output=True, text=True)\n"
            "print(r.returncode, r.stderr[-300:])\n"
            "os.environ['MLC_FEATURE'] = 'enabled'",
        )
        assert reply["status"] == "ok" and out.startswith("0"), out
        runtime_env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        result = await asyncio.get_running_loop().run_in_executor(
            None, lambda: freeze_container(engine, km.provisioner.container_id, runtime_env=runtime_env)
        )
    assert result.base_image.endswith(image)  # or its local registry copy, pinned by digest
    assert result.packages == {"mlcontainer-toy": "1.2.3"}, result.packages
    assert result.env == {"MLC_FEATURE": "enabled"}
    # pip's console script is pip's (its RECORD lists it): not "changed outside a package manager".
    assert not [w for w in result.warnings if "mlcontainer-toy" in w and "outside a package manager" in w], result.warnings
    lines = result.dockerfile.splitlines()
    assert lines[[line.startswith("FROM ") for line in lines].index(True)].startswith(f"FROM {result.base_image}")
    assert 'ENV MLC_FEATURE="enabled"' in lines
    assert "NVIDIA_VISIBLE_DEVICES" not in result.dockerfile  # ours, not the user's
    assert not any(line.startswith("ENTRYPOINT") for line in lines)  # the image's own stays
    assert lines[-1].startswith("USER ") and lines[-1] != "USER root"
    assert hadolint_errors(result.dockerfile_path) == ""
