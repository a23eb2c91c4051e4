"""Container kernels as Docker Swarm service tasks (issue 12), on a real three-node Swarm whose
workers advertise fake GPUs (tests/swarm_cluster.py): a kernelspec with ``placement: swarm`` and
the manager as its engine runs on whichever worker has the GPUs it asks for, in the workspace
on shared storage (the same path on every node), sees exactly the GPUs Swarm gave it, and is
interrupted, restarted, reported dead and removed like a local kernel."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid

import docker
import pytest
from jupyter_client.manager import AsyncKernelManager

from .conftest import BASE_IMAGE, IPYKERNEL7_IMAGE, add_spec, execute, running_kernel
from .swarm_cluster import GPU_RESOURCE


@pytest.fixture
def shared(swarm):
    """A workspace and a cache folder on the cluster's shared storage (an admin's 1777 folder)."""
    root = os.path.join(swarm.shared, f"kernels-{uuid.uuid4().hex[:8]}")
    workspace, cache = os.path.join(root, "work"), os.path.join(root, "cache")
    os.makedirs(workspace)
    os.makedirs(cache)
    os.chmod(cache, 0o1777)
    yield workspace, cache
    from jupyter_mlcontainer.cache.volume import remove_cache_keeper
    from jupyter_mlcontainer.engines.swarm import get_swarm

    remove_cache_keeper(get_swarm(swarm.manager_url), cache)  # started by the first kernel on it
    shutil.rmtree(root, ignore_errors=True)


def our_services(swarm, kernel_id: str = "") -> list[dict]:
    client = swarm.client()
    try:
        label = f"org.jupyter.mlcontainer.kernel-id={kernel_id}" if kernel_id else "org.jupyter.mlcontainer.role=kernel"
        return client.api.services(filters={"label": label})
    finally:
        client.close()


def kernel_task(swarm, kernel_id: str) -> tuple[dict, dict, str]:
    """The kernel's service, its one task, and the hostname of the task's node."""
    (service,) = our_services(swarm, kernel_id)
    client = swarm.client()
    try:
        (task,) = client.api.tasks(filters={"service": service["ID"]})
        return service, task, client.api.inspect_node(task["NodeID"])["Description"]["Hostname"]
    finally:
        client.close()


def leftover_files(swarm) -> list[str]:
    client = swarm.client()
    try:
        label = {"label": "org.jupyter.mlcontainer.role=kernel-file"}
        return [s["Spec"]["Name"] for s in client.api.secrets(filters=label) + client.api.configs(filters=label)]
    finally:
        client.close()


async def until(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)


async def test_a_kernel_runs_as_a_task_on_a_worker_with_the_gpus_it_asked_for(engine, swarm, shared):
    """Also: the cache is each node's own named volume, set up and kept by the cache keeper
    running as a global service (one task per node)."""
    from jupyter_mlcontainer.cache.volume import ROLE_KEEPER, remove_cache_volume
    from jupyter_mlcontainer.engines.swarm import get_swarm

    workspace, _ = shared
    cache = f"mlctest-swarm-cache-{uuid.uuid4().hex[:6]}"
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="1",
                    cache_volume=cache, workspace=workspace, shm_size="512m")
    km = AsyncKernelManager(kernel_name=name)
    assert km.kernel_spec.interrupt_mode == "message"  # no signal reaches another node's container
    began = time.monotonic()
    await km.start_kernel(cwd=workspace)
    started = time.monotonic() - began
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        out, reply = await execute(kc, (
            "import os, socket, stat\n"
            "open('from-the-cluster.txt', 'w').write(socket.gethostname())\n"
            "shm = os.statvfs('/dev/shm')\n"
            "print(os.environ.get('CUDA_VISIBLE_DEVICES'), os.getcwd(), os.getuid(),\n"
            "      oct(stat.S_IMODE(os.stat(os.environ['HOME']).st_mode)), oct(stat.S_IMODE(os.stat('/opt/mlcontainer/cache').st_mode)),\n"
            "      shm.f_blocks * shm.f_frsize)"
        ))
        assert reply["status"] == "ok", out
        gpu, cwd, uid, home_mode, cache_mode, shm = out.split()
        assert int(shm) == 512 << 20  # the kernelspec's --shm-size (services have none of their own)
        assert (home_mode, cache_mode) == ("0o700", "0o755")  # the node's own volume, set up by its keeper
        client = swarm.client()
        try:
            (keeper,) = client.api.services(filters={"label": f"org.jupyter.mlcontainer.role={ROLE_KEEPER}"})
            assert keeper["Spec"]["Mode"] == {"Global": {}}
            tasks = [t for t in client.api.tasks(filters={"service": keeper["ID"]}) if t["Status"]["State"] == "running"]
            assert len(tasks) == len(swarm.nodes)
            # Issue 22, finding 11: the trusted helper image (never a kernel's), hardened as on one engine.
            spec = keeper["Spec"]["TaskTemplate"]
            container = spec["ContainerSpec"]
            assert container["Image"].startswith("mlcontainer-helper:"), container["Image"]
            assert (container["CapabilityDrop"], container["CapabilityAdd"], container["ReadOnly"]) == (
                ["ALL"], ["DAC_OVERRIDE"], True), container
            assert spec["Resources"]["Limits"]["Pids"] == 16 and spec["Resources"]["Limits"]["MemoryBytes"] == 128 << 20
            node = swarm.nodes[next(iter(swarm.nodes))]
            on_node = docker.APIClient(base_url=node.url)
            try:
                (mine,) = on_node.containers(filters={"label": f"com.docker.swarm.service.id={keeper['ID']}"})
                ran = on_node.exec_create(mine["Id"], [container["Command"][0], "-c", "print(open('/proc/1/status').read())"])
                status = on_node.exec_start(ran).decode()
            finally:
                on_node.close()
            assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000002" in status, status  # DAC_OVERRIDE only
        finally:
            client.close()
        service, task, node = kernel_task(swarm, km.kernel_id)
        assert node in swarm.workers and gpu in swarm.nodes[node].gpus, (node, gpu)  # one of its node's own
        assert (cwd, uid) == (workspace, str(os.getuid()))
        with open(os.path.join(workspace, "from-the-cluster.txt")) as f:  # written on the worker
            assert f.read()
        assert task["Spec"]["Resources"]["Reservations"]["GenericResources"] == [
            {"DiscreteResourceSpec": {"Kind": GPU_RESOURCE, "Value": 1}}]
        # The status shows the cluster: every node, its GPUs, and which kernel holds this one.
        from jupyter_mlcontainer.service import MLContainerService
        from jupyter_mlcontainer.core.settings import MLContainer

        status = await asyncio.get_running_loop().run_in_executor(None, MLContainerService(MLContainer()).status)
        (cluster,) = [c for c in status["clusters"] if c["manager"] == swarm.manager_url]
        assert sorted(n["hostname"] for n in cluster["nodes"]) == sorted(swarm.nodes)
        (row,) = [n for n in cluster["nodes"] if n["hostname"] == node]
        assert row["state"] == "ready" and {"id": gpu, "kernel_id": km.kernel_id} in row["gpus"], row
        # The kernel list (the panel's) has it, with its node.
        kernels = await asyncio.get_running_loop().run_in_executor(
            None, lambda: MLContainerService(MLContainer()).kernels({km.kernel_id: "train.ipynb"}))
        (listed,) = [k for k in kernels if k["kernel_id"] == km.kernel_id]
        assert (listed["node"], listed["state"], listed["notebook_path"], listed["gpus"]) == (node, "running", "train.ipynb", "1")
        # The GPU view (the panel's) has the cluster's GPUs: this one held by the notebook.
        gpus = await asyncio.get_running_loop().run_in_executor(
            None, lambda: MLContainerService(MLContainer()).gpus({km.kernel_id: "train.ipynb"}))
        held = [g for g in gpus["clusters"] if g["kernel_id"] == km.kernel_id]
        assert [(g["node"], g["id"], g["notebook_path"]) for g in held] == [(node, gpu, "train.ipynb")], gpus["clusters"]
        assert len(gpus["clusters"]) == sum(len(n.gpus) for n in swarm.nodes.values())

        # Interrupt by message, then restart: a new task, the client carries on.
        kc.execute("open('busy.flag', 'w').close(); import time; time.sleep(120)")
        await until(lambda: _exists(os.path.join(workspace, "busy.flag")), timeout=30)
        await km.interrupt_kernel()
        interrupted = await kc.get_shell_msg(timeout=30)
        assert interrupted["content"].get("ename") == "KeyboardInterrupt"
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=90)
        out, reply = await execute(kc, "print('back')")
        assert out.strip() == "back"
        after, again, _ = kernel_task(swarm, km.kernel_id)
        # A new task, on the same node and ports: the clients connected before carry on.
        assert after["ID"] != service["ID"] and again["NodeID"] == task["NodeID"]

        # The kernel process ends by itself: noticed from the task's state, with its code.
        kc.execute("import os; os._exit(3)")
        await until(lambda: _dead(km), timeout=60)
        from jupyter_mlcontainer.kernels.deaths import last_death

        death = last_death(km.kernel_id)
        assert death is not None and death.message() == "Kernel process exited with code 3", death
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    assert our_services(swarm, km.kernel_id) == []
    assert leftover_files(swarm) == []  # the connection file's secret went with it
    print(f"swarm kernel ready in {started:.2f} s")
    remove_cache_volume(get_swarm(swarm.manager_url), cache)


async def test_an_ipykernel_7_kernel_on_the_swarm_is_encrypted_on_the_nodes_network(engine, swarm, shared):
    """A Swarm kernel's ports are published on its node's address, on the cluster's network, where
    other containers and local users can reach them: a kernel whose ipykernel can encrypt
    (7.4+, CurveZMQ) is encrypted there. A subscriber without its key hears none of its output;
    one with the key, as its server has, does."""
    from .test_security import _drain, _subscribe

    workspace, cache = shared
    marker = f"secret-{uuid.uuid4().hex[:8]}"
    async with running_kernel(engine, IPYKERNEL7_IMAGE, workspace, placement="swarm", docker_host=swarm.manager_url,
                              gpus="none", cache_volume=cache, workspace=workspace) as (km, kc):
        info = km.get_connection_info()
        _, task, node = kernel_task(swarm, km.kernel_id)
        assert node in swarm.nodes and info["transport"] == "tcp" and km.curve_publickey is not None
        plain = _subscribe(info["ip"], [info[p] for p in ("iopub_port", "shell_port", "stdin_port", "control_port")])
        keyed = _subscribe(info["ip"], [info["iopub_port"]], km.curve_publickey)
        for _ in range(20):  # output over two seconds, while both subscribers listen
            await execute(kc, f"print({marker!r}, flush=True)")
            await asyncio.sleep(0.1)
        assert not any(marker.encode() in m for m in _drain(plain))
        assert any(marker.encode() in m for m in _drain(keyed))  # the path works, with the key
        for sock in plain + keyed:
            sock.close()
    assert our_services(swarm, km.kernel_id) == []


async def test_a_kernel_that_cannot_encrypt_is_refused_on_the_swarm_unless_the_kernelspec_accepts_it(engine, swarm, shared):
    """Issue 22, finding 12: Debian's ipykernel 6.17 cannot encrypt, and on a Swarm its ports are
    on its node's address: by default it does not start (saying why and what to do); with
    transport_encryption=disabled in its kernelspec it does, in the clear, on purpose."""
    from jupyter_client.manager import AsyncKernelManager

    workspace, cache = shared
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url, gpus="none",
                    cache_volume=cache, workspace=workspace)
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(Exception) as refused:
        await km.start_kernel(cwd=workspace)
    message = str(refused.value)
    assert "cannot encrypt its traffic" in message and "network other machines share" in message, message
    assert "transport_encryption=disabled" in message and "ipykernel 7.4" in message, message
    assert our_services(swarm, km.kernel_id) == []  # refused before anything was created


def _build_and_load(tag: str, build: str, nodes: list) -> None:
    """Build ``tag`` on the main engine FROM the base image with a label of its own (``build``:
    a distinct image id), then load it into ``nodes`` (SwarmNode) through their engines."""
    import subprocess

    dockerfile = f"FROM {BASE_IMAGE}\nLABEL org.jupyter.mlcontainer.test-build={build}\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True,
                   capture_output=True, timeout=120)
    for node in nodes:
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        try:
            subprocess.run(["docker", "-H", node.url, "load", "-q"], stdin=save.stdout, check=True,
                           capture_output=True, timeout=120)
        finally:
            save.stdout.close()
            save.wait()


async def test_the_image_list_says_which_nodes_hold_a_swarm_kernelspecs_image(engine, swarm, jp_fetch, capsys):
    """An image row (GET images, the panel's) of an image that a Swarm kernelspec names says, for
    that Swarm, which nodes hold that very build: "checking" at first (the nodes are asked in the
    background, one short task each), then each node's answer. A node with another build under
    the same tag says "missing": a kernel placed there would run that other build. The CLI
    (`jupyter mlcontainer image nodes`) says the same. An image the server's own engine lacks
    is listed from the manager's. The probe leaves no service behind."""
    import json
    import subprocess

    tag = f"mlcontainer-test/node-images:{uuid.uuid4().hex[:8]}"
    manager, (worker_1, worker_2) = swarm.manager, swarm.workers
    try:
        _build_and_load(tag, "other", [swarm.nodes[worker_2]])
        _build_and_load(tag, "current", [swarm.nodes[manager], swarm.nodes[worker_1]])
        name = add_spec(engine, tag, placement="swarm", docker_host=swarm.manager_url, gpus="none")

        async def entry() -> dict:
            rows = json.loads((await jp_fetch("mlcontainer", "api", "images")).body)["images"]
            (row,) = [r for r in rows if tag in r["tags"]]
            assert row["kernelspecs"] == [name]
            (cluster,) = row["swarm"]
            return cluster

        first = await entry()
        assert first["state"] == "checking" and first["image"] == tag, first
        deadline = time.monotonic() + 60
        while (answer := await entry())["state"] == "checking":
            assert time.monotonic() < deadline, "no answer from the cluster within 60 s"
            await asyncio.sleep(0.2)
        assert answer["state"] == "done", answer
        assert answer["nodes"] == {manager: "present", worker_1: "present", worker_2: "missing"}, answer
        # The same from the command line, asked there and then.
        from jupyter_mlcontainer.cli import main

        assert await asyncio.get_running_loop().run_in_executor(None, main, ["image", "nodes", tag, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {swarm.manager_url: answer["nodes"]}
        # Gone from this server's engine (a login node may hold no image): the manager's row.
        subprocess.run(["docker", "rmi", "-f", tag], check=True, capture_output=True, timeout=60)
        rows = json.loads((await jp_fetch("mlcontainer", "api", "images")).body)["images"]
        (row,) = [r for r in rows if tag in r["tags"]]
        assert (row["engine"], row["kernelspecs"]) == (swarm.manager_url, [name]), row
        assert row["swarm"][0]["nodes"] == answer["nodes"]
        client = swarm.client()
        try:
            assert client.api.services(filters={"label": "org.jupyter.mlcontainer.role=image-probe"}) == []
        finally:
            client.close()
    finally:
        for url in [None, *(node.url for node in swarm.nodes.values())]:
            subprocess.run(["docker", *(["-H", url] if url else []), "rmi", "-f", tag], capture_output=True, timeout=60)


async def test_a_swarm_kernel_is_frozen_through_the_kernel_itself(engine, swarm, shared):
    """The manager runs no command in a container on another node: freeze asks the kernel to run
    its inventory. What %pip installed on the worker is pinned, what %env set is written, our own
    and Swarm's variables are not, the kernel's namespace gains nothing, and the Dockerfile says
    which check it could not do there. The kernel also runs with no-new-privileges, which the
    bootstrap sets (a service has no option for it)."""
    from jupyter_mlcontainer.core.errors import FreezeError
    from jupyter_mlcontainer.environments.freeze import kernel_environment
    from jupyter_mlcontainer.service import MLContainerService
    from jupyter_mlcontainer.core.settings import MLContainer

    from .test_freeze import make_wheel

    workspace, cache = shared
    wheels = os.path.join(workspace, "wheels")
    os.makedirs(wheels)
    make_wheel(wheels, name="mlc_swarm_frozen", version="1.5")
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="1",
                    cache_volume=cache, workspace=workspace)
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    kc = km.client()
    kc.start_channels()
    loop = asyncio.get_running_loop()
    try:
        await kc.wait_for_ready(timeout=90)
        out, reply = await execute(kc, (
            f"%pip install -q --no-index --find-links {wheels} mlc_swarm_frozen==1.5\n"
            "%env MLC_ON_SWARM=yes\n"
            "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('NoNewPrivs')])"
        ), timeout=120)
        assert reply["status"] == "ok" and "['1']" in out, out
        # The user's names, without IPython's history (_i3, _, ___), which every execution moves.
        names = "print(sorted(k for k in globals() if not __import__('re').fullmatch(r'_+|_i+|_i?[0-9]+', k)))"
        before, _ = await execute(kc, names)

        service = MLContainerService(MLContainer())
        container = await loop.run_in_executor(None, service.container_of_kernel, km.kernel_id)
        assert container.backend is not service.engine  # found on the Swarm
        runtime_env = await asyncio.to_thread(kernel_environment, km.get_connection_info())
        with pytest.raises(FreezeError, match="frozen through its connection"):
            await loop.run_in_executor(None, lambda: service.freeze(container, runtime_env))
        result, _ = await loop.run_in_executor(None, lambda: service.freeze(
            container, runtime_env, connection_info=km.get_connection_info(), output_dir=os.path.join(workspace, "frozen")))
        assert result.packages == {"mlc-swarm-frozen": "1.5"}, result.packages  # installed on the worker
        assert "mlc-swarm-frozen==1.5" in result.requirements.splitlines()
        assert result.env == {"MLC_ON_SWARM": "yes"}, result.env  # not DOCKER_RESOURCE_*, not ours
        assert result.base_image == BASE_IMAGE
        assert any("were not checked" in w for w in result.warnings), result.warnings
        with open(os.path.join(workspace, "frozen", "Dockerfile")) as f:  # written on the shared storage
            assert 'ENV MLC_ON_SWARM="yes"' in f.read().splitlines()
        after, _ = await execute(kc, names)
        assert after == before  # freeze left nothing in the user's namespace
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    assert our_services(swarm, km.kernel_id) == []


async def test_the_panels_stop_reaches_a_swarm_kernel(engine, swarm, shared, jp_fetch, jp_serverapp):
    """The panel's Stop (DELETE /mlcontainer/api/kernels/<id>) on a Swarm kernel of this server:
    its service goes (the check that it is this server's kernel asked the local engine only, and
    answered 404); a kernel id the server does not know stays 404."""
    from tornado.httpclient import HTTPClientError

    workspace, cache = shared
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="none",
                    cache_volume=cache, workspace=workspace)
    # Started by the server's kernel manager in the shared workspace (its root is elsewhere).
    kernel_id = await jp_serverapp.kernel_manager.start_kernel(kernel_name=name, cwd=workspace)
    assert len(our_services(swarm, kernel_id)) == 1
    response = await jp_fetch("mlcontainer", "api", "kernels", kernel_id, method="DELETE")
    assert response.code == 204
    assert our_services(swarm, kernel_id) == [] and leftover_files(swarm) == []
    with pytest.raises(HTTPClientError) as again:
        await jp_fetch("mlcontainer", "api", "kernels", kernel_id, method="DELETE")
    assert again.value.code == 404


async def test_more_gpus_than_any_node_has_fail_the_start_clearly(engine, swarm, shared):
    workspace, cache = shared
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="3",
                    cache_volume=cache, workspace=workspace, placement_timeout="5")
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(Exception) as failed:
        await km.start_kernel(cwd=workspace)
    assert "No node of the cluster can take the kernel" in str(failed.value), failed.value
    assert "insufficient resources" in str(failed.value)
    client = swarm.client()
    try:
        assert client.api.services(filters={"label": f"org.jupyter.mlcontainer.kernel-name={name}"}) == []
    finally:
        client.close()
    assert leftover_files(swarm) == []


