"""A real non-root user in the docker group runs the kernel manager.

CI runs as root, where file ownership proves nothing; here the user ``mlctest`` (made by
``scripts/setup-test-user.sh``) starts a container kernel through jupyter_client with this
package, writes into the workspace and the shared cache, and the host sees its uid on the files.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from .conftest import BASE_IMAGE, TORCH_IMAGE

TEST_USER = "mlctest"
USER_VENV = "/opt/mlcontainer-test-venv"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import asyncio, json, os, sys
from jupyter_client.manager import AsyncKernelManager
from jupyter_mlcontainer.kernelspecs import add_kernelspec
from jupyter_mlcontainer.engine import get_engine

async def main(workspace, marker):
    results = {}
    for image in sys.argv[3:]:
        spec = add_kernelspec(get_engine(), image, name="nonroot-" + str(len(results)))
        km = AsyncKernelManager(kernel_name=spec.name)
        await km.start_kernel(cwd=workspace)
        kc = km.client(); kc.start_channels()
        await kc.wait_for_ready(timeout=90)
        out = []
        index = len(results)
        code = "\n".join([
            "import getpass, os, pathlib",
            f"pathlib.Path('from-kernel-{index}.txt').write_text('hi')",
            f"cache = pathlib.Path(os.environ['TORCH_HOME']) / 'shared-{marker}.txt'",
            "if cache.exists():",
            "    print('READ', cache.read_text())",
            "else:",
            "    cache.parent.mkdir(parents=True, exist_ok=True)",
            "    cache.write_text('written by ' + getpass.getuser())",
            "    print('WROTE')",
            "print('UID', os.getuid(), os.getgid(), getpass.getuser(), os.path.expanduser('~'))",
        ])
        reply = await kc.execute_interactive(code, output_hook=lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None, timeout=60)
        results[image] = {"status": reply["content"]["status"], "out": "".join(out), "container": km.provisioner.container_id}
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    print("RESULT " + json.dumps(results))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _user_exists() -> bool:
    try:
        pwd.getpwnam(TEST_USER)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def user_env(tmp_path_factory):
    if os.getuid() != 0:
        pytest.fail("the non-root test sets up its user as root (CI runs as root)", pytrace=False)
    if not (_user_exists() and os.path.exists(f"{USER_VENV}/bin/python")):
        subprocess.run(["bash", os.path.join(REPO, "scripts", "setup-test-user.sh")], check=True)
    # A copy of this package plus its entry-point metadata, readable by the test user, so the
    # user runs today's source (the checkout may sit where the user cannot enter).
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
                "mlcontainer-docker = jupyter_mlcontainer.provisioner:DockerKernelProvisioner\n")
    for root, dirs, files in os.walk(site):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    yield site
    shutil.rmtree(site, ignore_errors=True)


def test_nonroot_user_owns_files_and_writes_the_cache(engine, user_env):
    user = pwd.getpwnam(TEST_USER)
    assert user.pw_uid != 0
    work = tempfile.mkdtemp(prefix="mlctest-work-")
    home = tempfile.mkdtemp(prefix="mlctest-home-")
    try:
        for path in (work, home):
            os.chown(path, user.pw_uid, user.pw_gid)
        marker = os.path.basename(work)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "PYTHONPATH": user_env,
            "JUPYTER_DATA_DIR": os.path.join(home, "data"),
            "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime"),
            "JUPYTER_CONFIG_DIR": os.path.join(home, "config"),
            "MLCONTAINER_CACHE_VOLUME": os.environ["MLCONTAINER_CACHE_VOLUME"],
        }
        result = subprocess.run(
            [shutil.which("runuser") or "/usr/sbin/runuser", "-u", TEST_USER, "--", f"{USER_VENV}/bin/python", "-c", SCRIPT, work, marker, BASE_IMAGE, TORCH_IMAGE],
            capture_output=True, text=True, env=env, cwd=work, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
        results = json.loads(line[len("RESULT "):])
        base, torch = results[BASE_IMAGE], results[TORCH_IMAGE]
        assert base["status"] == torch["status"] == "ok", results
        # The first image's kernel wrote the cache; the second image's kernel read it.
        assert "WROTE" in base["out"]
        assert f"READ written by {TEST_USER}" in torch["out"]
        for out in (base["out"], torch["out"]):
            assert f"UID {user.pw_uid} {user.pw_gid} {TEST_USER} /opt/mlcontainer/cache/home/{TEST_USER}" in out
        for name in ("from-kernel-0.txt", "from-kernel-1.txt"):
            st = os.stat(os.path.join(work, name))
            assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
        for info in results.values():
            with pytest.raises(Exception):
                engine.api.inspect_container(info["container"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
