"""Container kernels on a Slurm cluster (issue 24, ``placement: slurm``), on the real test cluster
(tests/slurm_cluster.py): a kernel's job waits in the queue, runs the kernel as a step in the
image's bundle as the login node's user, in the workspace on the shared file system, and is
executed, interrupted, restarted and shut down (job cancelled, its folder gone) through
jupyter_client like any container kernel."""

from __future__ import annotations

import asyncio
import os
import pwd
import time

import pytest
from jupyter_client.manager import AsyncKernelManager

from .box_users import TEST_USER
from .conftest import BASE_IMAGE, add_spec, execute, execute_after_error, running_kernel
from .slurm_cluster import make_users_folder


def login_command(slurm, user: str) -> str:
    """The test cluster's stand-in for ``ssh user@login``: its login node's tools as ``user``."""
    entry = pwd.getpwnam(user)
    return f"docker exec -i -u {entry.pw_uid}:{entry.pw_gid} -e HOME=/tmp {slurm.login}"


def slurm_options(slurm, workspace: str, **slurm_parts: str) -> dict:
    """A Slurm kernelspec's options as these tests give them: the login as the test user, the
    user's store in the shared folder (and ``slurm_parts``: time, hold...), the workspace; in the
    clear, since Debian's ipykernel 6.17 cannot encrypt (the encrypted test says otherwise)."""
    return dict(placement="slurm", slurm_login=login_command(slurm, TEST_USER),
                slurm={"store": os.path.join(slurm.shared, "mlc-store-{user}"), **slurm_parts},
                transport_encryption="disabled", workspace=workspace)


async def _death_of(km, timeout: float = 120):
    """The kernel's recorded death, once its provisioner has seen it end (within ``timeout``)."""
    from jupyter_mlcontainer.kernels.deaths import last_death

    deadline = time.monotonic() + timeout
    while await km.provisioner.poll() is None:
        assert time.monotonic() < deadline, "the kernel's death was not seen"
        await asyncio.sleep(0.2)
    return last_death(km.kernel_id)


def user_jobs(slurm, user: str) -> list[str]:
    done = slurm.as_user(user, ["squeue", "-h", "-u", user, "-o", "%i %T"])
    return [line for line in done.stdout.splitlines() if line.strip()]


