"""Which variables the docker SDK sees for an engine address (engines/docker_client.py)."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.engines.docker_client import _sdk_environment

TLS = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/home/u/.docker/gpu-box"}


@pytest.mark.parametrize("base_url, docker_host, expect_host, tls", [
    ("tcp://gpu-box:2376", "", "tcp://gpu-box:2376", True),  # a kernelspec's docker_host: TLS as the CLI's
    ("", "tcp://gpu-box:2376", "tcp://gpu-box:2376", True),
    ("unix:///run/user/1000/docker.sock", "tcp://gpu-box:2376", "unix:///run/user/1000/docker.sock", False),
    ("ssh://me@gpu-box", "", "ssh://me@gpu-box", False),
    ("", "", None, False),  # the local socket: no TLS, whatever the variables say
])
def test_tls_variables_go_with_tcp_addresses_only(monkeypatch, base_url, docker_host, expect_host, tls):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    if docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    for name, value in TLS.items():
        monkeypatch.setenv(name, value)
    env = _sdk_environment(base_url)
    assert env.get("DOCKER_HOST") == expect_host
    assert all((env.get(name) == value) == tls for name, value in TLS.items())
