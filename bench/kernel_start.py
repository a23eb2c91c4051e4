"""Benchmark: container kernel start and round trip against a local ipykernel, Gateway Provisioners and the image floor.

Prints, for one machine in one run (medians over --runs, every kind's starts interleaved):
  * local ipykernel: start request -> ready, and execute round trip p50 of 1+1
  * container kernel (mlcontainer-docker) COLD, warm pool off (c.DockerKernelProvisioner.
    warm_pool_size = 0, what MLCONTAINER_WARM_POOL=0 sets): each start a new container; the very
    first start of the image, which also probes it once, is printed apart. Its sockets are Unix
    sockets in the kernel's folder (the default on this host); the row "cold, tcp ports" is the
    same start with the ports published on 127.0.0.1 (kernel_transport = tcp), as for a remote engine
  * container kernel WARM, warm pool on (warm_pool_size = 1, the default; both set through the
    kernel manager's config, whatever MLCONTAINER_WARM_POOL says): each start claims the
    kernelspec's spare (same kernelspec as the cold row). Before each such start the benchmark waits, untimed, until
    get_pool(engine).describe() lists a spare of that kernelspec and the spare has made its claim
    FIFO (its imports are done: it is idle, as a spare that waited for its user would be). Also:
      - claim -> ready: from the provisioner's "claimed spare" debug record (written right after
        the kernel's connection file, environment, working directory and argv were handed to the
        spare through its FIFO; a logging handler notes perf_counter() when it is logged) to
        ready. The rest of a warm start, request -> claim, is the provisioner's own preparation
        (kernelspec, image facts, container spec) and the claim's checks;
      - the memory of an idle spare (docker stats' figure, page cache left out; MB = 2^20 bytes),
        median over the spares, each sampled right before it was claimed.
    A warm start has the pool make the next spare in the background from the claim on, as it does
    for a user: that is in its ready. Its round trips are timed once that spare is idle, so that
    every row's round trip is the kernel's own; and every other start waits for it too (untimed),
    so that no other row shares the machine with a spare being made.
  * Gateway Provisioners' Docker provisioner (PyPI gateway_provisioners), set up as its docs say
    (bench/gp_setup.py: its own kernelspec in a private JUPYTER_DATA_DIR; its kernel image, built
    offline FROM mlcontainer-test/base:bookworm by bench/gateway_provisioners_image.sh, so the same
    Python and ipykernel as our first row; KERNEL_USERNAME non-root; GP_RESPONSE_IP the docker0
    address). Once with its default socket timeout (0.01 s) and once with GP_SOCKET_TIMEOUT=0; GP
    reads that variable when it is imported, so each setting runs in a process of its own (this
    script with --gp-child), which starts one kernel per request: its starts stay interleaved
  * floor: a bare `docker run --rm IMAGE python3 -c "import ipykernel"`
  * 10 concurrent container kernel starts with the pool on: how many succeeded, how many claimed a
    spare (the pool keeps one per kernelspec: expect 1), wall time, slowest start
  * restarts of a warm-started kernel, from the restart request (restart_kernel(), as JupyterLab's
    restart asks: the kernel is asked to shut down first) until the client connected before it
    answers as ready, its sockets made from the kernel manager's ZeroMQ context as a Jupyter
    server's channels are: in the kernel's container (the keeper, the default), the same with a
    client of a context of its own (nbclient's), in a new container (warm_restart = False), and
    forced (now=True: killed, always a new container); and against the warm start's ready
  * --shutdowns (20) kernels of the first image shut down at once (shutdown_kernel(), as a
    server's kernel manager does), against one alone; the REST API's and a server exit's figures
    are bench/shutdowns.py's
  * ratios of those medians: each row's ready against local and against our cold start (a warm
    row: its image's cold row; GP: the cold row of its kernel image's base), and its round trip
    against local's

Each container row is an image: by default Debian's ipykernel 6.17 image and the same Python with
today's ipykernel 7.x from PyPI, side by side in one run.

Targets: container cold start at most 0.3 s above the floor; round trip within 1.2x of local; all
10 concurrent starts succeed; the ipykernel 7 image ready within 2x of the Debian image.

"Ready" is jupyter_client's own test: the kernel answered kernel_info and IOPub delivers.
KernelClient.wait_for_ready() returns 0.2 s later for every kernel (it drains IOPub until 0.2 s of
silence); that figure is printed too, but the floor has no such wait, so ready is what is compared.

    python bench/kernel_start.py [--images IMAGE ...] [--runs 5] [--skip-gp]

Installs gateway_provisioners into this Python with pip, and builds its kernel image, when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from queue import Empty

from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

# This checkout's package (the provisioner, its pool), even where an older copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gp_setup  # noqa: E402  (bench/gp_setup.py: Gateway Provisioners, set up as its docs say)
from shutdowns import cpu_busy  # noqa: E402  (bench/shutdowns.py)

# Debian's own ipykernel (6.17) and today's ipykernel 7.x from PyPI on the same Python.
DEFAULT_IMAGES = ("mlcontainer-test/base:bookworm", "mlcontainer-test/ipykernel7:bookworm")
POOL_OFF = Config({"DockerKernelProvisioner": {"warm_pool_size": 0}})
# The same cold start with the kernel's ports published on 127.0.0.1 (what an engine on another
# host gets; the default on this host is Unix sockets in the kernel's folder).
POOL_OFF_TCP = Config({"DockerKernelProvisioner": {"warm_pool_size": 0, "kernel_transport": "tcp"}})
POOL_ON = Config({"DockerKernelProvisioner": {"warm_pool_size": 1}})
# Restarts in a new container each time (what every restart was before the keeper).
POOL_ON_NO_KEEPER = Config({"DockerKernelProvisioner": {"warm_pool_size": 1, "warm_restart": False}})


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


async def round_trip(kc, times: int) -> float:
    """The median of ``times`` execute round trips of 1+1 (nan for none)."""
    samples = []
    for _ in range(times):
        t1 = time.perf_counter()
        reply = await kc.execute_interactive("1+1", timeout=30, output_hook=lambda msg: None)
        samples.append(time.perf_counter() - t1)
        assert reply["content"]["status"] == "ok"
    return median(samples)


async def drain_iopub(kc) -> None:
    """What wait_for_ready() does after the kernel is ready: read IOPub until 0.2 s of silence."""
    while True:
        try:
            await kc.iopub_channel.get_msg(timeout=0.2)
        except Empty:
            return


class ClaimLog(logging.Handler):
    """When the provisioner logged "claimed spare" for each kernel id: perf_counter() at the call
    (a handler runs synchronously, in the thread that logs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if "claimed spare" in str(record.msg) and record.args:
            self.at[str(record.args[0])] = time.perf_counter()


CLAIMS = ClaimLog()


def watch_claims() -> None:
    """The provisioner logs through its kernel manager's logger: without an Application that is
    traitlets' logger (its only handler a NullHandler); let its debug records reach CLAIMS."""
    from traitlets.log import get_logger

    logger = get_logger()
    logger.setLevel(logging.DEBUG)
    logger.addHandler(CLAIMS)


@dataclass
class Start:
    launched: float  # start_kernel() returned (container kernel: its ports answer; GP: its launcher called back)
    ready: float  # kernel_info answered and IOPub connected
    wait_for_ready: float  # when KernelClient.wait_for_ready() would have returned
    round_trip: float  # p50 of an execute round trip of 1+1
    claimed: float = math.nan  # the provisioner handed the kernel to a spare (nan: no spare claimed)


async def start_and_measure(
    kernel_name: str, cwd: str, round_trips: int, config: Config | None = None,
    before_round_trips: Callable[[], Awaitable[object]] | None = None,
) -> Start:
    """Start one kernel, time its start-up phases from the start request, then its round trip."""
    km = AsyncKernelManager(kernel_name=kernel_name, **({"config": config} if config is not None else {}))
    t0 = time.perf_counter()
    await km.start_kernel(cwd=cwd)
    launched = time.perf_counter() - t0
    kc = km.client()
    kc.start_channels()
    try:
        ready = await asyncio.wait_for(wait_until_ready(kc), 120) - t0
        await drain_iopub(kc)
        waited = time.perf_counter() - t0
        claim = CLAIMS.at.pop(km.kernel_id, None)
        if before_round_trips is not None:
            await before_round_trips()
        trip = await round_trip(kc, round_trips)
        return Start(launched, ready, waited, trip, claim - t0 if claim is not None else math.nan)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


@dataclass
class Restart:
    ready: float  # restart request -> the client connected before it has kernel_info and IOPub
    round_trip: float  # p50 of 1+1 after it, on that same client
    same_container: bool


async def restart_and_measure(kernel_name: str, cwd: str, round_trips: int, config: Config, *,
                              now: bool = False, own_context: bool = False,
                              settle: Callable[[], Awaitable[object]] | None = None) -> Restart:
    """Start one kernel (untimed; with the pool on it claims a spare), then time its restart as
    JupyterLab asks for it (restart_kernel(), which first asks the kernel to shut down; ``now``:
    the forced one, which kills it) until the client connected before answers as ready. The
    client's sockets come from the kernel manager's ZeroMQ context, as a Jupyter server's
    channels to the browser do (``own_context``: a context of its own, as nbclient's client)."""
    km = AsyncKernelManager(kernel_name=kernel_name, config=config)
    await km.start_kernel(cwd=cwd)
    kc = km.client() if own_context else km.client(context=km.context)
    kc.start_channels()
    try:
        await asyncio.wait_for(wait_until_ready(kc), 120)
        await drain_iopub(kc)
        if settle is not None:
            await settle()  # the spare its start asked the pool for is made, untimed
        before = km.provisioner.container_id
        t0 = time.perf_counter()
        await km.restart_kernel(now=now)
        ready = await asyncio.wait_for(wait_until_ready(kc), 120) - t0
        await drain_iopub(kc)
        return Restart(ready, await round_trip(kc, round_trips), km.provisioner.container_id == before)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


@dataclass
class Shutdowns:
    alone: float  # one kernel's shutdown_kernel(), wall seconds
    together: float  # n kernels' at once, wall seconds
    alone_cpu: float  # CPU seconds the machine spent meanwhile (all cores)
    together_cpu: float


async def measure_shutdowns(kernel_name: str, cwd: str, n: int) -> Shutdowns:
    """One kernel's shutdown alone, and ``n`` kernels' at once, as a server's kernel manager asks
    (shutdown_kernel(), the kernel asked first), with the CPU the machine spent meanwhile: when
    the n shutdowns keep every core busy, their wall time is bound by the cores, not by waiting.
    Starts untimed, pool off."""

    async def started() -> AsyncKernelManager:
        km = AsyncKernelManager(kernel_name=kernel_name, config=POOL_OFF)
        await km.start_kernel(cwd=cwd)
        return km

    one = await started()
    await asyncio.sleep(1)  # the start's own work is over
    c0, t0 = cpu_busy(), time.perf_counter()
    await one.shutdown_kernel()
    alone, alone_cpu = time.perf_counter() - t0, cpu_busy() - c0
    many = await asyncio.gather(*(started() for _ in range(n)))
    await asyncio.sleep(2)
    c0, t0 = cpu_busy(), time.perf_counter()
    await asyncio.gather(*(km.shutdown_kernel() for km in many))
    return Shutdowns(alone, time.perf_counter() - t0, alone_cpu, cpu_busy() - c0)


def median(values: list[float]) -> float:
    """Median of the values that are numbers (nan: none are)."""
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def floor(image: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "import ipykernel"], check=True)
    return time.perf_counter() - t0


