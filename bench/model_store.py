"""What the verified model store costs (issue 22): how long the cache's keeper takes to publish a
blob a user downloaded (copy + SHA-256), and what linking the store's blobs adds to a kernel's
cold start (the bootstrap links them into the user's hub cache).

    python bench/model_store.py [--sizes 100,1000] [--blobs 2000] [--runs 5]

Needs the engine and the test images (scripts/build-test-images.sh). Prints a table; uses fresh
volumes and removes them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("MLCONTAINER_WARM_POOL", "0")

from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from jupyter_mlcontainer.cache.volume import ensure_cache, keeper_name, remove_cache_volume  # noqa: E402
from jupyter_mlcontainer.engines.docker import get_engine  # noqa: E402
from jupyter_mlcontainer.core.identity import current_user  # noqa: E402
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec  # noqa: E402

IMAGE = "mlcontainer-test/base:bookworm"
WRITE_BLOB = r"""
import hashlib, os, sys, tempfile
size, repo = int(sys.argv[1]) << 20, sys.argv[2]
blobs = f"/c/home/bench/.cache/huggingface/hub/{repo}/blobs"
os.makedirs(blobs, exist_ok=True)
h, chunk = hashlib.sha256(), os.urandom(1 << 20)
fd, tmp = tempfile.mkstemp(dir=blobs, suffix=".incomplete")
with os.fdopen(fd, "wb") as f:
    for _ in range(size >> 20):
        f.write(chunk)
        h.update(chunk)
os.replace(tmp, os.path.join(blobs, h.hexdigest()))
print(h.hexdigest())
"""
WRITE_MANY = r"""
import hashlib, os, sys
count = int(sys.argv[1])
for i in range(count):
    data = b"blob %d" % i
    blobs = "/c/home/bench/.cache/huggingface/hub/models--bench--r%03d/blobs" % (i // 10)
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(blobs, hashlib.sha256(data).hexdigest()), "wb") as f:
        f.write(data)
"""


def keeper_lines(engine, volume: str) -> list[tuple[datetime, str]]:
    out = []
    for line in engine.api.logs(keeper_name(volume), timestamps=True).decode().splitlines():
        stamp, _, text = line.partition(" ")
        out.append((datetime.fromisoformat(stamp[:26].rstrip("Z")), text))
    return out


def wait_published(engine, volume: str, count: int, timeout: float = 600) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        published = [when for when, text in keeper_lines(engine, volume) if "published" in text]
        if len(published) >= count:
            return published[count - 1]
        time.sleep(0.05)
    raise TimeoutError("the keeper did not publish in time")


def run_as_user(engine, volume: str, code: str, *args: str) -> str:
    code_, out, err = engine.run_to_completion_sync(
        IMAGE, ["python3", "-c", code, *args], user="4242:4242", timeout=900,
        mounts=[{"Type": "volume", "Source": volume, "Target": "/c"}])
    if code_ != 0:
        raise RuntimeError(err)
    return out.strip()


async def start_once(name: str, cwd: str) -> float:
    km = AsyncKernelManager(kernel_name=name)
    began = time.monotonic()
    await km.start_kernel(cwd=cwd)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=120)
    took = time.monotonic() - began
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="blob sizes to publish, in MB")
    parser.add_argument("--blobs", type=int, default=2000, help="blobs in the store for the start-up rows")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    engine = get_engine()
    from jupyter_mlcontainer.core.identity import HostUser

    bench_user = HostUser(4242, 4242, "bench")
    volumes = [f"mlc-bench-store-{uuid.uuid4().hex[:6]}", f"mlc-bench-empty-{uuid.uuid4().hex[:6]}"]
    full, empty = volumes
    rows = []
    try:
        for volume in volumes:
            ensure_cache(engine, volume, bench_user)
        published = 0
        for size in (int(s) for s in args.sizes.split(",")):
            name = run_as_user(engine, full, WRITE_BLOB, str(size), f"models--bench--big{size}")
            published += 1
            wait_published(engine, full, published)
            line = next(text for _, text in keeper_lines(engine, full) if name in text and "published" in text)
            took = float(line.split("verified in ")[1].split(" s")[0])
            rows.append((f"publish a {size} MB blob (the keeper's copy + SHA-256)", f"{took:.2f} s ({size / took:.0f} MB/s)"))
        began = time.monotonic()
        run_as_user(engine, full, WRITE_MANY, str(args.blobs))
        wait_published(engine, full, published + args.blobs)
        rows.append((f"publish {args.blobs} small blobs in {args.blobs // 10} repositories",
                     f"{time.monotonic() - began:.2f} s, writing them included"))

        cwd = tempfile.mkdtemp(prefix="mlc-bench-")
        tag = uuid.uuid4().hex[:6]
        names = {v: add_kernelspec(engine, IMAGE, name=f"bench-store-{v[-6:]}-{tag}", options={"cache_volume": v}).name
                 for v in volumes}
        loop = asyncio.new_event_loop()
        for volume in volumes:  # the first start of each: the HOME made, the store's blobs linked
            ensure_cache(engine, volume, current_user())
        first = loop.run_until_complete(start_once(names[full], cwd))
        times: dict[str, list[float]] = {full: [], empty: []}
        loop.run_until_complete(start_once(names[empty], cwd))
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            for volume in volumes:
                times[volume].append(loop.run_until_complete(start_once(names[volume], cwd)))
        rows.append((f"cold start, first one linking {args.blobs} blobs", f"{first:.3f} s"))
        rows.append((f"cold start, {args.blobs} blobs already linked (median of {args.runs})",
                     f"{statistics.median(times[full]):.3f} s"))
        rows.append((f"cold start, empty store (median of {args.runs})", f"{statistics.median(times[empty]):.3f} s"))
    finally:
        for volume in volumes:
            try:
                remove_cache_volume(engine, volume)
            except Exception as exc:  # noqa: BLE001
                print(f"(could not remove {volume}: {exc})", file=sys.stderr)
    width = max(len(r[0]) for r in rows)
    print(f"\nModel store ({engine.kind_sync().title}, {os.cpu_count()} CPUs)\n")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
