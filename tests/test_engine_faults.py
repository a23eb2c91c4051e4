"""The engine goes away while kernels run, and comes back: on a private engine (disposable_engine.py).

Nothing in the workspace or the cache volume may be lost; the server serves throughout; the
dead kernel is reported with the reason within seconds; starts are refused clearly while the
engine is down; after it returns new kernels start, the dead kernel restarts into a working
kernel whose clients are not hit by signature errors, and no container is left over.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from tornado.httpclient import HTTPClientError

from .conftest import BASE_IMAGE, CACHE_VOLUME, add_spec, execute, wait_until
from .disposable_engine import DisposableEngine


@pytest.fixture(scope="module")
def private_engine(tmp_path_factory):
    yield from DisposableEngine.running(str(tmp_path_factory.mktemp("engine")), BASE_IMAGE)


@pytest.fixture
def jp_server_config(workspace, private_engine):
    return private_engine.server_config()


def containers_of(engine) -> list[dict]:
    return [c for c in engine.our_containers_sync(role="kernel")
            if (c.get("Labels") or {}).get("org.jupyter.mlcontainer.cache-volume") == CACHE_VOLUME]


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + ("\n" + logging.Formatter().formatException(record.exc_info) if record.exc_info else ""))


async def test_engine_stop_and_start_while_kernels_run(private_engine, jp_fetch, jp_serverapp, workspace):
    from jupyter_mlcontainer.engines.docker import get_engine

    log = LogLines()
    for logger in (jp_serverapp.log, logging.getLogger()):
        logger.addHandler(log)
    engine = get_engine(private_engine.url)
    name = add_spec(engine, BASE_IMAGE)
    model = json.loads((await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name, "path": ""}))).body)
    kernel_id = model["id"]
    kc = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=90)
        out, reply = await execute(kc, "import os; os.makedirs(os.environ['HF_HOME'], exist_ok=True); "
                                       "open('kept.txt', 'w').write('work'); "
                                       "open(os.environ['HF_HOME'] + '/kept.txt', 'w').write('cache')")
        assert reply["status"] == "ok", out

        await asyncio.to_thread(private_engine.stop)

        # The kernel is reported dead, with the reason, while the engine is away (panel, REST).
        async def death():
            rows = json.loads((await jp_fetch("mlcontainer", "api", "kernels")).body)["kernels"]
            row = next((r for r in rows if r["kernel_id"] == kernel_id), None)
            return row and row["death"] and row

        row = await wait_until(death, timeout=15)
        assert "stopped with its Docker engine" in row["death"]["message"], row
        assert "not reachable" in row["status"] and row["state"] == "unknown", row

        # The server serves throughout; a start is refused with the engine's reason and leaves
        # no kernel behind.
        assert (await jp_fetch("api", "status")).code == 200
        status = json.loads((await jp_fetch("mlcontainer", "api", "status")).body)
        assert status["engine"]["reachable"] is False and "not reachable" in status["engine"]["reason"], status
        before = set(jp_serverapp.kernel_manager.list_kernel_ids())
        with pytest.raises(HTTPClientError) as refused:
            await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
        assert refused.value.code == 503
        assert "not reachable" in json.loads(refused.value.response.body)["message"]
        assert set(jp_serverapp.kernel_manager.list_kernel_ids()) == before

        await asyncio.to_thread(private_engine.start)

        # The restarter's restart went through once the engine answered: the client that was
        # connected before is ready again (its sockets reconnect by themselves; waiting for that,
        # as any client does after a restart, keeps output from reaching IOPub before it has
        # joined), gets replies, and the files are still there.
        await kc.wait_for_ready(timeout=120)
        out, reply = await execute(
            kc, "import os; print(open('kept.txt').read(), open(os.environ['HF_HOME'] + '/kept.txt').read())",
            timeout=120,
        )
        assert reply["status"] == "ok" and "work cache" in out, out

        # New kernels start.
        other = json.loads((await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))).body)
        await jp_fetch("api", "kernels", other["id"], method="DELETE")
    finally:
        kc.stop_channels()
        for logger in (jp_serverapp.log, logging.getLogger()):
            logger.removeHandler(log)
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")

    # Nothing is left on the engine: not the container that went down with it either.
    assert containers_of(engine) == []
    # No signature errors from clients of the restarted kernel; the only tracebacks are
    # jupyter_client's own log of the start that was refused while the engine was down.
    text = "\n".join(log.lines)
    assert "Invalid Signature" not in text
    tracebacks = text.split("Traceback (most recent call last)")[1:]
    assert all("EngineUnavailable: Docker engine not reachable" in t for t in tracebacks), text
