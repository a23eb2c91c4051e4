"""Benchmark: faults under load, against a real Jupyter server with the extension.

Starts its own Jupyter server (subprocess, as bench/rest_latency.py does; its log goes to a file
in a temporary folder) and measures, all through the server's REST API:

1. N concurrent container kernel starts (``POST /api/kernels`` with a container kernelspec
   written by ``POST /mlcontainer/api/kernelspecs``): how many started, how many failed cleanly
   (an HTTP 4xx/5xx with a JSON message and no traceback), time until all answered, and
   p50 / p95 / max per-start latency. A start's latency runs from its POST to the moment the
   kernel answers ``kernel_info_request`` over the server's kernel websocket
   (``/api/kernels/<id>/channels``): the path a browser takes, server included. Then all are
   shut down (``DELETE /api/kernels/<id>``, concurrently) and the containers the server made
   (``org.jupyter.mlcontainer.*`` labels: its owner id, or one of its kernel ids) are counted.
2. M concurrent pulls of one image through ``POST /mlcontainer/api/images/pull`` from the local
   registry, after removing the local copy of that tag (untagging it: the layers stay, as
   ``mlcontainer-test/base:bookworm`` shares them, so the pull fetches the manifest and
   re-tags): how many requests got a job, how many jobs ended done, wall time until every job
   ended, and whether the engine ended with exactly one image carrying that tag.
3. R times: start a container kernel, then issue ``POST /api/kernels/<id>/restart`` and
   ``POST /mlcontainer/api/kernels/<id>/freeze`` (``{"force": true}``) at the same moment:
   each one's outcome (success, or a clean error with its message) and time, whether the
   kernel answers afterwards, and how many containers that kernel has.

Everything the script started is shut down in ``finally``; containers of this server still
present at the end are reported as leftovers (a bug) and then removed (only those).

    PYTHONPATH=. python3 bench/faults_under_load.py [--kernels 20] [--pulls 5] [--reps 5]
        [--image mlcontainer-test/base:bookworm] [--pull-image 127.0.0.1:5000/mlcontainer-test/base:bookworm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tornado.httpclient import AsyncHTTPClient, HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from bench.rest_latency import TOKEN, call, free_port  # noqa: E402
from jupyter_mlcontainer.core.labels import LABEL_KERNEL_ID, LABEL_OWNER, LABEL_ROLE
from jupyter_mlcontainer.engines.docker import get_engine  # noqa: E402
from jupyter_mlcontainer.core.names import reference_parts
from jupyter_mlcontainer.core.identity import LEASE_SUFFIX  # noqa: E402

BASE_IMAGE = "mlcontainer-test/base:bookworm"  # never removed by this script
REGISTRY_IMAGE = "127.0.0.1:5000/mlcontainer-test/base:bookworm"
SPEC_NAME = "mlc-faults-bench"
# "path": without one, jupyter_server starts the kernel in its own process's cwd (the provisioner
# then mounts that folder, and freeze writes its Dockerfile there); "" is the server's root, the
# temporary folder.
KERNEL_BODY = {"name": SPEC_NAME, "path": ""}
AUTH = {"Authorization": f"token {TOKEN}"}
SLOW = 20.0  # seconds: a restart or freeze answered later than this is reported as a (bounded) hang


def say(text: str) -> None:
    """Progress, on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def short(text: Any, width: int = 150) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


# -- the server ------------------------------------------------------------------------------


