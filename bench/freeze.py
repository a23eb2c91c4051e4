"""Benchmark: freeze time for a kernel whose image holds 200+ Python packages.

Builds (once) an image FROM the Debian test image with N small wheels installed, starts a
container kernel in it, installs one more package in the kernel, then freezes it: first with
the base image's inventory not yet cached, then again with it cached (target: under 3 s).

    python bench/freeze.py [--packages 220] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from jupyter_mlcontainer.engines.docker import get_engine  # noqa: E402
from jupyter_mlcontainer.environments.freeze import freeze_container  # noqa: E402
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec  # noqa: E402
from tests.test_freeze import make_wheel  # noqa: E402


def build_many_packages_image(engine, count: int) -> str:
    tag = f"mlcontainer-bench/many-packages:{count}"
    try:
        engine.api.inspect_image(tag)
        return tag
    except Exception:
        pass
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            make_wheel(folder, name=f"bench_pkg_{i:03d}", version=f"1.{i}.0")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            dockerfile = (
                "FROM mlcontainer-test/base:bookworm\nCOPY wheels /tmp/wheels\n"
                "RUN python3 -m pip install --no-cache-dir --no-index /tmp/wheels/*.whl && rm -rf /tmp/wheels\n"
            ).encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
            tar.add(folder, arcname="wheels")
        buf.seek(0)
        for _ in engine.api.build(fileobj=buf, custom_context=True, tag=tag, rm=True, decode=True):
            pass
    return tag


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packages", type=int, default=220)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="mlc-freeze-bench-")
    os.environ["JUPYTER_DATA_DIR"] = os.path.join(tmp, "data")
    os.environ["JUPYTER_MLCONTAINER_STATE_DIR"] = os.path.join(tmp, "state")  # cold caches
    engine = get_engine()
    image = build_many_packages_image(engine, args.packages)
    add_kernelspec(engine, image, name="freeze-bench")
    km = AsyncKernelManager(kernel_name="freeze-bench")
    await km.start_kernel(cwd=tmp)
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        wheel = make_wheel(tmp, name="bench_extra", version="9.9.9")
        await kc.execute_interactive(
            f"import subprocess, sys; subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', {wheel!r}])",
            timeout=120,
        )
        cid = km.provisioner.container_id
        first = freeze_container(engine, cid, output_dir=os.path.join(tmp, "out"), overwrite=True)
        cached = []
        for _ in range(args.runs):
            result = freeze_container(engine, cid, output_dir=os.path.join(tmp, "out"), overwrite=True)
            cached.append(result.seconds)
        total = len([line for line in result.requirements.splitlines() if not line.startswith("#")])
        print(f"image: {image} ({args.packages} extra packages in the base); packages pinned by freeze: {total}")
        print(f"freeze, base inventory not cached: {first.seconds:.2f} s")
        print(f"freeze, base inventory cached:     {statistics.median(cached):.2f} s (median of {args.runs}; target < 3 s)")
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


if __name__ == "__main__":
    asyncio.run(main())