async def wait_until_jobs_end(slurm, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while [line for line in user_jobs(slurm, TEST_USER) if line.split()[1] in ("RUNNING", "PENDING")]:
        assert time.monotonic() < deadline, user_jobs(slurm, TEST_USER)
        await asyncio.sleep(0.2)


@pytest.fixture
def workspace(slurm):
    entry = pwd.getpwnam(TEST_USER)
    folder = os.path.join(slurm.shared, f"ws-{TEST_USER}")
    make_users_folder(folder, entry.pw_uid, entry.pw_gid)
    yield folder
    slurm.as_user(TEST_USER, ["scancel", "-u", TEST_USER], check=False)


async def test_a_kernel_runs_as_a_step_of_its_job_and_is_interrupted_restarted_and_shut_down(engine, slurm, workspace):
    entry = pwd.getpwnam(TEST_USER)
    store = os.path.join(slurm.shared, f"mlc-store-{TEST_USER}")
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace, time="30"), memory="400m")
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        job_id = km.provisioner.container_id
        out, reply = await execute(kc, "import getpass, os\nprint(getpass.getuser(), os.environ['HOME'])")
        # The login node's account, with its own passwd entry and HOME in the cache (this server runs as root).
        assert out.split() == [TEST_USER, f"/opt/mlcontainer/cache/home/{TEST_USER}"], out
        out, reply = await execute(kc, (
            "import os, socket\nx = 1\n"
            "open('from-the-cluster.txt', 'w').write(os.environ['SLURMD_NODENAME'])\n"
            "print(os.getuid(), os.getgid(), os.getcwd(), os.environ.get('SLURM_JOB_ID'), os.environ['HOME'])"
        ))
        assert reply["status"] == "ok", out
        uid, gid, cwd, slurm_job, home = out.split()
        assert (int(uid), int(gid)) == (entry.pw_uid, entry.pw_gid) and cwd == workspace and slurm_job == job_id
        written = os.stat(os.path.join(workspace, "from-the-cluster.txt"))
        assert (written.st_uid, written.st_gid) == (entry.pw_uid, entry.pw_gid)
        with open(os.path.join(workspace, "from-the-cluster.txt")) as f:
            assert f.read() in slurm.nodes
        assert os.stat(store).st_uid == entry.pw_uid and os.stat(store).st_mode & 0o777 == 0o700
        assert [f"{job_id} RUNNING"] == user_jobs(slurm, TEST_USER)

        # An interrupt is a signal to the step (scancel --signal=INT), delivered once.
        cell = asyncio.ensure_future(execute(kc, "import time\ntime.sleep(60)", timeout=90))
        await asyncio.sleep(2)
        await km.interrupt_kernel()
        out, reply = await asyncio.wait_for(cell, 30)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
        out, reply = await execute_after_error(kc, "print(40 + 2)")
        assert out.strip() == "42"

        # A restart is a new step in the same job (no second wait in the queue), on the same
        # node and ports: the client connected before keeps working.
        ports = dict(km.provisioner.host_ports)
        began = time.monotonic()
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=90)
        restart_seconds = time.monotonic() - began
        out, reply = await execute(kc, "import os\nprint(os.environ['SLURM_JOB_ID'], os.environ['SLURM_STEP_ID'], 'x' in dir())")
        assert reply["status"] == "ok", out
        assert out.split() == [job_id, "1", "False"], out  # the same job, its second step, a fresh kernel
        assert km.provisioner.host_ports == ports and km.provisioner.container_id == job_id
        assert [f"{job_id} RUNNING"] == user_jobs(slurm, TEST_USER)
        print(f"restart within the allocation: {restart_seconds:.2f} s")
        # The restarted kernel's own death is seen (the same job id, a new step).
        kc.execute("import os\nos._exit(3)")
        deadline = time.monotonic() + 30
        while (code := await km.provisioner.poll()) is None:
            assert time.monotonic() < deadline, "the restarted kernel's exit was not seen"
            await asyncio.sleep(0.1)
        assert code == 3
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    # Shut down: the job is cancelled at once (not held: no restart follows), the folder is gone.
    await wait_until_jobs_end(slurm, timeout=5)
    assert os.listdir(os.path.join(store, "kernels")) == []


def fill_the_cluster(slurm) -> list[str]:
    """A job on every core of every node (as another user's work would be)."""
    jobs = []
    for _ in slurm.nodes:
        done = slurm.as_user(TEST_USER, ["sbatch", "--parsable", "-N1", "-c2", "--mem=100M", "--time=10",
                                         "--wrap", "exec sleep infinity"])
        jobs.append(done.stdout.strip())
        slurm.wait_for_state(jobs[-1], {"RUNNING"})
    return jobs


def kernel_jobs(slurm) -> list[str]:
    """The test user's kernels' jobs still queued or running (a kernel's job is named mlc-...)."""
    done = slurm.as_user(TEST_USER, ["squeue", "-h", "-u", TEST_USER, "-t", "PENDING,RUNNING", "-o", "%j %i %T"])
    return [line for line in done.stdout.splitlines() if line.startswith("mlc-")]


async def test_a_kernel_whose_job_waits_says_why_and_leaves_no_job_behind(engine, slurm, workspace):
    fill_the_cluster(slurm)
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace, time="5"), placement_timeout=6, cpus=2)
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(Exception) as refused:
        await km.start_kernel(cwd=workspace)
    message = str(refused.value)
    assert "waiting in the queue of partition debug: the nodes it needs are busy (Resources)" in message, message
    assert "placement_timeout" in message and "estimated start" in message, message
    assert kernel_jobs(slurm) == []  # cancelled, not left in the queue


async def test_a_kernel_whose_job_is_cancelled_dies_with_slurms_reason(engine, slurm, workspace):
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace))
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    try:
        job_id = km.provisioner.container_id
        slurm.as_user(TEST_USER, ["scancel", job_id])  # the user (or an admin) cancels it from outside
        death = await _death_of(km, timeout=30)
        assert death is not None and f"Job {job_id} was cancelled on " in death.message(), death
    finally:
        await km.shutdown_kernel(now=True)
    assert kernel_jobs(slurm) == []