class Server:
    """A Jupyter server with the extension, in its own data/runtime/config folders, logging to
    a file; as bench/rest_latency.py starts it."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.log_path = os.path.join(tmp, "server.log")
        self.env = dict(os.environ, JUPYTER_DATA_DIR=f"{tmp}/data", JUPYTER_RUNTIME_DIR=f"{tmp}/runtime",
                        JUPYTER_CONFIG_DIR=f"{tmp}/config")
        self.proc: subprocess.Popen | None = None
        self.known_owners: set[str] = set()

    def start(self, timeout: float = 180) -> float:
        t0 = time.perf_counter()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={self.tmp}", "--no-browser",
             "--ServerApp.jpserver_extensions=jupyter_mlcontainer=True",
             *(["--allow-root"] if os.getuid() == 0 else [])],
            env=self.env, stdout=log, stderr=log, cwd=self.tmp,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}) at start:\n{self.log_tail()}")
            try:
                call(self.port, "api/status")
                return time.perf_counter() - t0
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.2)

    def owners(self) -> set[str]:
        """The owner ids (container label) of the server: its leases in its runtime folder.
        Accumulated, since a lease file goes away when the server ends."""
        folder = os.path.join(self.tmp, "runtime", "mlcontainer-owners")
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        self.known_owners |= {n[: -len(LEASE_SUFFIX)] for n in names if n.endswith(LEASE_SUFFIX)}
        return self.known_owners

    def log_mark(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_since(self, mark: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            return "not running"
        self.owners()
        t0 = time.perf_counter()
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=90)
            return f"exited {code} {time.perf_counter() - t0:.1f} s after SIGTERM"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            return "did not exit within 90 s of SIGTERM: killed"


def tracebacks(log: str) -> list[str]:
    """Each traceback in a slice of the server log, as 'exception line (logged at: line)'."""
    found = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" not in line:
            continue
        logged_at = lines[i - 1].strip() if i else ""
        for later in lines[i + 1:]:
            if later and not later.startswith((" ", "\t", "Traceback")) and not later.startswith("During handling"):
                if later.strip() and not later.startswith("The above exception"):
                    found.append(f"{short(later, 160)}  (after log line: {short(logged_at, 120)})")
                    break
    return found


# -- REST and websocket clients ----------------------------------------------------------------


@dataclass
class Reply:
    status: int  # 0 when no HTTP answer came (timeout, connection error)
    body: Any
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message") or "")
        return ""

    @property
    def clean_error(self) -> bool:
        """An HTTP error the client can show: JSON with a message, no traceback, not jupyter_server's
        'Unhandled error' (an exception nobody turned into a message)."""
        return (self.status >= 400 and isinstance(self.body, dict) and bool(self.message)
                and self.message != "Unhandled error" and not self.body.get("traceback"))

    def describe(self) -> str:
        if not self.status:
            return f"no answer: {self.error}"
        if self.ok:
            return str(self.status)
        if isinstance(self.body, dict):
            return f"{self.status} {short(self.message or self.body, 300)}"
        return f"{self.status} (not JSON) {short(self.body, 200)}"


async def api(port: int, method: str, path: str, body: Any = None, timeout: float = 600) -> Reply:
    data = json.dumps(body) if body is not None else ("" if method in ("POST", "PUT", "PATCH") else None)
    request = HTTPRequest(f"http://127.0.0.1:{port}/{path}", method=method, body=data,
                          headers={**AUTH, "Content-Type": "application/json"},
                          connect_timeout=timeout, request_timeout=timeout)
    t0 = time.perf_counter()
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except Exception as exc:  # timeout, connection refused
        return Reply(0, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    raw = response.body or b""
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(response.code, parsed, seconds)


def _message(msg_type: str, session: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    return msg_id, json.dumps({
        "header": {"msg_id": msg_id, "username": "bench", "session": session, "msg_type": msg_type,
                   "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())},
        "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell", "buffers": [],
    })


async def kernel_info(port: int, kernel_id: str, timeout: float) -> float:
    """Connect to the kernel's websocket through the server, send kernel_info_request (again
    every 5 s, as jupyter_client's wait_for_ready does) until its reply comes; return
    perf_counter() at the reply. Raises TimeoutError or ConnectionError."""
    deadline = time.perf_counter() + timeout
    session = uuid.uuid4().hex
    url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?session_id={session}"
    conn = await asyncio.wait_for(
        websocket_connect(HTTPRequest(url, headers=AUTH, connect_timeout=timeout, request_timeout=timeout)), timeout
    )
    pending: asyncio.Future | None = None
    try:
        while True:
            msg_id, text = _message("kernel_info_request", session)
            await conn.write_message(text)
            resend = min(deadline, time.perf_counter() + 5)
            while time.perf_counter() < resend:
                pending = pending or asyncio.ensure_future(conn.read_message())
                done, _ = await asyncio.wait({pending}, timeout=resend - time.perf_counter())
                if not done:
                    break
                raw, pending = pending.result(), None
                if raw is None:
                    raise ConnectionError(f"websocket closed ({conn.close_code} {conn.close_reason})")
                if isinstance(raw, bytes):
                    continue
                msg = json.loads(raw)
                if msg.get("msg_type") == "kernel_info_reply" and msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return time.perf_counter()
            if time.perf_counter() >= deadline:
                raise TimeoutError(f"no kernel_info_reply within {timeout:.0f} s")
    finally:
        if pending is not None:
            pending.cancel()
        conn.close()


# -- containers ---------------------------------------------------------------------------------


class Containers:
    """This server's containers on the shared engine: carrying its owner id, or one of the
    kernel ids it handed out. Other people's containers are never looked at twice."""

    def __init__(self, server: Server) -> None:
        self.engine = get_engine()
        self.server = server
        self.kernel_ids: set[str] = set()

    def mine_sync(self, kernel_id: str | None = None) -> list[dict[str, Any]]:
        owners = self.server.owners()
        ids = {kernel_id} if kernel_id else self.kernel_ids
        out = []
        for c in self.engine.our_containers_sync():
            labels = c.get("Labels") or {}
            if kernel_id is not None:
                if labels.get(LABEL_KERNEL_ID) == kernel_id:
                    out.append(c)
            elif labels.get(LABEL_OWNER) in owners or labels.get(LABEL_KERNEL_ID) in ids:
                out.append(c)
        return out

    async def mine(self, kernel_id: str | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.mine_sync, kernel_id)

    async def wait_none(self, timeout: float = 30) -> tuple[int, int, float]:
        """(count now, count after waiting up to ``timeout`` for none, seconds waited)."""
        t0 = time.perf_counter()
        first = len(await self.mine())
        count = first
        while count and time.perf_counter() - t0 < timeout:
            await asyncio.sleep(0.5)
            count = len(await self.mine())
        return first, count, time.perf_counter() - t0