async def concurrent(kernel_name: str, cwd: str, n: int, config: Config) -> tuple[int, int, float, float]:
    """n starts at once: (succeeded, claimed a spare, wall time, slowest ready)."""

    async def one() -> Start:
        return await start_and_measure(kernel_name, cwd, 1, config)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    wall = time.perf_counter() - t0
    ok = [r for r in results if isinstance(r, Start)]
    for r in results:
        if not isinstance(r, Start):
            print(f"  concurrent start failed: {r!r}", file=sys.stderr)
    claimed = sum(not math.isnan(r.claimed) for r in ok)
    return len(ok), claimed, wall, max((r.ready for r in ok), default=math.nan)


# -- the warm pool ------------------------------------------------------------------------------


class Spares:
    """Waits, untimed, until each primed kernelspec has an idle spare: listed by the pool's
    describe() and blocked on its claim FIFO (its imports done)."""

    def __init__(self, engine) -> None:
        from jupyter_mlcontainer.kernels.pool import get_pool

        self.engine = engine
        self.pool = get_pool(engine)
        self.primed: set[str] = set()  # kernelspecs started with the pool on at least once

    def idle(self, kernel_name: str) -> str | None:
        from jupyter_mlcontainer.kernels.pool import CLAIM_FIFO

        listed = {row["container_id"] for row in self.pool.describe() if row["kernelspec"] == kernel_name}
        for spare in self.pool.spares():
            if spare.container_id in listed and os.path.exists(os.path.join(spare.conn_dir, CLAIM_FIFO)):
                return spare.container_id
        return None

    async def settle(self, timeout: float = 120) -> dict[str, str]:
        """Kernelspec -> its idle spare, once every primed kernelspec has one."""
        deadline = time.monotonic() + timeout
        while True:
            found = {name: self.idle(name) for name in sorted(self.primed)}
            if all(found.values()):
                return found  # type: ignore[return-value]
            if time.monotonic() > deadline:
                missing = ", ".join(name for name, cid in found.items() if not cid)
                raise RuntimeError(f"no idle spare of {missing} after {timeout:.0f} s (see the warnings above)")
            await asyncio.sleep(0.05)

    async def memory_mb(self, container_id: str) -> float:
        usage = await asyncio.to_thread(self.engine.memory_usage_sync, container_id)
        return usage / 2**20 if usage is not None else math.nan


