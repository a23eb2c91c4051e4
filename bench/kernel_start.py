"""Benchmark: container kernel start and round trip against a local ipykernel and the image floor.

Prints, for one machine in one run (medians over --runs):
  * local ipykernel: start request -> kernel_info reply (ready), and execute round trip p50 of 1+1
  * container kernel (mlcontainer-docker): the same
  * floor: a bare `docker run --rm IMAGE python3 -c "import ipykernel"`
  * 10 concurrent container kernel starts: how many succeeded, wall time, slowest start

Targets (issue 2): container cold start at most 0.3 s above the floor; round trip within 1.2x of
local; all 10 concurrent starts succeed.

    python bench/kernel_start.py [--image mlcontainer-test/base:bookworm] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

from jupyter_client.manager import AsyncKernelManager


async def start_and_measure(kernel_name: str, cwd: str, round_trips: int) -> tuple[float, float]:
    """Return (seconds to ready, p50 seconds of an execute round trip)."""
    km = AsyncKernelManager(kernel_name=kernel_name)
    t0 = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        ready = time.perf_counter() - t0
        samples = []
        for _ in range(round_trips):
            t1 = time.perf_counter()
            reply = await kc.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
            samples.append(time.perf_counter() - t1)
            assert reply["content"]["status"] == "ok"
        return ready, statistics.median(samples)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


def floor(image: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "import ipykernel"], check=True)
    return time.perf_counter() - t0


async def concurrent(kernel_name: str, cwd: str, n: int) -> tuple[int, float, float]:
    async def one() -> float:
        ready, _ = await start_and_measure(kernel_name, cwd, 1)
        return ready

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    wall = time.perf_counter() - t0
    ok = [r for r in results if isinstance(r, float)]
    for r in results:
        if not isinstance(r, float):
            print(f"  concurrent start failed: {r!r}", file=sys.stderr)
    return len(ok), wall, max(ok) if ok else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="mlcontainer-test/base:bookworm")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=10)
    args = parser.parse_args()

    from jupyter_mlcontainer.engine import get_engine
    from jupyter_mlcontainer.kernelspecs import add_kernelspec

    tmp = tempfile.mkdtemp(prefix="mlc-bench-")
    os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(tmp, "data"))
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", os.path.join(tmp, "runtime"))
    spec = add_kernelspec(get_engine(), args.image, name="mlc-bench")
    from ipykernel.kernelspec import install as install_local

    install_local(user=True, kernel_name="local-bench")

    # Warm-up: first container start also probes the image and prepares the cache volume.
    await start_and_measure(spec.name, tmp, 1)
    await start_and_measure("local-bench", tmp, 1)

    local = [await start_and_measure("local-bench", tmp, args.round_trips) for _ in range(args.runs)]
    container = [await start_and_measure(spec.name, tmp, args.round_trips) for _ in range(args.runs)]
    floors = [floor(args.image) for _ in range(args.runs)]
    ok, wall, slowest = await concurrent(spec.name, tmp, args.concurrent)

    med = statistics.median
    local_ready, local_rt = med(r for r, _ in local), med(t for _, t in local)
    cont_ready, cont_rt = med(r for r, _ in container), med(t for _, t in container)
    fl = med(floors)
    print(f"image: {args.image}   runs: {args.runs}   round trips per run: {args.round_trips}")
    print(f"{'':38}{'ready (s)':>12}{'1+1 p50 (ms)':>15}")
    print(f"{'local ipykernel':38}{local_ready:12.3f}{local_rt * 1000:15.2f}")
    print(f"{'container kernel (mlcontainer-docker)':38}{cont_ready:12.3f}{cont_rt * 1000:15.2f}")
    print(f"{'floor: docker run + import ipykernel':38}{fl:12.3f}")
    print(f"container - floor: {cont_ready - fl:+.3f} s (target <= +0.300)")
    print(f"round trip container/local: {cont_rt / local_rt:.2f}x (target <= 1.20x)")
    print(f"{args.concurrent} concurrent container starts: {ok}/{args.concurrent} ready, "
          f"wall {wall:.2f} s, slowest {slowest:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
