"""The warm pool: kernel containers started ahead of their kernels, so a start claims one.

A cold start waits for the engine to start a container (~0.2 s) and for the image's Python to
import ipykernel and IPython (~0.3 s). A *spare* has done both: it is the container a start of
its kernelspec would create (same image, mounts, user, limits, GPUs, network, labels but the
kernel's id), running :data:`~.bootstrap.SPARE_BOOTSTRAP`, blocked on a FIFO in its
private folder. The provisioner's launch builds its container spec as for a cold start; when a
valid spare of the same *template* waits, it writes the connection file into the spare's folder
and the per-kernel part (environment, working directory, argv) into the FIFO, and records the
claim (claims.py); otherwise the cold path runs as before. A pool never makes a start fail.

Valid means: made from the same template (the spec with what differs per kernel left out:
any change to the kernelspec or the provisioner's settings changes it), from the image the tag
names now (a rebuilt tag leaves old spares unused), still running on an engine that answers
(an engine restart takes spares down with it). Spares hold no GPU context: nothing in them
imports a GPU library before the claim.

Policy: after each start of a kernelspec (cold or warm) its template is kept and the pool is
topped up to ``size`` spares in the background; a template unused for ``idle_timeout`` seconds
loses its spares. Spares carry this process's owner label: they go at exit (atexit), and the
orphan reaper removes those of a process that died. One pool per engine and process.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import threading
import time
import uuid
from typing import Any

from ..core.errors import EngineError, EngineUnavailable
from ..core.labels import LABEL_KERNEL_ID, LABEL_KERNEL_NAME, LABEL_SPARE
from ..core.policy import write_text_safely
from ..engines.base import CONNECTION_DIR_IN_CONTAINER, ContainerBackend, ContainerSpec
from .bootstrap import SPARE_BOOTSTRAP
from .claims import forget_claim
from .connection import new_connection_dir, published_ports
from .container_spec import CONTAINER_PORTS
from .exit_watch import first_pid
from .spares import CLAIM_FIFO, Spare, Template, per_kernel, write_claim

log = logging.getLogger(__name__)

# A young spare may still be importing when it is claimed: wait this long for it to listen.
WARMING_WAIT = 5.0


class WarmPool:
    """The spares of one engine in this process. Thread-safe; blocking methods run in threads."""

    def __init__(self, engine: ContainerBackend) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._templates: dict[str, Template] = {}  # key -> template
        self._wanted: dict[str, int] = {}  # key -> pool size
        self._used: dict[str, float] = {}  # key -> last start (monotonic)
        self._idle: dict[str, float] = {}  # key -> idle timeout
        self._by_name: dict[str, str] = {}  # container name prefix (kernelspec) -> current key
        self._spares: dict[str, list[Spare]] = {}
        self._making: set[str] = set()
        self._expiry: threading.Thread | None = None

    # -- the provisioner's side -----------------------------------------------------------

    def claim(self, key: str, image_id: str) -> Spare | None:
        """A valid spare of template ``key`` (removed from the pool), or None. Blocking: it
        checks that the spare still runs and waits briefly for one still warming up."""
        while True:
            with self._lock:
                spares = self._spares.get(key) or []
                spare = spares.pop(0) if spares else None
            if spare is None:
                return None
            if spare.image_id != image_id:
                log.info("Warm pool: spare %s was made from an older image; discarded", spare.container_id[:12])
                self._discard(spare)
                continue
            if self._ready(spare):
                return spare
            self._discard(spare)

    def hand_over(self, spare: Spare, claim: dict[str, Any]) -> None:
        """Write the per-kernel part into the spare's FIFO (the connection file is already in
        its folder); the spare then runs the kernel. Raises OSError if the spare is not listening."""
        write_claim(os.path.join(spare.conn_dir, CLAIM_FIFO), claim)

    def offer(self, template: Template, size: int, idle_timeout: float) -> None:
        """After a start of ``template``'s kernelspec: keep the template and top the pool up to
        ``size`` spares in the background (0: drop its spares). Spares of an older template of
        the same kernelspec (its config changed) are discarded."""
        name = template.spec.labels.get(LABEL_KERNEL_NAME, "") or template.key
        stale: list[Spare] = []
        with self._lock:
            previous = self._by_name.get(name)
            if previous and previous != template.key:
                stale = self._spares.pop(previous, [])
                self._drop_template(previous)
            self._by_name[name] = template.key
            self._templates[template.key] = template
            self._wanted[template.key] = size
            self._idle[template.key] = idle_timeout
            self._used[template.key] = time.monotonic()
            if self._expiry is None:
                self._expiry = threading.Thread(target=self._expire_forever, name="mlcontainer-pool-expiry", daemon=True)
                self._expiry.start()
        for spare in stale:
            log.info("Warm pool: kernelspec %s changed; spare %s discarded", name, spare.container_id[:12])
            self._discard(spare)
        self._top_up_later(template.key)

    def forget(self, kernelspec: str | None = None, container_id: str | None = None) -> None:
        """Drop the spares of ``kernelspec`` (removed), or one spare (its image is going)."""
        dropped: list[Spare] = []
        with self._lock:
            if kernelspec is not None:
                key = self._by_name.get(kernelspec)
                if key:
                    dropped += self._spares.pop(key, [])
                    self._drop_template(key)
            if container_id is not None:
                for spares in self._spares.values():
                    dropped += [s for s in spares if s.container_id == container_id]
                    spares[:] = [s for s in spares if s.container_id != container_id]
        for spare in dropped:
            self._discard(spare)

    def _drop_template(self, key: str) -> None:
        """Forget template ``key`` (its spares are taken out by the caller). Under the lock."""
        for table in (self._templates, self._wanted, self._used, self._idle):
            table.pop(key, None)
        for name in [n for n, k in self._by_name.items() if k == key]:
            del self._by_name[name]

    # -- status ---------------------------------------------------------------------------

    def spares(self) -> list[Spare]:
        with self._lock:
            return [s for spares in self._spares.values() for s in spares]

    def describe(self) -> list[dict[str, Any]]:
        """Spares for the panel and the status endpoint."""
        with self._lock:
            rows = []
            for key, spares in self._spares.items():
                template = self._templates.get(key)
                for spare in spares:
                    rows.append({
                        "container_id": spare.container_id,
                        "kernelspec": template.spec.labels.get(LABEL_KERNEL_NAME) if template else None,
                        "image": template.spec.image if template else None,
                        "age_s": round(time.monotonic() - spare.created, 1),
                    })
            return rows

    # -- making and removing spares ---------------------------------------------------------

    def _top_up_later(self, key: str) -> None:
        with self._lock:
            if key in self._making:
                return
            self._making.add(key)
        threading.Thread(target=self._top_up, args=(key,), name="mlcontainer-pool", daemon=True).start()

    def _top_up(self, key: str) -> None:
        try:
            while True:
                with self._lock:
                    template = self._templates.get(key)
                    missing = (self._wanted.get(key, 0) - len(self._spares.get(key, []))) if template else 0
                if missing <= 0 or template is None:
                    return
                try:
                    spare = self._make(template)
                except Exception as exc:  # a pool never makes a start fail: cold starts go on
                    log.warning("Warm pool: could not make a spare for %s: %s", template.spec.image, exc)
                    return
                with self._lock:
                    if self._templates.get(key) is template:
                        self._spares.setdefault(key, []).append(spare)
                        spare = None
                if spare is not None:  # its template changed meanwhile
                    self._discard(spare)
        finally:
            with self._lock:
                self._making.discard(key)

    def _make(self, template: Template) -> Spare:
        from ..core.names import slug

        spec = template.spec
        conn_dir = new_connection_dir("spare")
        try:
            mounts = []
            for mount in spec.mounts:
                if mount.target == CONNECTION_DIR_IN_CONTAINER:
                    mount = dataclasses.replace(mount, source=conn_dir)
                elif mount.target in template.files:
                    path = os.path.join(conn_dir, os.path.basename(mount.target))
                    write_text_safely(path, template.files[mount.target], 0o644)
                    mount = dataclasses.replace(mount, source=path)
                mounts.append(mount)
            env = {k: v for k, v in spec.env.items() if not per_kernel(k)}
            labels = {**spec.labels, LABEL_KERNEL_ID: "", LABEL_SPARE: template.key}
            spare_spec = dataclasses.replace(
                spec, name=f"mlc-spare-{slug(spec.image)[:40]}-{uuid.uuid4().hex[:8]}",
                entrypoint=[(spec.entrypoint or ["python3"])[0], "-c", SPARE_BOOTSTRAP],
                env=env, labels=labels, mounts=mounts, working_dir=template.workspace,
                ports=dict.fromkeys(spec.ports),
            )
            attrs = _create_unless_exiting(self.engine, spare_spec, conn_dir)
        except BaseException:
            shutil.rmtree(conn_dir, ignore_errors=True)
            raise
        cid = attrs["Id"]
        try:
            ports = published_ports(attrs) if spec.ports else dict(CONTAINER_PORTS)  # ipc: in its folder
        except EngineError:
            self._discard(Spare(cid, conn_dir, {}, template.image_id, template.key))
            raise
        log.debug("Warm pool: spare %s ready for %s", cid[:12], spec.image)
        return Spare(cid, conn_dir, ports, template.image_id, template.key, pid=first_pid(attrs.get("State") or {}))

    def _ready(self, spare: Spare) -> bool:
        """Is the spare running and waiting on its FIFO (waiting up to WARMING_WAIT s for a
        young one still importing)? Blocking."""
        from .watcher import get_watcher

        if get_watcher(self.engine).exit_of(spare.container_id) is not None:
            return False
        try:
            state = self.engine.container_state_sync(spare.container_id) or {}
        except EngineError:
            return False
        if not state.get("Running"):
            return False
        fifo = os.path.join(spare.conn_dir, CLAIM_FIFO)
        deadline = time.monotonic() + WARMING_WAIT
        while not os.path.exists(fifo):  # made right before it blocks reading it
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _discard(self, spare: Spare) -> None:
        discard_spare(self.engine, spare.container_id, spare.conn_dir)

    def expire(self) -> None:
        """Drop the spares of templates unused for their idle timeout (called periodically)."""
        now = time.monotonic()
        expired: list[Spare] = []
        with self._lock:
            for key in list(self._templates):
                if now - self._used.get(key, now) > self._idle.get(key, 3600):
                    expired += self._spares.pop(key, [])
                    self._drop_template(key)
        for spare in expired:
            self._discard(spare)

    def _expire_forever(self) -> None:
        while True:
            with self._lock:
                shortest = min(self._idle.values(), default=3600)
            time.sleep(max(1.0, min(60.0, shortest / 4)))
            try:
                self.expire()
            except Exception as exc:  # keep expiring; a failed removal is retried next round
                log.warning("Warm pool: expiring spares failed: %s", exc)

    def close(self) -> None:
        """Remove every spare (server exit)."""
        with self._lock:
            spares = [s for spares in self._spares.values() for s in spares]
            self._spares.clear()
            self._templates.clear()
        for spare in spares:
            self._discard(spare)


# Spares this process made and has not removed: removed at exit, like the provisioner's kernels.
_LIVE_SPARES: dict[str, tuple[ContainerBackend, str]] = {}
# Spares being created: exit waits for them (a container the engine creates after this process
# is gone would wait for the orphan reaper); no new one starts once exit began.
_making = threading.Condition()
_in_flight = 0
_exiting = False


def discard_spare(engine: ContainerBackend, container_id: str, conn_dir: str) -> None:
    """Remove a spare (not handed out, expired, or at exit); an engine that does not answer
    removes it when it is back (the watcher)."""
    from .watcher import get_watcher

    _LIVE_SPARES.pop(container_id, None)
    try:
        engine.remove_container_sync(container_id)
    except EngineUnavailable:
        get_watcher(engine).remove_when_back(container_id)
    except EngineError as exc:
        log.warning("Warm pool: could not remove spare %s: %s", container_id[:12], exc)
    forget_claim(container_id)
    shutil.rmtree(conn_dir, ignore_errors=True)


def claimed(container_id: str) -> None:
    """The spare became a kernel: the provisioner owns it now (its _LIVE, its clean-up)."""
    _LIVE_SPARES.pop(container_id, None)


def _create_unless_exiting(engine: ContainerBackend, spec: ContainerSpec, conn_dir: str) -> dict[str, Any]:
    global _in_flight
    with _making:
        if _exiting:
            raise RuntimeError("the process is exiting")
        _in_flight += 1
    try:
        attrs = engine.create_and_start_sync(spec)
        _LIVE_SPARES[attrs["Id"]] = (engine, conn_dir)
        return attrs
    finally:
        with _making:
            _in_flight -= 1
            _making.notify_all()


@atexit.register
def _remove_live_spares() -> None:
    global _exiting
    with _making:
        _exiting = True
        _making.wait_for(lambda: _in_flight == 0, timeout=30)
    remove_at_exit(_LIVE_SPARES)


def remove_at_exit(live: dict[str, tuple[ContainerBackend, str]]) -> None:
    """Remove containers and their private folders as the process exits (atexit handlers of
    this module and the provisioner)."""
    for container_id, (engine, conn_dir) in list(live.items()):
        shutil.rmtree(conn_dir, ignore_errors=True)
        try:
            engine.remove_container_sync(container_id)
        except Exception:
            pass  # the engine is gone: the next server start reaps these as orphans


_pools: dict[int, WarmPool] = {}
_pools_lock = threading.Lock()


def get_pool(engine: ContainerBackend) -> WarmPool:
    """The process-wide pool of ``engine``."""
    with _pools_lock:
        pool = _pools.get(id(engine))
        if pool is None:
            pool = _pools[id(engine)] = WarmPool(engine)
        return pool