def describe_containers(rows: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{c['Id'][:12]} ({(c.get('Labels') or {}).get(LABEL_ROLE, '?')}, kernel "
        f"{(c.get('Labels') or {}).get(LABEL_KERNEL_ID, '-')[:8]}, {c.get('State')}: {c.get('Status')})"
        for c in rows
    ) or "none"


# -- phase 1: concurrent starts -----------------------------------------------------------------


@dataclass
class Start:
    post: Reply
    ready: float | None = None  # seconds from the POST to kernel_info_reply
    ready_at: float | None = None
    ready_error: str = ""
    kernel_id: str = ""


@dataclass
class StartsResult:
    n: int
    starts: list[Start]
    wall_posts: float  # until every POST answered
    wall_ready: float  # until every started kernel answered kernel_info (or failed to)
    shutdown: list[Reply]
    shutdown_wall: float
    containers_peak: int
    panel: list[Reply]  # GET /mlcontainer/api/status, once a second during the starts
    left_now: int
    left_after_wait: int
    left_rows: str
    log_tracebacks: list[str] = field(default_factory=list)


async def phase_starts(server: Server, containers: Containers, n: int, ready_timeout: float) -> StartsResult:
    port = server.port
    peak = 0
    running = True

    async def sample_peak() -> None:  # how many containers the server had at once
        nonlocal peak
        while running:
            try:
                peak = max(peak, len(await containers.mine()))
            except Exception:
                pass
            await asyncio.sleep(1)

    panel: list[Reply] = []

    async def sample_panel() -> None:  # does the panel's API still answer while kernels start?
        while running:
            panel.append(await api(port, "GET", "mlcontainer/api/status", timeout=300))
            await asyncio.sleep(1)

    async def one() -> Start:
        t0 = time.perf_counter()
        post = await api(port, "POST", "api/kernels", KERNEL_BODY)
        start = Start(post)
        if post.ok and isinstance(post.body, dict) and post.body.get("id"):
            start.kernel_id = post.body["id"]
            containers.kernel_ids.add(start.kernel_id)
            try:
                start.ready_at = await kernel_info(port, start.kernel_id, ready_timeout)
                start.ready = start.ready_at - t0
            except Exception as exc:
                start.ready_error = f"{type(exc).__name__}: {exc}"
        return start

    samplers = [asyncio.ensure_future(sample_peak()), asyncio.ensure_future(sample_panel())]
    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    starts = await asyncio.gather(*tasks)
    wall_ready = time.perf_counter() - t0
    wall_posts = max(s.post.seconds for s in starts)
    running = False
    await asyncio.gather(*samplers)
    say(f"  {sum(1 for s in starts if s.ready is not None)}/{n} kernels answered; shutting them down")

    ids = [s.kernel_id for s in starts if s.kernel_id]
    t1 = time.perf_counter()
    shutdown = await asyncio.gather(*(api(port, "DELETE", f"api/kernels/{kid}") for kid in ids))
    shutdown_wall = time.perf_counter() - t1
    now, after, _ = await containers.wait_none(30)
    rows = describe_containers(await containers.mine()) if after else "none"
    return StartsResult(n, list(starts), wall_posts, wall_ready, list(shutdown), shutdown_wall, peak, panel, now, after,
                        rows)


# -- phase 2: concurrent pulls ------------------------------------------------------------------


@dataclass
class PullsResult:
    image: str
    n: int
    removed_first: str
    posts: list[Reply]
    jobs: dict[str, dict[str, Any]]
    wall: float
    images_with_tag: list[str]
    same_as_base: bool | None
    restored: str = ""
    log_tracebacks: list[str] = field(default_factory=list)


def images_with_tag(engine, image: str) -> list[dict[str, Any]]:
    repo, tag, _ = reference_parts(image)
    return [i for i in engine.api.images(name=repo) if image in (i.get("RepoTags") or [])]


async def phase_pulls(server: Server, image: str, n: int, job_timeout: float) -> PullsResult:
    engine = get_engine()
    port = server.port
    present = images_with_tag(engine, image)
    if present:
        # Untag only: no force, so the engine refuses rather than deleting anything in use; the
        # layers stay (shared with mlcontainer-test/base:bookworm).
        engine.api.remove_image(image, force=False, noprune=True)
        removed = f"untagged {image} (image {present[0]['Id'][7:19]})"
    else:
        removed = f"{image} was not present locally"
    if images_with_tag(engine, image):
        raise RuntimeError(f"{image} is still present after removing it")

    t0 = time.perf_counter()
    posts = await asyncio.gather(
        *(api(port, "POST", "mlcontainer/api/images/pull", {"image": image}) for _ in range(n))
    )
    job_ids = []
    for reply in posts:
        job = (reply.body or {}).get("job") if isinstance(reply.body, dict) else None
        if reply.ok and job and job.get("id") not in job_ids:
            job_ids.append(job["id"])

    async def follow(job_id: str) -> dict[str, Any]:
        deadline = time.perf_counter() + job_timeout
        while True:
            reply = await api(port, "GET", f"mlcontainer/api/jobs/{job_id}", timeout=60)
            if reply.ok and reply.body.get("state") != "running":
                return {**reply.body, "_seconds": time.perf_counter() - t0}
            if not reply.ok and reply.status != 0:
                return {"state": f"GET {reply.describe()}", "_seconds": time.perf_counter() - t0}
            if time.perf_counter() > deadline:
                return {"state": "still running (bench gave up)", "_seconds": time.perf_counter() - t0}
            await asyncio.sleep(0.2)

    followed = await asyncio.gather(*(follow(j) for j in job_ids))
    wall = time.perf_counter() - t0
    final = images_with_tag(engine, image)
    base = images_with_tag(engine, BASE_IMAGE)
    same = (final[0]["Id"] == base[0]["Id"]) if final and base else None
    tags = [f"{i['Id'][7:19]} digests={','.join(d.split('@')[-1][:19] for d in i.get('RepoDigests') or []) or 'none'}"
            for i in final]
    return PullsResult(image, n, removed, list(posts), dict(zip(job_ids, followed)), wall, tags, same)


def restore_tag(image: str) -> str:
    """Put ``image`` back (pulled by the engine itself) if the benchmark left it missing."""
    engine = get_engine()
    if images_with_tag(engine, image):
        return ""
    repo, tag, _ = reference_parts(image)
    try:
        engine.api.pull(repo, tag=tag or "latest")
        return f"{image} was missing after the phase: pulled again by the bench"
    except Exception as exc:
        return f"{image} is missing and could not be pulled back: {exc}"


# -- phase 3: freeze during a restart -----------------------------------------------------------


@dataclass
class Rep:
    start: Reply
    restart: Reply | None = None
    freeze: Reply | None = None
    answers_after: str = ""
    containers_after: str = ""
    left_after_delete: int = 0
    note: str = ""
    control: Reply | None = None  # a freeze of the same kernel once the restart is over (rep 1 only)


async def phase_restart_freeze(server: Server, containers: Containers, reps: int, ready_timeout: float) -> list[Rep]:
    port = server.port
    out = []
    for i in range(reps):
        post = await api(port, "POST", "api/kernels", KERNEL_BODY)
        rep = Rep(post)
        out.append(rep)
        if not (post.ok and isinstance(post.body, dict) and post.body.get("id")):
            rep.note = f"start failed: {post.describe()}"
            continue
        kid = post.body["id"]
        containers.kernel_ids.add(kid)
        try:
            try:
                await kernel_info(port, kid, ready_timeout)
            except Exception as exc:
                rep.note = f"not ready before the restart: {exc}"
                continue
            restart, freeze = await asyncio.gather(
                api(port, "POST", f"api/kernels/{kid}/restart"),
                api(port, "POST", f"mlcontainer/api/kernels/{kid}/freeze", {"force": True}),
            )
            rep.restart, rep.freeze = restart, freeze
            t0 = time.perf_counter()
            try:
                await kernel_info(port, kid, 60)
                rep.answers_after = f"yes ({time.perf_counter() - t0:.1f} s)"
            except Exception as exc:
                rep.answers_after = f"no: {short(exc, 80)}"
            rows = await containers.mine(kid)
            running = sum(1 for c in rows if c.get("State") == "running")
            rep.containers_after = f"{len(rows)} ({running} running)"
            if i == 0 and rep.answers_after.startswith("yes"):
                # The control: the same freeze with no restart around it.
                rep.control = await api(port, "POST", f"mlcontainer/api/kernels/{kid}/freeze", {"force": True})
        finally:
            deleted = await api(port, "DELETE", f"api/kernels/{kid}")
            if not deleted.ok:
                rep.note = (rep.note + "; " if rep.note else "") + f"DELETE {deleted.describe()}"
            rep.left_after_delete = len(await containers.mine(kid))
        say(f"  rep {i + 1}: restart {rep.restart.describe() if rep.restart else '-'}, "
            f"freeze {short(rep.freeze.describe(), 80) if rep.freeze else '-'}")
    return out


# -- the report ---------------------------------------------------------------------------------


def outcome(reply: Reply | None) -> str:
    if reply is None:
        return "-"
    if reply.ok:
        return f"ok {reply.status}"
    if reply.clean_error:
        return f"clean {reply.status}"
    return f"UNCLEAN {reply.status or 'none'}"


def report(args, server_start: float, starts: StartsResult | None, pulls: PullsResult | None,
           reps: list[Rep] | None, final_left: str, stopped: str, bugs: list[str], total: float) -> None:
    line = "=" * 100
    print(line)
    print(f"faults under load: server started in {server_start:.1f} s; image {args.image}; "
          f"{os.cpu_count()} CPUs; whole run {total:.0f} s")
    print(line)

    if starts:
        ok = [s for s in starts.starts if s.ready is not None]
        posted = [s for s in starts.starts if s.post.ok]
        clean = [s for s in starts.starts if not s.post.ok and s.post.clean_error]
        unclean = [s for s in starts.starts if not s.post.ok and not s.post.clean_error]
        no_answer = [s for s in posted if s.ready is None]
        lat = [s.ready for s in ok]
        post_lat = [s.post.seconds for s in posted]
        down = [r.seconds for r in starts.shutdown]
        print(f"\n1. {starts.n} concurrent kernel starts (POST /api/kernels), latency = POST sent -> "
              "kernel_info_reply over the server's kernel websocket")
        rows = [
            ("started and answered kernel_info", f"{len(ok)}/{starts.n}"),
            ("failed cleanly (4xx/5xx, JSON message)", f"{len(clean)}"),
            ("failed uncleanly (no message / traceback / no answer)", f"{len(unclean)}"),
            ("started but never answered kernel_info", f"{len(no_answer)}"),
            ("time until every POST answered", f"{starts.wall_posts:.2f} s"),
            ("time until all started (last kernel_info_reply)", f"{starts.wall_ready:.2f} s"),
            ("per-start latency p50 / p95 / max",
             f"{percentile(lat, 50):.2f} / {percentile(lat, 95):.2f} / {max(lat) if lat else float('nan'):.2f} s"),
            ("  (fastest start)", f"{min(lat) if lat else float('nan'):.2f} s"),
            ("  of which the POST alone p50 / p95 / max",
             f"{percentile(post_lat, 50):.2f} / {percentile(post_lat, 95):.2f} / "
             f"{max(post_lat) if post_lat else float('nan'):.2f} s"),
            ("most containers of this server at once (1 s samples)", f"{starts.containers_peak}"),
            ("GET /mlcontainer/api/status meanwhile: n, ok, p50 / max",
             f"{len(starts.panel)}, {sum(1 for r in starts.panel if r.ok)}, "
             f"{percentile([r.seconds for r in starts.panel], 50):.2f} / "
             f"{max((r.seconds for r in starts.panel), default=float('nan')):.2f} s"),
            ("shutdown: DELETEs ok, wall", f"{sum(1 for r in starts.shutdown if r.ok)}/{len(starts.shutdown)}, "
                                           f"{starts.shutdown_wall:.2f} s"),
            ("  per-DELETE p50 / max", f"{percentile(down, 50):.2f} / {max(down) if down else float('nan'):.2f} s"),
            ("containers left right after the DELETEs / after 30 s", f"{starts.left_now} / {starts.left_after_wait}"),
        ]
        for label, value in rows:
            print(f"   {label:58}{value}")
        for s in clean + unclean:
            print(f"   failed start: {s.post.describe()} ({s.post.seconds:.1f} s)")
        for s in no_answer:
            print(f"   kernel {s.kernel_id[:8]} started but: {s.ready_error}")
        if starts.left_after_wait:
            print(f"   left: {starts.left_rows}")

    if pulls:
        done = [j for j in pulls.jobs.values() if j.get("state") == "done"]
        joined = sum(1 for r in pulls.posts if r.ok)
        done_requests = sum(1 for r in pulls.posts
                            if r.ok and pulls.jobs.get(r.body["job"]["id"], {}).get("state") == "done")
        one = "(exactly one)" if len(pulls.images_with_tag) == 1 else "(NOT one)"
        print(f"\n2. {pulls.n} concurrent pulls of {pulls.image} "
              "(POST /mlcontainer/api/images/pull, then GET jobs/<id>)")
        rows = [
            ("before", pulls.removed_first),
            ("requests answered 202 with a job", f"{joined}/{pulls.n}"),
            ("distinct jobs (a pull already running is joined)", f"{len(pulls.jobs)}"),
            ("jobs that ended done", f"{len(done)}/{len(pulls.jobs)}"),
            ("requests whose job ended done", f"{done_requests}/{pulls.n}"),
            ("total wall time (first POST -> every job ended)", f"{pulls.wall:.2f} s"),
            ("images carrying the tag afterwards",
             f"{len(pulls.images_with_tag)} {one} {'; '.join(pulls.images_with_tag)}"),
            (f"same image as {BASE_IMAGE}", {True: "yes", False: "NO", None: "-"}[pulls.same_as_base]),
        ]
        for label, value in rows:
            print(f"   {label:58}{value}")
        for r in pulls.posts:
            if not r.ok:
                print(f"   failed request: {r.describe()}")
        for job_id, job in pulls.jobs.items():
            print(f"   job {job_id}: {job.get('state')} after {job.get('_seconds', 0):.2f} s"
                  + (f", error: {short(job.get('error'), 200)}" if job.get("error") else ""))
            for text in (job.get("log") or [])[-3:]:
                print(f"     job log: {short(text, 120)}")
        if pulls.restored:
            print(f"   {pulls.restored}")

    if reps is not None:
        print(f"\n3. restart and freeze of the same kernel at the same moment, {len(reps)} repetitions")
        print(f"   {'rep':4}{'restart':14}{'s':>7}  {'freeze':14}{'s':>7}  {'answers after':16}{'containers':14}"
              f"{'left':>5}")
        for i, rep in enumerate(reps, 1):
            if rep.restart is None:
                print(f"   {i:<4}{rep.note}")
                continue
            print(f"   {i:<4}{outcome(rep.restart):14}{rep.restart.seconds:7.2f}  {outcome(rep.freeze):14}"
                  f"{rep.freeze.seconds:7.2f}  {rep.answers_after:16}{rep.containers_after:14}"
                  f"{rep.left_after_delete:5}")
        messages: dict[str, int] = {}
        for rep in reps:
            for name, reply in (("restart", rep.restart), ("freeze", rep.freeze)):
                if reply is not None and not reply.ok:
                    key = re.sub(r"\b[0-9a-f]{64}\b", "<container id>", f"{name} {reply.describe()}")
                    messages[key] = messages.get(key, 0) + 1
            if rep.note and rep.restart is not None:
                messages[f"note: {rep.note}"] = messages.get(f"note: {rep.note}", 0) + 1
        for text, count in messages.items():
            print(f"   {count}x {short(text, 400)}")
        if reps and reps[0].control is not None:
            print(f"   control, rep 1's kernel frozen again once its restart was over: {outcome(reps[0].control)} "
                  f"in {reps[0].control.seconds:.2f} s"
                  + ("" if reps[0].control.ok else f" ({short(reps[0].control.describe(), 200)})"))
        ok_r = sum(1 for r in reps if r.restart and r.restart.ok)
        ok_f = sum(1 for r in reps if r.freeze and r.freeze.ok)
        clean_f = sum(1 for r in reps if r.freeze and not r.freeze.ok and r.freeze.clean_error)
        clean_r = sum(1 for r in reps if r.restart and not r.restart.ok and r.restart.clean_error)
        print(f"   restart: {ok_r} ok, {clean_r} clean errors, {len(reps) - ok_r - clean_r} other;  "
              f"freeze: {ok_f} ok, {clean_f} clean errors, {len(reps) - ok_f - clean_f} other")

    print("\nclean-up")
    print(f"   {'server':58}{stopped}")
    print(f"   {'containers of this server left at the very end':58}{final_left}")
    print("\nproblems found" if bugs else "\nproblems found: none")
    for bug in bugs:
        print(f"   - {bug}")
    print(line)


def find_bugs(starts: StartsResult | None, pulls: PullsResult | None, reps: list[Rep] | None) -> list[str]:
    bugs = []
    if starts:
        for s in starts.starts:
            if not s.post.ok and not s.post.clean_error:
                bugs.append(f"phase 1: kernel start answered uncleanly: {s.post.describe()}")
            elif s.post.ok and s.ready is None:
                bugs.append(f"phase 1: kernel {s.kernel_id} started but never answered kernel_info: {s.ready_error}")
        for r in starts.panel:
            if not r.ok:
                bugs.append(f"phase 1: GET /mlcontainer/api/status during the starts answered {r.describe()}")
        for r in starts.shutdown:
            if not r.ok:
                bugs.append(f"phase 1: DELETE /api/kernels/<id> answered {r.describe()}")
        if starts.left_now:
            bugs.append(f"phase 1: {starts.left_now} container(s) left right after every DELETE answered "
                        f"({starts.left_after_wait} after 30 s): {starts.left_rows}")
        bugs += [f"phase 1 server log traceback: {t}" for t in starts.log_tracebacks]
    if pulls:
        for r in pulls.posts:
            if not r.ok:
                bugs.append(f"phase 2: pull request answered {r.describe()}")
        for job_id, job in pulls.jobs.items():
            if job.get("state") != "done":
                bugs.append(f"phase 2: pull job {job_id} ended {job.get('state')}: {job.get('error')}")
        if len(pulls.images_with_tag) != 1:
            bugs.append(f"phase 2: {len(pulls.images_with_tag)} images carry {pulls.image} after the pulls")
        bugs += [f"phase 2 server log traceback: {t}" for t in pulls.log_tracebacks]
    if reps:
        for i, rep in enumerate(reps, 1):
            for name, reply in (("restart", rep.restart), ("freeze", rep.freeze)):
                if reply is not None and not reply.ok and not reply.clean_error:
                    bugs.append(f"phase 3 rep {i}: {name} answered uncleanly: {reply.describe()}")
            if rep.answers_after and not rep.answers_after.startswith("yes"):
                bugs.append(f"phase 3 rep {i}: the kernel did not answer after restart+freeze: {rep.answers_after}")
            if rep.containers_after and not rep.containers_after.startswith("1 (1 running)"):
                bugs.append(f"phase 3 rep {i}: the kernel had {rep.containers_after} containers after restart+freeze")
            for name, reply in (("restart", rep.restart), ("freeze", rep.freeze)):
                if reply is not None and reply.seconds > SLOW:
                    bugs.append(f"phase 3 rep {i}: {name} took {reply.seconds:.1f} s before answering "
                                f"{reply.describe()}")
            if rep.control is not None and not rep.control.ok:
                bugs.append(f"phase 3: the control freeze (no restart) failed: {rep.control.describe()}")
            if rep.left_after_delete:
                bugs.append(f"phase 3 rep {i}: {rep.left_after_delete} container(s) of the kernel left after DELETE")
            if rep.note:
                bugs.append(f"phase 3 rep {i}: {rep.note}")
    return bugs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=20, help="concurrent kernel starts (phase 1)")
    parser.add_argument("--pulls", type=int, default=5, help="concurrent pulls of --pull-image (phase 2)")
    parser.add_argument("--reps", type=int, default=5, help="restart + freeze repetitions (phase 3)")
    parser.add_argument("--image", default=BASE_IMAGE, help="the kernels' image")
    parser.add_argument("--pull-image", default=REGISTRY_IMAGE,
                        help="image pulled in phase 2; its local tag is removed first (never the --image)")
    parser.add_argument("--ready-timeout", type=float, default=300, help="seconds a kernel may take to answer")
    parser.add_argument("--skip", nargs="*", default=[], choices=["starts", "pulls", "freeze"])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, freeze output)")
    args = parser.parse_args()
    protected = {reference_parts(BASE_IMAGE)[0], reference_parts(args.image)[0]}
    if args.pull_image in (BASE_IMAGE, args.image) or reference_parts(args.pull_image)[0] in protected:
        parser.error(f"--pull-image {args.pull_image}: its local tag is removed first; "
                     f"never {BASE_IMAGE} or the kernels' image")

    AsyncHTTPClient.configure(None, max_clients=max(64, 2 * args.kernels + args.pulls))
    # SIGTERM (and SIGINT, which asyncio.run already handles so) cancels the run: the clean-up
    # in ``finally`` still shuts the kernels and the server down.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    t_total = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="mlc-faults-bench-")
    server = Server(tmp)
    containers = Containers(server)
    starts = pulls = None
    reps = None
    bugs: list[str] = []
    server_start = float("nan")
    stopped = "not started"
    final_left = "?"
    cleanup_notes: list[str] = []
    try:
        say(f"starting the server (folder {tmp})")
        server_start = server.start()
        spec = await api(server.port, "POST", "mlcontainer/api/kernelspecs",
                         {"image": args.image, "name": SPEC_NAME, "gpus": "none"})
        if not spec.ok:
            raise RuntimeError(f"POST mlcontainer/api/kernelspecs: {spec.describe()}")
        say(f"kernelspec {SPEC_NAME} written ({spec.seconds:.1f} s); warm-up start")
        warm = await api(server.port, "POST", "api/kernels", KERNEL_BODY)
        if not warm.ok:
            raise RuntimeError(f"warm-up start: {warm.describe()}\n{server.log_tail()}")
        containers.kernel_ids.add(warm.body["id"])
        await kernel_info(server.port, warm.body["id"], args.ready_timeout)
        await api(server.port, "DELETE", f"api/kernels/{warm.body['id']}")

        if "starts" not in args.skip:
            say(f"phase 1: {args.kernels} concurrent kernel starts")
            mark = server.log_mark()
            starts = await phase_starts(server, containers, args.kernels, args.ready_timeout)
            starts.log_tracebacks = tracebacks(server.log_since(mark))
        if "pulls" not in args.skip:
            say(f"phase 2: {args.pulls} concurrent pulls of {args.pull_image}")
            mark = server.log_mark()
            try:
                pulls = await phase_pulls(server, args.pull_image, args.pulls, 600)
            finally:
                restored = await asyncio.to_thread(restore_tag, args.pull_image)
                if restored:
                    cleanup_notes.append(restored)
            if pulls:
                pulls.restored = restored
                pulls.log_tracebacks = tracebacks(server.log_since(mark))
        if "freeze" not in args.skip:
            say(f"phase 3: restart + freeze, {args.reps} repetitions")
            mark = server.log_mark()
            reps = await phase_restart_freeze(server, containers, args.reps, args.ready_timeout)
            phase3_tracebacks = tracebacks(server.log_since(mark))
            bugs += [f"phase 3 server log traceback: {t}" for t in phase3_tracebacks]
    finally:
        say("clean-up")
        if server.proc is not None and server.proc.poll() is None:
            server.owners()
            listed = await api(server.port, "GET", "api/kernels", timeout=120)
            for row in listed.body if listed.ok and isinstance(listed.body, list) else []:
                containers.kernel_ids.add(row["id"])
                reply = await api(server.port, "DELETE", f"api/kernels/{row['id']}", timeout=120)
                cleanup_notes.append(f"clean-up: kernel {row['id']} was still running at the end: "
                                     f"DELETE {reply.describe()}")
            await api(server.port, "DELETE", f"mlcontainer/api/kernelspecs/{SPEC_NAME}", timeout=60)
        mark = server.log_mark()
        stopped = server.stop()
        shutdown_tracebacks = tracebacks(server.log_since(mark)) if os.path.exists(server.log_path) else []
        bugs += [f"server shutdown log traceback: {t}" for t in shutdown_tracebacks]
        left = await containers.mine()
        final_left = str(len(left))
        if left:
            cleanup_notes.append(f"clean-up: containers of this server left after it stopped, now removed: "
                                 f"{describe_containers(left)}")
            for c in left:
                await asyncio.to_thread(containers.engine.remove_container_sync, c["Id"])
        bugs = find_bugs(starts, pulls, reps) + bugs + cleanup_notes
        report(args, server_start, starts, pulls, reps, final_left, stopped, bugs, time.perf_counter() - t_total)
        if args.keep or bugs:
            print(f"server log: {server.log_path}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted (everything it started was cleaned up above)", file=sys.stderr)
        sys.exit(130)
