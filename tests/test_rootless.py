"""Kernels on rootless engines: each user of a shared box runs their own engine as themselves.

``scripts/setup-rootless-engines.sh`` gives ``mlctest`` a rootless Docker and a Podman service
and ``mlctest2`` a rootless Docker of their own. The user runs this package (jupyter_client with
the provisioner) against each engine: start, files owned by the user on the host, interrupt,
restart on the same ports, an exit reported with its code, shutdown leaving nothing behind.
Container uid 0 is the user under rootless Docker; Podman keeps the user's own uid (keep-id).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .box_users import OTHER_USER, REPO, TEST_USER, BoxUser, package_site, result
from .conftest import BASE_IMAGE

LIFECYCLE = r"""
import asyncio, json, os, sys, time
from jupyter_client.manager import AsyncKernelManager
from jupyter_mlcontainer.deaths import last_death
from jupyter_mlcontainer.engine import get_engine
from jupyter_mlcontainer.kernelspecs import add_kernelspec

async def run(kc, code, timeout=60):
    out = []
    hook = lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
    reply = await kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    return [reply["content"]["status"], "".join(out)]

async def until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)

async def main(workspace):
    engine = get_engine()
    km = AsyncKernelManager(kernel_name=add_kernelspec(engine, sys.argv[2], name="rootless").name)
    began = time.monotonic()
    await km.start_kernel(cwd=workspace)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=90)
    r = {"engine": engine.kind_sync().title, "start_s": round(time.monotonic() - began, 2),
         "container_user": engine.inspect_container_sync(km.provisioner.container_id)["Config"]["User"]}
    r["who"] = await run(kc, "import getpass, os; open('from-kernel.txt', 'w').write('hi'); "
                             "print(os.getuid(), getpass.getuser(), os.environ['HOME'], os.getcwd())")
    # Interrupt a running cell.
    kc.execute("open('busy.flag', 'w').close(); import time; time.sleep(120)")
    await until(lambda: _exists(os.path.join(workspace, "busy.flag")))
    await km.interrupt_kernel()
    reply = await kc.get_shell_msg(timeout=30)
    r["interrupted"] = reply["content"].get("ename")
    # Restart: the same host ports, the client keeps working.
    ports = {k: v for k, v in km.get_connection_info().items() if k.endswith("_port")}
    await km.restart_kernel(now=True)
    await kc.wait_for_ready(timeout=90)
    r["same_ports"] = ports == {k: v for k, v in km.get_connection_info().items() if k.endswith("_port")}
    r["after_restart"] = await run(kc, "print('back')")
    # The kernel process exits by itself: the exit is noticed and reported with its code.
    kc.execute("import os; os._exit(3)")
    await until(lambda: _dead(km))
    death = last_death(km.kernel_id)
    r["death"] = death.message() if death else None
    container = km.provisioner.container_id
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    r["left"] = [c["Id"] for c in engine.containers_sync([f"org.jupyter.mlcontainer.kernel-id={km.kernel_id}"])]
    print("RESULT " + json.dumps(r), flush=True)

async def _dead(km):
    return not await km.is_alive()

async def _exists(path):
    return os.path.exists(path)

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def engines():
    """user -> {"docker": DOCKER_HOST, "podman": DOCKER_HOST} of that user's own engines."""
    hosts = {}
    for user in (TEST_USER, OTHER_USER):
        done = subprocess.run(
            ["bash", os.path.join(REPO, "scripts", "setup-rootless-engines.sh"), user, BASE_IMAGE],
            capture_output=True, text=True, timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        lines = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
        hosts[user] = {"docker": lines["DOCKER_HOST_ROOTLESS"], "podman": lines["DOCKER_HOST_PODMAN"]}
    return hosts


@pytest.fixture(scope="module")
def site():
    path = package_site()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("user_name,kind", [(TEST_USER, "docker"), (TEST_USER, "podman"), (OTHER_USER, "docker")])
def test_kernel_lifecycle_on_the_users_own_engine(engines, site, user_name, kind):
    user = BoxUser(user_name, site, "mlcontainer-cache", docker_host=engines[user_name][kind])
    try:
        r = result(user.command(LIFECYCLE, user.work, BASE_IMAGE))
        print(json.dumps(r))
        assert r["engine"] == ("rootless Podman" if kind == "podman" else "rootless Docker")
        # Rootless Docker runs the kernel as container root, which is the user on the host;
        # Podman maps the user's own uid into the container.
        uid = 0 if kind == "docker" else user.pw.pw_uid
        assert r["container_user"] == ("0:0" if kind == "docker" else f"{user.pw.pw_uid}:{user.pw.pw_gid}")
        status, out = r["who"]
        assert status == "ok" and out.split() == [str(uid), user_name, f"/opt/mlcontainer/cache/home/{user_name}", user.work], r
        st = os.stat(os.path.join(user.work, "from-kernel.txt"))
        assert (st.st_uid, st.st_gid) == (user.pw.pw_uid, user.pw.pw_gid)
        assert r["interrupted"] == "KeyboardInterrupt"
        assert r["same_ports"] and r["after_restart"] == ["ok", "back\n"], r
        assert r["death"] == "Kernel process exited with code 3", r
        assert r["left"] == []
    finally:
        user.cleanup()
