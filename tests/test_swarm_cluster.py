"""The Swarm test cluster works (swarm_cluster.py, scripts/setup-swarm-cluster.sh).

One smoke test of the harness itself, not of the package: every node is Ready, a service pinned to
a worker with a reservation of one fake GPU runs there, is handed one of that worker's GPU ids, and
writes into the shared folder where the host sees the file. The cluster (conftest's ``swarm``)
is removed after the session (MLC_SWARM_KEEP=1 keeps it up for the next run: setting it up
again is then a few seconds).
"""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import time
import uuid

import docker

from .conftest import BASE_IMAGE
from .swarm_cluster import GPU_ENV, GPU_RESOURCE

LABEL = "org.jupyter.mlcontainer.swarm-test"


def _wait_task(service, timeout: float = 90) -> dict:
    """The service's one task once it has ended (complete, failed, rejected, ...)."""
    deadline = time.monotonic() + timeout
    tasks: list = []
    while time.monotonic() < deadline:
        tasks = service.tasks()
        if tasks and tasks[0]["Status"]["State"] in ("complete", "failed", "rejected", "shutdown", "orphaned"):
            return tasks[0]
        time.sleep(0.5)
    raise TimeoutError(f"the task did not end within {timeout} s: {[t['Status'] for t in tasks]}")


def test_a_gpu_task_runs_on_the_chosen_worker_and_writes_to_the_shared_folder(swarm):
    assert swarm.node_states() == {name: "ready" for name in swarm.nodes}
    assert len(swarm.workers) == 2

    worker = swarm.workers[-1]
    tag = uuid.uuid4().hex[:8]
    out = os.path.join(swarm.shared, f"smoke-{tag}.json")
    code = (
        "import json, os, socket; "
        f"json.dump({{'gpus': os.environ.get({GPU_ENV!r}), 'host': socket.gethostname()}}, open({out!r}, 'w'))"
    )
    client = swarm.client()
    service = None
    began = time.monotonic()
    try:
        service = client.services.create(
            BASE_IMAGE,
            ["python3", "-c", code],
            name=f"mlc-smoke-{tag}",
            labels={LABEL: "1"},
            constraints=[f"node.hostname=={worker}"],
            restart_policy=docker.types.RestartPolicy(condition="none"),
            resources=docker.types.Resources(generic_resources={GPU_RESOURCE: 1}),
            mounts=[docker.types.Mount(target=swarm.shared, source=swarm.shared, type="bind")],
        )
        task = _wait_task(service)
        ran = time.monotonic() - began
        assert task["Status"]["State"] == "complete", task["Status"]
        assert client.nodes.get(task["NodeID"]).attrs["Description"]["Hostname"] == worker

        with open(out, encoding="utf-8") as seen:  # written on the worker, read on the host
            result = json.load(seen)
        assert result["gpus"] in swarm.nodes[worker].gpus, result  # exactly one of the worker's
        assert result["host"] != worker  # a task container of the worker, not the node itself
        print(f"task on {worker} with {result['gpus']} ended in {ran:.1f} s")
    finally:
        try:
            if service is not None:
                service.remove()
            assert not client.services.list(filters={"name": f"mlc-smoke-{tag}"})
        finally:
            client.close()
            if os.path.exists(out):
                os.remove(out)


def test_the_nodes_engine_apis_are_root_and_the_docker_groups_only(swarm):
    """A node's engine API is root on that node (and the manager's, on the whole cluster): each is
    a unix socket of the host that only root and the docker group open, like the host engine's
    own; no node serves it on TCP, where every local user could reach the nodes' network. The
    TCP ports a node listens on are Swarm's own (2377 for managers, 7946 gossip), mutual TLS."""
    docker_gid = grp.getgrnam("docker").gr_gid
    for node in swarm.nodes.values():
        path = node.url.removeprefix("unix://")
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, st.st_gid) == (0, docker_gid), node
        assert stat.S_IMODE(st.st_mode) & 0o007 == 0, oct(st.st_mode)
        refused = subprocess.run(
            ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c",
             f"import socket; socket.socket(socket.AF_UNIX).connect({path!r})"],
            capture_output=True, text=True, timeout=30,
        )
        assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused.stderr
        listening = subprocess.run(["docker", "exec", node.name, "ss", "-Hltnp"], capture_output=True, text=True,
                                   timeout=30, check=True).stdout
        ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines() if "dockerd" in line}
        assert ports <= {"2377", "7946"}, listening
    client = docker.DockerClient(base_url=swarm.manager_url, timeout=10)
    try:
        assert client.info()["Swarm"]["ControlAvailable"] is True  # root (and the docker group) do reach it
    finally:
        client.close()
