"""A real Jupyter server (pytest-jupyter) with container kernels, auth, and orphan clean-up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.cache.volume import remove_cache_volume
from jupyter_mlcontainer.core.labels import LABEL_KERNEL_ID, LABEL_OWNER, LABEL_ROLE
from jupyter_mlcontainer.core.identity import owner_is_dead
from jupyter_mlcontainer.kernels.orphans import reap_orphans

from .conftest import BASE_IMAGE, REPO_ROOT, add_spec, execute, our_kernel_containers, wait_until


async def test_kernelspecs_and_session_in_notebook_folder(engine, jp_fetch, jp_serverapp, workspace):
    name = add_spec(engine, BASE_IMAGE, name="served")
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)
    assert "served" in specs["kernelspecs"]
    assert specs["kernelspecs"]["served"]["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"] == "mlcontainer-docker"

    body = json.dumps({"path": "notebooks/analysis.ipynb", "type": "notebook", "name": "analysis.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    kernel_id = session["kernel"]["id"]
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        out, reply = await execute(kc, "import os; print(os.getcwd()); print(os.environ.get('JPY_SESSION_NAME'))")
        assert reply["status"] == "ok"
        cwd, session_name = out.split()
        assert cwd == str(workspace / "notebooks")
        assert session_name.endswith("notebooks/analysis.ipynb")
        assert len(our_kernel_containers(engine, kernel_id)) == 1
    finally:
        kc.stop_channels()
    await jp_fetch("api", "sessions", session["id"], method="DELETE")

    async def gone():
        return our_kernel_containers(engine, kernel_id) == []

    await wait_until(gone, timeout=30)


# Lists the images (probes start in the background for those never probed), waits until one of
# its probe containers exists, then exits at once: as a server stopped right after a listing.
LIST_AND_EXIT = r"""
import time
from jupyter_mlcontainer.engines.docker import LABEL_OWNER
from jupyter_mlcontainer.core.identity import owner_id
from jupyter_mlcontainer.service import cli_service

service = cli_service()
pending = sum(row["facts"]["probe"] == "pending" for row in service.images())
deadline = time.monotonic() + 60
while not service.engine.containers_sync([f"{LABEL_OWNER}={owner_id()}"]) and time.monotonic() < deadline:
    time.sleep(0.01)