def _availability(swarm, node: str, availability: str) -> None:
    """Set a node's availability (drain: no new tasks there) through the manager."""
    client = swarm.client()
    try:
        (found,) = [n for n in client.api.nodes() if n["Description"]["Hostname"] == node]
        spec = dict(found["Spec"], Availability=availability)
        client.api.update_node(found["ID"], found["Version"]["Index"], spec)
    finally:
        client.close()


async def test_two_kernels_on_one_node_get_its_two_gpus_and_a_third_is_refused(engine, swarm, shared):
    """GPU placement without GPUs: with the second worker drained, two kernels asking for one GPU
    each land on the first worker (which advertises two), get different GPU ids, and each sees
    only its own as its visible device; a third finds no node with a free GPU and fails its start
    with the scheduler's reason, within the placement timeout. The drained node is "down" to
    the question of which nodes hold an image."""
    workspace, cache = shared
    worker_1, worker_2 = swarm.workers
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="1",
                    cache_volume=cache, workspace=workspace, placement_timeout="5")
    kernels: list[AsyncKernelManager] = []
    _availability(swarm, worker_2, "drain")
    try:
        seen = []
        for _ in range(2):
            km = AsyncKernelManager(kernel_name=name)
            await km.start_kernel(cwd=workspace)
            kernels.append(km)
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=90)
                out, reply = await execute(kc, "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))")
                assert reply["status"] == "ok", out
                seen.append(out.strip())
            finally:
                kc.stop_channels()
            assert kernel_task(swarm, km.kernel_id)[2] == worker_1
        assert sorted(seen) == sorted(swarm.nodes[worker_1].gpus), seen  # one each, never shared
        third = AsyncKernelManager(kernel_name=name)
        with pytest.raises(Exception) as refused:
            await third.start_kernel(cwd=workspace)
        assert "No node of the cluster can take the kernel within 5 s" in str(refused.value), refused.value
        # A drained node is not asked which images it holds: it takes no task.
        from jupyter_mlcontainer.engines.swarm import get_swarm
        from jupyter_mlcontainer.engines.swarm_images import image_on_nodes

        held = await asyncio.get_running_loop().run_in_executor(
            None, image_on_nodes, get_swarm(swarm.manager_url), BASE_IMAGE, "python3")
        assert held == {swarm.manager: "present", worker_1: "present", worker_2: "down"}, held
    finally:
        for km in kernels:
            await km.shutdown_kernel(now=True)
        _availability(swarm, worker_2, "active")
    assert our_services(swarm) == [] and leftover_files(swarm) == []


