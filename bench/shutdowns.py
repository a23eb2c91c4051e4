"""Shutting kernels down at scale, through a real Jupyter server's REST API (issue 26).

For each package under test (this checkout, and with ``--baseline DIR`` another checkout of
the project, e.g. ``git worktree add /tmp/mlc-base <commit>``), in one run on one machine:

- one kernel's ``DELETE api/kernels/<id>`` alone (median of ``--singles``);
- ``--kernels`` kernels' DELETEs at once: the wall time and the slowest;
- a server holding ``--kernels`` kernels stopped with SIGTERM: the time until its process
  exits, and the containers left behind (none, or it is a bug);
- the CPU the whole machine spent during one DELETE alone and during the ``--kernels`` at once:
  where the cores are busy throughout, the wall time is bound by them, not by waiting.

Kernels run in the test image mlcontainer-test/base:bookworm (scripts/build-test-images.sh),
warm pool off (a spare would only add a container to remove). Run: python bench/shutdowns.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "mlcontainer-test/base:bookworm"
TOKEN = "mlc-bench-shutdowns"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A Jupyter server subprocess running the package found in ``package_root``."""

    def __init__(self, package_root: str, data_dir: str, root_dir: str) -> None:
        self.port = free_port()
        self.runtime_dir = os.path.join(root_dir, "runtime")
        env = dict(os.environ, PYTHONPATH=package_root, JUPYTER_DATA_DIR=data_dir, MLCONTAINER_WARM_POOL="0",
                   JUPYTER_RUNTIME_DIR=self.runtime_dir)
        self.log = open(os.path.join(root_dir, f"server-{self.port}.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root_dir}", "--no-browser",
             *(["--allow-root"] if os.getuid() == 0 else [])],
            env=env, cwd=root_dir, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.call("GET", "api/status")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def call(self, method: str, path: str, body: dict | None = None) -> dict | list | None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=300) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    async def acall(self, method: str, path: str, body: dict | None = None):
        return await asyncio.to_thread(self.call, method, path, body)

    async def start_kernels(self, name: str, n: int) -> list[str]:
        kernels = await asyncio.gather(*(self.acall("POST", "api/kernels", {"name": name}) for _ in range(n)))
        ids = [k["id"] for k in kernels]
        await asyncio.gather(*(asyncio.to_thread(self.wait_ready, kid) for kid in ids))
        return ids

    def wait_ready(self, kid: str) -> None:
        """Until the kernel answers kernel_info, through the connection file the server wrote."""
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_file(os.path.join(self.runtime_dir, f"kernel-{kid}.json"))
        client.start_channels()
        try:
            client.wait_for_ready(timeout=180)
        finally:
            client.stop_channels()

    async def timed_delete(self, kid: str) -> float:
        started = time.perf_counter()
        await self.acall("DELETE", f"api/kernels/{kid}")
        return time.perf_counter() - started

    def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()
        return time.perf_counter() - started


def cpu_busy() -> float:
    """Seconds of CPU this machine's cores have spent busy so far (all processes: the kernels'
    containers, the engine, the server), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def kernel_containers() -> int:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=org.jupyter.mlcontainer.role=kernel"],
                         capture_output=True, text=True).stdout
    return len(out.split())


def add_kernelspec(package_root: str, data_dir: str) -> str:
    env = dict(os.environ, PYTHONPATH=package_root, JUPYTER_DATA_DIR=data_dir)
    subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "kernel", "add", IMAGE, "--name", "bench-sd",
                    "--gpus", "none"], env=env, check=True, capture_output=True)
    return "bench-sd"


async def measure(package_root: str, n: int, singles: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mlc-bench-sd-") as tmp:
        data_dir, root = os.path.join(tmp, "data"), os.path.join(tmp, "root")
        os.makedirs(root)
        name = add_kernelspec(package_root, data_dir)
        before = kernel_containers()
        server = Server(package_root, data_dir, root)
        try:
            alone, alone_cpu = [], []
            for _ in range(singles):
                (kid,) = await server.start_kernels(name, 1)
                await asyncio.sleep(1)  # the start's own work is over
                cpu = cpu_busy()
                alone.append(await server.timed_delete(kid))
                alone_cpu.append(cpu_busy() - cpu)
            ids = await server.start_kernels(name, n)
            await asyncio.sleep(2)
            cpu, started = cpu_busy(), time.perf_counter()
            each = await asyncio.gather(*(server.timed_delete(kid) for kid in ids))
            wall = time.perf_counter() - started
            together_cpu = cpu_busy() - cpu
            left_after_deletes = kernel_containers() - before
            await server.start_kernels(name, n)
        finally:
            exit_seconds = server.stop()
        left = kernel_containers() - before
    alone.sort()
    alone_cpu.sort()
    return {"alone": alone[len(alone) // 2], "wall": wall, "slowest": max(each), "left_deletes": left_after_deletes,
            "exit": exit_seconds, "left_exit": left, "alone_cpu": alone_cpu[len(alone_cpu) // 2],
            "together_cpu": together_cpu}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--singles", type=int, default=5)
    parser.add_argument("--baseline", help="another checkout of the project to measure the same way")
    args = parser.parse_args()
    variants = [("this checkout", REPO)] + ([("baseline " + args.baseline, args.baseline)] if args.baseline else [])
    results = {label: await measure(root, args.kernels, args.singles) for label, root in variants}
    n = args.kernels
    print(f"{os.cpu_count()} CPUs; image {IMAGE}; warm pool off; DELETE api/kernels/<id> through a Jupyter server")
    width = max(len(label) for label in results) + 2
    print(f"{'':{width}}{'1 alone':>9}{f'{n} at once':>11}{'slowest':>9}{'x alone':>9}{'left':>6}"
          f"{f'exit, {n} kernels':>19}{'left':>6}")
    for label, r in results.items():
        print(f"{label:{width}}{r['alone']:>8.2f}s{r['wall']:>10.2f}s{r['slowest']:>8.2f}s"
              f"{r['wall'] / r['alone']:>8.1f}x{r['left_deletes']:>6}{r['exit']:>18.2f}s{r['left_exit']:>6}")
    cores = os.cpu_count() or 1
    print(f"\nCPU the machine spent (all cores; the kernels' containers, the engine, the server), {cores} cores:")
    for label, r in results.items():
        print(f"  {label}: 1 alone {r['alone_cpu']:.2f} core-s; {n} at once {r['together_cpu']:.2f} core-s of the "
              f"{r['wall'] * cores:.2f} the cores had ({r['together_cpu'] / (r['wall'] * cores):.0%} busy); {n} x 1 "
              f"alone's CPU on {cores} cores takes at least {n * r['alone_cpu'] / cores:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