print(owner_id(), pending, len(service.engine.containers_sync([f"{LABEL_OWNER}={owner_id()}"])), flush=True)
"""


def test_a_process_that_exits_while_probing_images_leaves_no_container(engine, tmp_path):
    """Image probes run in helper containers in the background; a process that exits while they
    run (here: as soon as one exists) removes them on its way out, created or running."""
    env = dict(os.environ, JUPYTER_MLCONTAINER_STATE_DIR=str(tmp_path / "state"))  # nothing probed yet
    done = subprocess.run([sys.executable, "-c", LIST_AND_EXIT], env=env, capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    owner, pending, running = done.stdout.split()
    assert int(pending) > 0 and int(running) > 0, done.stdout  # it exited with probes under way
    assert engine.api.containers(all=True, filters={"label": f"{LABEL_OWNER}={owner}"}) == []


async def test_status_endpoint_requires_auth(jp_fetch, jp_serverapp, engine):
    data = json.loads((await jp_fetch("mlcontainer", "api", "status")).body)
    assert data["engine"]["reachable"] is True
    assert data["nvml"]["available"] is False and "NVML" in data["nvml"]["reason"]
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "api", "status", headers={"Authorization": ""})
    assert info.value.code == 403


async def test_kernel_start_failure_is_reported_and_server_survives(engine, jp_fetch):
    # A GPU request the engine cannot meet: no NVIDIA runtime here (CI); on a GPU host, more
    # GPUs than it has.
    gpus = "64" if engine.has_nvidia_runtime_sync() else "all"
    name = add_spec(engine, BASE_IMAGE, gpus=gpus)
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    assert info.value.code == 400
    message = json.loads(info.value.response.body)["message"]
    assert ("64 GPUs requested" if gpus == "64" else "NVIDIA Container Toolkit") in message
    # The server is still up and no container was left behind.
    assert (await jp_fetch("api", "status")).code == 200
    assert our_kernel_containers(engine) == []


HOLD_LEASE = "import sys; from jupyter_mlcontainer.core.identity import owner_id; print(owner_id(), flush=True); sys.stdin.read()"


def test_reap_removes_only_dead_owners(engine):
    def owner_process():
        proc = subprocess.Popen([sys.executable, "-c", HOLD_LEASE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, cwd=REPO_ROOT)
        return proc, proc.stdout.readline().strip()

    dead, dead_owner = owner_process()
    dead.kill()  # SIGKILL: no atexit, the lease file stays, its lock is gone
    dead.wait()
    alive, alive_owner = owner_process()
    made = {}
    try:
        owners = (("dead", dead_owner), ("alive", alive_owner), ("unknown", uuid.uuid4().hex),
                  ("old-format", f"{socket.gethostname()}/{dead.pid}/1"))
        for label, owner in owners:
            made[label] = engine.api.create_container(
                BASE_IMAGE, command=["true"],
                labels={LABEL_ROLE: "kernel", LABEL_OWNER: owner, LABEL_KERNEL_ID: f"reap-{label}"},
            )["Id"]
        removed = {o.container_id for o in reap_orphans(engine)}
        # Other dead processes' leftovers on a shared engine may go too; ours must, the rest must not.
        assert made["dead"] in removed and not removed & {made[k] for k in ("alive", "unknown", "old-format")}
        for label in ("alive", "unknown", "old-format"):
            assert engine.api.inspect_container(made[label])["Id"] == made[label]
        assert owner_is_dead(dead_owner) is None  # its lease is forgotten once its containers are gone
        assert owner_is_dead(alive_owner) is False
    finally:
        alive.kill()
        for cid in made.values():
            engine.remove_container_sync(cid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root, port, log_path, env):
    log = open(log_path, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         "--IdentityProvider.token=secret", f"--ServerApp.root_dir={root}", "--no-browser",
         "--ServerApp.jpserver_extensions=jupyter_mlcontainer=True",
         *(["--allow-root"] if os.getuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )


def _request(port, path, method="GET", body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}", method=method, data=body,
        headers={"Authorization": "token secret", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read() or b"null")


def _wait_http(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return _request(port, "api/status")
        except Exception:
            time.sleep(0.3)
    raise AssertionError("server did not come up")


def _build_step_containers(engine, marker: str) -> list[dict]:
    """The containers of a build's RUN step whose command carries ``marker``."""
    return [c for c in engine.api.containers(all=True) if marker in (c.get("Command") or "")]