async def test_a_workspace_missing_on_the_node_fails_the_start_naming_node_and_path(engine, swarm, shared, tmp_path):
    """A notebook folder that is not on the cluster's shared storage (here: this host's own
    /tmp) fails the start at once, naming the node and the path, instead of a hang."""
    _, cache = shared
    workspace = str(tmp_path)
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="none",
                    cache_volume=cache, workspace=workspace)
    km = AsyncKernelManager(kernel_name=name)
    began = time.monotonic()
    with pytest.raises(Exception) as failed:
        await km.start_kernel(cwd=workspace)
    message = str(failed.value)
    assert f"{workspace} does not exist on Swarm node " in message and "shared storage" in message, message
    assert any(f"node {node}," in message for node in swarm.nodes), message
    assert time.monotonic() - began < 30
    assert our_services(swarm) == [] and leftover_files(swarm) == []


async def _exists(path: str) -> bool:
    return os.path.exists(path)


async def _dead(km) -> bool:
    return not await km.is_alive()


async def test_a_kernel_whose_node_dies_is_reported_dead_with_the_node(engine, swarm, shared):
    workspace, cache = shared
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="1",
                    cache_volume=cache, workspace=workspace)
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    service, task, node = kernel_task(swarm, km.kernel_id)
    try:
        swarm.stop_node(node, kill=True)  # as a server that loses power
        await until(lambda: _dead(km), timeout=60)
        from jupyter_mlcontainer.kernels.deaths import last_death

        death = last_death(km.kernel_id)
        assert death is not None and f"Swarm node {node}, where it ran, is down" in death.message(), death
    finally:
        await km.shutdown_kernel(now=True)
        swarm.start_node(node)
    assert our_services(swarm, km.kernel_id) == []


