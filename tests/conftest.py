"""Shared fixtures: a real Docker engine, the offline-built test images, real kernels.

Nothing here is mocked except NVML (no GPU on CI). The engine and images are prepared by
``scripts/ensure-engine.sh`` and ``scripts/build-test-images.sh`` (``.ci/run`` calls both);
a missing engine or image fails the tests loudly instead of skipping them.
"""

from __future__ import annotations

import asyncio
import os
import site
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import pytest
from jupyter_client.manager import AsyncKernelManager

pytest_plugins = ["pytest_jupyter.jupyter_server"]

BASE_IMAGE = "mlcontainer-test/base:bookworm"
TORCH_IMAGE = "mlcontainer-test/torch:2.13-cpu"
NOIPYKERNEL_IMAGE = "mlcontainer-test/noipykernel:bookworm"
NOPYTHON_IMAGE = "mlcontainer-test/nopython:latest"
# The image matrix (scripts/build-test-images.sh says what each is shaped like).
IPYKERNEL7_IMAGE = "mlcontainer-test/ipykernel7:bookworm"
TRIXIE_IMAGE = "mlcontainer-test/trixie:py3.13"
VENV_IMAGE = "mlcontainer-test/venv:bookworm"
UVVENV_IMAGE = "mlcontainer-test/uvvenv:bookworm"  # a venv without pip, as `uv venv` + `uv sync` make
CONDA_IMAGE = "mlcontainer-test/conda:bookworm"
JOVYAN_IMAGE = "mlcontainer-test/jovyan:bookworm"
CUDA_IMAGE = "mlcontainer-test/cuda:bookworm"
MATRIX_IMAGES = (BASE_IMAGE, IPYKERNEL7_IMAGE, TRIXIE_IMAGE, VENV_IMAGE, UVVENV_IMAGE, CONDA_IMAGE, JOVYAN_IMAGE,
                 CUDA_IMAGE)
TEST_IMAGES = (TORCH_IMAGE, NOIPYKERNEL_IMAGE, NOPYTHON_IMAGE, *MATRIX_IMAGES)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSION_TAG = uuid.uuid4().hex[:8]
CACHE_VOLUME = f"mlctest-cache-{SESSION_TAG}"


@pytest.fixture(scope="session", autouse=True)
def _session_environment(tmp_path_factory):
    """One probe cache and one cache volume for the whole run (removed at the end)."""
    state = tmp_path_factory.mktemp("mlcontainer-state")
    os.environ["JUPYTER_MLCONTAINER_STATE_DIR"] = str(state)
    os.environ["MLCONTAINER_CACHE_VOLUME"] = CACHE_VOLUME
    # The warm pool is tested on its own (test_pool.py); elsewhere a spare per kernelspec would
    # double every test's containers (MLCONTAINER_WARM_POOL is the pool size; 0 is off).
    os.environ["MLCONTAINER_WARM_POOL"] = "0"
    yield
    from jupyter_mlcontainer.engines.docker import get_engine

    engine = get_engine()
    try:
        for container in engine.our_containers_sync():
            if SESSION_TAG in str(container.get("Labels")):
                engine.remove_container_sync(container["Id"])
        for volume in engine.api.volumes(filters={"name": "mlctest-"}).get("Volumes") or []:
            if SESSION_TAG in volume["Name"]:
                engine.api.remove_volume(volume["Name"], force=True)
    except Exception as exc:  # clean-up must not hide test results
        print(f"clean-up after tests failed: {exc}")


@pytest.fixture(scope="session")
def engine():
    from jupyter_mlcontainer.engines.docker import get_engine

    engine = get_engine()
    engine.info_sync()  # raises EngineUnavailable with a clear message
    return engine


def require_image(engine, image: str) -> None:
    """Fail (never skip) when a test image is missing."""
    if image in TEST_IMAGES:
        try:
            engine.inspect_image_sync(image)
        except Exception:
            pytest.fail(f"test image {image} missing: run scripts/build-test-images.sh", pytrace=False)


