"""Container kernels through the ordinary headless tools: nbclient, nbconvert, papermill, console."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from .conftest import BASE_IMAGE, TORCH_IMAGE, add_spec, our_kernel_containers


def _notebook(kernel_name: str, *sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    return nb


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_nbclient_executes_in_the_container(engine, workspace):
    name = add_spec(engine, TORCH_IMAGE)
    nb = _notebook(
        name,
        "import torch, socket\nprint(torch.__version__.split('+')[0])",
        "print(torch.arange(4).sum().item())",
    )
    NotebookClient(nb, kernel_name=name, resources={"metadata": {"path": str(workspace)}}, timeout=120).execute()
    assert _stdout(nb.cells[0]).strip() == "2.13.0"
    assert _stdout(nb.cells[1]).strip() == "6"
    assert our_kernel_containers(engine) == [] or all(
        c["State"] != "running" for c in our_kernel_containers(engine)
    )


def _run_cli(*args: str, cwd: str, input: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, input=input, capture_output=True, text=True,
        timeout=timeout, env=os.environ.copy(),
    )


def test_nbconvert_execute(engine, workspace):
    name = add_spec(engine, BASE_IMAGE)
    path = workspace / "notebooks" / "report.ipynb"
    nbformat.write(_notebook(name, "import os\nprint(os.getcwd())\nprint(open('/etc/debian_version').read().strip() != '')"), path)
    result = _run_cli("jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace", str(path), cwd=str(workspace))
    assert result.returncode == 0, result.stderr
    out = _stdout(nbformat.read(path, as_version=4).cells[0]).split()
    assert out == [str(path.parent), "True"]


def test_papermill_parameters(engine, workspace):
    name = add_spec(engine, BASE_IMAGE)
    src = workspace / "params.ipynb"
    nb = _notebook(name, "alpha = 1", "print(alpha * 10)")
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, src)
    out = workspace / "params-out.ipynb"
    result = _run_cli("papermill", str(src), str(out), "-p", "alpha", "7", "-k", name, cwd=str(workspace))
    assert result.returncode == 0, result.stderr
    cells = nbformat.read(out, as_version=4).cells
    assert _stdout(cells[-1]).strip() == "70"


def test_jupyter_console(engine, workspace):
    """`jupyter console --kernel NAME` in a terminal (a pseudo-terminal made by util-linux's script)."""
    import os
    import re
    import select
    import shutil
    import time

    name = add_spec(engine, BASE_IMAGE)
    script = shutil.which("script")
    assert script, "util-linux's script is needed to give jupyter console a terminal"
    proc = subprocess.Popen(
        [script, "-qfc", f"{sys.executable} -m jupyter console --kernel {name}", "/dev/null"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(workspace),
    )
    seen = b""

    def wait_for(text: bytes, timeout: float = 120) -> None:
        """Read the terminal until ``text`` shows (the prompt, the output), or fail."""
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen):  # what the terminal shows
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not shown: {seen[-2000:]!r}"
            if select.select([proc.stdout], [], [], left)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"the console ended before showing {text!r}: {seen[-2000:]!r}"
                seen += chunk

    try:
        wait_for(b"In [1]")  # the container kernel started and the console shows its prompt
        proc.stdin.write(b"import socket; print('in-' + 'container', len(socket.gethostname()))\r")
        proc.stdin.flush()
        wait_for(b"in-container 12")
        proc.stdin.write(b"exit\r")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert b"in-container 12" in seen + out, (seen + out)[-2000:]