ORPHAN_MAKER = r"""
import asyncio, sys
from jupyter_client.manager import AsyncKernelManager

async def main():
    km = AsyncKernelManager(kernel_name=sys.argv[1])
    await km.start_kernel(cwd=sys.argv[2])
    print(km.kernel_id, flush=True)
    await asyncio.sleep(3600)  # killed with SIGKILL by the test

asyncio.run(main())
"""


async def test_the_services_of_a_killed_server_are_reaped_and_no_one_elses(engine, swarm, shared):
    import signal
    import subprocess
    import sys

    from jupyter_mlcontainer.service import MLContainerService
    from jupyter_mlcontainer.core.settings import MLContainer

    workspace, cache = shared
    name = add_spec(engine, BASE_IMAGE, placement="swarm", docker_host=swarm.manager_url,
                    transport_encryption="disabled", gpus="none",
                    cache_volume=cache, workspace=workspace)
    other = subprocess.Popen([sys.executable, "-c", ORPHAN_MAKER, name, workspace], stdout=subprocess.PIPE, text=True)
    km = AsyncKernelManager(kernel_name=name)
    try:
        orphan_kernel = other.stdout.readline().strip()
        assert len(our_services(swarm, orphan_kernel)) == 1
        other.send_signal(signal.SIGKILL)  # the server dies without shutting its kernel down
        other.wait()
        await km.start_kernel(cwd=workspace)  # this process's own: alive, never reaped
        service = MLContainerService(MLContainer())
        found = await asyncio.get_running_loop().run_in_executor(None, lambda: service.orphans(remove=False))
        assert [o.kernel_id for o in found if o.kernel_id in (orphan_kernel, km.kernel_id)] == [orphan_kernel]
        removed = await asyncio.get_running_loop().run_in_executor(None, lambda: service.orphans(remove=True))
        assert orphan_kernel in [o.kernel_id for o in removed]
        assert our_services(swarm, orphan_kernel) == [] and len(our_services(swarm, km.kernel_id)) == 1
    finally:
        if other.poll() is None:
            other.kill()
        await km.shutdown_kernel(now=True)
    assert leftover_files(swarm) == []


