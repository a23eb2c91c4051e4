"""A kernel's connection: its private folder, the connection file the kernel reads inside the
container, and the CurveZMQ keys that encrypt its traffic.

The provisioner calls these at each launch. Nothing here talks to the engine.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import zmq

from ..core.errors import ImageNotUsable
from ..core.policy import write_json_safely
from ..engines.base import CONNECTION_DIR_IN_CONTAINER
from ..images.probe import ImageFacts
from .container_spec import CONTAINER_PORTS

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
    runtime folder: never derived from the kernel manager's connection file (a temp path for
    standalone managers). It holds the connection file (with the kernel's key), the passwd/group
    files and, on the ipc transport, the kernel's sockets; the provisioner removes it.

    A runtime folder too deep for a Unix socket's 107 bytes would force the kernel onto TCP
    ports, which every local user reaches: the folder is then made where a socket fits instead,
    under $XDG_RUNTIME_DIR (this user's own) or /tmp, with a random name and mode 0700 (nobody
    else can enter it or guess it)."""
    from jupyter_core.paths import jupyter_runtime_dir

    prefix = f"mlcontainer-{kernel_id[:8]}-"
    runtime = jupyter_runtime_dir()
    sample = os.path.join(runtime, prefix + "x" * 8)
    if not ipc_fits(sample):
        for base in (os.environ.get("XDG_RUNTIME_DIR", ""), tempfile.gettempdir(), "/tmp"):
            if base and _private_or_sticky(base) and ipc_fits(os.path.join(base, prefix + "x" * 8)):
                return tempfile.mkdtemp(prefix=prefix, dir=base)
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=runtime)


def _private_or_sticky(folder: str) -> bool:
    """A folder where nobody else can remove or replace what this user makes in it: this user's
    own and writable by nobody else, or sticky (/tmp)."""
    import stat

    try:
        st = os.stat(folder)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if st.st_uid == os.getuid() and not st.st_mode & 0o022:
        return True
    return bool(st.st_mode & stat.S_ISVTX) and st.st_uid in (0, os.getuid())


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


def curve_keys(image: str, facts: ImageFacts, policy: str, manager: Any, shared_network: bool = False) -> dict[str, str]:
    """The CurveZMQ keypair for a kernel of ``image``, or {} when it runs unencrypted.

    ``policy`` is the provisioner's ``transport_encryption`` (auto, required, disabled); a kernel
    manager whose own policy is ``required`` makes it required. ``auto`` encrypts whenever the
    image's kernel can (the probe's ``curve``: ipykernel 7.4+ with a CURVE-enabled pyzmq), and
    on a ``shared_network`` (the kernel's ports published on another host's or a cluster's
    network) it is required: there only ``disabled`` runs a kernel in the clear. The kernel
    manager keeps the pair, as jupyter_client's local provisioner does: its clients use it, and
    a restart reuses it, so clients connected before the restart reconnect."""
    manager_policy = manager._transport_encryption_policy() if hasattr(manager, "_transport_encryption_policy") else "disabled"
    required = "required" in (policy, manager_policy)
    if policy == "disabled" and not required:
        return {}
    if not (facts.curve and zmq.has("curve")):
        why = "the server's policy requires it" if required else (
            "its ports are published on a network other machines share (an engine on another host, a Swarm), where "
            "anyone who reaches them would read its output")
        if required or shared_network:
            raise ImageNotUsable(
                f"The kernel of {image} cannot encrypt its traffic, and {why}: it needs ipykernel 7.4 or newer "
                f"(the image has {facts.ipykernel}) with a CURVE-enabled pyzmq"
                + ("" if zmq.has("curve") else ", and so does this server's pyzmq")
                + ("" if required else "; or accept it in the clear with the kernelspec option transport_encryption=disabled")
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
    from ..core.errors import EngineError

    published = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    ports = {}
    for field, port in CONTAINER_PORTS.items():
        bindings = published.get(f"{port}/tcp") or []
        chosen = [b for b in bindings if b.get("HostIp") in (address, "")]
        if not chosen:
            raise EngineError(f"The engine did not publish container port {port} on {address}")
        ports[field] = int(chosen[0]["HostPort"])
    return ports
