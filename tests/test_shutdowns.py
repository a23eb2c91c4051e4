"""A kernel's shutdown ends its process without Python's teardown (bootstrap's exit_now), and
the provisioner sees it end through the container's first process (exit_watch.py); nothing a
notebook wrote is lost on the way. Speed: bench/shutdowns.py."""

from __future__ import annotations

from jupyter_client.manager import AsyncKernelManager

from jupyter_mlcontainer.engines.docker import Engine
from jupyter_mlcontainer.kernels.exit_watch import ExitWatch

from .conftest import BASE_IMAGE, IPYKERNEL7_IMAGE, add_spec, execute, our_kernel_containers


async def _shut_down_after(engine: Engine, image: str, workspace, code: str) -> None:
    km = AsyncKernelManager(kernel_name=add_spec(engine, image, gpus="none", workspace=str(workspace)))
    await km.start_kernel(cwd=str(workspace))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        out, reply = await execute(kc, code)
        assert reply["status"] == "ok", out
        cid = km.provisioner.container_id
        watch = ExitWatch.of(engine, cid)
        assert watch is not None and not watch.ended()  # this host sees the engine's processes
    finally:
        kc.stop_channels()
        await km.shutdown_kernel()  # graceful: shutdown_request, then the process ends by itself
    assert watch.ended()
    assert our_kernel_containers(engine, km.kernel_id) == []


async def test_a_shutdown_keeps_what_the_notebook_left_open_and_its_exit_handlers(engine, workspace):
    for image in (BASE_IMAGE, IPYKERNEL7_IMAGE):  # ipykernel 6.17 and 7.x exit differently
        await _shut_down_after(engine, image, workspace, (
            "import atexit, threading, time\n"
            "text = open('left-open.txt', 'w'); text.write('text ' * 1000)\n"
            "data = open('left-open.bin', 'wb'); data.write(b'x' * 5000)\n"
            "def later():\n"
            "    time.sleep(0.3); open('thread.txt', 'w').write('done')\n"
            "threading.Thread(target=later).start()\n"
            "atexit.register(lambda: open('atexit.txt', 'w').write('ran'))\n"
        ))
        assert (workspace / "left-open.txt").read_text() == "text " * 1000
        assert (workspace / "left-open.bin").read_bytes() == b"x" * 5000
        assert (workspace / "thread.txt").read_text() == "done"  # a user's thread finished first
        assert (workspace / "atexit.txt").read_text() == "ran"
        for name in ("left-open.txt", "left-open.bin", "thread.txt", "atexit.txt"):
            (workspace / name).unlink()