SWARM_USER_KERNEL = r"""
import asyncio, json, sys
from jupyter_client.manager import AsyncKernelManager
from jupyter_mlcontainer.engines.docker import get_engine
from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

async def main(workspace, image, manager):
    name = add_kernelspec(get_engine(), image, name="swarm-user", options={
        "placement": "swarm", "docker_host": manager, "gpus": "none", "workspace": workspace,
        "transport_encryption": "disabled"}).name
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=workspace)
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=90)
    out = []
    hook = lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
    await kc.execute_interactive(
        "import getpass, os; open('mine.txt', 'w').write('x'); print(getpass.getuser(), os.getuid(), os.environ['HOME'])",
        output_hook=hook, timeout=60)
    kc.stop_channels()
    await km.shutdown_kernel(now=True)
    print("RESULT " + json.dumps({"out": "".join(out).split()}), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def test_a_non_root_users_kernel_on_the_swarm_runs_as_that_user(engine, swarm):
    """A real user (mlctest) starts a Swarm kernel: it runs as the user's uid on the worker,
    knows the user's name (passwd and group travel as Swarm configs), and what it writes in the
    shared workspace is the user's."""
    from jupyter_mlcontainer.cache.volume import remove_cache_volume
    from jupyter_mlcontainer.engines.swarm import get_swarm

    from .box_users import TEST_USER, BoxUser, finished, package_site

    from jupyter_mlcontainer.cache.helper_image import helper_image

    site = package_site()
    volume = f"mlctest-swarm-user-{uuid.uuid4().hex[:6]}"
    user = BoxUser(TEST_USER, site, volume)
    # The user's server runs another Python than root's: on a Swarm, every server names the one
    # helper image the admin loaded on the nodes (docs/swarm.md), pinned by its id.
    user.env["MLCONTAINER_HELPER_IMAGE"] = helper_image(engine).image
    workspace = os.path.join(swarm.shared, f"user-{uuid.uuid4().hex[:8]}")
    os.makedirs(workspace)
    os.chown(workspace, user.pw.pw_uid, user.pw.pw_gid)
    try:
        run = finished(user.command(SWARM_USER_KERNEL, workspace, BASE_IMAGE, swarm.manager_url))
        assert run["out"] == [TEST_USER, str(user.pw.pw_uid), f"/opt/mlcontainer/cache/home/{TEST_USER}"], run
        assert os.stat(os.path.join(workspace, "mine.txt")).st_uid == user.pw.pw_uid
        assert leftover_files(swarm) == []  # the connection secret and the passwd/group configs
    finally:
        user.cleanup()
        shutil.rmtree(workspace, ignore_errors=True)
        shutil.rmtree(site, ignore_errors=True)
        remove_cache_volume(get_swarm(swarm.manager_url), volume)


