"""Kernel start, restart and round trip on the test Slurm cluster against a local container kernel,
side by side in one run.

Brings up the test cluster (tests/slurm_cluster.py: a controller that is the login node and two
compute nodes, containers of the main engine) unless it is up, then starts kernels of one image
alternately on the local engine and as Slurm jobs (placement 'slurm', through the login node as
the test user ``mlctest``), ``--runs`` of each, and prints the medians: start to ready (a
kernel_info reply with IOPub connected; a Slurm start includes submitting the job and Slurm's
scheduling), a restart (a new step in the same allocation), a warm start from a held job (the
kernelspec's slurm option 'hold'), and the execute round trip. The image is unpacked into the
user's store before the runs (its one-time cost is printed apart). On this machine the nodes share
the same two cores; on a real cluster they are other machines.

    python bench/slurm_start.py [--runs 5] [--round-trips 30] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import statistics
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from jupyter_mlcontainer.engines.docker import get_engine  # noqa: E402
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec  # noqa: E402
from tests.slurm_cluster import SlurmCluster, make_users_folder  # noqa: E402

IMAGE = "mlcontainer-test/base:bookworm"
USER = "mlctest"


async def ready_after(km: AsyncKernelManager, start) -> tuple[float, object]:
    began = time.perf_counter()
    await start()
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=180)
    return time.perf_counter() - began, kc


async def one(kernel_name: str, cwd: str, round_trips: int) -> dict[str, float]:
    """Start to ready, the execute round trip, restart to ready."""
    km = AsyncKernelManager(kernel_name=kernel_name)
    ready, kc = await ready_after(km, lambda: km.start_kernel(cwd=cwd))
    try:
        trips = []
        for _ in range(round_trips):
            sent = time.perf_counter()
            await kc.execute_interactive("pass", timeout=30)
            trips.append(time.perf_counter() - sent)
        began = time.perf_counter()
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=180)
        restart = time.perf_counter() - began
        return {"ready": ready, "trip": statistics.median(trips), "restart": restart}
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def warm(kernel_name: str, cwd: str) -> float:
    """Start to ready of a kernel whose kernelspec holds its job: the second start, in the first's job."""
    for attempt in range(2):
        km = AsyncKernelManager(kernel_name=kernel_name)
        ready, kc = await ready_after(km, lambda: km.start_kernel(cwd=cwd))
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    return ready


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="leave the test cluster up afterwards")
    args = parser.parse_args()

    os.environ.setdefault("MLCONTAINER_WARM_POOL", "0")  # cold starts on both sides
    cluster = SlurmCluster()
    began = time.perf_counter()
    cluster.up()
    print(f"test Slurm cluster up in {time.perf_counter() - began:.1f} s: {len(cluster.nodes)} compute nodes")
    entry = pwd.getpwnam(USER)
    tag = uuid.uuid4().hex[:6]
    root = os.path.join(cluster.shared, f"bench-{tag}")
    make_users_folder(root, entry.pw_uid, entry.pw_gid)
    login = f"docker exec -i -u {entry.pw_uid}:{entry.pw_gid} -e HOME=/tmp {cluster.login}"
    slurm = {"store": os.path.join(cluster.shared, f"bench-store-{tag}")}
    engine = get_engine()
    common = {"gpus": "none", "workspace": root, "memory": "400m"}
    local = add_kernelspec(engine, IMAGE, name=f"bench-local-{tag}", options=common).name
    on_slurm = {**common, "placement": "slurm", "slurm_login": login, "transport_encryption": "disabled"}
    cluster_spec = add_kernelspec(engine, IMAGE, name=f"bench-slurm-{tag}", options={**on_slurm, "slurm": slurm}).name
    held_spec = add_kernelspec(engine, IMAGE, name=f"bench-held-{tag}",
                               options={**on_slurm, "slurm": {**slurm, "hold": "30"}}).name
    results: dict[str, list[dict[str, float]]] = {"local": [], "slurm": []}
    warm_starts = []
    try:
        began = time.perf_counter()
        await one(cluster_spec, root, 1)  # unpacks the image into the user's store
        print(f"first Slurm kernel (unpacking {IMAGE} into the user's store): {time.perf_counter() - began:.1f} s")
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            results["local"].append(await one(local, root, args.round_trips))
            results["slurm"].append(await one(cluster_spec, root, args.round_trips))
            warm_starts.append(await warm(held_spec, root))
    finally:
        for name in (local, cluster_spec, held_spec):
            KernelSpecManager().remove_kernel_spec(name)
        cluster.as_user(USER, ["scancel", "-u", USER], check=False)
        cluster.as_user(USER, ["rm", "-rf", slurm["store"], root], check=False)
        if not args.keep:
            cluster.down()
    print(f"\n{'':28}{'ready':>10}{'restart':>10}{'round trip':>13}   medians of {args.runs}")
    medians = {}
    for where, runs in results.items():
        medians[where] = {key: statistics.median(r[key] for r in runs) for key in ("ready", "restart", "trip")}
        label = "local container (cold)" if where == "local" else "Slurm job (submit + step)"
        m = medians[where]
        print(f"{label:28}{m['ready']:>8.3f} s{m['restart']:>8.3f} s{m['trip'] * 1000:>10.2f} ms")
    print(f"{'Slurm, held job (hold)':28}{statistics.median(warm_starts):>8.3f} s")
    print(f"\nSlurm / local: ready {medians['slurm']['ready'] / medians['local']['ready']:.2f}x, restart "
          f"{medians['slurm']['restart'] / medians['local']['restart']:.2f}x, round trip "
          f"{medians['slurm']['trip'] / medians['local']['trip']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
