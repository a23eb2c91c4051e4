"""Which nodes of a Swarm hold an image: for the image rows of the panel and the REST API.

A manager lists only its own engine's images, and the nodes' engines are not reachable in
general. So the nodes are asked the way Swarm asks them anything: a **global job** (one task per
node, API 1.41) runs the image's Python with an empty program, as ``nobody``, with no mounts, and
each node's first answer says it. The image is named by the manager's image **id**, so "present"
means the very image the manager has (a kernel from this tag runs the same build there), and a
node with another build under the tag says "missing", as one with none does:

* ``present``: the task completed;
* ``missing``: the node rejected it for want of the image (``No such image``);
* ``down``: the node is not ready or not active (drained, paused): not asked;
* ``unknown: ...``: any other answer, or none within the timeout.

A probe costs one short container per node (~0.7 s in all on the test cluster). The service
layer asks through :class:`NodeImages`, which answers from a cache and refreshes in the
background, so listing images never waits for a cluster.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from docker.types import ContainerSpec as SwarmContainerSpec
from docker.types import ServiceMode

from ..core.errors import ContainerNotFound, EngineError, ImageNotFound
from ..core.labels import LABEL_ROLE
from .swarm_spec import helper_task

log = logging.getLogger(__name__)

ROLE_IMAGE_PROBE = "image-probe"
PROBE_PREFIX = "mlc-image-probe-"
NOBODY = "65534:65534"
PRESENT, MISSING, DOWN = "present", "missing", "down"


def image_on_nodes(backend: Any, image: str, python: str, timeout: float = 30.0) -> dict[str, str]:
    """hostname -> state (see the module's docstring) for every node of the Swarm whose manager
    ``backend`` (a :class:`~.swarm.SwarmBackend`) talks to. Blocking: a few seconds."""
    api = backend.api
    try:
        reference = backend.inspect_image_sync(image)["Id"]
    except ImageNotFound:
        reference = image  # not on the manager: the nodes may still have it, under the tag
    states: dict[str, str] = {}
    hostnames: dict[str, str] = {}
    for node in backend.call_sync(api.nodes):
        hostname = node["Description"]["Hostname"]
        if node["Status"].get("State") == "ready" and node["Spec"].get("Availability") == "active":
            hostnames[node["ID"]] = hostname
        else:
            states[hostname] = DOWN
    _remove_stale_probes(backend)
    # The image is anybody's: its Python runs (an empty program, but its .pth files too) as
    # nobody, with every capability dropped, read-only, no mount, 64 MB and 16 processes.
    template = helper_task(
        SwarmContainerSpec(reference, command=[python, "-c", ""], user=NOBODY, labels={LABEL_ROLE: ROLE_IMAGE_PROBE},
                           cap_drop=["ALL"], read_only=True),
        memory="64m", pids=16, restart="none",
    )
    service_id = backend.call_sync(lambda: api.create_service(
        template, name=f"{PROBE_PREFIX}{uuid.uuid4().hex[:10]}", mode=ServiceMode("global-job"),
        labels={LABEL_ROLE: ROLE_IMAGE_PROBE},
    ))["ID"]
    try:
        deadline = time.monotonic() + timeout
        answered: dict[str, str] = {}
        while len(answered) < len(hostnames) and time.monotonic() < deadline:
            for task in backend.call_sync(lambda: api.tasks(filters={"service": service_id})):
                node_id = task.get("NodeID", "")
                if node_id in hostnames and node_id not in answered:
                    state = _answer(task["Status"])
                    if state:
                        answered[node_id] = state
            if len(answered) < len(hostnames):
                time.sleep(0.2)
    finally:
        _remove_probe(backend, service_id)  # if that fails, the next probe removes it as stale
    for node_id, hostname in hostnames.items():
        states[hostname] = answered.get(node_id, f"unknown: no answer within {timeout:.0f} s")
    return dict(sorted(states.items()))


def _answer(status: dict[str, Any]) -> str:
    """A node's answer from its task's status; "" while it has none yet."""
    state, error = status.get("State", ""), status.get("Err") or ""
    if state == "complete":
        return PRESENT
    if state in ("rejected", "failed", "shutdown", "orphaned"):
        return MISSING if "No such image" in error else f"unknown: {error or state}"
    return ""


def _remove_stale_probes(backend: Any, age: float = 600.0) -> None:
    """Probe services a crashed server left (a probe removes its own at once)."""
    api = backend.api
    now = time.time()
    for service in backend.call_sync(lambda: api.services(filters={"label": f"{LABEL_ROLE}={ROLE_IMAGE_PROBE}"})):
        created = _seconds(service.get("CreatedAt", ""))
        if created and now - created > age:
            _remove_probe(backend, service["ID"])


def _remove_probe(backend: Any, service_id: str) -> None:
    try:
        backend.call_sync(lambda: backend.api.remove_service(service_id))
    except (ContainerNotFound, EngineError):
        pass  # gone already, or the manager not answering


def _seconds(stamp: str) -> float:
    """Unix seconds of a Swarm timestamp (RFC 3339 with nanoseconds); 0 when unreadable."""
    try:
        return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0


@dataclass
class _Entry:
    states: dict[str, str] | None = None  # None: never answered yet
    checked: float = 0.0  # monotonic time of the last answer
    running: bool = False
    error: str = ""


@dataclass
class NodeImages:
    """A cache of :func:`image_on_nodes` per (manager, image), refreshed in the background once
    older than ``max_age`` seconds. Thread-safe; :meth:`states` never blocks on a cluster."""

    max_age: float = 120.0
    retry_after: float = 15.0
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # One probe at a time per Swarm: a first look at many images queues them rather than
    # starting a container per image on every node at once.
    _one_at_a_time: dict[str, threading.Lock] = field(default_factory=dict)

    def states(self, backend: Any, image: str, python: str) -> dict[str, Any]:
        """``{"state": "checking"}`` until the first answer, then ``{"state": "done", "nodes":
        {hostname: state}, "age": seconds}`` (or ``"error"`` with the reason); starts a
        refresh when the answer is old."""
        key = (backend.address, image)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            # A cluster that failed to answer is asked again after a short while, not at every look.
            wait = self.max_age if entry.states is not None else (self.retry_after if entry.error else 0.0)
            stale = not entry.checked or time.monotonic() - entry.checked > wait
            if stale and not entry.running:
                entry.running = True
                turn = self._one_at_a_time.setdefault(backend.address, threading.Lock())
                threading.Thread(target=self._refresh, args=(entry, turn, backend, image, python),
                                 name="mlcontainer-node-images", daemon=True).start()
            if entry.states is None:
                return {"state": "error", "error": entry.error} if entry.error else {"state": "checking"}
            return {"state": "done", "nodes": dict(entry.states), "age": round(time.monotonic() - entry.checked)}

    @staticmethod
    def _refresh(entry: _Entry, turn: threading.Lock, backend: Any, image: str, python: str) -> None:
        try:
            with turn:
                states = image_on_nodes(backend, image, python)
            entry.states, entry.error = states, ""
        except Exception as exc:  # a background thread: the answer carries the reason
            entry.error = str(exc) or type(exc).__name__
            if not isinstance(exc, EngineError):
                log.warning("Asking the Swarm at %s which nodes hold %s failed", backend.address, image, exc_info=True)
        finally:
            entry.checked = time.monotonic()
            entry.running = False


_NODE_IMAGES = NodeImages()


def node_images() -> NodeImages:
    """The process-wide cache (the server's image list and the CLI share it)."""
    return _NODE_IMAGES
