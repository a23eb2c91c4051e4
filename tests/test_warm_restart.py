"""Restarts in the kernel's own container (kernels/restarts.py and the bootstrap's keeper): a
restart that asks the kernel to shut down first (JupyterLab's) forks a fresh kernel in the same
container; the client that was connected gets its next reply without reconnecting."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid

import pytest

from jupyter_mlcontainer.kernels.claims import kernel_containers

from .conftest import (
    BASE_IMAGE,
    CUDA_IMAGE,
    IPYKERNEL7_IMAGE,
    a_spare,
    add_spec,
    execute,
    execute_after_error,
    our_kernel_containers,
    running_kernel,
    start_running_cell,
)

IMAGES = pytest.mark.parametrize("image", [BASE_IMAGE, IPYKERNEL7_IMAGE], ids=["debian-6.17", "ipykernel7"])
TRANSPORTS = pytest.mark.parametrize("transport", ["ipc", "tcp"])


async def restart_in_place(engine, km, kc, workspace, restart=None) -> None:
    """Restart ``km``'s kernel (``restart()``, else the kernel manager's restart) and check that it is a fresh kernel in the same container, that
    ``kc`` (connected before) gets its replies, and that the old kernel's processes are gone."""
    (workspace / "sub").mkdir(exist_ok=True)
    out, reply = await execute(kc, (
        "import os, subprocess; x = 41; os.chdir('sub')\n"
        "left = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "print(os.getpid(), left.pid, os.getcwd())"))
    assert reply["status"] == "ok", out
    kernel_pid, left_pid, _ = out.split()
    container, info = km.provisioner.container_id, km.get_connection_info()
    # A process the engine started in the container (docker exec) is not the kernel's: it stays.
    engine.api.exec_start(engine.api.exec_create(container, ["sleep", "301"]), detach=True)
    await (restart() if restart else km.restart_kernel())
    await kc.wait_for_ready(timeout=30)
    out, reply = await execute(kc, (
        "import os; print('x' in globals(), os.getpid(), os.getcwd(), os.path.exists('/proc/%s'), any("
        "open('/proc/%%s/cmdline' %% p, 'rb').read() == b'sleep\\x00301\\x00' for p in os.listdir('/proc') "
        "if p.isdigit() and os.path.exists('/proc/%%s/cmdline' %% p)))" % left_pid))
    assert reply["status"] == "ok", out
    had_x, pid, cwd, left_alive, exec_alive = out.split()
    assert (had_x, left_alive, exec_alive) == ("False", "False", "True")  # a fresh kernel; what it left is gone
    assert pid != kernel_pid
    assert cwd == str(workspace)  # the restart's working folder, not where the old kernel went
    assert km.provisioner.container_id == container
    assert km.get_connection_info() == info
    assert [c["Id"] for c in kernel_containers(engine.our_containers_sync(), km.kernel_id)] == [container]
    # Interrupts still reach the kernel (through the keeper).
    msg_id = await start_running_cell(kc)
    await km.interrupt_kernel()
    reply = await kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
    out, reply = await execute_after_error(kc, "print('after')")
    assert out.strip() == "after", (out, reply)


@IMAGES
@TRANSPORTS
async def test_a_restart_forks_a_fresh_kernel_in_the_same_container(engine, workspace, image, transport):
    async with running_kernel(engine, image, workspace, kernel_transport=transport) as (km, kc):
        await restart_in_place(engine, km, kc, workspace)
        await restart_in_place(engine, km, kc, workspace)  # and again: the keeper goes on
        kernel_id = km.kernel_id
    assert our_kernel_containers(engine, kernel_id) == []


@IMAGES
async def test_a_warm_started_kernel_restarts_in_the_spare_it_claimed(engine, jp_fetch, jp_serverapp, workspace,
                                                                       monkeypatch, image):
    """JupyterLab's restart (the REST API's) of a kernel that started in a spare of the pool."""
    monkeypatch.setenv("MLCONTAINER_WARM_POOL", "1")
    name = add_spec(engine, image)

    async def start() -> str:
        body = json.dumps({"name": name, "path": ""})
        return json.loads((await jp_fetch("api", "kernels", method="POST", body=body)).body)["id"]

    await start()  # cold: the pool learns the kernelspec

    spare_id = await a_spare(engine, name)
    kernel_id = await start()
    km = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    assert km.provisioner.container_id == spare_id  # warm
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        await restart_in_place(engine, km, kc, workspace,
                               lambda: jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body=""))
    finally:
        kc.stop_channels()


async def test_a_rebuilt_image_or_a_forced_restart_gets_a_new_container(engine, workspace, caplog):
    """What a restart in place must keep is what a new container would be: a tag that names
    another image now restarts in a new container of it, with the reason in the log; a forced
    restart (now=True: the kernel is killed) too."""
    tag = f"mlcontainer-test/rebuilt:{uuid.uuid4().hex[:8]}"
    engine.api.tag(IPYKERNEL7_IMAGE, *tag.split(":"))
    try:
        async with running_kernel(engine, tag, workspace) as (km, kc):
            first = km.provisioner.container_id
            engine.api.tag(CUDA_IMAGE, *tag.split(":"), force=True)  # ipykernel 7 too: the same connection (encrypted)
            with caplog.at_level(logging.INFO):
                await km.restart_kernel()
            assert "now names another image" in caplog.text
            await kc.wait_for_ready(timeout=60)
            second = km.provisioner.container_id
            assert second != first and not engine.api.containers(all=True, filters={"id": first})
            assert engine.api.inspect_container(second)["Image"] == engine.api.inspect_image(CUDA_IMAGE)["Id"]
            out, reply = await execute(kc, "print('alive')")
            assert out.strip() == "alive", (out, reply)
            with caplog.at_level(logging.INFO):
                await km.restart_kernel(now=True)
            assert "restarting in a new container: the restart was forced" in caplog.text
            await kc.wait_for_ready(timeout=60)
            assert km.provisioner.container_id not in (first, second)
            kernel_id = km.kernel_id
        assert our_kernel_containers(engine, kernel_id) == []
    finally:
        engine.api.remove_image(tag)


async def test_a_kernel_that_exits_by_itself_still_ends_its_container(engine, workspace):
    """The keeper holds a container only for a restart the provisioner asked for: a kernel that
    ends on its own (exit() in a cell) ends its container, which the restarter sees as before."""
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        container = km.provisioner.container_id
        kc.execute("import os; os._exit(0)")

        async def container_gone() -> None:
            while engine.api.containers(filters={"id": container}):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(container_gone(), timeout=20)
        assert not os.path.exists(os.path.join(km.provisioner._conn_dir or "/nonexistent", "kernel-ended"))


async def test_a_package_installed_before_a_restart_is_there_after_it(engine, workspace):
    """The keeper imported before the user installed anything: a `.pth` file (what `pip install
    -e` writes) is read only at an interpreter's start, so a restart after the user site changed
    starts a new keeper in the same process (the container's), which forks the kernel; the next
    restart forks from it again."""
    toy = workspace / "toy"
    toy.mkdir()
    (toy / "mlc_toy_pth.py").write_text("VERSION = 1\n")
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        container = km.provisioner.container_id
        out, reply = await execute(kc, (
            "import os, site; os.makedirs(site.getusersitepackages(), exist_ok=True)\n"
            f"open(os.path.join(site.getusersitepackages(), 'mlc-toy.pth'), 'w').write({str(toy)!r} + '\\n')\n"
            "print(os.getppid())"))
        assert reply["status"] == "ok", out
        keeper = out.strip()
        try:
            for _ in range(2):
                await km.restart_kernel()
                await kc.wait_for_ready(timeout=60)
                out, reply = await execute(kc, "import os, mlc_toy_pth; print(mlc_toy_pth.VERSION, os.getppid())")
                assert out.split() == ["1", keeper], (out, reply)
                assert km.provisioner.container_id == container
        finally:
            await execute(kc, "import os, site; os.unlink(os.path.join(site.getusersitepackages(), 'mlc-toy.pth'))")
