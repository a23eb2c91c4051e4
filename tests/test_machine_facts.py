"""A frozen notebook that knows its machine (issue 25): freeze records the image's GPU stack
(CUDA runtime, cuDNN, NCCL, each framework's CUDA build and architectures), the host's driver
and GPUs and how the kernel ran; restore, ``doctor --notebook`` and a kernel's start check this
host against them (holds / warning / blocks), and a blocked restore builds nothing.

No GPU here: the host is the fake NVML (a JSON file per host), and the GPU stack is a stand-in
image that declares one the way nvidia/cuda and pytorch/pytorch images do (CUDA's version.json,
cuDNN's header, NCCL's library name, a `torch` module answering as a CUDA 12.4 build for
sm_80/86/90 would). This engine cannot give a kernel a GPU (no NVIDIA runtime), so the record
then gets the GPU an H100 host's freeze records for a kernel with one (which GPUs a container
had is unit-tested: tests/unit/test_host_checks.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.core.names import METADATA_KEY
from jupyter_mlcontainer.environments.freeze import freeze_container
from jupyter_mlcontainer.environments.sharing import environment_record, frozen_names, record_in_notebook
from jupyter_mlcontainer.machine import gpu

from .conftest import BASE_IMAGE, SESSION_TAG, TORCH_IMAGE, running_kernel
from .test_rest import job_outcome

STANDIN_IMAGE = f"mlctest-gpustack:{SESSION_TAG}"
RESTORE_URL = ("mlcontainer", "api", "notebooks", "restore")

# What `import torch` answers in a CUDA 12.4 build for sm_80/86/90 (the real one is 2 GB).
STANDIN_TORCH = '''\
__version__ = "2.5.1+cu124"
class version:
    cuda = "12.4"
class _C:
    @staticmethod
    def _cuda_getArchFlags():
        return "sm_80 sm_86 sm_90"
class backends:
    class cudnn:
        @staticmethod
        def version():
            return 90100
class cuda:
    @staticmethod
    def is_available():
        return False
'''
STANDIN_DOCKERFILE = f'''\
FROM {BASE_IMAGE}
USER root
COPY version.json /usr/local/cuda/version.json
COPY cudnn_version.h /usr/include/cudnn_version.h
COPY torch /tmp/standin/torch
COPY torch-2.5.1+cu124.dist-info /tmp/standin/torch-2.5.1+cu124.dist-info
RUN touch /usr/lib/x86_64-linux-gnu/libnccl.so.2.21.5 \\
    && cp -r /tmp/standin/* "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \\
    && rm -rf /tmp/standin
LABEL org.jupyter.mlcontainer.test="gpustack"
'''
H100 = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-h100", "memory_total": 80 << 30, "compute_capability": "9.0",
        "mig": 0}
HOSTS = {
    "h100": {"driver": "550.54.15", "cuda": 12040, "gpus": [H100]},
    "old-driver": {"driver": "470.82.01", "cuda": 11040, "gpus": [H100]},
    "blackwell": {"driver": "575.51.03", "cuda": 12090, "gpus": [
        {"name": "NVIDIA RTX PRO 6000", "uuid": "GPU-b", "memory_total": 96 << 30, "compute_capability": "12.0"}]},
    "a100-40": {"driver": "550.54.15", "cuda": 12040, "gpus": [
        {"name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-a", "memory_total": 40 << 30, "compute_capability": "8.0"}]},
    "none": {"error": "LibraryNotFound"},
}


@pytest.fixture(scope="module")
def standin_image(engine):
    """The stand-in GPU-stack image, built offline from a context made here."""
    files = {
        "Dockerfile": STANDIN_DOCKERFILE,
        "version.json": json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.4.1"}}),
        "cudnn_version.h": "#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 1\n#define CUDNN_PATCHLEVEL 0\n",
        "torch/__init__.py": STANDIN_TORCH,
        "torch-2.5.1+cu124.dist-info/METADATA": "Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1+cu124\n",
        "torch-2.5.1+cu124.dist-info/RECORD": "",
    }
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    log = list(engine.api.build(fileobj=context, custom_context=True, tag=STANDIN_IMAGE, rm=True, forcerm=True,
                                decode=True))
    assert not [line for line in log if "error" in line], log
    yield STANDIN_IMAGE
    engine.api.remove_image(STANDIN_IMAGE, force=True)


def nvml_host(monkeypatch, tmp_path, name: str) -> str:
    """Make this process (and the servers and CLIs it starts) see host ``name``'s GPUs; the path."""
    path = tmp_path / f"nvml-{name}.json"
    path.write_text(json.dumps(HOSTS[name]))
    monkeypatch.setenv(gpu.FAKE_NVML_ENV, str(path))
    monkeypatch.setattr(gpu, "_monitor", None)
    return str(path)


