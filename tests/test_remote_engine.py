"""Kernels on an engine reached over TCP, as on another host (disposable_engine.py).

The private engine listens on the test bridge's address, not loopback, so the provisioner
treats it as remote: nothing of this host but the workspace may be assumed there. The
connection file and passwd entries are copied into the container (no bind mount of the
Jupyter runtime folder), the ports are published on the engine's address and reached there,
and a workspace that does not exist on the engine's host is refused with a message naming it.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from .conftest import BASE_IMAGE, add_spec, execute
from .disposable_engine import BRIDGE_ADDRESS, DisposableEngine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hidden_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("only-on-this-host")


@pytest.fixture(scope="module")
def remote_engine(tmp_path_factory, hidden_folder):
    """The engine "on another host", behind mutual TLS; this process is its client the way
    Docker's own tools are one: DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (ca, cert, key)."""
    saved = {name: os.environ.get(name) for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")}
    try:
        for engine in DisposableEngine.running(str(tmp_path_factory.mktemp("remote")), BASE_IMAGE,
                                               tcp_port=_free_port(), hidden=str(hidden_folder)):
            os.environ.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=engine.client_certs)
            yield engine
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def jp_server_config(workspace, remote_engine):
    return remote_engine.server_config(remote_engine.tcp_url)


async def test_a_kernel_on_an_engine_on_another_host(remote_engine, jp_fetch, jp_serverapp, workspace):
    from jupyter_mlcontainer.engines.docker import get_engine

    engine = get_engine(remote_engine.tcp_url)
    name = add_spec(engine, BASE_IMAGE, transport_encryption="disabled")  # ipykernel 6.17: in the clear, on purpose
    model = json.loads((await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name, "path": ""}))).body)
    km = jp_serverapp.kernel_manager.get_kernel(model["id"])
    info = km.get_connection_info()
    assert info["ip"] == BRIDGE_ADDRESS
    attrs = engine.inspect_container_sync(km.provisioner.container_id)
    # Nothing of this host is mounted but the workspace (and the engine's own cache volume).
    assert sorted((m["Type"], m["Destination"]) for m in attrs["Mounts"]) == sorted(
        [("bind", str(workspace)), ("volume", "/opt/mlcontainer/cache")])
    assert {b["HostIp"] for bindings in attrs["NetworkSettings"]["Ports"].values() for b in bindings} == {BRIDGE_ADDRESS}
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "import os, stat; st = os.stat('/run/mlcontainer/kernel.json'); "
                                       "open('remote.txt', 'w').write('hi'); print(oct(stat.S_IMODE(st.st_mode)), st.st_uid == os.getuid())")
        assert reply["status"] == "ok" and out.split() == ["0o600", "True"], out
        assert (workspace / "remote.txt").read_text() == "hi"
        await jp_fetch("api", "kernels", model["id"], "restart", method="POST", body="{}")
        assert km.get_connection_info()["shell_port"] == info["shell_port"]
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "print('again')")
        assert "again" in out
    finally:
        kc.stop_channels()
    status = json.loads((await jp_fetch("mlcontainer", "api", "status")).body)
    assert status["engine"]["address"] == remote_engine.tcp_url and status["engine"]["host"]
    await jp_fetch("api", "kernels", model["id"], method="DELETE")
    assert not engine.containers_sync([f"org.jupyter.mlcontainer.kernel-id={model['id']}"])


async def test_a_workspace_missing_on_the_engines_host_is_named(remote_engine, hidden_folder, monkeypatch):
    from jupyter_client.manager import AsyncKernelManager

    from jupyter_mlcontainer.engines.docker import get_engine

    monkeypatch.setenv("DOCKER_HOST", remote_engine.tcp_url)
    project = hidden_folder / "project"
    project.mkdir()
    engine = get_engine(remote_engine.tcp_url)
    km = AsyncKernelManager(kernel_name=add_spec(engine, BASE_IMAGE, workspace=str(project), transport_encryption="disabled"))
    with pytest.raises(Exception) as refused:
        await km.start_kernel(cwd=str(project))
    message = str(refused.value)
    assert f"{project} does not exist on the Docker engine's host ({remote_engine.tcp_url})" in message, message
    assert "shared storage" in message
    assert not [c for c in engine.our_containers_sync(role="kernel") if str(project) in json.dumps(c.get("Labels"))]


def test_the_engine_on_the_network_answers_only_its_certificate_holders(remote_engine):
    """Its TCP address is on a network other local users share: without TLS, or with TLS but no
    client certificate of its CA, nobody gets an answer; with the certificate, the package's own
    engine boundary (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) does, and a TLS set-up gone wrong (no
    TLS, no files, a certificate the engine refuses) is named as such."""
    import docker
    from docker.tls import TLSConfig

    from jupyter_mlcontainer.engines.docker import Engine

    from jupyter_mlcontainer.core.errors import EngineUnavailable

    ca = os.path.join(remote_engine.client_certs, "ca.pem")
    for tls in (False, TLSConfig(ca_cert=ca, verify=True)):
        client = docker.APIClient(base_url=remote_engine.tcp_url, tls=tls, timeout=10, version="1.41")
        with pytest.raises(Exception):
            client.ping()
        client.close()
    assert Engine(remote_engine.tcp_url).version_sync()
    # What a user set up wrong is said as such, not as "is dockerd running?".
    server_side = os.path.join(os.path.dirname(remote_engine.client_certs), "server-certs")
    for env, said in (
        ({"DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}, "speaks TLS: set DOCKER_TLS_VERIFY=1"),
        ({"DOCKER_CERT_PATH": os.path.dirname(remote_engine.client_certs)}, "has no ca.pem, cert.pem and key.pem"),
        ({"DOCKER_CERT_PATH": server_side}, "TLS with the Docker engine at"),  # the engine's own cert, as a client's
    ):
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            with pytest.raises(EngineUnavailable) as refused:
                Engine(remote_engine.tcp_url).version_sync()
            assert said in str(refused.value) and remote_engine.tcp_url in str(refused.value), refused.value
        finally:
            for name, value in saved.items():
                os.environ[name] = value  # the fixture set both
