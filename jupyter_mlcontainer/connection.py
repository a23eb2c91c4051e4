"""A kernel's connection: its private folder, the connection file the kernel reads inside the
container, and the CurveZMQ keys that encrypt its traffic.

The provisioner calls these at each launch. Nothing here talks to the engine.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import zmq

from .container_spec import CONNECTION_DIR_IN_CONTAINER, CONTAINER_PORTS
from .images import ImageFacts, ImageNotUsable
from .policy import write_json_safely

CONNECTION_FILE = "kernel.json"
# On the ipc transport the kernel binds Unix sockets <folder>/zmq-<port> in its private folder,
# which the container shares with this host: no TCP port at all, so no other user of the host
# (nor any container) reaches the kernel, encrypted or not, and no port is published, which
# takes the engine ~0.06 s per start (docker-proxy for five ports).
IPC_SOCKETS = "zmq"
_SUN_PATH_MAX = 107  # bytes in a Unix socket's address, Linux's sockaddr_un less its NUL


def ipc_base(folder: str) -> str:
    """The ``ip`` of a connection on the ipc transport: the sockets are ``<ip>-<port>``."""
    return os.path.join(folder, IPC_SOCKETS)


def ipc_fits(folder: str) -> bool:
    """Whether the kernel's sockets in ``folder`` have paths a Unix socket can take (both ends:
    this host's path of the folder and the container's)."""
    longest = max(len(os.fsencode(ipc_base(f))) for f in (folder, CONNECTION_DIR_IN_CONTAINER))
    return longest + 1 + len(str(max(CONTAINER_PORTS.values()))) <= _SUN_PATH_MAX


def new_connection_dir(kernel_id: str) -> str:
    """A new private (0700) folder for one launch of ``kernel_id``, in this user's Jupyter
    runtime folder: never a folder shared with other users, never derived from the kernel
    manager's connection file (a temp path for standalone managers). It holds the connection
    file (with the kernel's key) and the passwd/group files; the provisioner removes it."""
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"mlcontainer-{kernel_id[:8]}-", dir=runtime)


def write_connection_file(
    folder: str, *, key: bytes, signature_scheme: str, kernel_name: str, curve: dict[str, str], transport: str = "tcp",
) -> str:
    """The connection file the kernel reads in the container: on ``tcp`` the fixed container
    ports on all its interfaces (the engine publishes them on 127.0.0.1), on ``ipc`` sockets in
    the connection folder as the container sees it; Jupyter's key, and the CurveZMQ keys when
    encrypted. Mode 0600: it holds the keys."""
    path = os.path.join(folder, CONNECTION_FILE)
    where = {"ip": ipc_base(CONNECTION_DIR_IN_CONTAINER), "transport": "ipc"} if transport == "ipc" else {
        "ip": "0.0.0.0", "transport": "tcp"}
    write_json_safely(path, {
        **CONTAINER_PORTS, **where, "key": key.decode(),
        "signature_scheme": signature_scheme, "kernel_name": kernel_name, **curve,
    }, 0o600)
    return path


def curve_keys(image: str, facts: ImageFacts, policy: str, manager: Any) -> dict[str, str]:
    """The CurveZMQ keypair for a kernel of ``image``, or {} when it runs unencrypted.

    ``policy`` is the provisioner's ``transport_encryption`` (auto, required, disabled); a kernel
    manager whose own policy is ``required`` makes it required. ``auto`` encrypts whenever the
    image's kernel can (the probe's ``curve``: ipykernel 7.4+ with a CURVE-enabled pyzmq). The
    kernel manager keeps the pair, as jupyter_client's local provisioner does: its clients use
    it, and a restart reuses it, so clients connected before the restart reconnect."""
    manager_policy = manager._transport_encryption_policy() if hasattr(manager, "_transport_encryption_policy") else "disabled"
    required = "required" in (policy, manager_policy)
    if policy == "disabled" and not required:
        return {}
    if not (facts.curve and zmq.has("curve")):
        if required:
            raise ImageNotUsable(
                f"Transport encryption is required, but the kernel of {image} cannot encrypt: it "
                f"needs ipykernel 7.4 or newer (the image has {facts.ipykernel}) with a CURVE-enabled "
                "pyzmq" + ("" if zmq.has("curve") else ", and so does this server's pyzmq")
            )
        return {}
    if manager is None:
        public, secret = zmq.curve_keypair()
    else:
        if manager.curve_publickey is None or manager.curve_secretkey is None:
            manager.curve_publickey, manager.curve_secretkey = zmq.curve_keypair()
        public, secret = manager.curve_publickey, manager.curve_secretkey
    return {"curve_publickey": public.decode("ascii"), "curve_secretkey": secret.decode("ascii")}


def published_ports(attrs: dict[str, Any], address: str = "127.0.0.1") -> dict[str, int]:
    """The host ports the engine published for the kernel's five ports (from the container's
    inspect data), on ``address``; an error when one is missing."""
    from .errors import EngineError

    published = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    ports = {}
    for field, port in CONTAINER_PORTS.items():
        bindings = published.get(f"{port}/tcp") or []
        chosen = [b for b in bindings if b.get("HostIp") in (address, "")]
        if not chosen:
            raise EngineError(f"The engine did not publish container port {port} on {address}")
        ports[field] = int(chosen[0]["HostPort"])
    return ports