async def test_a_workspace_not_on_the_cluster_is_refused_at_once(engine, slurm, workspace, tmp_path):
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, str(tmp_path)))
    km = AsyncKernelManager(kernel_name=name)
    began = time.monotonic()
    with pytest.raises(Exception) as refused:
        await km.start_kernel(cwd=str(tmp_path))
    assert f"{tmp_path} is not on the Slurm cluster" in str(refused.value) and "shared file system" in str(refused.value)
    assert time.monotonic() - began < 10 and kernel_jobs(slurm) == []  # nothing was queued


async def test_a_store_someone_else_could_swap_is_refused(engine, slurm, workspace):
    """A store in a folder others may write to (not sticky): another user could rename the store
    away and put a link to their own folder in its place, and the kernels would run their files."""
    import shutil

    parent = os.path.join(slurm.shared, "group-writable")
    shutil.rmtree(parent, ignore_errors=True)
    os.mkdir(parent)
    os.chmod(parent, 0o777)
    try:
        name = add_spec(engine, BASE_IMAGE, placement="slurm", slurm_login=login_command(slurm, TEST_USER),
                        slurm={"store": os.path.join(parent, "store-{user}")},
                        transport_encryption="disabled", workspace=workspace)
        with pytest.raises(Exception) as refused:
            await AsyncKernelManager(kernel_name=name).start_kernel(cwd=workspace)
        assert f"{parent} is above the store and writable by others than {TEST_USER}" in str(refused.value)
        assert kernel_jobs(slurm) == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)


async def test_a_kernel_out_of_its_jobs_memory_dies_named_so(engine, slurm, workspace):
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace), memory="200m")
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        kc.execute("x = bytearray(600 * 1024 * 1024)")  # three times the job's --mem
        death = await _death_of(km, timeout=60)
        assert death is not None and "out of memory (memory limit 200m)" in death.message(), death
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def test_a_kernel_on_the_cluster_network_is_encrypted_by_default(engine, slurm, workspace):
    """The kernel binds its ports on its node, on the network every user's jobs share: an image
    whose ipykernel can (7.4+) is encrypted by default; a subscriber without the key reads none
    of its output, one with the key (its server's) does."""
    from .conftest import IPYKERNEL7_IMAGE
    from .test_security import _drain, _subscribe

    marker = "secret-slurm-output"
    async with running_kernel(engine, IPYKERNEL7_IMAGE, workspace, placement="slurm",
                              slurm_login=login_command(slurm, TEST_USER),
                              slurm={"store": os.path.join(slurm.shared, "mlc-store-{user}")}, workspace=workspace) as (km, kc):
        info = km.get_connection_info()
        assert info["ip"] in {node.address for node in slurm.nodes.values()} and km.curve_publickey is not None
        plain = _subscribe(info["ip"], [info[p] for p in ("iopub_port", "shell_port", "stdin_port", "control_port")])
        keyed = _subscribe(info["ip"], [info["iopub_port"]], km.curve_publickey)
        for _ in range(20):  # output over two seconds, while both subscribers listen
            await execute(kc, f"print({marker!r}, flush=True)")
            await asyncio.sleep(0.1)
        assert not any(marker.encode() in m for m in _drain(plain))
        assert any(marker.encode() in m for m in _drain(keyed))
        for sock in plain + keyed:
            sock.close()


