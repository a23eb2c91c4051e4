"""Benchmark: container kernel start and round trip against a local ipykernel and the image floor.

Prints, for one machine in one run (medians over --runs):
  * local ipykernel: start request -> ready, and execute round trip p50 of 1+1
  * container kernel (mlcontainer-docker): the same, each start a new container (no pre-started
    spare); the very first start of the image, which also probes it once, is printed apart
  * floor: a bare `docker run --rm IMAGE python3 -c "import ipykernel"`
  * 10 concurrent container kernel starts: how many succeeded, wall time, slowest start

Each row is an image: by default Debian's ipykernel 6.17 image and the same Python with today's
ipykernel 7.x from PyPI, side by side in one run, starts interleaved.

Targets: container cold start at most 0.3 s above the floor; round trip within 1.2x of local; all
10 concurrent starts succeed; the ipykernel 7 image ready within 2x of the Debian image.

"Ready" is jupyter_client's own test: the kernel answered kernel_info and IOPub delivers.
KernelClient.wait_for_ready() returns 0.2 s later for every kernel (it drains IOPub until 0.2 s of
silence); that figure is printed too, but the floor has no such wait, so ready is what is compared.

    python bench/kernel_start.py [--images IMAGE ...] [--runs 5]
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
from dataclasses import dataclass
from queue import Empty

from jupyter_client.manager import AsyncKernelManager

# Debian's own ipykernel (6.17) and today's ipykernel 7.x from PyPI on the same Python.
DEFAULT_IMAGES = ("mlcontainer-test/base:bookworm", "mlcontainer-test/ipykernel7:bookworm")


async def wait_until_ready(kc) -> float:
    """Block until the kernel is ready by jupyter_client's own test (it answered kernel_info and
    IOPub delivers); return perf_counter() at that moment.

    KernelClient.wait_for_ready() applies the same test and then drains IOPub until it has been
    silent for 0.2 s before returning: that idle drain is the same for every kernel and not part
    of starting one, so it is timed separately (see start_and_measure)."""
    while True:
        kc.kernel_info()
        try:
            msg = await kc.shell_channel.get_msg(timeout=1)
        except Empty:
            continue
        if msg["msg_type"] != "kernel_info_reply":
            continue
        try:
            await kc.iopub_channel.get_msg(timeout=0.2)
        except Empty:
            continue  # IOPub not connected yet: ask again, as wait_for_ready does
        return time.perf_counter()


async def drain_iopub(kc) -> None:
    """What wait_for_ready() does after the kernel is ready: read IOPub until 0.2 s of silence."""
    while True:
        try:
            await kc.iopub_channel.get_msg(timeout=0.2)
        except Empty:
            return


@dataclass
class Start:
    launched: float  # start_kernel() returned (for the container kernel: its sockets are bound)
    ready: float  # kernel_info answered and IOPub connected
    wait_for_ready: float  # when KernelClient.wait_for_ready() would have returned
    round_trip: float  # p50 of an execute round trip of 1+1


async def start_and_measure(kernel_name: str, cwd: str, round_trips: int) -> Start:
    """Start one kernel, time its start-up phases from the start request, then its round trip."""
    km = AsyncKernelManager(kernel_name=kernel_name)
    t0 = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    launched = time.perf_counter() - t0
    kc = km.client()
    kc.start_channels()
    try:
        ready = await asyncio.wait_for(wait_until_ready(kc), 120) - t0
        await drain_iopub(kc)
        waited = time.perf_counter() - t0
        samples = []
        for _ in range(round_trips):
            t1 = time.perf_counter()
            reply = await kc.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
            samples.append(time.perf_counter() - t1)
            assert reply["content"]["status"] == "ok"
        return Start(launched, ready, waited, statistics.median(samples))
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


def floor(image: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "import ipykernel"], check=True)
    return time.perf_counter() - t0


async def concurrent(kernel_name: str, cwd: str, n: int) -> tuple[int, float, float]:
    async def one() -> float:
        return (await start_and_measure(kernel_name, cwd, 1)).ready

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
    parser.add_argument("--images", nargs="+", default=list(DEFAULT_IMAGES),
                        help="container images to compare, side by side (the first is the reference)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=10)
    args = parser.parse_args()

    from jupyter_mlcontainer.engine import get_engine
    from jupyter_mlcontainer.images import probe_image_sync
    from jupyter_mlcontainer.kernelspecs import add_kernelspec

    tmp = tempfile.mkdtemp(prefix="mlc-bench-")
    os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(tmp, "data"))
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", os.path.join(tmp, "runtime"))
    engine = get_engine()
    specs = {image: add_kernelspec(engine, image, name=f"mlc-bench-{i}").name for i, image in enumerate(args.images)}
    facts = {image: probe_image_sync(engine, image) for image in args.images}
    from ipykernel.kernelspec import install as install_local

    install_local(user=True, kernel_name="local-bench")

    # Warm-up: each image's first container start also probes it and prepares the cache volume.
    first = {image: await start_and_measure(name, tmp, 1) for image, name in specs.items()}
    await start_and_measure("local-bench", tmp, 1)

    # Interleaved, so that a slow moment of the machine hits every kind alike.
    local: list[Start] = []
    container: dict[str, list[Start]] = {image: [] for image in args.images}
    floors: dict[str, list[float]] = {image: [] for image in args.images}
    for _ in range(args.runs):
        local.append(await start_and_measure("local-bench", tmp, args.round_trips))
        for image, name in specs.items():
            container[image].append(await start_and_measure(name, tmp, args.round_trips))
            floors[image].append(floor(image))
    crowd = {image: await concurrent(name, tmp, args.concurrent) for image, name in specs.items()}

    def medians(runs: list[Start]) -> Start:
        return Start(*(statistics.median(getattr(r, f) for r in runs) for f in Start.__dataclass_fields__))

    labels = {
        image: f"{image} (ipykernel {facts[image].ipykernel}{', CurveZMQ' if facts[image].curve else ''})"
        for image in args.images
    }
    width = max(len(label) for label in labels.values()) + 2

    def row(label: str, m: Start) -> None:
        print(f"{label:{width}}{m.launched:10.3f}{m.ready:10.3f}{m.wait_for_ready:10.3f}{m.round_trip * 1000:12.2f}")

    local_m = medians(local)
    cont_m = {image: medians(runs) for image, runs in container.items()}
    print(f"runs: {args.runs} (interleaved)   round trips per run: {args.round_trips}")
    print("medians, seconds from the start request: launched = start_kernel() returned; ready = the")
    print("kernel answered kernel_info with IOPub connected; w_f_r = when wait_for_ready() returns,")
    print("i.e. ready plus jupyter_client's IOPub drain (0.2 s of silence)")
    print(f"{'':{width}}{'launched':>10}{'ready':>10}{'w_f_r':>10}{'1+1 p50 ms':>12}")
    row("local ipykernel", local_m)
    for image in args.images:
        row(labels[image], cont_m[image])
    reference = args.images[0]
    for image in args.images:
        fl = statistics.median(floors[image])
        m = cont_m[image]
        ok, wall, slowest = crowd[image]
        print(f"\n{image}:")
        print(f"  first start (one-time probe + cache volume): ready {first[image].ready:.3f} s")
        print(f"  floor, docker run --rm + import ipykernel: {fl:.3f} s; ready - floor: {m.ready - fl:+.3f} s (target <= +0.300)")
        print(f"  round trip container/local: {m.round_trip / local_m.round_trip:.2f}x (target <= 1.20x)")
        if image != reference:
            ratio = m.ready / cont_m[reference].ready
            print(f"  ready / {reference}'s: {ratio:.2f}x (target <= 2.00x)")
        print(f"  {args.concurrent} concurrent starts: {ok}/{args.concurrent} ready, wall {wall:.2f} s, slowest {slowest:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
