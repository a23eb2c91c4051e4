"""The panel's REST API on a real server with real containers (GPU data from the fake NVML)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time
import uuid

import pytest

from jupyter_mlcontainer.core.errors import EngineError
from tornado.httpclient import HTTPClientError

from .conftest import BASE_IMAGE, add_spec, our_kernel_containers, wait_until

ENDPOINTS = ("status", "images", "jobs", "kernelspecs", "kernels", "gpus", "volumes")


async def get(jp_fetch, *path):
    return json.loads((await jp_fetch("mlcontainer", "api", *path)).body)


async def job_outcome(jp_fetch, job_id: str, timeout: float = 300) -> dict:
    """Follow a job through the API until it is no longer running."""

    async def finished():
        current = await get(jp_fetch, "jobs", job_id)
        return current if current["state"] != "running" else None

    return await wait_until(finished, timeout=timeout, interval=0.2)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_every_endpoint_requires_auth(jp_fetch, endpoint):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "api", endpoint, headers={"Authorization": ""})
    assert info.value.code == 403


async def test_images_with_facts_and_kernelspecs(engine, jp_fetch):
    name = add_spec(engine, BASE_IMAGE, name="rest-images")

    async def probed():
        images = (await get(jp_fetch, "images"))["images"]
        row = next((i for i in images if BASE_IMAGE in i["tags"]), None)
        return row if row and row["facts"]["probe"] == "done" else None

    row = await wait_until(probed, timeout=60, interval=0.5)
    assert row["id"].startswith("sha256:") and row["size"] > 0
    assert row["facts"]["python_version"].startswith("3.11") and row["facts"]["ipykernel"]
    assert name in row["kernelspecs"]
    # The cache keeper's own image is no image to run notebooks in: not listed.
    from jupyter_mlcontainer.cache.helper_image import helper_image

    helper = helper_image(engine)
    assert not any(helper.ref in i["tags"] for i in (await get(jp_fetch, "images"))["images"])


async def test_a_swarm_that_does_not_answer_leaves_the_image_list_whole(engine, jp_fetch, tmp_path):
    """Kernelspecs on a Swarm whose manager does not answer: this engine's images are listed as
    ever, the Swarm entry of an image says the cluster could not be asked (the nodes are asked
    in the background), and an image only that cluster would hold is left out; the status says
    the Swarm is not reachable, and the other views answer."""
    from jupyter_mlcontainer.images.probe import probe_image_sync
    from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

    gone = f"unix://{tmp_path}/no-manager.sock"
    name = add_spec(engine, BASE_IMAGE, name=f"rest-swarm-{uuid.uuid4().hex[:6]}", placement="swarm", docker_host=gone)
    elsewhere = f"mlctest/cluster-only:{uuid.uuid4().hex[:8]}"  # on no engine at all
    add_kernelspec(engine, elsewhere, name=f"rest-swarm-only-{uuid.uuid4().hex[:6]}",
                   options={"placement": "swarm", "docker_host": gone}, facts=probe_image_sync(engine, BASE_IMAGE))

    async def answered():
        images = (await get(jp_fetch, "images"))["images"]
        assert not any(elsewhere in i["tags"] for i in images)
        row = next(i for i in images if BASE_IMAGE in i["tags"])
        assert name in row["kernelspecs"]
        (cluster,) = [c for c in row["swarm"] if c["manager"] == gone]
        return cluster if cluster["state"] != "checking" else None

    cluster = await wait_until(answered, timeout=30, interval=0.2)
    assert cluster["state"] == "error" and "not reachable" in cluster["error"], cluster
    # The panel's other views stand too, the Swarm said unreachable where it shows.
    status = await get(jp_fetch, "status")
    (down,) = [c for c in status["clusters"] if c["manager"] == gone]
    assert down["reachable"] is False, down
    for endpoint in ("kernels", "gpus", "volumes", "jobs"):
        await get(jp_fetch, endpoint)  # 200, or it raises


async def test_add_kernelspec_and_errors(engine, jp_fetch):
    body = json.dumps({"image": BASE_IMAGE, "name": "rest-added", "gpus": "none"})
    created = json.loads((await jp_fetch("mlcontainer", "api", "kernelspecs", method="POST", body=body)).body)
    assert created["kernelspec"]["name"] == "rest-added"
    specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
    assert "rest-added" in specs
    for payload, code, text in (
        ({"image": "mlcontainer-test/absent:1"}, 404, "not present"),
        ({"image": BASE_IMAGE, "gpus": "lots"}, 400, "--gpus"),
        ({}, 400, "Give the image"),
    ):
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("mlcontainer", "api", "kernelspecs", method="POST", body=json.dumps(payload))
        assert info.value.code == code
        assert text in json.loads(info.value.response.body)["message"]


async def test_kernels_with_notebook_path_stats_and_stop(engine, jp_fetch, jp_serverapp, workspace):
    name = add_spec(engine, BASE_IMAGE, memory="512m")
    body = json.dumps({"path": "notebooks/train.ipynb", "type": "notebook", "name": "train.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    kernel_id = session["kernel"]["id"]

    async def with_stats():
        rows = [k for k in (await get(jp_fetch, "kernels"))["kernels"] if k["kernel_id"] == kernel_id]
        return rows[0] if rows and rows[0]["memory_usage"] else None

    row = await wait_until(with_stats, timeout=30, interval=0.5)
    assert row["notebook_path"] == "notebooks/train.ipynb"
    assert row["image"] == BASE_IMAGE and row["state"] == "running" and row["gpus"] == "none"
    assert row["memory_limit"] == 512 * 1024 * 1024 and 0 < row["memory_usage"] < row["memory_limit"]
    assert row["death"] is None

    volumes = await get(jp_fetch, "volumes")
    assert kernel_id in volumes["cache"]["kernels"]
    assert {"kernel_id": kernel_id, "source": str(workspace), "target": str(workspace), "rw": True} in volumes["workspaces"]

    await jp_fetch("mlcontainer", "api", "kernels", kernel_id, method="DELETE")
    assert our_kernel_containers(engine, kernel_id) == []
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "api", "kernels", kernel_id, method="DELETE")
    assert info.value.code == 404


async def test_gpus_without_nvml_is_a_state(jp_fetch):
    data = await get(jp_fetch, "gpus")
    assert data["available"] is False and data["gpus"] == []
    assert data["reason"].startswith("No NVIDIA GPU")


async def test_gpus_map_processes_to_notebooks(engine, jp_fetch, tmp_path, monkeypatch):
    from jupyter_mlcontainer.machine import gpu

    name = add_spec(engine, BASE_IMAGE)
    body = json.dumps({"path": "gpu.ipynb", "type": "notebook", "name": "gpu.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    kernel_id = session["kernel"]["id"]
    container = our_kernel_containers(engine, kernel_id)[0]
    kernel_pid = engine.api.inspect_container(container["Id"])["State"]["Pid"]  # a host PID, as NVML reports
    fake = tmp_path / "nvml.json"
    fake.write_text(json.dumps({
        "driver": "550.54.15", "cuda": 12040,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "memory_total": 80 << 30, "memory_used": 2 << 30,
                  "utilization": 37, "temperature": 41, "power": 120000, "power_limit": 700000, "mig": 0,
                  "processes": [{"pid": kernel_pid, "used": 1 << 30}, {"pid": os.getpid(), "used": None}]}],
    }))
    monkeypatch.setenv(gpu.FAKE_NVML_ENV, str(fake))
    monkeypatch.setattr(gpu, "_monitor", None)
    data = await get(jp_fetch, "gpus")
    assert data["available"] and data["driver_version"] == "550.54.15" and data["cuda_driver_version"] == "12.4"
    (row,) = data["gpus"]
    assert row["utilization_gpu"] == 37 and row["power_usage"] == 120.0 and row["memory_total"] == 80 << 30
    by_pid = {p["pid"]: p for p in row["processes"]}
    assert by_pid[kernel_pid]["kernel_id"] == kernel_id
    assert by_pid[kernel_pid]["notebook_path"] == "gpu.ipynb"
    assert by_pid[os.getpid()]["kernel_id"] is None  # a host process, not a container kernel
    await jp_fetch("api", "sessions", session["id"], method="DELETE")


def _unique_image(engine, registry, megabytes: int = 24, *, base: str = "mlcontainer-test/nopython:latest",
                  repository: str = "pull", keep: bool = False) -> str:
    """Push an image of ``base`` plus a layer found nowhere else, then delete it locally (with
    ``keep``, left here: for a kernelspec written before it goes)."""
    tag = f"{registry}/mlctest/{repository}:{uuid.uuid4().hex[:8]}"
    payload = os.urandom(megabytes << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = f"FROM {base}\nCOPY blob /blob\n".encode()
        for name, data in (("Dockerfile", dockerfile), ("blob", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    for _ in engine.api.build(fileobj=buf, custom_context=True, tag=tag, rm=True, decode=True):
        pass
    for _ in engine.api.push(tag, stream=True, decode=True):
        pass
    if not keep:
        engine.api.remove_image(tag, force=True)
    return tag


async def test_pull_with_progress_from_local_registry(engine, jp_fetch, registry):
    from .conftest import ThrottledProxy

    pushed = _unique_image(engine, registry)
    proxy = ThrottledProxy(("127.0.0.1", 5000), rate=12 << 20)  # a 24 MB layer takes 2 s: still running below
    tag = pushed.replace("127.0.0.1:5000", f"127.0.0.1:{proxy.port}")
    try:
        started = json.loads((await jp_fetch("mlcontainer", "api", "images", "pull", method="POST", body=json.dumps({"image": tag}))).body)
        job = started["job"]
        # A second client asking for the same pull joins the running job.
        again = json.loads((await jp_fetch("mlcontainer", "api", "images", "pull", method="POST", body=json.dumps({"image": tag}))).body)
        assert again["job"]["id"] == job["id"]
        seen_progress = set()
        deadline = time.time() + 120
        while job["state"] == "running" and time.time() < deadline:
            await asyncio.sleep(0.05)
            job = await get(jp_fetch, "jobs", job["id"])
            if job["progress"] is not None:
                seen_progress.add(round(job["progress"], 2))
        assert job["state"] == "done", job
        assert job["progress"] == 1.0
        assert any(layer["total"] >= 24 << 20 for layer in job["layers"].values()), job["layers"]
        assert job["result"]["digests"] and job["result"]["digests"][0].startswith(f"127.0.0.1:{proxy.port}/mlctest/pull@sha256:")
        assert engine.api.inspect_image(tag)["RepoDigests"]
        listed = [j["id"] for j in (await get(jp_fetch, "jobs"))["jobs"]]
        assert job["id"] in listed
    finally:
        proxy.close()
        try:
            engine.api.remove_image(tag, force=True)
        except Exception:
            pass


async def test_pull_errors_and_cancel(engine, jp_fetch, registry, slow_registry):
    body = json.dumps({"image": f"{registry}/mlctest/does-not-exist:1"})
    job = json.loads((await jp_fetch("mlcontainer", "api", "images", "pull", method="POST", body=body)).body)["job"]
    failed = await job_outcome(jp_fetch, job["id"], timeout=60)
    assert failed["state"] == "error" and "not found" in failed["error"].lower()

    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "api", "jobs", "abcdef", method="DELETE")
    assert info.value.code == 404

    pushed = _unique_image(engine, registry, megabytes=32)
    far = pushed.replace("127.0.0.1:5000", f"127.0.0.1:{slow_registry.port}")  # 16 s at 2 MB/s
    try:
        job = json.loads((await jp_fetch("mlcontainer", "api", "images", "pull", method="POST", body=json.dumps({"image": far}))).body)["job"]
        while not (await get(jp_fetch, "jobs", job["id"]))["progress"]:
            await asyncio.sleep(0.1)  # until bytes flow: the pull is under way
        cancelled = json.loads((await jp_fetch("mlcontainer", "api", "jobs", job["id"], method="DELETE")).body)
        assert cancelled["state"] == "cancelled"
        assert (await get(jp_fetch, "jobs", job["id"]))["state"] == "cancelled"
        with pytest.raises(EngineError):
            engine.inspect_image_sync(far)  # it never completed
    finally:
        for image in (pushed, far):
            try:
                engine.api.remove_image(image, force=True)
            except Exception:
                pass


async def test_engine_down_gives_503_and_server_lives(jp_fetch, jp_serverapp, tmp_path):
    from jupyter_mlcontainer.service import MLContainerService
    from jupyter_mlcontainer.core.settings import MLContainer

    settings = jp_serverapp.web_app.settings
    working = settings["mlcontainer"]
    settings["mlcontainer"] = MLContainerService(MLContainer(docker_host=f"unix://{tmp_path}/no-engine.sock"))
    try:
        for endpoint in ("images", "kernels", "volumes"):
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch("mlcontainer", "api", endpoint)
            assert info.value.code == 503
            assert "Docker engine not reachable" in json.loads(info.value.response.body)["message"]
        status = await get(jp_fetch, "status")
        assert status["engine"]["reachable"] is False and "not reachable" in status["engine"]["reason"]
        assert (await jp_fetch("api", "status")).code == 200
    finally:
        settings["mlcontainer"] = working


async def test_freeze_endpoint_writes_into_the_notebook_folder(engine, jp_fetch, workspace):
    name = add_spec(engine, BASE_IMAGE)
    body = json.dumps({"path": "notebooks/exp.ipynb", "type": "notebook", "name": "exp.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    kernel_id = session["kernel"]["id"]
    try:
        result = json.loads((await jp_fetch("mlcontainer", "api", "kernels", kernel_id, "freeze", method="POST", body="{}")).body)
        assert result["dockerfile_path"] == str(workspace / "notebooks" / "Dockerfile")
        assert (workspace / "notebooks" / "requirements-frozen.txt").exists()
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("mlcontainer", "api", "kernels", kernel_id, "freeze", method="POST", body="{}")
        assert info.value.code == 409 and "exists" in json.loads(info.value.response.body)["message"]
        again = json.loads((await jp_fetch("mlcontainer", "api", "kernels", kernel_id, "freeze", method="POST", body='{"force": true}')).body)
        assert again["dockerfile_path"] == result["dockerfile_path"]
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("mlcontainer", "api", "kernels", "0000", "freeze", method="POST", body="{}")
        assert info.value.code == 404
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")


async def test_a_freeze_during_a_restart_freezes_the_new_container(engine, jp_fetch, workspace):
    """Restart and freeze clicked together: the freeze follows the kernel into its new
    container (it used to answer 404 for the old one, or 409 'kernel died')."""
    name = add_spec(engine, BASE_IMAGE)
    body = json.dumps({"path": "notebooks/race.ipynb", "type": "notebook", "name": "race.ipynb", "kernel": {"name": name}})
    session = json.loads((await jp_fetch("api", "sessions", method="POST", body=body)).body)
    kernel_id = session["kernel"]["id"]
    try:
        for _ in range(3):
            restart, freeze = await asyncio.gather(
                jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="{}"),
                jp_fetch("mlcontainer", "api", "kernels", kernel_id, "freeze", method="POST", body='{"force": true}'),
            )
            assert restart.code == 200 and freeze.code == 201
            assert os.path.isfile(json.loads(freeze.body)["dockerfile_path"])
            assert len(our_kernel_containers(engine, kernel_id)) == 1
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")


async def test_build_and_restore_endpoints(engine, jp_fetch, workspace):
    import nbformat

    from jupyter_mlcontainer.environments.freeze import freeze_container
    from jupyter_mlcontainer.environments.sharing import environment_record, frozen_names, record_in_notebook

    from .conftest import running_kernel

    notebook = workspace / "notebooks" / "restore-me.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), notebook)
    async with running_kernel(engine, BASE_IMAGE, notebook.parent) as (km, kc):
        result = freeze_container(engine, km.provisioner.container_id, runtime_env={"MLC_REST": "yes"})
    tag, kernelspec = frozen_names(str(notebook), result.dockerfile)
    record_in_notebook(str(notebook), environment_record(result, str(notebook), tag, kernelspec))
    restore_url = ("mlcontainer", "api", "notebooks", "restore")
    try:
        # The plan first (the panel shows it): nothing is built until it is confirmed.
        plan = json.loads((await jp_fetch(*restore_url, params={"path": "notebooks/restore-me.ipynb"})).body)
        assert plan["source"] == "build" and plan["dockerfile"] == "Dockerfile" and "FROM " in plan["dockerfile_text"]
        assert plan["kernelspec"] == kernelspec and plan["image"].startswith("mlcontainer-restored/restore-me:")
        for body, code, text in (
            ({"path": "notebooks/restore-me.ipynb"}, 400, "GET notebooks/restore?path="),
            ({"path": "notebooks/restore-me.ipynb", "fingerprint": "0" * 64}, 409, "changed since the restore was shown"),
        ):
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch(*restore_url, method="POST", body=json.dumps(body))
            assert info.value.code == code and text in json.loads(info.value.response.body)["message"]
        started = await jp_fetch(*restore_url, method="POST", body=json.dumps(
            {"path": "notebooks/restore-me.ipynb", "fingerprint": plan["fingerprint"]}))
        assert started.code == 202
        job = json.loads(started.body)["job"]
        assert job["kind"] == "build" and job["target"] == plan["image"]
        done = await job_outcome(jp_fetch, job["id"])
        assert done["state"] == "done", done
        assert done["result"]["kernelspec"] == kernelspec and done["result"]["image"] == plan["image"]
        assert any("Step" in line for line in done["log"])
        specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
        assert kernelspec in specs
        # Now the image is here: the plan says so and restore answers at once.
        plan = json.loads((await jp_fetch(*restore_url, params={"path": "notebooks/restore-me.ipynb"})).body)
        assert plan["source"] == "present"
        again = json.loads((await jp_fetch(*restore_url, method="POST", body=json.dumps(
            {"path": "notebooks/restore-me.ipynb", "fingerprint": plan["fingerprint"]}))).body)
        assert again["kernelspec"] == kernelspec and again["how"] == "present"
        tag = plan["image"]
        # Builds of any Dockerfile under the root, with the same job machinery.
        build = json.loads((await jp_fetch("mlcontainer", "api", "images", "build", method="POST",
                                           body=json.dumps({"dockerfile": "notebooks/Dockerfile", "tag": tag + "-again"}))).body)["job"]
        assert (await job_outcome(jp_fetch, build["id"]))["state"] == "done"
        engine.api.remove_image(tag + "-again", force=True)
        for body, code, text in (
            ({"dockerfile": "../../etc/Dockerfile", "tag": "x:1"}, 400, "outside the server's root"),
            ({"dockerfile": "notebooks/Dockerfile"}, 400, "Give"),
        ):
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch("mlcontainer", "api", "images", "build", method="POST", body=json.dumps(body))
            assert info.value.code == code and text in json.loads(info.value.response.body)["message"]
        plain = workspace / "plain.ipynb"
        nbformat.write(nbformat.v4.new_notebook(), plain)
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch(*restore_url, params={"path": "plain.ipynb"})
        assert info.value.code == 400 and "no mlcontainer environment record" in json.loads(info.value.response.body)["message"]
    finally:
        for image in engine.api.images(name="mlcontainer-restored/restore-me"):
            engine.api.remove_image(image["Id"], force=True)


@pytest.mark.parametrize("method, path, body, status, text", [
    ("POST", "kernelspecs", {"image": "a;rm -rf /"}, 400, "Not an image reference"),
    ("POST", "kernelspecs", {"image": BASE_IMAGE, "name": 5}, 400, "name"),
    ("POST", "kernelspecs", {"image": BASE_IMAGE, "env": [5]}, 400, "KEY=VALUE"),
    ("POST", "kernelspecs", {"image": BASE_IMAGE, "env": {"A": {"b": 1}}}, 400, "env"),
    ("POST", "kernelspecs", {"image": BASE_IMAGE, "gpus": ["all"]}, 400, "gpus"),
    ("POST", "images/pull", {"image": "a;rm -rf /"}, 400, "Not an image reference"),
    ("POST", "images/build", {"dockerfile": "Dockerfile", "tag": "t:1", "build_args": [1]}, 400, "build_args"),
    ("POST", "images/build", {"dockerfile": "Dockerfile", "tag": "bad tag;x"}, 400, "Not an image reference"),
    ("GET", "notebooks/restore?path=missing.ipynb", None, 400, "cannot be read"),
    ("POST", "notebooks/restore", {"path": 5, "fingerprint": "x"}, 400, "Give the notebook"),
    ("POST", "kernels/0000/freeze", [1, 2], 400, "JSON object"),
])
async def test_bad_input_gets_a_clear_4xx(engine, jp_fetch, workspace, method, path, body, status, text):
    """Bad input is the client's mistake: a 4xx JSON message naming the rule, never a 500, a
    traceback or a container."""
    (workspace / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    before = {c["Id"] for c in engine.api.containers(all=True)}
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "api", *path.split("?")[0].split("/"),
                       params=dict([path.split("?")[1].split("=")]) if "?" in path else None,
                       method=method, body=None if body is None else json.dumps(body))
    answer = json.loads(info.value.response.body)
    assert info.value.code == status and text in answer["message"], answer
    assert "Traceback" not in answer["message"]
    assert {c["Id"] for c in engine.api.containers(all=True)} <= before | set()


async def test_request_bodies_are_bounded(jp_fetch):
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("mlcontainer", "api", "images", "pull", method="POST",
                       body=json.dumps({"image": "x" * (2 << 20)}))
    assert info.value.code == 413 and "1 MB" in json.loads(info.value.response.body)["message"]


def test_cli_pull_with_progress(engine, registry):
    import subprocess
    import sys

    from .conftest import ThrottledProxy

    pushed = _unique_image(engine, registry, megabytes=8)
    proxy = ThrottledProxy(("127.0.0.1", 5000), rate=4 << 20)  # 2 s: progress to see
    tag = pushed.replace("127.0.0.1:5000", f"127.0.0.1:{proxy.port}")
    try:
        done = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "pull", tag],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert f"Pulled {tag}" in done.stdout and "@sha256:" in done.stdout
        # Without a terminal, a line per 10 %: several of them, ending at 100 %.
        shown = [line for line in done.stderr.splitlines() if line.startswith(f"{tag}: ")]
        assert len(shown) >= 3 and shown[-1].startswith(f"{tag}: 100%"), done.stderr
        assert engine.inspect_image_sync(tag)["RepoDigests"]
        bad = subprocess.run([sys.executable, "-m", "jupyter_mlcontainer.cli", "pull", "a;rm -rf /"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "Not an image reference" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        proxy.close()
        engine.api.remove_image(tag, force=True)


async def test_remove_images_and_kernelspecs(engine, jp_fetch):
    """An image is removed only when no kernelspec and no kernel uses it; the refusal names them."""
    tag = f"mlctest-remove:{uuid.uuid4().hex[:8]}"
    engine.api.tag(BASE_IMAGE, *tag.split(":"))
    name = add_spec(engine, tag, name=f"rm-{uuid.uuid4().hex[:6]}")
    try:
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("mlcontainer", "api", "images", method="DELETE", params={"image": tag})
        assert info.value.code == 409 and name in json.loads(info.value.response.body)["message"]
        removed = json.loads((await jp_fetch("mlcontainer", "api", "kernelspecs", name, method="DELETE")).body)
        assert removed["removed"] == name
        specs = json.loads((await jp_fetch("api", "kernelspecs")).body)["kernelspecs"]
        assert name not in specs
        done = json.loads((await jp_fetch("mlcontainer", "api", "images", method="DELETE", params={"image": tag})).body)
        assert done["removed"] == tag
        with pytest.raises(Exception):
            engine.inspect_image_sync(tag)
        for path, code, text in ((("kernelspecs", "python3"), 400, "not a container kernel"),
                                 (("kernelspecs", "no-such-spec"), 400, "No kernelspec")):
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch("mlcontainer", "api", *path, method="DELETE")
            assert info.value.code == code and text in json.loads(info.value.response.body)["message"], path
    finally:
        try:
            engine.api.remove_image(tag, force=True)
        except Exception:
            pass


async def test_an_error_from_a_bug_is_a_500_with_its_traceback_never_a_400(jp_fetch, jp_serverapp, monkeypatch, caplog):
    """Only errors raised on purpose (core/errors.py) answer 4xx with their message: a ValueError
    of a bug is a 500, and its traceback is in the log."""
    from jupyter_mlcontainer.core.errors import BadRequest

    service = jp_serverapp.web_app.settings["mlcontainer"]

    def bug():
        raise ValueError("int() of a list: a bug, not the client's input")

    monkeypatch.setattr(service, "status", bug)
    with pytest.raises(HTTPClientError) as failed:
        await jp_fetch("mlcontainer", "api", "status")
    assert failed.value.code == 500
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records), "no traceback logged"

    def refused():
        raise BadRequest("Give the image")

    monkeypatch.setattr(service, "status", refused)
    with pytest.raises(HTTPClientError) as failed:
        await jp_fetch("mlcontainer", "api", "status")
    assert failed.value.code == 400 and json.loads(failed.value.response.body) == {
        "message": "Give the image", "error": "BadRequest"}
