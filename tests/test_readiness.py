"""Readiness through published ports, without Docker: a ZeroMQ socket answers the probe, a port
proxy with nothing behind it (what docker-proxy is before the kernel binds) does not."""

from __future__ import annotations

import socket
import threading

import pytest
import zmq

from jupyter_mlcontainer.kernels.readiness import KernelNotReady, wait_for_kernel_ports, zmq_socket_answers


@pytest.fixture
def zmq_context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_without_backend() -> tuple[int, threading.Thread, socket.socket]:
    """Accepts connections and closes them at once, as docker-proxy does while the container's
    port has no listener."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, server


@pytest.mark.parametrize("kind", [zmq.ROUTER, zmq.PUB, zmq.REP])
def test_a_zmq_socket_of_any_type_answers(zmq_context, kind):
    sock = zmq_context.socket(kind)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    assert zmq_socket_answers("127.0.0.1", port)
    sock.close(linger=0)


def test_curve_sockets_answer_too(zmq_context):
    public, secret = zmq.curve_keypair()
    sock = zmq_context.socket(zmq.ROUTER)
    sock.curve_server, sock.curve_secretkey = True, secret
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    assert zmq_socket_answers("127.0.0.1", port)
    sock.close(linger=0)


def test_a_proxy_with_nothing_behind_it_and_a_closed_port_do_not():
    port, _thread, server = proxy_without_backend()
    try:
        assert not zmq_socket_answers("127.0.0.1", port)
    finally:
        server.close()
    assert not zmq_socket_answers("127.0.0.1", free_port())


def test_wait_returns_once_every_port_answers(zmq_context):
    ports = {name: free_port() for name in ("shell_port", "iopub_port", "hb_port")}
    sockets = []

    def bind_after_first_round() -> bool:
        # Called between probe rounds: the first round found nothing; now the "kernel" binds.
        if not sockets:
            for port in ports.values():
                sock = zmq_context.socket(zmq.ROUTER)
                sock.bind(f"tcp://127.0.0.1:{port}")
                sockets.append(sock)
        return False

    wait_for_kernel_ports("127.0.0.1", ports, timeout=30, gone=bind_after_first_round)
    assert len(sockets) == 3
    for sock in sockets:
        sock.close(linger=0)


def test_wait_gives_up_with_the_silent_ports_or_when_the_kernel_is_gone(zmq_context):
    sock = zmq_context.socket(zmq.ROUTER)
    bound = sock.bind_to_random_port("tcp://127.0.0.1")
    port, _thread, server = proxy_without_backend()
    try:
        with pytest.raises(KernelNotReady) as info:
            wait_for_kernel_ports("127.0.0.1", {"shell_port": bound, "hb_port": port}, timeout=0.2, gone=lambda: False)
        assert info.value.missing == ["hb_port"]
        calls = []
        wait_for_kernel_ports("127.0.0.1", {"hb_port": port}, timeout=30, gone=lambda: calls.append(1) or True)
        assert calls == [1]
    finally:
        server.close()
        sock.close(linger=0)
