"""Real OS users of the box for the tests that need them (CI runs as root, where file ownership
proves nothing): ``mlctest`` and ``mlctest2``, made by ``scripts/setup-test-user.sh``, run this
package's code as themselves (``runuser``) with a venv they can read (``USER_VENV``) and a copy
of today's source (:func:`package_site`)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile

TEST_USER = "mlctest"
OTHER_USER = "mlctest2"
USER_VENV = "/opt/mlcontainer-test-venv"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_IMAGE = "mlcontainer-test/base:bookworm"


def users_ready() -> bool:
    try:
        pwd.getpwnam(TEST_USER)
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        return False
    return os.path.exists(f"{USER_VENV}/bin/python")


def package_site() -> str:
    """A folder with a copy of this package plus its entry-point metadata, readable by the
    test users, so they run today's source (the checkout may sit where they cannot enter).
    The caller removes it."""
    if os.getuid() != 0:
        raise RuntimeError("the tests with real users set them up as root (CI runs as root)")
    if not users_ready():
        subprocess.run(["bash", os.path.join(REPO, "scripts", "setup-test-user.sh")], check=True)
    site = tempfile.mkdtemp(prefix="mlctest-site-")
    os.chmod(site, 0o755)
    shutil.copytree(os.path.join(REPO, "jupyter_mlcontainer"), os.path.join(site, "jupyter_mlcontainer"),
                    ignore=shutil.ignore_patterns("labextension", "__pycache__"))
    dist = os.path.join(site, "jupyter_mlcontainer-0.0.0.dist-info")
    os.makedirs(dist)
    with open(os.path.join(dist, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: jupyter-mlcontainer\nVersion: 0.0.0\n")
    with open(os.path.join(dist, "entry_points.txt"), "w") as f:
        f.write("[jupyter_client.kernel_provisioners]\n"
                "mlcontainer-docker = jupyter_mlcontainer.kernels.provisioner:DockerKernelProvisioner\n")
    for root, dirs, files in os.walk(site):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return site


USER_KERNEL = r"""
import asyncio, json, sys
from jupyter_client.manager import AsyncKernelManager
from jupyter_mlcontainer.engines.docker import get_engine
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

async def run(kc, code):
    out = []
    def hook(m):
        if m["msg_type"] == "stream":
            out.append(m["content"].get("text", ""))
        elif m["msg_type"] == "error":
            out.append("%s: %s" % (m["content"]["ename"], m["content"]["evalue"]))
    reply = await kc.execute_interactive(code, output_hook=hook, timeout=60)
    return [reply["content"]["status"], "".join(out)]

async def main(plan):
    km = AsyncKernelManager(kernel_name=add_kernelspec(get_engine(), plan["image"], name="users").name)
    try:
        await km.start_kernel(cwd=plan["workspace"])
    except Exception as exc:
        print("RESULT " + json.dumps({"started": False, "error": str(exc)}), flush=True)
        return
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=90)
    result = {"started": True, "kernel_id": km.kernel_id, "container": km.provisioner.container_id, "cells": []}
    for code in plan["cells"]:
        if code == "WAIT":  # hand over to the test, keep the kernel running
            print("RESULT " + json.dumps(result), flush=True)
            sys.stdin.readline()
        else:
            result["cells"].append(await run(kc, code))
    print("RESULT " + json.dumps(result), flush=True)
    kc.stop_channels()
    await km.shutdown_kernel(now=True)

asyncio.run(main(json.loads(sys.argv[1])))
"""


class BoxUser:
    """A real OS user of the box with their own Jupyter folders and workspace, running this
    package's code as themselves (``runuser``), on the shared engine and cache volume."""

    def __init__(self, name: str, site: str, volume: str, docker_host: str = ""):
        self.pw = pwd.getpwnam(name)
        self.name, self.site, self.volume, self.docker_host = name, site, volume, docker_host
        self.env: dict[str, str] = {}  # more variables for the user's process
        self.home = tempfile.mkdtemp(prefix=f"{name}-home-")
        self.work = tempfile.mkdtemp(prefix=f"{name}-work-")
        for path in (self.home, self.work):
            os.chown(path, self.pw.pw_uid, self.pw.pw_gid)
            os.chmod(path, 0o700)

    def command(self, code: str, *args: str) -> subprocess.Popen:
        env = {
            "PATH": "/usr/bin:/bin", "HOME": self.home, "PYTHONPATH": self.site,
            "JUPYTER_DATA_DIR": os.path.join(self.home, "data"),
            "JUPYTER_RUNTIME_DIR": os.path.join(self.home, "runtime"),
            "JUPYTER_CONFIG_DIR": os.path.join(self.home, "config"),
            "MLCONTAINER_CACHE_VOLUME": self.volume,
            "MLCONTAINER_WARM_POOL": "0",
            **({"DOCKER_HOST": self.docker_host} if self.docker_host else {}),
            **self.env,
        }
        return subprocess.Popen(
            [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.name, "--", f"{USER_VENV}/bin/python", "-c", code, *args],
            env=env, cwd=self.work, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def kernel(self, *cells: str, image: str = BASE_IMAGE) -> subprocess.Popen:
        plan = {"image": image, "workspace": self.work, "cells": list(cells)}
        return self.command(USER_KERNEL, json.dumps(plan))

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def result(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """The next RESULT line of ``proc`` (it may go on running)."""
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout)
            raise AssertionError(f"no result (exit {proc.returncode}): {proc.stderr.read()[-3000:]}")
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])


def finished(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """The last RESULT of ``proc``, once it has exited (its kernel shut down and removed)."""
    last = result(proc, timeout)
    proc.wait(timeout)
    return last


DOCTOR = r"""
import json, sys
from jupyter_mlcontainer.cli import main
from jupyter_mlcontainer.engines.docker import get_engine
from jupyter_mlcontainer.images.probe import ImageFacts
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

image, stale_image = sys.argv[1], sys.argv[2]
if image:
    add_kernelspec(get_engine(), image, name="doctor-base")
if stale_image:  # a kernelspec whose image lost ipykernel since it was written (rebuilt under its tag)
    add_kernelspec(get_engine(), stale_image, name="doctor-stale",
                   facts=ImageFacts(image_id="sha256:gone", python="python3", ipykernel="6.17"))
sys.exit(main(["doctor", "--json"]))
"""


def doctor_as(user: BoxUser, image: str = "", stale_image: str = "") -> tuple[int, dict[str, dict]]:
    """``jupyter mlcontainer doctor --json`` as ``user`` (after adding kernelspecs for ``image`` and
    for ``stale_image`` as if it had had ipykernel): its exit code and its checks by name."""
    proc = user.command(DOCTOR, image, stale_image)
    out, err = proc.communicate(timeout=300)
    report = json.loads(out[out.index("{"):])
    return proc.returncode, {check["name"]: check for check in report["checks"]}