@pytest.fixture
def jp_runtime_dir():
    """A short private runtime folder (pytest-jupyter's is deep in tmp_path): kernels on this
    host put their Unix sockets in it, and a socket's path has at most 107 bytes, as for users,
    whose runtime folder is ~/.local/share/jupyter/runtime."""
    import pathlib
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="mlc-rt-", dir="/tmp")
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _environ(jp_environ, monkeypatch):
    """Every test gets a private HOME / Jupyter data, config and runtime dirs.

    jupyter_core also searches the Python user base (~/.local/share/jupyter of the real HOME,
    computed at interpreter start), which jp_environ leaves in place: a kernelspec the developer
    installed with --user would leak into the tests."""
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    yield


@pytest.fixture
def workspace(tmp_path):
    """A project folder with a notebook subfolder, like a user's checkout."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    return root


@pytest.fixture
def jp_server_config(workspace):
    """pytest-jupyter's server with this extension; start-up clean-up off (test_server checks it
    with real server processes)."""
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_mlcontainer": True}},
        "MLContainerApp": {"reap_orphans_on_start": False},
    }


@pytest.fixture
def jp_root_dir(workspace):
    return workspace


def our_kernel_containers(engine, kernel_id: str | None = None) -> list[dict[str, Any]]:
    from jupyter_mlcontainer.core.labels import LABEL_CACHE_VOLUME, LABEL_KERNEL_ID

    # Only this test session's containers (they use its cache volume).
    found = [
        c for c in engine.our_containers_sync(role="kernel")
        if (c.get("Labels") or {}).get(LABEL_CACHE_VOLUME) == CACHE_VOLUME
    ]
    if kernel_id:
        found = [c for c in found if (c.get("Labels") or {}).get(LABEL_KERNEL_ID) == kernel_id]
    return found


def add_spec(engine, image: str, **options: Any) -> str:
    from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

    require_image(engine, image)
    name = options.pop("name", None) or f"t-{uuid.uuid4().hex[:8]}"
    return add_kernelspec(engine, image, name=name, options=options).name


@asynccontextmanager
async def running_kernel(engine, image: str, cwd: str, **options: Any) -> AsyncIterator[tuple[AsyncKernelManager, Any]]:
    """A started container kernel and a ready client; shut down (container removed) after."""
    name = add_spec(engine, image, **options)
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        yield km, kc
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def execute(kc, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """Run ``code``; return (stdout + stderr text, execute_reply content)."""
    chunks: list[str] = []

    def on_output(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            chunks.append("\n".join(msg["content"]["traceback"]))

    reply = await kc.execute_interactive(code, output_hook=on_output, timeout=timeout)
    return "".join(chunks), reply["content"]


async def execute_after_error(kc, code: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """``execute`` right after a cell failed (an interrupt): ipykernel answers "aborted" (runs
    nothing) to an execute request that reaches it before its stop-on-error window closes, one
    turn of its loop after the error; such a request is sent again."""
    for _ in range(3):
        out, reply = await execute(kc, code, timeout)
        if reply["status"] != "aborted":
            break
    return out, reply


async def wait_until(predicate, timeout: float = 20, interval: float = 0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def ipykernel_wheelhouse() -> str:
    """Wheels of ipykernel and its dependencies for the images' Python 3.11 (containers have
    no package index here). Fetched once from the host's index into the test cache."""
    import glob
    import subprocess
    import sys

    cache = os.environ.get("MLCONTAINER_TEST_CACHE", "/var/cache/mlcontainer-test")
    folder = os.path.join(cache, "wheelhouse-ipykernel")
    if not glob.glob(os.path.join(folder, "ipykernel-*.whl")):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux2014_x86_64", "--platform", "any",
             "-d", folder, "ipykernel"],
            check=True,
        )
    return folder


@pytest.fixture(scope="session")
def registry():
    """Debian's docker-registry on 127.0.0.1:5000 (started by scripts/local-registry.sh)."""
    import urllib.request

    try:
        urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=2)
    except Exception:
        import subprocess

        subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "local-registry.sh")], check=True)
    return "127.0.0.1:5000"


