"""Is a kernel in a container ready to take messages? Asked through its published ports (or,
on the ipc transport, its Unix sockets).

The provisioner calls :func:`wait_for_kernel_ports` after the container has started, so that
``launch_kernel`` returns only once every port of the connection file has a ZeroMQ socket
behind it. Why not simply connect: the engine's port proxy (docker-proxy, rootlessport)
accepts a TCP connection on a published port before anything listens in the container, then
drops it together with what the client sent, so a client that connects too early loses its
first ``kernel_info`` request and waits a full retry interval.

The test asks for the peer's ZMTP greeting: every ZeroMQ socket, of any type, sends the 10-byte
signature (``0xFF``, 8 bytes, ``0x7F``) as soon as a TCP connection reaches it, before any
security handshake. A proxy with nothing behind it closes the connection instead. So the test
needs nothing from the kernel beyond binding the ports in its connection file: any ipykernel
version, any other Jupyter kernel, with or without CurveZMQ. The probe connection is closed
before the handshake, which ZeroMQ sockets ignore.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

ZMTP_SIGNATURE_LENGTH = 10


def _connect(host: str, port: int, timeout: float, transport: str) -> socket.socket:
    if transport == "ipc":  # Jupyter's ipc endpoint: the Unix socket <ip>-<port>
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(f"{host}-{port}")
        except BaseException:
            conn.close()
            raise
        return conn
    return socket.create_connection((host, port), timeout=timeout)


def zmq_socket_answers(host: str, port: int, timeout: float = 1.0, transport: str = "tcp") -> bool:
    """True when a ZeroMQ socket (not just a port proxy) answers on ``host:port`` (on the ipc
    transport: the Unix socket ``host-port``, which exists once the kernel bound it)."""
    try:
        with _connect(host, port, timeout, transport) as conn:
            conn.settimeout(timeout)
            greeting = b""
            while len(greeting) < ZMTP_SIGNATURE_LENGTH:
                chunk = conn.recv(ZMTP_SIGNATURE_LENGTH - len(greeting))
                if not chunk:
                    return False  # closed: a proxy with no listener behind it
                greeting += chunk
    except OSError:  # refused, reset or timed out: nothing is listening yet
        return False
    return greeting[0] == 0xFF and greeting[-1] == 0x7F


class KernelNotReady(Exception):
    """The kernel's ports did not all answer within the start-up timeout."""

    def __init__(self, missing: list[str], waited: float) -> None:
        self.missing = missing
        self.waited = waited
        super().__init__(f"no ZeroMQ socket on {', '.join(missing)} after {waited:.0f} s")


def wait_for_kernel_ports(
    host: str,
    ports: dict[str, int],
    *,
    timeout: float,
    gone: Callable[[], bool],
    interval: float | None = None,
    transport: str = "tcp",
) -> float:
    """Block until every port in ``ports`` (name -> host port) answers; return the seconds waited.
    Asked every ``interval`` s: by default 2 ms on Unix sockets (a refused connect costs next to
    nothing), 10 ms through published ports (each probe is a connection through the port proxy).

    ``gone`` is asked between rounds and ends the wait early (returns) when the kernel's
    container has exited, so the caller can report why. Raises :class:`KernelNotReady` when
    ``timeout`` passes with ports still silent.
    """
    if interval is None:
        interval = 0.002 if transport == "ipc" else 0.01
    started = time.monotonic()
    pending = dict(ports)
    while pending:
        for name, port in list(pending.items()):
            if zmq_socket_answers(host, port, transport=transport):
                del pending[name]
        if not pending or gone():
            break
        waited = time.monotonic() - started
        if waited > timeout:
            raise KernelNotReady(sorted(pending), waited)
        time.sleep(interval)
    return time.monotonic() - started
