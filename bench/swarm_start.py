"""Kernel start and round trip on a Swarm worker against a local container kernel, side by side.

Brings up the test Swarm (tests/swarm_cluster.py: three engines in containers of the main engine,
fake GPUs) unless it is up, then starts kernels of one image alternately on the local engine and
as Swarm tasks (placement 'swarm'), ``--runs`` of each, and prints the medians: start to ready
(kernel_info answered with IOPub connected, as bench/kernel_start.py) and the execute round trip.
On this machine both run on the same two cores; on a real cluster the worker is another machine.

    python bench/swarm_start.py [--runs 5] [--round-trips 30] [--gpus 0|1] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from jupyter_mlcontainer.engines.docker import get_engine  # noqa: E402
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec  # noqa: E402
from tests.swarm_cluster import SwarmCluster  # noqa: E402

IMAGE = "mlcontainer-test/base:bookworm"


async def one(kernel_name: str, cwd: str, round_trips: int) -> tuple[float, float]:
    """(seconds from start_kernel to a kernel_info reply with IOPub connected, median round trip)."""
    km = AsyncKernelManager(kernel_name=kernel_name)
    began = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        ready = time.perf_counter() - began
        trips = []
        for _ in range(round_trips):
            sent = time.perf_counter()
            await kc.execute_interactive("pass", timeout=30)
            trips.append(time.perf_counter() - sent)
        return ready, statistics.median(trips)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=30)
    parser.add_argument("--gpus", default="1", help="GPUs a Swarm kernel reserves (the workers have fake ones)")
    parser.add_argument("--keep", action="store_true", help="leave the test Swarm up afterwards")
    args = parser.parse_args()

    os.environ.setdefault("MLCONTAINER_WARM_POOL", "0")  # cold starts on both sides
    cluster = SwarmCluster(images=(IMAGE,))
    began = time.perf_counter()
    cluster.up()
    print(f"test Swarm up in {time.perf_counter() - began:.1f} s: {len(cluster.nodes)} nodes")
    tag = uuid.uuid4().hex[:6]
    root = tempfile.mkdtemp(prefix=f"bench-swarm-{tag}-", dir=cluster.shared)
    cache = os.path.join(root, "cache")
    os.makedirs(cache)
    os.chmod(cache, 0o1777)
    engine = get_engine()
    local = add_kernelspec(engine, IMAGE, name=f"bench-local-{tag}", options={"gpus": "none", "workspace": root}).name
    swarm = add_kernelspec(engine, IMAGE, name=f"bench-swarm-{tag}", options={
        "gpus": args.gpus, "placement": "swarm", "docker_host": cluster.manager_url, "cache_volume": cache,
        "transport_encryption": "disabled",  # Debian's ipykernel 6.17 cannot encrypt: in the clear on the test cluster
        "workspace": root}).name
    results: dict[str, list[tuple[float, float]]] = {"local": [], "swarm": []}
    try:
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            results["local"].append(await one(local, root, args.round_trips))
            results["swarm"].append(await one(swarm, root, args.round_trips))
    finally:
        from jupyter_client.kernelspec import KernelSpecManager

        from jupyter_mlcontainer.cache.volume import remove_cache_keeper
        from jupyter_mlcontainer.engines.swarm import get_swarm

        for name in (local, swarm):
            KernelSpecManager().remove_kernel_spec(name)
        remove_cache_keeper(get_swarm(cluster.manager_url), cache)
        shutil.rmtree(root, ignore_errors=True)
        if not args.keep:
            cluster.down()
    print(f"\n{'':24}{'ready (median)':>16}{'round trip':>14}   runs={args.runs}")
    medians = {}
    for where, runs in results.items():
        ready = statistics.median(r for r, _ in runs)
        trip = statistics.median(t for _, t in runs)
        medians[where] = (ready, trip)
        label = "local container" if where == "local" else f"Swarm worker (gpus={args.gpus})"
        print(f"{label:24}{ready:>14.3f} s{trip * 1000:>11.2f} ms")
    print(f"\nSwarm / local: ready {medians['swarm'][0] / medians['local'][0]:.2f}x, "
          f"round trip {medians['swarm'][1] / medians['local'][1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
