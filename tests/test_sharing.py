"""Share a frozen notebook: metadata record, a colleague's restore (build + kernelspec), Binder."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from jupyter_mlcontainer.environments.freeze import freeze_container, kernel_environment
from jupyter_mlcontainer.core.names import METADATA_KEY
from jupyter_mlcontainer.environments.sharing import environment_record, export_binder, frozen_names, record_in_notebook

from .conftest import BASE_IMAGE, execute, running_kernel
from .test_freeze import hadolint_errors


async def test_colleague_restores_a_frozen_notebook(engine, workspace):
    notebook = workspace / "notebooks" / "shared.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os; print(os.environ['MLC_MODE'])")]
    nbformat.write(nb, notebook)
    async with running_kernel(engine, BASE_IMAGE, notebook.parent) as (km, kc):
        await execute(kc, "import os; os.environ['MLC_MODE'] = 'shared'")
        env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        result = freeze_container(engine, km.provisioner.container_id, runtime_env=env)
    tag, kernelspec = frozen_names(str(notebook), result.dockerfile)
    record_in_notebook(str(notebook), environment_record(result, str(notebook), tag, kernelspec))
    record = nbformat.read(notebook, as_version=4).metadata[METADATA_KEY]
    assert record["image"] == tag and record["dockerfile"] == "Dockerfile" and record["kernelspec"] == kernelspec

    # The colleague has neither the image nor the kernelspec: one command makes both.
    try:
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_mlcontainer.cli", "restore", str(notebook)],
            capture_output=True, text=True, timeout=600,
        )
        # Not confirmed (no terminal, no --yes): the plan is shown, nothing is done.
        assert done.returncode == 1 and "--yes" in done.stderr, done.stderr[-2000:]
        assert "build mlcontainer-restored/shared:" in done.stdout and "| FROM " in done.stdout
        assert kernelspec not in KernelSpecManager().find_kernel_specs()
        done = subprocess.run(
            [sys.executable, "-m", "jupyter_mlcontainer.cli", "restore", "--yes", str(notebook)],
            capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        restored = re.search(rf"image (\S+) built; kernel {kernelspec} ready", done.stdout).group(1)
        assert restored.startswith("mlcontainer-restored/shared:"), done.stdout
        assert kernelspec in KernelSpecManager().find_kernel_specs()
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, resources={"metadata": {"path": str(notebook.parent)}}, timeout=120).execute()
        assert nb.cells[0].outputs[0]["text"] == "shared\n"
        again = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "restore", "-y", str(notebook)],
                               capture_output=True, text=True, timeout=120)
        assert f"image {restored} present" in again.stdout
    finally:
        for image in engine.api.images(name="mlcontainer-restored/shared"):
            engine.api.remove_image(image["Id"], force=True)


def test_restore_without_record_is_a_clear_error(engine, workspace):
    notebook = workspace / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    done = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "restore", str(notebook)], capture_output=True, text=True)
    assert done.returncode == 1 and "no mlcontainer environment record" in done.stderr


async def test_export_binder(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        await execute(kc, "import os; os.environ['MLC_STAGE'] = 'binder'")
        result = freeze_container(engine, km.provisioner.container_id, runtime_env=await asyncio.to_thread(kernel_environment, km.get_connection_info()))
    folder = export_binder(str(workspace), result.dockerfile_path)
    text = (workspace / "binder" / "Dockerfile").read_text()
    from_line = next(line for line in result.dockerfile.splitlines() if line.startswith("FROM "))
    assert from_line in text.splitlines()  # Binder starts from the same pinned base
    assert "ARG NB_UID=1000" in text and "COPY . ${HOME}" in text and text.rstrip().endswith('ENV MLC_STAGE="binder"')
    assert "USER ${NB_UID}" in text
    assert "jupyterlab" in (workspace / "binder" / "requirements-binder.txt").read_text()
    assert hadolint_errors(f"{folder}/Dockerfile") == ""
