"""A kernelspec whose image is not on the engine (pruned, a new machine, a kernelspec an admin
shared) starts after pulling it, the pull a job the panel lists and can cancel (issue 26); a pull
that cannot happen fails the start at once with the registry's reason."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from jupyter_client.manager import AsyncKernelManager

from .conftest import BASE_IMAGE, add_spec, our_kernel_containers
from .test_rest import _unique_image, get


def kernel_image_in_registry(engine, registry: str, megabytes: int) -> str:
    """A kernel image (the base test image plus a layer found nowhere else) pushed to
    ``registry``, still here: a kernelspec is written for it, then it is removed."""
    return _unique_image(engine, registry, megabytes, base=BASE_IMAGE, repository="kernel", keep=True)


def forget(engine, *images: str) -> None:
    for image in images:
        try:
            engine.api.remove_image(image, force=True)
        except Exception:
            pass


async def pull_job_of(jp_fetch, image: str, timeout: float = 60) -> dict:
    """The running pull of ``image`` as the panel's jobs list shows it, once bytes flow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in (await get(jp_fetch, "jobs"))["jobs"]:
            if job["kind"] == "pull" and job["target"] == image and job["state"] == "running" and job["progress"]:
                return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"no pull of {image} in the jobs list")


async def test_a_missing_image_is_pulled_at_start_with_progress_and_can_be_cancelled(
        engine, jp_fetch, registry, slow_registry, workspace):
    pushed = kernel_image_in_registry(engine, registry, megabytes=12)
    far = pushed.replace(registry, f"127.0.0.1:{slow_registry.port}")  # 6 s at 2 MB/s: watchable
    engine.api.tag(pushed, far.rsplit(":", 1)[0], far.rsplit(":", 1)[1])
    name = add_spec(engine, far, gpus="none", workspace=str(workspace))
    forget(engine, far, pushed)
    try:
        # -- started: pulled first, the pull listed with its progress, then the kernel runs
        km = AsyncKernelManager(kernel_name=name)
        start = asyncio.create_task(km.start_kernel(cwd=str(workspace)))
        job = await pull_job_of(jp_fetch, far)
        assert job["state"] == "running" and job["layers"], job
        await asyncio.wait_for(start, 120)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)
        assert (await get(jp_fetch, "jobs", job["id"]))["state"] == "done"
        engine.inspect_image_sync(far)  # here now

        # -- cancelled from the panel (DELETE jobs/<id>): the start fails, saying so, nothing left
        forget(engine, far)
        km = AsyncKernelManager(kernel_name=name)
        start = asyncio.create_task(km.start_kernel(cwd=str(workspace)))
        job = await pull_job_of(jp_fetch, far)
        await jp_fetch("mlcontainer", "api", "jobs", job["id"], method="DELETE")
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(start, 60)
        assert "pull of" in str(info.value) and "cancelled" in str(info.value), info.value
        assert our_kernel_containers(engine, km.kernel_id) == []
    finally:
        forget(engine, far, pushed)


async def test_with_no_registry_reachable_the_start_fails_at_once_with_the_reason(engine, workspace):
    unreachable = f"127.0.0.1:1/mlctest/kernel:{uuid.uuid4().hex[:8]}"  # nothing listens on port 1
    engine.api.tag(BASE_IMAGE, unreachable.rsplit(":", 1)[0], unreachable.rsplit(":", 1)[1])
    name = add_spec(engine, unreachable, gpus="none", workspace=str(workspace))
    engine.api.remove_image(unreachable)  # the tag only: the base image stays
    km = AsyncKernelManager(kernel_name=name)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        await km.start_kernel(cwd=str(workspace))
    assert time.monotonic() - started < 15  # a reason, not a wait for the start's timeout
    message = str(info.value)
    assert "pulling it failed" in message and "connection refused" in message.lower(), message


async def test_never_and_images_built_here_are_not_pulled(engine, workspace):
    missing = f"mlcontainer-test/never-built:{uuid.uuid4().hex[:8]}"  # ours: no registry has it
    engine.api.tag(BASE_IMAGE, missing.rsplit(":", 1)[0], missing.rsplit(":", 1)[1])
    name = add_spec(engine, missing, gpus="none", workspace=str(workspace))
    engine.api.remove_image(missing)
    with pytest.raises(Exception) as info:
        await AsyncKernelManager(kernel_name=name).start_kernel(cwd=str(workspace))
    assert "not present on the Docker engine" in str(info.value) and "pulling" not in str(info.value)
    far = f"127.0.0.1:1/mlctest/never:{uuid.uuid4().hex[:8]}"  # "never": the same for any name
    engine.api.tag(BASE_IMAGE, far.rsplit(":", 1)[0], far.rsplit(":", 1)[1])
    name = add_spec(engine, far, gpus="none", workspace=str(workspace), pull="never")
    engine.api.remove_image(far)
    with pytest.raises(Exception) as info:
        await AsyncKernelManager(kernel_name=name).start_kernel(cwd=str(workspace))
    assert "not present on the Docker engine" in str(info.value) and "pulling" not in str(info.value)