def test_a_kernelspec_added_with_the_cli_runs_notebooks_with_nbconvert_and_papermill(engine, slurm, workspace):
    """``kernel add IMAGE --slurm LOGIN ...`` writes the kernelspec; the ordinary headless tools
    run notebooks on the cluster with it, in the notebook's folder on the shared file system."""
    import json
    import shutil
    import subprocess
    import sys
    import uuid

    import nbformat

    name = f"t-slurm-{uuid.uuid4().hex[:6]}"
    added = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "kernel", "add", BASE_IMAGE, "--name", name, "--json",
         "--slurm", login_command(slurm, TEST_USER), "--time-limit", "20", "--partition", "debug",
         "--slurm-store", os.path.join(slurm.shared, "mlc-store-{user}"),
         "--option", "transport_encryption=disabled", "--option", f"workspace={workspace}"],
        capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    spec = json.loads(added.stdout)
    try:
        config = json.load(open(os.path.join(spec["resource_dir"], "kernel.json")))["metadata"]["kernel_provisioner"]["config"]
        assert config["placement"] == "slurm" and config["slurm"] == {
            "partition": "debug", "time": "20", "store": os.path.join(slurm.shared, "mlc-store-{user}")}

        folder = os.path.join(workspace, "notebooks")
        os.makedirs(folder, exist_ok=True)
        os.chown(folder, pwd.getpwnam(TEST_USER).pw_uid, pwd.getpwnam(TEST_USER).pw_gid)
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": name, "display_name": name, "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("alpha = 1"),
                    nbformat.v4.new_code_cell("import os\nprint(os.getcwd(), os.environ['SLURM_JOB_ID'] != '', alpha * 10)")]
        nb.cells[0].metadata["tags"] = ["parameters"]
        path = os.path.join(folder, "report.ipynb")
        nbformat.write(nb, path)
        converted = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                                    "--output", "converted.ipynb", path], cwd=folder, capture_output=True, text=True,
                                   timeout=180)
        assert converted.returncode == 0, converted.stderr
        cell = nbformat.read(os.path.join(folder, "converted.ipynb"), as_version=4).cells[1]
        assert "".join(o.get("text", "") for o in cell.outputs).split() == [folder, "True", "10"]

        out = os.path.join(folder, "out.ipynb")
        papermill = subprocess.run([sys.executable, "-m", "papermill", path, out, "-p", "alpha", "7", "-k", name],
                                   cwd=folder, capture_output=True, text=True, timeout=180)
        assert papermill.returncode == 0, papermill.stderr
        cell = nbformat.read(out, as_version=4).cells[-1]
        assert "".join(o.get("text", "") for o in cell.outputs).split() == [folder, "True", "70"]
        assert kernel_jobs(slurm) == []  # each tool's kernel ended with its job
    finally:
        shutil.rmtree(spec["resource_dir"], ignore_errors=True)


