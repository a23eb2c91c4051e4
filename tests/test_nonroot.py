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

from .box_users import OTHER_USER, REPO, TEST_USER, USER_VENV, BoxUser, doctor_as, finished, package_site, result
from .conftest import BASE_IMAGE, TORCH_IMAGE


SCRIPT = r"""
import asyncio, json, os, sys
from jupyter_client.manager import AsyncKernelManager
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec
from jupyter_mlcontainer.engines.docker import get_engine

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


@pytest.fixture(scope="module")
def user_env():
    site = package_site()
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
        ran = subprocess.run(
            [shutil.which("runuser") or "/usr/sbin/runuser", "-u", TEST_USER, "--", f"{USER_VENV}/bin/python", "-c", SCRIPT, work, marker, BASE_IMAGE, TORCH_IMAGE],
            capture_output=True, text=True, env=env, cwd=work, timeout=300,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        line = [l for l in ran.stdout.splitlines() if l.startswith("RESULT ")][-1]
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


# -- two real users of one box, one rootful engine, one cache volume (issue 14, finding 3) ------

# B's kernel writes code that would run at the start of a kernel whose HOME is A's.
PLANT = r"""
import os, pathlib
home = pathlib.Path(os.environ["HOME"]).parent / "mlctest"
payload = "open('pwned-by-mlctest2', 'w').write('{how}')"
site = home / ".local/lib/python3.11/site-packages"
targets = {
    home / ".ipython/profile_default/startup/00-pwn.py": payload.format(how="ipython startup"),
    site / "pwn.pth": "import os; " + payload.format(how="pth"),
    site / "usercustomize.py": payload.format(how="usercustomize"),
    home / ".bashrc": "echo bashrc > pwned-by-mlctest2",
}
for path, text in targets.items():
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print("PLANTED", path)
    except OSError as exc:
        print("DENIED", path, exc.errno)
"""

ACT_ON_OTHERS = r"""
import json, sys
from jupyter_mlcontainer.engines.docker import get_engine
from jupyter_mlcontainer.environments.freeze import container_of_kernel
from jupyter_mlcontainer.core.identity import current_user, owner_id
from jupyter_mlcontainer.kernels.listing import list_kernel_containers
from jupyter_mlcontainer.kernels.orphans import find_orphans, reap_orphans
engine = get_engine()
try:
    container_of_kernel(engine, sys.argv[1], owner_id())
    freeze = "found"
except Exception as exc:
    freeze = type(exc).__name__
