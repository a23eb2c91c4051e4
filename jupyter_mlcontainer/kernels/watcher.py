"""One engine event stream per process tells every provisioner when its container dies.

jupyter_client's restarter calls ``poll()`` every 3 s for every kernel; asking the engine each
time costs one round trip per kernel per poll. Instead a single thread follows the engine's
``die``/``oom`` events for kernel containers and ``poll()`` reads a dict. While the stream is
down (engine restarting) :meth:`ContainerWatcher.healthy` is False and callers inspect instead.

The watcher is also the first to know when an engine that went away answers again: containers
that could not be removed while it was unreachable (:meth:`ContainerWatcher.remove_when_back`)
are removed then, so an engine restart leaves no stopped kernel container behind.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..core.labels import LABEL_ROLE
from ..engines.base import ContainerBackend
from .claims import forget_claim

log = logging.getLogger(__name__)


# Exits remembered for poll(): a kernel reads its own within seconds; older ones only matter
# until the provisioner forgets its container, so a bound keeps a long-lived server small.
KEEP_EXITS = 1024


@dataclass
class ExitEvent:
    exit_code: int
    oom: bool
    time: float


class ContainerWatcher:
    """Follows the engine's container events for kernel containers. Thread-safe."""

    def __init__(self, engine: ContainerBackend) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._exits: dict[str, ExitEvent] = {}
        self._oom: set[str] = set()
        self._thread: threading.Thread | None = None
        self._healthy = threading.Event()
        self._stop = threading.Event()
        self._since = time.time() - 1
        self._stream: Any = None
        self._to_remove: set[str] = set()

    def start(self) -> None:
        """Start following events (idempotent). Call before starting a container."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mlcontainer-events", daemon=True)
            self._thread.start()
        # Give the stream a moment to connect so the first poll() need not inspect.
        self._healthy.wait(timeout=2)

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    def exit_of(self, container_id: str) -> ExitEvent | None:
        """The container's exit, if the stream saw it die."""
        with self._lock:
            return self._exits.get(container_id)

    def forget(self, container_id: str) -> None:
        with self._lock:
            self._exits.pop(container_id, None)
            self._oom.discard(container_id)

    def remove_when_back(self, container_id: str) -> None:
        """Remove ``container_id`` as soon as the engine answers again (its removal failed
        because the engine was unreachable). Called by the provisioner's clean-up."""
        with self._lock:
            self._to_remove.add(container_id)

    def pending_removals(self) -> set[str]:
        with self._lock:
            return set(self._to_remove)

    def _remove_pending(self) -> None:
        for cid in self.pending_removals():
            try:
                self.engine.remove_container_sync(cid)
            except Exception as exc:  # engine gone again: the next connection retries
                log.warning("Could not remove kernel container %s left by an engine outage: %s", cid[:12], exc)
                return
            with self._lock:
                self._to_remove.discard(cid)
                self._exits.pop(cid, None)
            forget_claim(cid)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream = self.engine.events_stream(
                    since=self._since, events=["die", "oom"], labels=[f"{LABEL_ROLE}=kernel"]
                )
                self._stream = stream
                self._healthy.set()
                if self._to_remove:
                    self._remove_pending()
                for event in stream:
                    self._handle(event)
                    if self._stop.is_set():
                        break
            except Exception as exc:  # engine went away; poll() falls back to inspect
                if not self._stop.is_set():
                    log.debug("engine event stream interrupted: %s", exc)
            self._healthy.clear()
            self._stream = None
            if not self._stop.wait(1.0):
                continue

    def _handle(self, event: dict[str, Any]) -> None:
        action = event.get("Action") or event.get("status")
        cid = event.get("id") or (event.get("Actor") or {}).get("ID")
        if not cid:
            return
        stamp = event.get("timeNano", 0) / 1e9 or float(event.get("time", time.time()))
        # Replaying from `since` after a reconnect must not lose events; 1 s overlap is harmless.
        self._since = max(self._since, stamp - 1)
        with self._lock:
            if action == "oom":
                self._oom.add(cid)
            elif action == "die":
                attrs = (event.get("Actor") or {}).get("Attributes") or {}
                try:
                    code = int(attrs.get("exitCode", "-1"))
                except ValueError:
                    code = -1
                self._exits[cid] = ExitEvent(code, cid in self._oom, stamp)
                self._oom.discard(cid)
                while len(self._exits) > KEEP_EXITS:  # bounded: the oldest exits go first
                    self._exits.pop(next(iter(self._exits)))


_watchers: dict[int, ContainerWatcher] = {}
_watchers_lock = threading.Lock()


def get_watcher(engine: ContainerBackend) -> ContainerWatcher:
    """The process-wide watcher for ``engine`` (not started; call ``start()``)."""
    with _watchers_lock:
        watcher = _watchers.get(id(engine))
        if watcher is None:
            watcher = _watchers[id(engine)] = ContainerWatcher(engine)
        return watcher
