"""Benchmark: latency of the panel's REST endpoints with N container kernels running.

Starts a real Jupyter server (subprocess) with the extension, starts N container kernels
through its REST API, points the GPU endpoint at the fake NVML layer (one GPU whose processes
are the kernels' host PIDs, so attribution runs for real), then times each endpoint.
Prints p50 / p95 in milliseconds. Target (issue 3): p50 under 50 ms for kernels, gpus, images.

    python bench/rest_latency.py [--kernels 10] [--requests 50] [--image mlcontainer-test/base:bookworm]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOKEN = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, path: str, method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernels", type=int, default=10)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--image", default="mlcontainer-test/base:bookworm")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="mlc-rest-bench-")
    env = dict(os.environ, JUPYTER_DATA_DIR=f"{tmp}/data", JUPYTER_RUNTIME_DIR=f"{tmp}/runtime",
               JUPYTER_CONFIG_DIR=f"{tmp}/config")
    subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "kernel", "add", args.image, "--name", "bench"],
                   env=env, check=True, capture_output=True)
    nvml = os.path.join(tmp, "nvml.json")
    env["JUPYTER_MLCONTAINER_FAKE_NVML"] = nvml
    with open(nvml, "w") as f:
        json.dump({"gpus": []}, f)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp}", "--no-browser",
         "--ServerApp.jpserver_extensions=jupyter_mlcontainer=True",
         *(["--allow-root"] if os.getuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                call(port, "api/status")
                break
            except Exception:
                time.sleep(0.2)
        for i in range(args.kernels):
            call(port, "api/sessions", "POST", {"path": f"nb{i}.ipynb", "name": f"nb{i}.ipynb", "type": "notebook",
                                                "kernel": {"name": "bench"}})
        kernels = call(port, "mlcontainer/api/kernels")["kernels"]
        pids = []
        for row in kernels:
            out = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", row["container_id"]],
                                 capture_output=True, text=True, check=True)
            pids.append(int(out.stdout))
        # The monitor reads the fake NVML file once, at its first use: write it before.
        with open(nvml, "w") as f:
            json.dump({"gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0", "memory_total": 80 << 30,
                                 "memory_used": 10 << 30, "utilization": 50, "temperature": 40, "power": 300000,
                                 "power_limit": 700000, "mig": 0,
                                 "processes": [{"pid": pid, "used": 1 << 30} for pid in pids]}]}, f)
        time.sleep(3)  # stats followers warm up
        print(f"{len(kernels)} container kernels running; {args.requests} requests per endpoint")
        print(f"{'endpoint':12}{'p50 ms':>10}{'p95 ms':>10}")
        for endpoint in ("kernels", "gpus", "images", "volumes", "status"):
            call(port, f"mlcontainer/api/{endpoint}")  # warm
            samples = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                data = call(port, f"mlcontainer/api/{endpoint}")
                samples.append((time.perf_counter() - t0) * 1000)
            samples.sort()
            p95 = samples[int(len(samples) * 0.95) - 1]
            print(f"{endpoint:12}{statistics.median(samples):10.1f}{p95:10.1f}")
            if endpoint == "gpus":
                mapped = sum(1 for p in data["gpus"][0]["processes"] if p["kernel_id"])
                print(f"{'':12}gpu processes attributed to kernels: {mapped}/{len(pids)}")
    finally:
        for row in call(port, "api/sessions") or []:
            call(port, f"api/sessions/{row['id']}", "DELETE")
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