SERVER_THAT_DIES = r"""
import asyncio, sys
from jupyter_client.manager import AsyncKernelManager

async def main():
    km = AsyncKernelManager(kernel_name=sys.argv[1])
    await km.start_kernel(cwd=sys.argv[2])
    print(km.provisioner.container_id, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_killed_servers_kernel_jobs_are_reaped_and_a_live_servers_are_not(engine, slurm, workspace):
    import signal
    import subprocess
    import sys

    from jupyter_mlcontainer.engines.slurm import get_slurm
    from jupyter_mlcontainer.kernels.orphans import reap_orphans

    login = login_command(slurm, TEST_USER)
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace))
    server = subprocess.Popen([sys.executable, "-c", SERVER_THAT_DIES, name, workspace], stdout=subprocess.PIPE,
                              text=True)
    try:
        orphan_job = server.stdout.readline().strip()
        assert orphan_job.isdigit(), "the server did not start its kernel"
    finally:
        server.send_signal(signal.SIGKILL)  # no clean-up of its own
        server.wait()
    store = os.path.join(slurm.shared, f"mlc-store-{TEST_USER}", "kernels")
    assert f"{orphan_job} RUNNING" in user_jobs(slurm, TEST_USER) and len(os.listdir(store)) == 1

    km = AsyncKernelManager(kernel_name=name)  # a live server's kernel, on the same cluster
    await km.start_kernel(cwd=workspace)
    try:
        live_job = km.provisioner.container_id
        reaped = await asyncio.to_thread(reap_orphans, get_slurm(login))
        assert [orphan.container_id for orphan in reaped] == [orphan_job]
        jobs = user_jobs(slurm, TEST_USER)
        assert f"{live_job} RUNNING" in jobs and not any(line.startswith(f"{orphan_job} ") and "RUNNING" in line
                                                         for line in jobs)
        assert len(os.listdir(store)) == 1  # the orphan's folder went; the live kernel's stays
    finally:
        await km.shutdown_kernel(now=True)


async def test_a_queued_kernel_is_listed_with_slurms_reason_and_cancelled_through_rest(engine, slurm, workspace, jp_fetch):
    """The panel's view while a kernel's job waits: GET /mlcontainer/api/kernels lists it with
    Slurm's reason and estimated start (so does `jupyter mlcontainer status`); DELETE cancels the
    job, and the start says so. Then a session started as the launcher does runs on a node, listed
    with its time left, and the panel's Stop ends its job."""
    import json

    from tornado.httpclient import HTTPClientError

    fillers = fill_the_cluster(slurm)
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace, time="5"), placement_timeout=300, cpus=2)
    start = asyncio.ensure_future(jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name, "path": ""})))

    async def queued():
        rows = json.loads((await jp_fetch("mlcontainer", "api", "kernels")).body)["kernels"]
        # Slurm gives the reason and the estimate at its next scheduling pass (every 2 s here).
        return next((r for r in rows if r.get("state") == "created" and "estimated start" in (r.get("status") or "")
                     and "(Resources)" in r["status"]), None)

    deadline = time.monotonic() + 60
    while (row := await queued()) is None:
        assert time.monotonic() < deadline and not start.done(), "the queued kernel was not listed"
        await asyncio.sleep(0.5)
    assert "the nodes it needs are busy (Resources)" in row["status"] and row["kernel_id"]
    assert len(kernel_jobs(slurm)) == 1
    # The CLI's status (another process: it finds the job in the queue by its labels) says so too.
    import subprocess
    import sys

    status = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "jupyter_mlcontainer.cli", "status"],
                                     capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if row["kernel_id"] in line)
    assert "waiting in the queue" in line and "(Resources)" in line, status.stdout
    assert "Slurm slurm:" in status.stdout

    cancelled = await jp_fetch("mlcontainer", "api", "kernels", row["kernel_id"], method="DELETE")
    assert cancelled.code == 204
    with pytest.raises(HTTPClientError) as failed:
        await asyncio.wait_for(start, 60)
    assert "was cancelled" in json.loads(failed.value.response.body)["message"]
    assert kernel_jobs(slurm) == []

    # With room again, the launcher's way (a session for a notebook) starts it; the panel's row
    # shows where it runs and how long it has left, and its Stop ends the job.
    for filler in fillers:
        slurm.as_user(TEST_USER, ["scancel", filler])
    body = json.dumps({"path": "report.ipynb", "type": "notebook", "name": "report.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    kernel_id = session["kernel"]["id"]
    rows = json.loads((await jp_fetch("mlcontainer", "api", "kernels")).body)["kernels"]
    (row,) = [r for r in rows if r["kernel_id"] == kernel_id]
    assert row["state"] == "running" and row["node"] in slurm.nodes and row["notebook_path"] == "report.ipynb"
    assert f"running on {row['node']}" in row["status"] and "left of 0:05:00" in row["status"], row
    stopped = await jp_fetch("mlcontainer", "api", "kernels", kernel_id, method="DELETE")
    assert stopped.code == 204 and kernel_jobs(slurm) == []


GPU_PROBE = """
import errno, os
seen = {}
for device in ("/dev/nvidia0", "/dev/nvidia1"):
    try:
        os.close(os.open(device, os.O_RDONLY))
        seen[device] = "open"
    except OSError as exc:  # a stand-in device node has no driver: ENXIO means it is there and allowed
        seen[device] = "mine" if exc.errno == errno.ENXIO else errno.errorcode[exc.errno]
print(os.environ["SLURMD_NODENAME"], os.environ.get("CUDA_VISIBLE_DEVICES"), sorted(d for d, s in seen.items() if s == "mine"))
"""


async def test_kernels_asking_for_a_gpu_each_get_distinct_ones_typed_or_not_and_the_gpu_view_says_whose(engine, slurm, workspace):
    from jupyter_mlcontainer.engines.slurm import get_slurm

    login = login_command(slurm, TEST_USER)
    options = dict(slurm_options(slurm, workspace), gpus="1", memory="300m")
    typed = dict(options, **slurm_options(slurm, workspace, gpu_type="h100"))  # the test nodes' GPUs are gpu:h100
    async with running_kernel(engine, BASE_IMAGE, workspace, **options) as (km1, kc1), \
            running_kernel(engine, BASE_IMAGE, workspace, **typed) as (km2, kc2):
        seen = []
        for kc in (kc1, kc2):
            out, reply = await execute(kc, GPU_PROBE)
            assert reply["status"] == "ok", out
            node, cuda, mine = out.split(maxsplit=2)
            assert cuda is not None and len(eval(mine)) == 1, out  # exactly one device node, its own
            seen.append((node, eval(mine)[0]))
        assert seen[0] != seen[1]  # two kernels, two GPUs
        held = {gpu["kernel_id"]: gpu["id"] for node in get_slurm(login).cluster_sync()["nodes"] for gpu in node["gpus"]
                if gpu["kernel_id"]}
        assert held == {km1.kernel_id: f"{seen[0][0]}:{seen[0][1][-1]}", km2.kernel_id: f"{seen[1][0]}:{seen[1][1][-1]}"}

    # A type no node has is refused at once, in Slurm's words, before anything waits.
    unknown = dict(options, **slurm_options(slurm, workspace, gpu_type="a100"))
    km = AsyncKernelManager(kernel_name=add_spec(engine, BASE_IMAGE, **unknown))
    with pytest.raises(Exception) as refused:
        await km.start_kernel(cwd=workspace)
    assert "has gpu:a100:1" in str(refused.value) and "node configuration is not available" in str(refused.value)
    assert not [name for name in os.listdir(os.path.join(slurm.shared, f"mlc-store-{TEST_USER}", "kernels"))
                if km.kernel_id[:8] in name]  # its folder went with the refusal


async def test_two_users_kernels_run_as_themselves_and_neither_can_touch_the_others(engine, slurm, workspace):
    from jupyter_mlcontainer.core.errors import EngineError
    from jupyter_mlcontainer.engines.slurm import get_slurm

    from .box_users import OTHER_USER

    other = pwd.getpwnam(OTHER_USER)
    other_workspace = os.path.join(slurm.shared, f"ws-{OTHER_USER}")
    make_users_folder(other_workspace, other.pw_uid, other.pw_gid)
    store = os.path.join(slurm.shared, "mlc-store-{user}")
    mine = dict(placement="slurm", slurm_login=login_command(slurm, TEST_USER), slurm={"store": store},
                transport_encryption="disabled", workspace=workspace)
    theirs = dict(mine, slurm_login=login_command(slurm, OTHER_USER), workspace=other_workspace)
    try:
        async with running_kernel(engine, BASE_IMAGE, workspace, **mine) as (km1, kc1), \
                running_kernel(engine, BASE_IMAGE, other_workspace, **theirs) as (km2, kc2):
            for kc, folder, entry in ((kc1, workspace, pwd.getpwnam(TEST_USER)), (kc2, other_workspace, other)):
                out, reply = await execute(kc, "import os\nopen('mine.txt', 'w').write('x')\nprint(os.getuid())")
                assert reply["status"] == "ok" and int(out) == entry.pw_uid, out
                assert os.stat(os.path.join(folder, "mine.txt")).st_uid == entry.pw_uid
            for user in (TEST_USER, OTHER_USER):  # each store is its user's alone
                st = os.stat(os.path.join(slurm.shared, f"mlc-store-{user}"))
                assert st.st_uid == pwd.getpwnam(user).pw_uid and st.st_mode & 0o077 == 0
            # The other user's login cannot signal or cancel this user's kernel: Slurm refuses.
            with pytest.raises(EngineError, match="Access/permission denied"):
                get_slurm(login_command(slurm, OTHER_USER)).login.run(["scancel", km1.provisioner.container_id])
            out, reply = await execute(kc1, "print('still here')")
            assert out.strip() == "still here"
    finally:
        slurm.as_user(OTHER_USER, ["scancel", "-u", OTHER_USER], check=False)


async def test_a_kernel_whose_node_fails_dies_naming_the_node(engine, slurm, workspace):
    import subprocess

    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace))
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    node = ""
    try:
        job_id = km.provisioner.container_id
        node = km.provisioner.engine.job(job_id).nodes
        subprocess.run(["docker", "kill", node], check=True, capture_output=True)  # the node's power goes
        death = await _death_of(km)  # slurmctld declares it down after SlurmdTimeout (10 s here)
        assert death is not None and f"The node of job {job_id} failed ({node})" in death.message(), death
    finally:
        await km.shutdown_kernel(now=True)
        if node:
            slurm.up()  # the node back, registered and idle again, for the tests after this one
    assert kernel_jobs(slurm) == []