async def wait_for_status(kc, state: str, timeout: float = 30, parent: str | None = None) -> None:
    """Read IOPub until the kernel reports ``state`` (busy, idle), for the request ``parent``
    when given (IOPub also carries the statuses of other clients' requests), or time out."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == state:
            if parent is None or msg["parent_header"].get("msg_id") == parent:
                return


def spares_of(engine, kernelspec: str) -> list[str]:
    from jupyter_mlcontainer.kernels.pool import get_pool

    return [s["container_id"] for s in get_pool(engine).describe() if s["kernelspec"] == kernelspec]


async def a_spare(engine, kernelspec: str) -> str:
    async def made():
        return spares_of(engine, kernelspec)

    return (await wait_until(made, timeout=60))[0]


async def start_running_cell(kc, code: str = "import time; time.sleep(60)", timeout: float = 30) -> str:
    """Send a cell; return its msg_id once it runs (its first line has printed). Its "busy" status
    comes before ipykernel sets its SIGINT handler for the request (between requests it ignores
    SIGINT): an interrupt sent right at "busy" can be lost, as with a local kernel."""
    msg_id = kc.execute("print('mlc-cell-running', flush=True)\n" + code)
    deadline = time.monotonic() + timeout
    while True:
        msg = await kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if (msg["msg_type"] == "stream" and "mlc-cell-running" in msg["content"]["text"]
                and msg["parent_header"].get("msg_id") == msg_id):
            return msg_id


class ThrottledProxy:
    """A TCP proxy in front of a real server whose answers flow at ``rate`` bytes per second:
    a registry far away, so that a pull is still running when a test acts on it."""

    def __init__(self, target: tuple[str, int], rate: int) -> None:
        import socket
        import threading

        self.target, self.rate = target, rate
        self.connections: list = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.rate), daemon=True).start()

    def _pipe(self, source, sink, rate) -> None:
        chunk = 16384
        try:
            while True:
                data = source.recv(chunk)
                if not data:
                    break
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)  # the link's bandwidth
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        """The registry goes away, transfers under way included (an engine that goes on with a
        pull its client cancelled would otherwise finish it after the test and leave the image)."""
        import socket

        self.listener.close()
        for sock in self.connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


@pytest.fixture
def slow_registry(registry):
    """The local registry behind a 2 MB/s link: 127.0.0.1:<port>."""
    proxy = ThrottledProxy(("127.0.0.1", 5000), rate=2 << 20)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def slurm():
    """A real Slurm cluster (tests/slurm_cluster.py) with the box's test users, shared by the
    Slurm tests and removed at the end of the session (MLC_SLURM_KEEP=1 keeps it)."""
    import subprocess

    from .box_users import REPO, users_ready
    from .slurm_cluster import SlurmCluster

    if not users_ready():  # the cluster's users are the box's test users, with their uids
        subprocess.run(["bash", os.path.join(REPO, "scripts", "setup-test-user.sh")], check=True)
    cluster = SlurmCluster()
    try:
        cluster.up()
        print(f"slurm cluster up in {cluster.setup_seconds:.1f} s")
        yield cluster
    finally:
        if os.environ.get("MLC_SLURM_KEEP") != "1":
            cluster.down()


@pytest.fixture(scope="session")
def swarm():
    """A real three-node Docker Swarm (tests/swarm_cluster.py), shared by the Swarm tests and
    removed at the end of the session (MLC_SWARM_KEEP=1 keeps it for the next run)."""
    from jupyter_mlcontainer.cache.helper_image import helper_image
    from jupyter_mlcontainer.engines.docker import get_engine

    from .swarm_cluster import SwarmCluster

    # The cache keeper's image is on every node, as an admin puts it there (docs/swarm.md).
    cluster = SwarmCluster(images=(BASE_IMAGE, IPYKERNEL7_IMAGE, helper_image(get_engine()).ref))
    try:
        cluster.up()
        print(f"swarm cluster up in {cluster.setup_seconds:.1f} s")
        yield cluster
    finally:
        if os.environ.get("MLC_SWARM_KEEP") != "1":
            cluster.down()
