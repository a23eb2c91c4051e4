"""`%pip install` in a container kernel survives a kernel restart (issue 11): on system Pythons
(Debian's, PEP 668's trixie, /usr/local ipykernel, nvidia/cuda-like) and conda prefixes it goes
into the user site under PYTHONUSERBASE, one folder per image in the cache volume, also for a
root kernel (CI, rootless engines), which pip alone would let write the image's site-packages
that the restart's new container does not have. Upgrades and uninstalls act on that copy; freeze
pins it. A venv has no user site (pip refuses --user there): pip installs into a prefix in the
cache volume (PIP_PREFIX, on PYTHONPATH), which the kernel reaches through a second mount of the
volume inside the venv, where pip upgrades and uninstalls it like the venv's own packages. A venv
without pip (what `uv venv` and `uv sync` make) is lent one, read-only, that installs there too.

These tests use their own cache volume, so what they install stays out of other tests' freezes.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import shutil
import subprocess

import pytest
from jupyter_client.manager import AsyncKernelManager

from jupyter_mlcontainer.core.names import slug
from jupyter_mlcontainer.environments.freeze import freeze_container, kernel_environment
from jupyter_mlcontainer.images.probe import probe_image_sync
from jupyter_mlcontainer.kernels.container_spec import LENT_PIP_IN_CONTAINER
from jupyter_mlcontainer.kernels.launcher import host_pip_wheel

from .box_users import TEST_USER, USER_KERNEL, BoxUser, package_site, result
from .conftest import (
    BASE_IMAGE,
    CONDA_IMAGE,
    MATRIX_IMAGES,
    SESSION_TAG,
    UVVENV_IMAGE,
    VENV_IMAGE,
    add_spec,
    execute,
    running_kernel,
)
from .test_freeze import make_wheel

VOLUME = f"mlctest-pip-{SESSION_TAG}"  # removed with the session's other volumes
VENVS = {VENV_IMAGE: "/opt/venv", UVVENV_IMAGE: "/app/.venv"}  # the venv images: where their venv is
USER_SITE_IMAGES = tuple(image for image in MATRIX_IMAGES if image not in VENVS)
PKG = "mlc-persist"

# Prints one JSON line: where the package is, as the kernel (and a fresh pip) sees it.
WHERE = (
    "import importlib, importlib.metadata as md, json, os, shutil, site, subprocess, sys\n"
    "try:\n"
    "    mod = importlib.import_module('mlc_persist'); version, path = mod.VERSION, mod.__file__\n"
    "except ImportError:\n"
    "    version = path = None\n"
    "frozen = subprocess.run([sys.executable, '-m', 'pip', 'freeze'], capture_output=True, text=True).stdout\n"
    "print('WHERE ' + json.dumps(dict(version=version, path=path, user_site=site.getusersitepackages(),\n"
    "    script=shutil.which('mlc-persist'), pins=[l for l in frozen.splitlines() if l.lower().startswith('mlc')],\n"
    "    env={k: os.environ.get(k) for k in ('PIP_USER', 'PYTHONUSERBASE', 'PIP_PREFIX')})))\n"
)


def where(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("WHERE ")]
    assert lines, out
    return json.loads(lines[-1][len("WHERE "):])


def wheelhouse(folder) -> str:
    folder.mkdir(exist_ok=True)
    for version in ("1.0", "2.0"):
        make_wheel(str(folder), name="mlc_persist", version=version)
    return str(folder)


async def pip(kc, line: str) -> str:
    """``%pip LINE`` in the kernel; fails the test on a non-zero exit."""
    out, reply = await execute(kc, f"%pip {line}\nprint('EXIT', _exit_code)", timeout=120)
    assert reply["status"] == "ok" and "EXIT 0" in out, out
    return out


@pytest.mark.parametrize("image", MATRIX_IMAGES, ids=lambda image: image.split("/")[-1])
async def test_pip_install_survives_restart_and_is_frozen(engine, workspace, image):
    wheels = wheelhouse(workspace / "wheelhouse")
    find = f"--no-index --find-links {wheels}"
    km = AsyncKernelManager(kernel_name=add_spec(engine, image, gpus="none", workspace=str(workspace), cache_volume=VOLUME))
    await km.start_kernel(cwd=str(workspace))
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        user = pwd.getpwuid(os.getuid()).pw_name
        base = f"/opt/mlcontainer/cache/home/{user}/.local/mlcontainer/{slug(image)}"

        # -- %pip install: into this image's user site in the cache volume, also as root; for a
        # venv (no user site) into a prefix in the cache volume, reached through the venv
        await pip(kc, f"install -q {find} {PKG}==1.0")
        out, _ = await execute(kc, WHERE)
        first = where(out)
        if image in VENVS:
            prefix = f"{VENVS[image]}/.mlcontainer-cache/home/{user}/.local/mlcontainer/{slug(image)}/venv"
            assert first["env"] == {"PIP_USER": None, "PYTHONUSERBASE": base, "PIP_PREFIX": prefix}, first
            assert first["path"].startswith(prefix + "/lib/python3.11/site-packages/"), first
            assert first["script"] == f"{prefix}/bin/mlc-persist", first
            if image == UVVENV_IMAGE:  # no pip in the venv nor a wheel in the image: this host's, lent
                out, _ = await execute(kc, "import pip; print('LENT', pip.__file__)")
                assert f"LENT {LENT_PIP_IN_CONTAINER}/pip/__init__.py" in out, out
        else:
            assert first["env"] == {"PIP_USER": "1", "PYTHONUSERBASE": base, "PIP_PREFIX": None}, first
            assert first["user_site"].startswith(base + "/lib/python3.")
            assert first["path"].startswith(first["user_site"] + "/"), first
            assert first["script"] == f"{base}/bin/mlc-persist", first  # its console script is on PATH

        # -- restart: a new container, the package is there (import, pip freeze)
        container = km.provisioner.container_id
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=90)
        assert km.provisioner.container_id != container
        out, _ = await execute(kc, WHERE)
        assert (where(out)["version"], where(out)["pins"]) == ("1.0", [f"{PKG}==1.0"]), out

        # -- upgrade from a terminal of the kernel (docker exec: the container's environment)
        facts = probe_image_sync(engine, image)
        code, stdout, stderr = engine.exec_sync(
            km.provisioner.container_id, [facts.python, "-m", "pip", "install", "-q", "-U", *find.split(), PKG],
        )
        assert code == 0, stderr
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=90)
        out, _ = await execute(kc, WHERE)
        upgraded = where(out)
        # One copy, the new one: pip replaced it in the user site (no stale metadata left).
        assert (upgraded["version"], upgraded["pins"]) == ("2.0", [f"{PKG}==2.0"]), upgraded

        # -- freeze pins it, so the rebuilt image has it
        runtime_env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        frozen = await asyncio.get_running_loop().run_in_executor(None, lambda: freeze_container(
            engine, km.provisioner.container_id, output_dir=str(workspace / "frozen"), runtime_env=runtime_env,
        ))
        assert frozen.packages.get(PKG) == "2.0", frozen.packages
        assert f"{PKG}==2.0" in frozen.requirements.splitlines()
        where_note = "venv's prefix" if image in VENVS else "user site"
        assert any(PKG in w and where_note in w for w in frozen.warnings), frozen.warnings
        instructions = "\n".join(line for line in frozen.dockerfile.splitlines() if not line.startswith("#"))
        for ours in ("PIP_USER", "PYTHONUSERBASE", "PIP_PREFIX", "PYTHONPATH", ".mlcontainer-cache", "MLCONTAINER_"):
            assert ours not in instructions  # ours, not the user's: the rebuilt image installs normally
        if image == UVVENV_IMAGE:  # the lent pip is ours: not pinned, not a changed file
            assert "pip" not in frozen.packages, frozen.packages
            assert "mlcontainer-pip" not in frozen.dockerfile + "".join(frozen.warnings), frozen.dockerfile
            # The rebuild runs pip from a wheel the build is given: the image has none.
            assert any("pip wheel (pip-*.whl) in ./wheelhouse" in w for w in frozen.warnings), frozen.warnings
            rebuilt_in_image = await asyncio.to_thread(rebuilt_version, workspace / "frozen", wheels)
            assert rebuilt_in_image == "2.0"

        # -- !pip uninstall (pip on PATH): gone, also after a restart. A venv without pip has no
        # pip command of its own (a system Python's pip on PATH would not see the venv's prefix).
        uninstall = "%pip" if image == UVVENV_IMAGE else "!pip"
        out, reply = await execute(kc, f"{uninstall} uninstall -y -q {PKG}\nprint('EXIT', _exit_code)", timeout=120)
        assert "EXIT 0" in out, out
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=90)
        out, _ = await execute(kc, WHERE)
        assert (where(out)["version"], where(out)["pins"], where(out)["script"]) == (None, [], None), out
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def test_a_venv_with_no_pip_to_lend_says_so_in_the_cell(engine, workspace, monkeypatch):
    """No wheel in the image and none on this host (an engine elsewhere gets none either): `%pip`
    says what to use instead and fails, rather than "No module named pip" in a cell that passes."""
    from jupyter_mlcontainer.kernels import provisioner

    monkeypatch.setattr(provisioner, "host_pip_wheel", lambda: "")
    async with running_kernel(engine, UVVENV_IMAGE, workspace, gpus="none", cache_volume=VOLUME) as (km, kc):
        out, _ = await execute(kc, f"%pip install -q {PKG}\nprint('EXIT', _exit_code)", timeout=120)
    assert "has no pip and none could be lent" in out and "uv venv --seed" in out, out
    assert "No module named pip" not in out and "EXIT 1" in out, out


def rebuilt_version(frozen: "os.PathLike[str]", wheels: str) -> str:
    """Build the frozen Dockerfile in ``frozen`` offline (its wheelhouse: ``wheels`` and this
    host's pip wheel) and return the package's version in the built image."""
    house = os.path.join(frozen, "wheelhouse")
    shutil.copytree(wheels, house, dirs_exist_ok=True)
    shutil.copy(host_pip_wheel(), house)
    tag = f"mlcontainer-test/rebuilt-uvvenv:{SESSION_TAG}"
    built = subprocess.run(["docker", "build", "-q", "--build-arg", "PIP_NO_INDEX=1", "-t", tag, str(frozen)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        ran = subprocess.run(["docker", "run", "--rm", tag, "python", "-c", "import mlc_persist; print(mlc_persist.VERSION)"],
                             capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        return ran.stdout.strip()
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


async def test_a_venv_without_pip_runs_pip_from_the_wheel_its_python_ships(engine, workspace):
    """The uv-shaped venv image plus the pip wheel Debian's python3-pip-whl puts where its
    ensurepip looks (python.org's Pythons ship one in ensurepip/_bundled): `%pip` runs that wheel,
    in the image, and nothing of this host is mounted. The matrix image, with no wheel at all,
    is lent this host's (test_pip_install_survives_restart_and_is_frozen)."""
    wheel = host_pip_wheel()
    assert wheel, "this host's Python ships no pip wheel"
    context = workspace / "wheel-image"
    context.mkdir()
    shutil.copy(wheel, context / os.path.basename(wheel))
    (context / "Dockerfile").write_text(
        f"FROM {UVVENV_IMAGE}\nCOPY {os.path.basename(wheel)} /usr/share/python-wheels/\n"
    )
    tag = f"mlcontainer-test/uvvenv-wheel:{SESSION_TAG}"
    built = subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    try:
        facts = probe_image_sync(engine, tag)
        in_image = f"/usr/share/python-wheels/{os.path.basename(wheel)}"
        assert (facts.pip, facts.pip_wheel, facts.venv) == (None, in_image, "/app/.venv"), facts
        wheels = wheelhouse(workspace / "wheelhouse")
        async with running_kernel(engine, tag, workspace, gpus="none", cache_volume=VOLUME) as (km, kc):
            await pip(kc, f"install -q --no-index --find-links {wheels} {PKG}==1.0")
            out, _ = await execute(kc, "import importlib, os, pip\nimportlib.invalidate_caches()\n"
                                       "print('LENT', pip.__file__, os.environ['MLCONTAINER_LENT_PIP'])\n" + WHERE)
            assert f"LENT {in_image}/pip/__init__.py {in_image}" in out, out
            assert where(out)["version"] == "1.0" and "/.mlcontainer-cache/" in where(out)["path"], out
            mounts = engine.inspect_container_sync(km.provisioner.container_id)["Mounts"]
            assert not any(m.get("Destination") == LENT_PIP_IN_CONTAINER for m in mounts), mounts
            frozen = await asyncio.to_thread(lambda: freeze_container(
                engine, km.provisioner.container_id, output_dir=str(workspace / "frozen"), runtime_env={}))
            assert f"/app/.venv/bin/python3 {in_image}/pip install" in frozen.dockerfile, frozen.dockerfile
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


async def test_upgrading_an_image_package_shadows_it_and_uninstall_brings_it_back(engine, workspace, ipykernel_wheelhouse):
    """A package the image has (Debian's packaging 23.0), upgraded: the new one goes into the user
    site, first on sys.path; the image's stays as it was (a non-root user could not change it, a
    root one would lose the change at the restart), and uninstalling the copy gives it back."""
    wheel = shutil.copy(glob.glob(f"{ipykernel_wheelhouse}/packaging-26.*.whl")[0], workspace)
    versions = (
        "import json, subprocess, sys\n"
        "code = 'import json, packaging, importlib.metadata as md; print(json.dumps([packaging.__version__, "
        "packaging.__file__, [d.version for d in md.distributions(name=\"packaging\", path=[\"/usr/lib/python3/dist-packages\"])]]))'\n"
        "print('VERSIONS', subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout)\n"
    )

    def seen(out: str) -> list:
        return json.loads(out.split("VERSIONS ", 1)[1])

    async with running_kernel(engine, BASE_IMAGE, workspace, gpus="none", cache_volume=VOLUME) as (km, kc):
        out, _ = await execute(kc, versions)
        assert seen(out)[0] == "23.0" and seen(out)[2] == ["23.0"], out
        await pip(kc, f"install -q --no-index {wheel}")
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=90)
        out, _ = await execute(kc, versions)
        version, path, image_copy = seen(out)
        assert version.startswith("26.") and "/.local/mlcontainer/" in path and image_copy == ["23.0"], out
        await pip(kc, "uninstall -y -q packaging")
        out, _ = await execute(kc, versions)
        assert seen(out)[0] == "23.0" and seen(out)[1].startswith("/usr/lib/python3/dist-packages/"), out


@pytest.fixture(scope="module")
def user_site_copy():
    site = package_site()
    yield site
    shutil.rmtree(site, ignore_errors=True)


@pytest.mark.parametrize("image", [BASE_IMAGE, CONDA_IMAGE], ids=lambda image: image.split("/")[-1])
def test_nonroot_pip_install_survives_a_new_container(engine, user_site_copy, image):
    """A real non-root user (mlctest): installs in one kernel, a second kernel of the same image
    (a new container, as at a restart) imports it from the same per-image user site."""
    user = BoxUser(TEST_USER, user_site_copy, VOLUME)
    try:
        make_wheel(user.work, name="mlc_persist", version="1.0")
        account = pwd.getpwnam(TEST_USER)
        for entry in os.listdir(user.work):
            os.chown(os.path.join(user.work, entry), account.pw_uid, account.pw_gid)
        install = f"%pip install -q --no-index --find-links {user.work} {PKG}==1.0\nprint('EXIT', _exit_code)"

        def run(*cells):
            plan = {"image": image, "workspace": user.work, "cells": list(cells)}
            return result(user.command(USER_KERNEL, json.dumps(plan)))

        first = run(install, WHERE)
        assert first["started"], first
        assert "EXIT 0" in first["cells"][0][1], first
        second = run(WHERE)
        found = where(second["cells"][0][1])
        base = f"/opt/mlcontainer/cache/home/{TEST_USER}/.local/mlcontainer/{slug(image)}"
        assert found["env"] == {"PIP_USER": "1", "PYTHONUSERBASE": base, "PIP_PREFIX": None}, found
        assert found["version"] == "1.0" and found["path"].startswith(base + "/lib/python3."), found
        assert found["pins"] == [f"{PKG}==1.0"] and found["script"] == f"{base}/bin/mlc-persist", found
    finally:
        user.cleanup()