# -- Gateway Provisioners (gp_setup.py sets it up) --------------------------------------------


async def gp_child(kernel_name: str, cwd: str) -> None:
    """--gp-child: for each line on stdin (a number of round trips), start one kernel of
    ``kernel_name``, measure it and write its Start as one JSON line; stop at the end of stdin.
    Anything else written to stdout (GP's launcher inherits it) goes to stderr."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    while line := await asyncio.to_thread(sys.stdin.readline):
        try:
            start = await start_and_measure(kernel_name, cwd, int(line))
            answers.write(json.dumps(dataclasses.asdict(start)) + "\n")
        except Exception as exc:
            answers.write(json.dumps({"error": repr(exc)}) + "\n")


# -- the run ------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=list(DEFAULT_IMAGES),
                        help="container images to compare, side by side (the first is the reference)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--shutdowns", type=int, default=20, help="kernels shut down at once (0: leave out)")
    parser.add_argument("--shutdowns-only", action="store_true", help="measure only the shutdowns (of the first image)")
    parser.add_argument("--skip-gp", action="store_true", help="leave Gateway Provisioners out")
    parser.add_argument("--gp-child", nargs=2, metavar=("KERNEL", "CWD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gp_child:
        return await gp_child(*args.gp_child)

    from jupyter_mlcontainer.engines.docker import get_engine
    from jupyter_mlcontainer.images.probe import probe_image_sync
    from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

    tmp = tempfile.mkdtemp(prefix="mlc-bench-")
    os.environ.setdefault("JUPYTER_DATA_DIR", os.path.join(tmp, "data"))
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", os.path.join(tmp, "runtime"))
    # The engine the provisioner uses (c.MLContainer.docker_host defaults to DOCKER_HOST): its pool.
    engine = get_engine(os.environ.get("DOCKER_HOST") or None)
    specs = {image: add_kernelspec(engine, image, name=f"mlc-bench-{i}").name for i, image in enumerate(args.images)}
    facts = {image: probe_image_sync(engine, image) for image in args.images}
    from ipykernel.kernelspec import install as install_local

    install_local(user=True, kernel_name="local-bench")
    watch_claims()
    spares = Spares(engine)

    gp: dict[str, gp_setup.GatewayChild] = {}
    gp_env: dict[str, str] = {}
    if not args.skip_gp:
        gp_name, gp_env = gp_setup.setup(os.path.join(tmp, "gp-data"))
        script = os.path.abspath(__file__)
        gp = {
            f"{gp_name}, socket timeout 0.01 s (its default)": gp_setup.GatewayChild("GP default", gp_env, script, tmp),
            f"{gp_name}, GP_SOCKET_TIMEOUT=0": gp_setup.GatewayChild(
                "GP_SOCKET_TIMEOUT=0", {**gp_env, "GP_SOCKET_TIMEOUT": "0"}, script, tmp),
        }

    if args.shutdowns_only:
        try:
            await start_and_measure(specs[args.images[0]], tmp, 1, POOL_OFF)  # probe, cache volume
            print_shutdowns(await measure_shutdowns(specs[args.images[0]], tmp, args.shutdowns), args.images[0],
                            args.shutdowns)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return

    try:
        # Warm-up: each image's first container start also probes it and prepares the cache
        # volume (pool off, as before); one start with the pool on then keeps a spare of it.
        first = {image: await start_and_measure(name, tmp, 1, POOL_OFF) for image, name in specs.items()}
        for name in specs.values():
            await start_and_measure(name, tmp, 1, POOL_ON)
            spares.primed.add(name)
        await start_and_measure("local-bench", tmp, 1)
        gp_first = {}
        for label, child in gp.items():  # one after the other: no start shares the machine with their imports
            await child.open()
            gp_first[label] = Start(**await child.measure(1))

        # Interleaved, so that a slow moment of the machine hits every kind alike. Before each
        # start the pool is left to finish its spares (untimed), so that no start shares the
        # machine with a spare being made but the warm one that causes it.
        local: list[Start] = []
        cold: dict[str, list[Start]] = {image: [] for image in args.images}
        cold_tcp: dict[str, list[Start]] = {image: [] for image in args.images}
        warm: dict[str, list[Start]] = {image: [] for image in args.images}
        memory: dict[str, list[float]] = {image: [] for image in args.images}
        floors: dict[str, list[float]] = {image: [] for image in args.images}
        gp_runs: dict[str, list[Start]] = {label: [] for label in gp}
        in_place: dict[str, list[Restart]] = {image: [] for image in args.images}
        new_container: dict[str, list[Restart]] = {image: [] for image in args.images}
        forced: dict[str, list[Restart]] = {image: [] for image in args.images}
        own_client: dict[str, list[Restart]] = {image: [] for image in args.images}
        for _ in range(args.runs):
            await spares.settle()
            local.append(await start_and_measure("local-bench", tmp, args.round_trips))
            for image, name in specs.items():
                await spares.settle()
                cold[image].append(await start_and_measure(name, tmp, args.round_trips, POOL_OFF))
                await spares.settle()
                cold_tcp[image].append(await start_and_measure(name, tmp, args.round_trips, POOL_OFF_TCP))
                idle = await spares.settle()
                memory[image].append(await spares.memory_mb(idle[name]))
                warm[image].append(await start_and_measure(name, tmp, args.round_trips, POOL_ON, spares.settle))
                await spares.settle()
                in_place[image].append(await restart_and_measure(name, tmp, args.round_trips, POOL_ON,
                                                                 settle=spares.settle))
                await spares.settle()
                own_client[image].append(await restart_and_measure(name, tmp, args.round_trips, POOL_ON,
                                                                   own_context=True, settle=spares.settle))
                await spares.settle()
                new_container[image].append(await restart_and_measure(name, tmp, args.round_trips, POOL_ON_NO_KEEPER,
                                                                      settle=spares.settle))
                await spares.settle()
                forced[image].append(await restart_and_measure(name, tmp, args.round_trips, POOL_ON, now=True,
                                                               settle=spares.settle))
                await spares.settle()
                floors[image].append(floor(image))
            for label, child in gp.items():
                await spares.settle()
                gp_runs[label].append(Start(**await child.measure(args.round_trips)))
        crowd = {}
        for image, name in specs.items():
            idle = await spares.settle()
            memory[image].append(await spares.memory_mb(idle[name]))
            crowd[image] = await concurrent(name, tmp, args.concurrent, POOL_ON)
        stopped = await measure_shutdowns(specs[args.images[0]], tmp, args.shutdowns) if args.shutdowns else None
    finally:
        for child in gp.values():
            await child.close()
        if gp_env:
            gp_setup.cleanup(gp_env)
        shutil.rmtree(tmp, ignore_errors=True)

    def medians(runs: list[Start]) -> Start:
        return Start(*(median([getattr(r, f) for r in runs]) for f in Start.__dataclass_fields__))

    labels = {
        image: f"{image} (ipykernel {facts[image].ipykernel}{', CurveZMQ' if facts[image].curve else ''})"
        for image in args.images
    }
    rows = {"local ipykernel": medians(local)}
    for image in args.images:
        rows[f"{labels[image]} cold"] = medians(cold[image])
        rows[f"{labels[image]} cold, tcp ports"] = medians(cold_tcp[image])
        rows[f"{labels[image]} warm"] = medians(warm[image])
    for label, runs in gp_runs.items():
        rows[label] = medians(runs)
    width = max(len(label) for label in rows) + 2

    local_m = rows["local ipykernel"]
    print(f"runs: {args.runs} (interleaved)   round trips per run: {args.round_trips}")
    print("medians, seconds from the start request: launched = start_kernel() returned; ready = the")
    print("kernel answered kernel_info with IOPub connected; w_f_r = when wait_for_ready() returns,")
    print("i.e. ready plus jupyter_client's IOPub drain (0.2 s of silence). cold: warm pool off, a new")
    print("container per start, Unix sockets in the kernel's folder (the default on this host); cold, tcp")
    print("ports: the same with its ports published on 127.0.0.1; warm: warm pool on, each start claims")
    print("an idle spare")
    print(f"{'':{width}}{'launched':>10}{'ready':>10}{'w_f_r':>10}{'1+1 p50 ms':>12}")
    for label, m in rows.items():
        print(f"{label:{width}}{m.launched:10.3f}{m.ready:10.3f}{m.wait_for_ready:10.3f}{m.round_trip * 1000:12.2f}")

    reference = args.images[0]
    gp_peer = gp_setup.GP_BASE_IMAGE if gp_setup.GP_BASE_IMAGE in args.images else reference  # GP's image is FROM it
    # Ratios of the medians above. "/ ours cold": a warm row against the cold row of its image;
    # GP against our cold start of the image its kernel image is built FROM.
    peers = {f"{labels[image]} {kind}": f"{labels[image]} cold" for image in args.images
             for kind in ("cold", "cold, tcp ports", "warm")}
    peers.update(dict.fromkeys(gp_runs, f"{labels[gp_peer]} cold"))
    print(f"\nratios{'':{width - 6}}{'ready / local':>16}{'/ ours cold':>14}{'1+1 / local':>14}")
    for label, m in rows.items():
        if label in peers:
            vs_ours = f"{m.ready / rows[peers[label]].ready:.2f}x" if peers[label] != label else "-"
            print(f"{label:{width}}{m.ready / local_m.ready:15.2f}x{vs_ours:>14}{m.round_trip / local_m.round_trip:13.2f}x")
    if gp_runs:
        print(f"(GP / ours cold: against {gp_peer} cold; GP's kernel image is built FROM {gp_setup.GP_BASE_IMAGE})")
        fastest_gp = min(m.ready for label, m in rows.items() if label in gp_runs)
        for image in args.images:
            print(f"{labels[image]} cold / GP's faster row: {rows[f'{labels[image]} cold'].ready / fastest_gp:.2f}x "
                  "(target <= 0.50x)")

    for image in args.images:
        fl = median(floors[image])
        c, w = rows[f"{labels[image]} cold"], rows[f"{labels[image]} warm"]
        ok, claimed, wall, slowest = crowd[image]
        took = sum(not math.isnan(r.claimed) for r in warm[image])
        print(f"\n{image}:")
        print(f"  first start (one-time probe + cache volume): ready {first[image].ready:.3f} s")
        print(f"  floor, docker run --rm + import ipykernel: {fl:.3f} s; cold ready - floor: {c.ready - fl:+.3f} s (target <= +0.300)")
        print(f"  round trip container/local: cold {c.round_trip / local_m.round_trip:.2f}x, "
              f"warm {w.round_trip / local_m.round_trip:.2f}x (target <= 1.20x)")
        if image != reference:
            ratio = c.ready / rows[f"{labels[reference]} cold"].ready
            print(f"  cold ready / {reference}'s: {ratio:.2f}x (target <= 2.00x)")
        to_ready = median([r.ready - r.claimed for r in warm[image]])
        print(f"  warm starts that claimed a spare: {took}/{len(warm[image])}; request -> claim {w.claimed:.3f} s, "
              f"claim -> ready {to_ready:.3f} s (medians)")
        print(f"  idle spare memory: {median(memory[image]):.0f} MB (median of {len(memory[image])} spares)")
        print(f"  {args.concurrent} concurrent starts, pool on: {ok}/{args.concurrent} ready, {claimed} claimed a spare, "
              f"wall {wall:.2f} s, slowest {slowest:.2f} s")
    print("\nrestarts (medians; seconds from the restart request until the client connected before it is ready, "
          "its sockets from the kernel manager's context as a server's are; each kernel warm-started)")
    print(f"{'':{width}}{'ready':>10}{'/ warm':>10}{'1+1 p50 ms':>12}  same container")
    for image in args.images:
        w = rows[f"{labels[image]} warm"]
        for kind, runs in (("restart in place (the keeper, the default)", in_place[image]),
                           ("the same, the client's sockets of a ZeroMQ context of its own", own_client[image]),
                           ("restart in a new container (warm_restart False)", new_container[image]),
                           ("forced restart (now=True: killed, new container)", forced[image])):
            ready, trip = median([r.ready for r in runs]), median([r.round_trip for r in runs])
            same = sum(r.same_container for r in runs)
            print(f"  {image} {kind}:\n{'':{width}}{ready:10.3f}{ready / w.ready:9.2f}x{trip * 1000:12.2f}  {same}/{len(runs)}")
        print(f"  (target: restart in place <= 1.50x the warm start's ready, {w.ready:.3f} s)")
    if stopped is not None:
        print_shutdowns(stopped, args.images[0], args.shutdowns)
    for label, first_start in gp_first.items():
        print(f"\n{label}:\n  first start (imports GP, makes its response socket and keys): ready {first_start.ready:.3f} s")


def print_shutdowns(stopped: Shutdowns, image: str, n: int) -> None:
    cores = os.cpu_count() or 1
    print(f"\nshutdowns ({image}, pool off, shutdown_kernel() as a server's kernel manager asks; through the "
          "REST API and a server's exit: bench/shutdowns.py):")
    print(f"  one alone: {stopped.alone:.2f} s, the machine's CPU meanwhile {stopped.alone_cpu:.2f} core-s")
    print(f"  {n} at once: {stopped.together:.2f} s = {stopped.together / stopped.alone:.1f}x one (target <= 3x), "
          f"CPU {stopped.together_cpu:.2f} core-s of the {stopped.together * cores:.2f} its {cores} cores had "
          f"({stopped.together_cpu / (stopped.together * cores):.0%} busy); {n} x one alone's CPU on {cores} cores "
          f"takes at least {n * stopped.alone_cpu / cores:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