def test_sigkilled_server_orphans_are_removed_by_the_next_server(engine, workspace, tmp_path):
    name = add_spec(engine, BASE_IMAGE, name="orphan-test")
    env = os.environ.copy()
    first_port, second_port = _free_port(), _free_port()
    marker = f"mlc-killed-build-{uuid.uuid4().hex[:8]}"
    (workspace / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN sleep 300 && echo {marker}\n")
    tag = f"mlcontainer-test/killed-build:{marker}"
    first = _start_server(workspace, first_port, tmp_path / "first.log", env)
    try:
        _wait_http(first_port)
        kernel = _request(first_port, "api/kernels", "POST", json.dumps({"name": name}).encode())
        assert len(our_kernel_containers(engine, kernel["id"])) == 1
        # A build job in the middle of a RUN step when the server dies.
        _request(first_port, "mlcontainer/api/images/build", "POST", json.dumps({"dockerfile": "Dockerfile", "tag": tag}).encode())
        deadline = time.time() + 60
        while not _build_step_containers(engine, marker) and time.time() < deadline:
            time.sleep(0.2)
        assert _build_step_containers(engine, marker), "the build never reached its RUN step"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The killed server could not clean up: its container still runs.
    assert len(our_kernel_containers(engine, kernel["id"])) == 1
    # Its build went with it: the engine cancels a build whose client is gone and removes the
    # step's container; no image carries the tag; no half-written file is in the workspace.
    deadline = time.time() + 60
    while _build_step_containers(engine, marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _build_step_containers(engine, marker) == []
    assert not engine.api.images(name=tag)
    assert sorted(p.name for p in workspace.iterdir()) == ["Dockerfile", "notebooks"]

    # A live server's kernel must survive the next server's clean-up.
    live_port = _free_port()
    live = _start_server(workspace, live_port, tmp_path / "live.log", env)
    second = None
    try:
        _wait_http(live_port)
        live_kernel = _request(live_port, "api/kernels", "POST", json.dumps({"name": name}).encode())
        deadline = time.time() + 30
        while our_kernel_containers(engine, kernel["id"]) and time.time() < deadline:
            time.sleep(0.3)  # the live server itself reaps the dead one's container at start
        second = _start_server(workspace, second_port, tmp_path / "second.log", env)
        _wait_http(second_port)
        deadline = time.time() + 30
        while "orphan clean-up done" not in (tmp_path / "second.log").read_text() and time.time() < deadline:
            time.sleep(0.1)  # until the second server's clean-up has run
        assert "orphan clean-up done" in (tmp_path / "second.log").read_text()
        assert our_kernel_containers(engine, kernel["id"]) == []
        assert len(our_kernel_containers(engine, live_kernel["id"])) == 1
        logs = (tmp_path / "live.log").read_text() + (tmp_path / "second.log").read_text()
        assert "Removed 1 orphaned container(s)" in logs
        assert kernel["id"] in logs
    finally:
        for proc in (live, second):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    assert our_kernel_containers(engine, live_kernel["id"]) == []


def test_one_setting_for_the_panel_the_kernels_and_the_cli(engine, workspace, tmp_path):
    """c.MLContainer in jupyter_server_config.py decides the engine and the cache volume for
    the server's REST API (the panel), the kernels it starts and the CLI alike."""
    config = tmp_path / "server-config"
    config.mkdir()
    volume = f"mlctest-one-setting-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if k not in ("MLCONTAINER_CACHE_VOLUME", "DOCKER_HOST")}
    env["JUPYTER_CONFIG_DIR"] = str(config)
    name = add_spec(engine, BASE_IMAGE, name="one-setting")

    def cli_status() -> dict:
        done = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "status", "--json"],
                              capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # The cache volume.
    (config / "jupyter_server_config.py").write_text(f"c.MLContainer.cache_volume = {volume!r}\n")
    port = _free_port()
    server = _start_server(workspace, port, tmp_path / "volume.log", env)
    try:
        _wait_http(port)
        assert _request(port, "mlcontainer/api/status")["cache_volume"]["name"] == volume
        kernel = _request(port, "api/kernels", "POST", json.dumps({"name": name}).encode())
        (container,) = engine.containers_sync([f"{LABEL_KERNEL_ID}={kernel['id']}"])
        mounted = [m["Name"] for m in engine.api.inspect_container(container["Id"])["Mounts"] if m["Type"] == "volume"]
        assert mounted == [volume]
        assert _request(port, "mlcontainer/api/volumes")["cache"]["name"] == volume
        assert cli_status()["cache_volume"]["name"] == volume
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        remove_cache_volume(engine, volume)

    # The engine: an address with nothing behind it is the one every front door reports.
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    (config / "jupyter_server_config.py").write_text(f"c.MLContainer.docker_host = {nowhere!r}\n")
    port = _free_port()
    server = _start_server(workspace, port, tmp_path / "engine.log", env)
    try:
        _wait_http(port)
        status = _request(port, "mlcontainer/api/status")
        assert status["engine"]["reachable"] is False and nowhere in status["engine"]["reason"]
        with pytest.raises(urllib.error.HTTPError) as info:
            _request(port, "api/kernels", "POST", json.dumps({"name": name}).encode())
        assert info.value.code == 503 and nowhere in json.loads(info.value.read())["message"]
        cli = cli_status()
        assert cli["engine"]["reachable"] is False and nowhere in cli["engine"]["reason"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_a_failed_start_leaves_nothing_behind(engine, workspace, tmp_path):
    """Engine down, image missing, a GPU request the host cannot meet: each start fails with a
    clear 4xx/5xx, and leaves no container, no connection folder, and no kernel id that breaks
    the server's shutdown later (which logs no error)."""
    from jupyter_client.kernelspec import KernelSpecManager

    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime))

    def variant(name: str, **config) -> str:
        spec_name = add_spec(engine, BASE_IMAGE, name=name)
        path = os.path.join(KernelSpecManager().get_kernel_spec(spec_name).resource_dir, "kernel.json")
        with open(path) as f:
            spec = json.load(f)
        spec["metadata"]["kernel_provisioner"]["config"].update(config)
        with open(path, "w") as f:
            json.dump(spec, f)
        return spec_name

    gpus = "64" if engine.has_nvidia_runtime_sync() else "all"
    cases = [
        (variant("fail-engine", docker_host=f"unix://{tmp_path}/no-engine.sock"), 503, "not reachable"),
        # Pulled at start (no registry reachable here): the registry's reason, at once.
        (variant("fail-image", image="mlctest-missing/never:1"), 404, "pulling it failed"),
        (variant("fail-gpus", gpus=gpus), 400, "GPU"),
    ]
    port = _free_port()
    server = _start_server(workspace, port, tmp_path / "server.log", env)
    try:
        _wait_http(port)
        for name, status, text in cases:
            with pytest.raises(urllib.error.HTTPError) as info:
                _request(port, "api/kernels", "POST", json.dumps({"name": name}).encode())
            message = json.loads(info.value.read())["message"]
            assert info.value.code == status and text in message, (name, info.value.code, message)
        assert _request(port, "api/kernels") == []  # no kernel id left to shut down later
        assert [c for c in engine.containers_sync([f"{LABEL_KERNEL_ID}"]) if c.get("Labels", {}).get(
            "org.jupyter.mlcontainer.kernel-name", "").startswith("fail-")] == []
        assert not list(runtime.glob("mlcontainer-*-*")), "a connection folder was left"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    shutdown = (tmp_path / "server.log").read_text().split("received signal 15", 1)[1]
    assert "Traceback" not in shutdown and "[E " not in shutdown, shutdown[-3000:]


def test_doctor_says_what_is_ready_and_how_to_fix_what_is_not(engine, tmp_path):
    name = add_spec(engine, BASE_IMAGE, name="doctor-base")

    def doctor(**env) -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "doctor", "--json"],
                              capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO_ROOT, timeout=300)
        return done.returncode, json.loads(done.stdout)

    code, report = doctor()
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0 and report["ok"], report
    assert checks["engine"]["ok"] and "Docker 20.10" in checks["engine"]["detail"]
    assert not checks["engine isolation"]["ok"] and "one rootless engine per user" in checks["engine isolation"]["fix"]
    assert checks[f"kernel {name}"]["ok"] and "ipykernel" in checks[f"kernel {name}"]["detail"]
    assert checks[f"cache volume {os.environ['MLCONTAINER_CACHE_VOLUME']}"]["ok"]
    assert checks["server extension"]["ok"]
    # No engine at the configured address: a blocking failure, with the fix, exit 1.
    code, report = doctor(DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    (engine_check,) = [c for c in report["checks"] if c["name"] == "engine"]
    assert code == 1 and not engine_check["ok"] and engine_check["blocking"] and "docker_host" in engine_check["fix"]