async def test_a_kernel_past_its_time_limit_dies_naming_the_limit(engine, slurm, workspace):
    name = add_spec(engine, BASE_IMAGE, **slurm_options(slurm, workspace, time="1"))
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    try:
        job_id = km.provisioner.container_id
        row = km.provisioner.engine.containers_sync([f"org.jupyter.mlcontainer.kernel-id={km.kernel_id}"])[0]
        assert f"Job {job_id} running on " in row["Status"] and "left of 0:01:00" in row["Status"], row
        death = await _death_of(km, timeout=150)  # Slurm checks time limits about every 30 s
        assert death is not None and f"Job {job_id} reached its time limit (0:01:00)" in death.message(), death
    finally:
        await km.shutdown_kernel(now=True)


async def test_a_slurm_kernel_is_frozen_through_the_kernel_itself(engine, slurm, workspace):
    """The kernel's root file system is read-only and nothing runs beside it: freeze asks the
    kernel to run its inventory, as on a Swarm. What %pip installed (into the user's cache on the
    shared file system) is pinned, what %env set is written, Slurm's own variables are not."""
    from jupyter_mlcontainer.core.settings import MLContainer
    from jupyter_mlcontainer.environments.freeze import kernel_environment
    from jupyter_mlcontainer.service import MLContainerService

    from .test_freeze import make_wheel

    entry = pwd.getpwnam(TEST_USER)
    wheels = os.path.join(workspace, "wheels")
    make_users_folder(wheels, entry.pw_uid, entry.pw_gid)
    make_wheel(wheels, name="mlc_slurm_frozen", version="2.5")
    frozen = os.path.join(workspace, "frozen")
    make_users_folder(frozen, entry.pw_uid, entry.pw_gid)
    async with running_kernel(engine, BASE_IMAGE, workspace, **slurm_options(slurm, workspace)) as (km, kc):
        out, reply = await execute(kc, (
            f"%pip install -q --no-index --find-links {wheels} mlc_slurm_frozen==2.5\n"
            "%env MLC_ON_SLURM=yes\n"
            "import mlc_slurm_frozen\nprint('imported')"
        ), timeout=120)
        assert reply["status"] == "ok" and "imported" in out, out
        service = MLContainerService(MLContainer())
        loop = asyncio.get_running_loop()
        container = await loop.run_in_executor(None, service.container_of_kernel, km.kernel_id)
        assert container.backend is not service.engine  # found on the cluster
        runtime_env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        result, _ = await loop.run_in_executor(None, lambda: service.freeze(
            container, runtime_env, connection_info=km.get_connection_info(), output_dir=frozen))
        assert result.packages == {"mlc-slurm-frozen": "2.5"}, result.packages
        assert result.env == {"MLC_ON_SLURM": "yes"}, result.env  # not SLURM_*, not ours
        assert result.base_image.endswith(BASE_IMAGE)  # pinned: under the name it was pushed as, if any
        with open(os.path.join(frozen, "Dockerfile")) as f:
            assert 'ENV MLC_ON_SLURM="yes"' in f.read().splitlines()


async def test_with_hold_the_next_kernel_of_the_kernelspec_starts_in_the_held_job(engine, slurm, workspace):
    """A warm start on the cluster (the kernelspec's slurm option 'hold'): a shut-down kernel's
    job stays allocated for the next kernel of the same kernelspec, which starts in it without
    waiting in the queue; without 'hold', shutting down cancels the job."""
    options = dict(slurm_options(slurm, workspace, hold="60"), memory="300m")
    jobs = []
    for _ in range(2):
        async with running_kernel(engine, BASE_IMAGE, workspace, **options) as (km, kc):
            out, reply = await execute(kc, "import os\nprint(os.environ['SLURM_JOB_ID'], os.environ['SLURM_STEP_ID'])")
            jobs.append(out.split())
            comment = slurm.as_user(TEST_USER, ["squeue", "-h", "-j", jobs[-1][0], "-o", "%k"]).stdout
            assert km.kernel_id in comment  # the job is this kernel's now, for a later server's clean-up
        assert [line.split()[1] for line in kernel_jobs(slurm)] == [jobs[-1][0]]  # held, not cancelled
    assert jobs[0][0] == jobs[1][0] and jobs[1][1] == "1"  # the second kernel: the held job's next step