async def plan_of(jp_fetch, path: str) -> dict:
    return json.loads((await jp_fetch(*RESTORE_URL, params={"path": path})).body)


def verdicts(plan: dict) -> dict[str, str]:
    return {check["name"]: check["verdict"] for check in plan["checks"]}


def cli(*args: str, nvml: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **{gpu.FAKE_NVML_ENV: nvml}))


def remove_restored(engine, stem: str) -> None:
    for image in engine.api.images(name=f"mlcontainer-restored/{stem}"):
        engine.api.remove_image(image["Id"], force=True)


async def test_freeze_records_the_gpu_stack_and_restore_checks_this_host(
        engine, jp_fetch, workspace, standin_image, monkeypatch, tmp_path):
    nvml_host(monkeypatch, tmp_path, "h100")
    notebook = workspace / "notebooks" / "gpu-stack.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("setup"), nbformat.v4.new_code_cell("import torch"),
                nbformat.v4.new_code_cell("x = torch.ones(3, device='cuda')")]
    nbformat.write(nb, notebook)
    async with running_kernel(engine, standin_image, notebook.parent, shm_size="1g") as (km, kc):
        result = freeze_container(engine, km.provisioner.container_id, runtime_env={"WANDB_PROJECT": "proj-7f3a"})

    # -- freeze: the image's stack, read inside the kernel's container; the host's driver
    machine = result.machine
    assert (machine["cuda_runtime"], machine["cudnn"], machine["nccl"]) == ("12.4.1", "9.1.0", "2.21.5")
    torch = machine["frameworks"]["torch"]
    assert torch["version"] == "2.5.1+cu124" and torch["cuda"] == "12.4" and torch["cudnn"] == "90100"
    assert torch["arch"] == ["sm_80", "sm_86", "sm_90"]
    assert "PyTorch 2.5.1+cu124 (CUDA 12.4, sm_80 sm_86 sm_90)" in result.machine_summary
    assert (machine["driver"], machine["driver_cuda"], machine["gpus"]) == ("550.54.15", "12.4", [])  # --gpus none
    assert result.kernel_options["gpus"] == "none" and result.kernel_options["shm_size"] == "1g"
    assert result.kernel_options["env"] == ["WANDB_PROJECT"]  # the name; never the value
    # ... and as LABELs, so an image built from the Dockerfile carries them too.
    assert 'org.jupyter.mlcontainer.torch-arch="sm_80 sm_86 sm_90"' in result.dockerfile
    assert 'org.jupyter.mlcontainer.cuda-runtime="12.4.1"' in result.dockerfile
    assert "org.jupyter.mlcontainer.machine=" in result.dockerfile and "proj-7f3a" in result.dockerfile  # as ENV, the user set it

    # The same notebook as an H100 host's freeze records it for a kernel with one GPU.
    tag, kernelspec = frozen_names(str(notebook), result.dockerfile)
    record = environment_record(result, str(notebook), tag, kernelspec)
    record["machine"]["gpus"] = [{"name": H100["name"], "compute_capability": "9.0", "memory_total": 80 << 30,
                                  "mig": False}]
    record["kernel_options"]["gpus"] = "1"
    record_in_notebook(str(notebook), record)
    path = "notebooks/gpu-stack.ipynb"
    try:
        # -- the checks on other hosts, as REST shows them (the panel's dialog shows the same)
        nvml_host(monkeypatch, tmp_path, "old-driver")
        plan = await plan_of(jp_fetch, path)
        driver = next(check for check in plan["checks"] if check["name"] == "driver")
        assert plan["blocked"] and driver["verdict"] == "blocks"
        assert "470.82.01" in driver["reason"] and "cuda-compat-12-4" in driver["fix"] and "550.54.14" in driver["fix"]
        # A blocked restore builds nothing, pulls nothing, writes no kernelspec.
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(*RESTORE_URL, method="POST", body=json.dumps({"path": path, "fingerprint": plan["fingerprint"]}))
        assert info.value.code == 409 and "nothing was built" in json.loads(info.value.response.body)["message"]
        assert engine.api.images(name="mlcontainer-restored/gpu-stack") == []
        assert kernelspec not in KernelSpecManager().find_kernel_specs()
        assert (await jp_fetch("mlcontainer", "api", "jobs")).code == 200
        jobs = json.loads((await jp_fetch("mlcontainer", "api", "jobs")).body)["jobs"]
        assert not [job for job in jobs if job["target"].startswith("mlcontainer-restored/gpu-stack")]

        nvml_host(monkeypatch, tmp_path, "blackwell")
        plan = await plan_of(jp_fetch, path)
        arch = next(check for check in plan["checks"] if check["name"] == "arch-torch")
        assert arch["verdict"] == "blocks" and "sm_120" in arch["reason"] and plan["blocked"]
        assert verdicts(plan)["driver"] == "holds"  # 12.9 covers 12.4

        nvml_host(monkeypatch, tmp_path, "a100-40")
        plan = await plan_of(jp_fetch, path)
        assert verdicts(plan) == {"gpu": "holds", "driver": "holds", "arch-torch": "holds", "gpu-model": "warning",
                                  "gpu-memory": "warning"} and not plan["blocked"]

        nvml_host(monkeypatch, tmp_path, "none")
        plan = await plan_of(jp_fetch, path)
        assert verdicts(plan) == {"gpu": "warning"} and plan["kernel_options"]["gpus"] == "none"
        assert "runs on the CPU" in plan["checks"][0]["reason"] and "may fail: 3." in plan["checks"][0]["reason"]

        # -- the CLI: the plan's checks, a blocked restore refused; doctor --notebook, no restore
        old = nvml_host(monkeypatch, tmp_path, "old-driver")
        done = cli("restore", "--yes", str(notebook), nvml=old)
        assert done.returncode == 1 and "[blocks] Driver 470.82.01" in done.stdout and "BLOCKED" in done.stdout
        assert "nothing was built" in done.stderr, done.stderr
        done = cli("doctor", "--notebook", str(notebook), nvml=old)
        assert done.returncode == 1 and "[FAIL] notebook driver: Driver 470.82.01" in done.stdout, done.stdout
        h100 = nvml_host(monkeypatch, tmp_path, "h100")
        done = cli("doctor", "--notebook", str(notebook), nvml=h100)
        assert done.returncode == 0 and "[ok  ] notebook arch-torch" in done.stdout, done.stdout
        assert "WANDB_PROJECT" in done.stdout

        # -- on the machine it ran on: every check holds, the kernelspec gets the recorded options
        plan = await plan_of(jp_fetch, path)
        assert set(verdicts(plan).values()) == {"holds"} and plan["checked"], plan["checks"]
        assert plan["kernel_options"] == {"gpus": "1", "shm_size": "1g"}
        started = await jp_fetch(*RESTORE_URL, method="POST", body=json.dumps(
            {"path": path, "fingerprint": plan["fingerprint"]}))
        done = await job_outcome(jp_fetch, json.loads(started.body)["job"]["id"])
        assert done["state"] == "done", done
        spec = KernelSpecManager().get_kernel_spec(kernelspec)
        config = spec.metadata["kernel_provisioner"]["config"]
        assert config["gpus"] == "1" and config["shm_size"] == "1g"
        labels = engine.api.inspect_image(done["result"]["image"])["Config"]["Labels"]
        assert json.loads(labels["org.jupyter.mlcontainer.machine"])["frameworks"]["torch"]["arch"] == torch["arch"]

        # -- a kernel's start of that image on a host whose driver cannot run it: refused, nothing left
        nvml_host(monkeypatch, tmp_path, "old-driver")
        km = AsyncKernelManager(kernel_name=kernelspec)
        with pytest.raises(Exception) as info:
            await km.start_kernel(cwd=str(notebook.parent))
        assert "cannot run" in str(info.value) and "470.82.01" in str(info.value) and "--gpus none" in str(info.value)
        assert engine.api.containers(all=True, filters={"ancestor": done["result"]["image"]}) == []

        # -- restored anyway, past the block: a CPU kernel (a GPU start of it would be refused)
        KernelSpecManager().remove_kernel_spec(kernelspec)
        plan = await plan_of(jp_fetch, path)
        assert plan["blocked"] and plan["source"] == "present"
        done = json.loads((await jp_fetch(*RESTORE_URL, method="POST", body=json.dumps(
            {"path": path, "fingerprint": plan["fingerprint"], "ignore_checks": True}))).body)
        assert done["kernelspec"] == kernelspec and any("runs on the CPU" in note for note in done["notes"]), done
        config = KernelSpecManager().get_kernel_spec(kernelspec).metadata["kernel_provisioner"]["config"]
        assert config["gpus"] == "none"

        # -- an older record (no machine facts): restores, saying nothing could be checked
        del record["machine"]
        record_in_notebook(str(notebook), record)
        plan = await plan_of(jp_fetch, path)
        assert plan["checks"] == [] and not plan["checked"] and not plan["blocked"]
        assert any("nothing about this host could be checked" in note for note in plan["notes"])
    finally:
        remove_restored(engine, "gpu-stack")
        if kernelspec in KernelSpecManager().find_kernel_specs():
            KernelSpecManager().remove_kernel_spec(kernelspec)


