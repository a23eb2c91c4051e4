"""Check the real NVML path of :mod:`jupyter_mlcontainer.machine.gpu` on a machine with a GPU.

CI has no GPU and tests GPU code against the fake NVML layer; this script is what a
session with a lent GPU runs to check the same code against the real driver. It needs
only nvidia-ml-py (and PyTorch, for a process that holds GPU memory); Docker is not
required, so the container mapping is checked for a host process (no container).

    python bench/gpu_real_nvml.py [--json OUT]

It prints a snapshot, starts a PyTorch process that allocates 1 GiB on GPU 0, checks
that the snapshot lists that process with its memory, times snapshots, and exits
non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from jupyter_mlcontainer.machine.gpu import GpuMonitor, attribute_processes, container_id_of_pid  # noqa: E402

HOLDER = """
import sys, time, torch
x = torch.empty(1 << 30, dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.read()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the snapshots here")
    args = parser.parse_args()
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    monitor = GpuMonitor()
    idle = monitor.snapshot()
    print(json.dumps(idle.to_dict(), indent=1))
    check(idle.available, f"NVML available ({idle.reason or 'no reason'})")
    if not idle.available:
        return 1
    gpu = idle.gpus[0]
    check(bool(idle.driver_version), f"driver version {idle.driver_version}")
    check(bool(idle.cuda_driver_version), f"CUDA driver version {idle.cuda_driver_version}")
    check(gpu.uuid.startswith("GPU-"), f"UUID {gpu.uuid}")
    check(gpu.memory_total is not None and gpu.memory_total > 1 << 30, f"memory total {gpu.memory_total}")
    check(gpu.memory_used is not None, f"memory used {gpu.memory_used} (v2 reserved {gpu.memory_reserved})")
    check(gpu.temperature is not None, f"temperature {gpu.temperature} C")
    check(gpu.power_usage is not None and gpu.power_limit is not None, f"power {gpu.power_usage} / {gpu.power_limit} W")
    check(gpu.utilization_gpu is not None, f"utilisation {gpu.utilization_gpu}%")
    check(gpu.mig_mode is not None, f"MIG mode {gpu.mig_mode}")

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        line = holder.stdout.readline().strip()
        check(line == "ready", "PyTorch process allocated 1 GiB on GPU 0")
        busy = None
        for _ in range(50):  # NVML may take a moment to list a new context
            busy = monitor.snapshot()
            if any(p.pid == holder.pid for p in busy.gpus[0].processes):
                break
            time.sleep(0.1)
        procs = {p.pid: p for p in busy.gpus[0].processes}
        print("processes on GPU 0:", [(p.pid, p.used_memory, p.kind) for p in procs.values()])
        found = procs.get(holder.pid)
        check(found is not None, f"holder pid {holder.pid} listed (NVML reports host PIDs)")
        if found is not None:
            check(found.kind == "compute", f"kind {found.kind}")
            check(
                found.used_memory is None or found.used_memory >= 1 << 30,
                f"used memory {found.used_memory} >= 1 GiB (None where NVML cannot tell)",
            )
        check(
            busy.gpus[0].memory_used >= (gpu.memory_used or 0) + (1 << 30) * 0.9,
            f"memory used rose {gpu.memory_used} -> {busy.gpus[0].memory_used}",
        )
        rows = attribute_processes(busy, {}, {})
        row = next((p for p in rows[0]["processes"] if p["pid"] == holder.pid), None)
        check(
            row is not None and row["kernel_id"] is None,
            f"host process attributed to no kernel (container {container_id_of_pid(holder.pid)})",
        )
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            monitor.snapshot()
            timings.append((time.perf_counter() - start) * 1000)
        print(
            f"snapshot with processes: p50 {statistics.median(timings):.2f} ms, "
            f"max {max(timings):.2f} ms over {len(timings)} ({len(busy.gpus)} GPU)"
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"idle": idle.to_dict(), "busy": busy.to_dict(), "timings_ms": timings}, f, indent=1)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    monitor.close()
    check(monitor.snapshot().available, "re-initialises after close()")
    monitor.close()
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