listed = list_kernel_containers(engine) + list_kernel_containers(engine, user=current_user().name)
print("RESULT " + json.dumps({
    "listed": [c["Id"] for c in listed], "freeze": freeze,
    "orphans": [o.container_id for o in find_orphans(engine)],
    "reaped": [o.container_id for o in reap_orphans(engine)],
}))
"""


@pytest.fixture
def two_users(engine, user_env):
    from jupyter_mlcontainer.cache.volume import create_cache_volume, remove_cache_volume

    subprocess.run(["bash", os.path.join(REPO, "scripts", "setup-test-user.sh")], check=True, capture_output=True)
    volumes = []

    def fresh_box():
        volume = f"mlctest-users-{os.getpid()}-{len(volumes)}"
        create_cache_volume(engine, volume)
        volumes.append(volume)
        return BoxUser(TEST_USER, user_env, volume), BoxUser(OTHER_USER, user_env, volume)

    made: list[BoxUser] = []
    yield lambda: made.extend(fresh_box()) or made[-2:]
    for user in made:
        user.cleanup()
    for volume in volumes:
        try:
            remove_cache_volume(engine, volume)
        except Exception:
            pass


def test_another_os_user_cannot_plant_code_in_your_home(engine, two_users):
    """A (mlctest) and B (mlctest2), each with their own kernels on one rootful engine and one
    cache volume. Whether B comes first (A's start sets B's folder aside and A gets a HOME of
    its own) or A does (B's writes into A's HOME are denied), no code of B's runs in A's kernel:
    not as an IPython startup file, a .pth, usercustomize or .bashrc."""
    # B first: the cache has no HOME for A yet, and B's kernel makes one full of code.
    a, b = two_users()
    planted = result(b.kernel(PLANT))
    assert planted["started"] and planted["cells"][0][0] == "ok", planted
    assert planted["cells"][0][1].count("PLANTED") == 4, planted
    proc = a.kernel("import os; print(sorted(os.listdir(os.environ['HOME'])), os.stat(os.environ['HOME']).st_uid)")
    started = finished(proc)
    assert started["started"] and started["cells"][0][0] == "ok", started
    assert ".bashrc" not in started["cells"][0][1] and started["cells"][0][1].split()[-1] == str(a.pw.pw_uid), started
    assert f"home/mlctest (a folder of uid {b.pw.pw_uid}, not mlctest's) was set aside" in proc.stderr.read()
    assert not os.path.exists(os.path.join(a.work, "pwned-by-mlctest2"))

    # A first: A's HOME is A's private folder, and B's kernel cannot write into it.
    a, b = two_users()
    first = a.kernel("import os; print(oct(os.stat(os.environ['HOME']).st_mode & 0o777))", "WAIT")
    running = result(first)
    try:
        assert running["started"] and running["cells"][0][1].strip() == "0o700", running
        denied = result(b.kernel(PLANT))
        assert denied["cells"][0][1].count("DENIED") == 4 and "PLANTED" not in denied["cells"][0][1], denied
        # B's process cannot list, freeze or reap A's running kernel.
        acted = result(b.command(ACT_ON_OTHERS, running["kernel_id"]))
        assert running["container"] not in acted["listed"] + acted["orphans"] + acted["reaped"]
        assert acted["freeze"] == "KernelContainerNotFound"
        assert engine.api.inspect_container(running["container"])["State"]["Running"]
    finally:
        first.stdin.write("\n")
        first.stdin.flush()
    done = result(first)
    assert done["cells"][0][0] == "ok"
    again = result(a.kernel("import os; print(sorted(os.listdir('.')))"))
    assert again["started"] and "pwned-by-mlctest2" not in again["cells"][0][1], again


# -- doctor, as the users it must help: each failing check, made to fail for real -------------

def test_doctor_fails_each_check_with_its_fix(engine, user_env):
    from jupyter_mlcontainer.cache.volume import remove_cache_volume
    from .conftest import NOIPYKERNEL_IMAGE, SESSION_TAG

    volume = f"mlctest-doctor-{SESSION_TAG}"
    outsider = BoxUser("nobody", user_env, volume)
    user = BoxUser(TEST_USER, user_env, volume)
    try:
        # Not in the docker group: the socket says no, and doctor says why and what to do.
        code, checks = doctor_as(outsider)
        assert code == 1 and not checks["engine"]["ok"] and checks["engine"]["blocking"], checks["engine"]
        assert "permission denied on /var/run/docker.sock" in checks["engine"]["detail"]
        assert "group docker" in checks["engine"]["detail"] and "usermod -aG docker nobody" in checks["engine"]["fix"]

        # A HOME in the cache that someone else made: set aside, said, and the check passes.
        engine.api.create_volume(volume)
        code_, _, err = engine.run_to_completion_sync(
            BASE_IMAGE, ["python3", "-c", f"import os; os.makedirs('/c/home/{TEST_USER}', 0o700)"], user="0:0",
            mounts=[{"Type": "volume", "Source": volume, "Target": "/c"}],
        )
        assert code_ == 0, err
        # An image that lost ipykernel after its kernelspec was written.
        code, checks = doctor_as(user, BASE_IMAGE, NOIPYKERNEL_IMAGE)
        cache = checks[f"cache volume {volume}"]
        assert cache["ok"] and f"home/{TEST_USER} (a folder of uid 0, not {TEST_USER}'s) was set aside" in cache["detail"], cache
        stale = checks["kernel doctor-stale"]
        assert code == 1 and not stale["ok"] and "ipykernel" in stale["detail"] and "image prepare" in stale["fix"], stale
        assert checks["kernel doctor-base"]["ok"] and checks["engine"]["ok"]

        # A host folder that is not on the engine's host: blocking, with what the admin does.
        missing = f"/srv/mlctest-missing-{SESSION_TAG}"
        elsewhere = BoxUser(TEST_USER, user_env, missing)
        try:
            code, checks = doctor_as(elsewhere, BASE_IMAGE)
        finally:
            elsewhere.cleanup()
        cache = checks[f"cache volume {missing}"]
        assert code == 1 and not cache["ok"] and cache["blocking"], cache
        assert f"The cache folder {missing} does not exist" in cache["detail"] and f"mkdir -p {missing}" in cache["detail"], cache
    finally:
        outsider.cleanup()
        user.cleanup()
        if engine.inspect_volume_sync(volume) is not None:
            remove_cache_volume(engine, volume)