async def test_cpu_pytorch_round_trip_records_its_build_and_every_check_holds(
        engine, jp_fetch, workspace, monkeypatch, tmp_path):
    nvml_host(monkeypatch, tmp_path, "h100")
    notebook = workspace / "cpu-torch.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    async with running_kernel(engine, TORCH_IMAGE, workspace) as (km, kc):
        result = freeze_container(engine, km.provisioner.container_id, runtime_env={})
    torch = result.machine["frameworks"]["torch"]
    assert torch["version"].startswith("2.13") and torch["cuda"] is None and torch["arch"] == []
    tag, kernelspec = frozen_names(str(notebook), result.dockerfile)
    record_in_notebook(str(notebook), environment_record(result, str(notebook), tag, kernelspec))
    assert nbformat.read(notebook, as_version=4).metadata[METADATA_KEY]["machine"]["frameworks"]["torch"] == torch
    try:
        plan = await plan_of(jp_fetch, "cpu-torch.ipynb")
        assert plan["checks"] == [{"name": "gpu", "verdict": "holds", "fix": "",
                                   "reason": "The notebook ran without a GPU; so will the restored kernel."}]
        assert plan["kernel_options"]["gpus"] == "none" and not plan["blocked"]
        started = await jp_fetch(*RESTORE_URL, method="POST", body=json.dumps(
            {"path": "cpu-torch.ipynb", "fingerprint": plan["fingerprint"]}))
        done = await job_outcome(jp_fetch, json.loads(started.body)["job"]["id"])
        assert done["state"] == "done" and done["result"]["kernelspec"] == kernelspec, done
    finally:
        remove_restored(engine, "cpu-torch")
        if kernelspec in KernelSpecManager().find_kernel_specs():
            KernelSpecManager().remove_kernel_spec(kernelspec)