def test_an_image_probe_on_the_swarm_runs_the_image_with_nothing_to_gain(swarm):
    """Issue 22, finding 11: the job that asks each node whether it holds an image runs that
    image's Python (anybody's code: its .pth files run too). It runs as nobody with every
    capability dropped, a read-only root, no mount, and memory and process limits."""
    from concurrent.futures import ThreadPoolExecutor

    from jupyter_mlcontainer.core.labels import LABEL_ROLE
    from jupyter_mlcontainer.engines.swarm import get_swarm
    from jupyter_mlcontainer.engines.swarm_images import ROLE_IMAGE_PROBE, image_on_nodes

    client = swarm.client()
    seen: list = []
    try:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(image_on_nodes, get_swarm(swarm.manager_url), BASE_IMAGE, "python3")
            while not seen and not answer.done():  # the job lives for the second it takes to answer
                seen = client.api.services(filters={"label": f"{LABEL_ROLE}={ROLE_IMAGE_PROBE}"})
            held = answer.result()
    finally:
        client.close()
    assert set(held.values()) == {"present"}, held
    assert seen, "the probe's job was never seen"
    task = seen[0]["Spec"]["TaskTemplate"]
    container = task["ContainerSpec"]
    assert (container["User"], container["CapabilityDrop"], container["ReadOnly"]) == ("65534:65534", ["ALL"], True), container
    assert not container.get("Mounts") and not container.get("Secrets"), container
    assert task["Resources"]["Limits"] == {"MemoryBytes": 64 << 20, "Pids": 16}, task["Resources"]
