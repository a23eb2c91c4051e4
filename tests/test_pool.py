"""The warm pool (pool.py): a start claims a spare started ahead of it, and is then the same
kernel as a cold start to everything else; stale spares are never handed out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jupyter_mlcontainer.cache.volume import remove_cache_volume

from .conftest import (
    BASE_IMAGE,
    IPYKERNEL7_IMAGE,
    a_spare,
    add_spec,
    execute,
    our_kernel_containers,
    spares_of,
    wait_until,
)


@pytest.fixture
def pool_on(monkeypatch):
    monkeypatch.setenv("MLCONTAINER_WARM_POOL", "1")


async def start_session(jp_fetch, path: str, kernelspec: str) -> dict:
    body = json.dumps({"path": path, "type": "notebook", "name": os.path.basename(path), "kernel": {"name": kernelspec}})
    return json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)


@pytest.mark.parametrize("image", [BASE_IMAGE, IPYKERNEL7_IMAGE], ids=["debian-6.17", "ipykernel7"])
async def test_a_claimed_spare_is_the_notebooks_kernel(engine, jp_fetch, jp_serverapp, workspace, pool_on, image):
    """Debian's ipykernel 6.17 and today's 7.x (whose kernels run encrypted: the claim carries
    the CurveZMQ keys in the connection file)."""
    name = add_spec(engine, image, env={"MLC_FROM_SPEC": "yes"})
    (workspace / "notebooks" / "deep").mkdir()
    first = await start_session(jp_fetch, "notebooks/a.ipynb", name)  # cold: the pool learns the kernelspec
    spare = await a_spare(engine, name)
    session = await start_session(jp_fetch, "notebooks/deep/b.ipynb", name)
    kernel_id = session["kernel"]["id"]
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    assert km.provisioner.container_id == spare  # warm
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "import getpass, os, sys; print(os.getcwd(), os.environ['JPY_SESSION_NAME'], "
                                       "os.environ['JUPYTER_MLCONTAINER_KERNEL_ID'], os.environ['MLC_FROM_SPEC'], "
                                       "getpass.getuser(), os.environ['HOME'], sys.orig_argv[1])")
        assert reply["status"] == "ok", out
        cwd, session_name, env_kernel_id, from_spec, user, home, how = out.split()
        assert how == "-c"  # the spare's own process (python -c BOOTSTRAP), imports done before the claim
        assert cwd == str(workspace / "notebooks" / "deep") and session_name.endswith("deep/b.ipynb")
        assert env_kernel_id == kernel_id and from_spec == "yes" and home.endswith(f"/home/{user}")

        # Everything that maps containers to kernels sees the notebook's kernel.
        rows = json.loads((await jp_fetch("mlcontainer", "api", "kernels")).body)["kernels"]
        row = next(r for r in rows if r["container_id"] == spare)
        assert row["kernel_id"] == kernel_id and row["kernelspec"] == name and row["notebook_path"] == "notebooks/deep/b.ipynb"
        assert not any(r["kernel_id"] in ("", None) for r in rows)  # the new spare is not a kernel
        frozen = await jp_fetch("mlcontainer", "api", "kernels", kernel_id, "freeze", method="POST", body="{}")
        assert frozen.code == 201

        # The next start gets another container.
        next_spare = await a_spare(engine, name)
        assert next_spare != spare
        status = json.loads((await jp_fetch("mlcontainer", "api", "status")).body)
        idle = next(s for s in status["warm_pool"]["spares"] if s["container_id"] == next_spare)
        assert idle["kernelspec"] == name and idle["memory_usage"] > 0

        # Interrupt, restart on the same ports (with this client connected), shutdown.
        kc.execute("open('busy.flag', 'w').close(); import time; time.sleep(120)")

        async def busy():
            return (workspace / "notebooks" / "deep" / "busy.flag").exists()

        await wait_until(busy, timeout=30)
        await km.interrupt_kernel()
        reply = await kc.get_shell_msg(timeout=30)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        ports = {k: v for k, v in km.get_connection_info().items() if k.endswith("_port")}
        await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="{}")
        assert {k: v for k, v in km.get_connection_info().items() if k.endswith("_port")} == ports
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "print('after restart')")
        assert "after restart" in out
    finally:
        kc.stop_channels()
    for started in (first, session):
        await jp_fetch("api", "sessions", started["id"], method="DELETE")
    assert our_kernel_containers(engine, kernel_id) == []
    from jupyter_mlcontainer.kernels.claims import claim_of

    assert claim_of(spare) is None


async def test_a_stale_spare_is_never_handed_out(engine, tmp_path, pool_on):
    """One made before its image was rebuilt under the same tag, one made with a kernelspec
    that has since changed: neither is claimed, both are removed."""
    from jupyter_client.manager import AsyncKernelManager

    from jupyter_mlcontainer.images.jobs import JobRegistry

    tag = f"mlcontainer-test/pool-rebuilt:{os.getpid()}"

    def build(marker: str) -> None:
        (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL marker={marker}\n")
        job = JobRegistry(engine).build(str(tmp_path / "Dockerfile"), tag)
        assert job.wait(300) and job.state == "done", job.log

    async def start(name: str) -> str:
        km = AsyncKernelManager(kernel_name=name)
        await km.start_kernel(cwd=str(tmp_path))
        container = km.provisioner.container_id
        await km.shutdown_kernel(now=True)
        return container

    build("one")
    try:
        name = add_spec(engine, tag, name="pool-stale")
        await start(name)
        old = await a_spare(engine, name)
        build("two")  # the same tag now names another image
        assert await start(name) != old
        assert old not in [c["Id"] for c in engine.our_containers_sync()]

        fresh = await a_spare(engine, name)
        add_spec(engine, tag, name="pool-stale", env={"CHANGED": "1"})  # same kernelspec, new config
        assert await start(name) != fresh
        assert fresh not in [c["Id"] for c in engine.our_containers_sync()]
    finally:
        from jupyter_mlcontainer.kernels.pool import get_pool

        get_pool(engine).close()
        engine.api.remove_image(tag, force=True)


async def test_a_spare_cannot_make_the_server_write_a_file_of_its_host(engine, tmp_path, pool_on):
    """Issue 22, finding 7: a spare's container (an image's .pth, its user's code) swaps the
    claim FIFO in its folder for a link to a file of the host. The claim refuses it and writes
    nothing there; the start goes cold, and the kernel works."""
    from jupyter_client.manager import AsyncKernelManager

    from jupyter_mlcontainer.kernels.pool import get_pool

    victim = tmp_path / "victim.txt"
    victim.write_text("the host's file")
    name = add_spec(engine, BASE_IMAGE, name="pool-claim-link")
    try:
        km = AsyncKernelManager(kernel_name=name)
        await km.start_kernel(cwd=str(tmp_path))
        await km.shutdown_kernel(now=True)  # the pool learned the kernelspec
        spare = await a_spare(engine, name)
        swap = ("import os, time\n"
                "fifo = '/run/mlcontainer/claim'\n"
                "while not os.path.exists(fifo): time.sleep(0.01)\n"
                f"os.unlink(fifo); os.symlink({str(victim)!r}, fifo); print('swapped')")
        code, out = engine.exec_sync(spare, ["python3", "-c", swap])[:2]
        assert code == 0 and "swapped" in out, out
        km = AsyncKernelManager(kernel_name=name)
        await km.start_kernel(cwd=str(tmp_path))
        try:
            assert km.provisioner.container_id != spare  # cold
            kc = km.client()
            kc.start_channels()
            await kc.wait_for_ready(timeout=60)
            out, reply = await execute(kc, "print('cold and well')")
            kc.stop_channels()
            assert reply["status"] == "ok" and "cold and well" in out
        finally:
            await km.shutdown_kernel(now=True)
        assert victim.read_text() == "the host's file"
        assert spare not in [c["Id"] for c in engine.our_containers_sync()]  # discarded
    finally:
        get_pool(engine).close()


def test_spares_of_a_killed_server_are_reaped_by_the_next(engine, workspace, tmp_path):
    from jupyter_mlcontainer.core.labels import LABEL_OWNER, LABEL_SPARE
    from jupyter_mlcontainer.kernels.orphans import reap_orphans

    from .test_server import _free_port, _request, _start_server, _wait_http

    name = add_spec(engine, BASE_IMAGE, name="pool-orphan")
    env = {**os.environ, "MLCONTAINER_WARM_POOL": "1"}
    port = _free_port()
    server = _start_server(workspace, port, tmp_path / "first.log", env)

    def its_spares(owner: str) -> list[str]:
        return [c["Id"] for c in engine.containers_sync([LABEL_SPARE, f"{LABEL_OWNER}={owner}"])]

    try:
        _wait_http(port)
        kernel = _request(port, "api/kernels", "POST", json.dumps({"name": name}).encode())
        owner = our_kernel_containers(engine, kernel["id"])[0]["Labels"][LABEL_OWNER]
        deadline = time.time() + 60
        while not its_spares(owner) and time.time() < deadline:
            time.sleep(0.2)
        spares = its_spares(owner)
        assert spares, "no spare was made"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    try:
        # `jupyter mlcontainer cleanup` lists them as orphans; the next server start removes them.
        listed = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "cleanup", "--dry-run"],
                                capture_output=True, text=True, env=env, timeout=120)
        assert all(f"Would remove {s[:12]} (spare" in listed.stdout for s in spares), listed.stdout + listed.stderr
        second_port = _free_port()
        second = _start_server(workspace, second_port, tmp_path / "second.log", {**env, "MLCONTAINER_WARM_POOL": "0"})
        try:
            _wait_http(second_port)
            deadline = time.time() + 30
            while its_spares(owner) and time.time() < deadline:
                time.sleep(0.2)
            assert its_spares(owner) == []
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
    finally:
        reap_orphans(engine)  # whatever the outcome, no orphan outlives the test


async def test_pool_off_makes_no_spare(engine, tmp_path, monkeypatch):
    from jupyter_client.manager import AsyncKernelManager

    from jupyter_mlcontainer.core.labels import LABEL_SPARE

    monkeypatch.setenv("MLCONTAINER_WARM_POOL", "0")
    km = AsyncKernelManager(kernel_name=add_spec(engine, BASE_IMAGE))
    await km.start_kernel(cwd=str(tmp_path))
    try:
        assert km.provisioner.warm_pool_size == 0
        assert not [c for c in engine.containers_sync([LABEL_SPARE]) if c["Id"] in spares_of(engine, km.kernel_name)]
        assert spares_of(engine, km.kernel_name) == []
    finally:
        await km.shutdown_kernel(now=True)


async def test_a_spare_sees_what_pip_installed_after_it_started(engine, workspace, pool_on):
    """%pip installs into the user site in the cache volume; a spare that imported ipykernel
    before the install must not run the new kernel with a stale view of it."""
    from jupyter_client.manager import AsyncKernelManager

    from .conftest import SESSION_TAG
    from .test_freeze import make_wheel

    wheels = workspace / "wheels"
    wheels.mkdir()
    make_wheel(str(wheels), name="mlc_pool_toy", version="3.1.4")
    name = add_spec(engine, BASE_IMAGE, cache_volume=f"mlctest-pool-pip-{SESSION_TAG}")
    first = AsyncKernelManager(kernel_name=name)
    await first.start_kernel(cwd=str(workspace))
    second = AsyncKernelManager(kernel_name=name)
    try:
        spare = await a_spare(engine, name)  # started before the install below
        kc = first.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, f"%pip install --no-index --find-links {wheels} mlc_pool_toy", timeout=120)
        assert reply["status"] == "ok", out
        kc.stop_channels()
        await second.start_kernel(cwd=str(workspace))
        assert second.provisioner.container_id == spare
        kc = second.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "import sys, mlc_pool_toy; print(mlc_pool_toy.VERSION, sys.orig_argv[1])")
        kc.stop_channels()
        # The user site changed after the spare's imports: it ran the kernel afresh (exec'ed
        # with the kernelspec's own argv) instead of the modules it had imported.
        assert reply["status"] == "ok" and out.split() == ["3.1.4", "-m"], out
    finally:
        await first.shutdown_kernel(now=True)
        if second.has_kernel:
            await second.shutdown_kernel(now=True)
        from jupyter_mlcontainer.kernels.pool import get_pool

        get_pool(engine).close()
        remove_cache_volume(engine, f"mlctest-pool-pip-{SESSION_TAG}")


async def test_the_pool_is_on_in_a_server_and_off_for_batch_runs(engine, jp_fetch, jp_serverapp, workspace, tmp_path, monkeypatch):
    """A Jupyter server keeps a spare per used kernelspec; a kernel manager of its own
    (nbconvert, papermill) makes none unless asked, and removing the kernelspec drops its spare."""
    from jupyter_client.manager import AsyncKernelManager

    monkeypatch.delenv("MLCONTAINER_WARM_POOL")
    name = add_spec(engine, BASE_IMAGE)
    batch = AsyncKernelManager(kernel_name=name)
    await batch.start_kernel(cwd=str(tmp_path))
    assert batch.provisioner.warm_pool_size == 0
    await batch.shutdown_kernel(now=True)
    assert spares_of(engine, name) == []

    session = await start_session(jp_fetch, "notebooks/served.ipynb", name)
    km = jp_serverapp.kernel_manager.get_kernel(session["kernel"]["id"])
    assert km.provisioner.warm_pool_size == 1
    spare = await a_spare(engine, name)
    # `jupyter mlcontainer status` (another process) shows the user's spares with their memory.
    shown = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "status"],
                           capture_output=True, text=True, timeout=120)
    assert "Warm spares kept by your running servers" in shown.stdout, shown.stdout + shown.stderr
    assert f"{spare[:12]} kernelspec {name} ({BASE_IMAGE})" in shown.stdout, shown.stdout
    await jp_fetch("api", "sessions", session["id"], method="DELETE")
    await jp_fetch("mlcontainer", "api", "kernelspecs", name, method="DELETE")
    assert spares_of(engine, name) == [] and spare not in [c["Id"] for c in engine.our_containers_sync()]
