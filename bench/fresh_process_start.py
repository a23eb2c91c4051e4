"""A kernel's start as nbclient, papermill and `jupyter console` see it: a fresh Python process
that makes one KernelManager, starts the kernel and waits for it (issue 26). bench/kernel_start.py
measures inside one warm process; here every round pays what a new process pays.

Each round runs, in a new process: import jupyter_client; look the kernelspec up; start_kernel();
wait_for_ready() (which includes jupyter_client's 0.2 s IOPub drain for any kernel). The local
ipykernel ("python3") and a container kernel of mlcontainer-test/base:bookworm (Debian's
ipykernel 6.17; warm pool off, as these front doors get it) alternate, ``--rounds`` each.
Run: python bench/fresh_process_start.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "mlcontainer-test/base:bookworm"

ROUND = r"""
import json, sys, time
t0 = time.perf_counter()
from jupyter_client.manager import KernelManager
t1 = time.perf_counter()
km = KernelManager(kernel_name=sys.argv[1])
km.kernel_spec  # the lookup (for a kernelspec other than python3, jupyter_client imports IPython here)
t2 = time.perf_counter()
km.start_kernel(cwd=sys.argv[2])
t3 = time.perf_counter()
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=120)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "kernelspec": t2 - t1, "start": t3 - t2, "ready": t4 - t3, "total": t4 - t0}))
kc.stop_channels()
km.shutdown_kernel(now=True)
"""


def one_round(kernel: str, env: dict[str, str], cwd: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", ROUND, kernel, cwd], env=env, capture_output=True, text=True,
                         timeout=300, cwd=cwd)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlc-bench-fresh-") as tmp:
        env = dict(os.environ, PYTHONPATH=REPO, JUPYTER_DATA_DIR=os.path.join(tmp, "data"), MLCONTAINER_WARM_POOL="0")
        subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "kernel", "add", IMAGE, "--name", "bench-fresh",
                        "--gpus", "none"], env=env, check=True, capture_output=True)
        runs: dict[str, list[dict[str, float]]] = {"local ipykernel (python3)": [], f"container, {IMAGE}": []}
        for _ in range(args.rounds):
            runs["local ipykernel (python3)"].append(one_round("python3", env, tmp))
            runs[f"container, {IMAGE}"].append(one_round("bench-fresh", env, tmp))
    keys = ("import", "kernelspec", "start", "ready", "total")
    print(f"fresh process per round, {args.rounds} rounds interleaved, medians in seconds; {os.cpu_count()} CPUs")
    print(f"{'':34}" + "".join(f"{key:>12}" for key in keys))
    medians = {}
    for label, rows in runs.items():
        medians[label] = {key: statistics.median(row[key] for row in rows) for key in keys}
        print(f"{label:34}" + "".join(f"{medians[label][key]:>12.3f}" for key in keys))
    local, ours = medians.values()
    print(f"container / local, total: {ours['total'] / local['total']:.2f}x; the kernelspec lookup "
          f"{ours['kernelspec'] - local['kernelspec']:+.3f} s (jupyter_client imports IPython to list kernel "
          "folders for any kernelspec but python3); start + ready "
          f"{ours['start'] + ours['ready'] - local['start'] - local['ready']:+.3f} s")


if __name__ == "__main__":
    main()
