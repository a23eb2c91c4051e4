"""The REST API's OpenAPI description (jupyter_mlcontainer/server/openapi.json) matches the routes as
registered, and every route is fuzzed from it (schemathesis + hypothesis) against a real server
on the real engine: never a 500, never a traceback in an answer, every error a JSON message,
and no container left by a rejected request."""

from __future__ import annotations

import json
import os
import re
import signal
import time


from jupyter_mlcontainer.server.handlers import route_table

from .test_authentication import implemented
from .test_server import _free_port, _start_server, _wait_http

SPEC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jupyter_mlcontainer", "server", "openapi.json")


def spec() -> dict:
    with open(SPEC_PATH) as f:
        return json.load(f)


def test_the_description_matches_the_registered_routes():
    registered = set()
    for pattern, handler in route_table():
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("/mlcontainer/api", "", 1)
        registered |= {(path, method) for method in implemented(handler)}
    described = {(path, method) for path, item in spec()["paths"].items() for method in item if method != "parameters"}
    assert described == registered


def test_fuzz_every_route(engine, workspace, tmp_path):
    import requests
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    from jupyter_mlcontainer.core.labels import LABEL_ROLE

    port = _free_port()
    server = _start_server(workspace, port, tmp_path / "server.log", os.environ.copy())
    before = {c["Id"] for c in engine.containers_sync([LABEL_ROLE])}
    outcomes: dict[str, set[int]] = {}
    try:
        _wait_http(port)
        base = f"http://127.0.0.1:{port}/mlcontainer/api"
        session = requests.Session()
        session.headers["Authorization"] = "token secret"
        schema = schemathesis.openapi.from_dict(spec())
        for operation in schema.get_all_operations():
            operation = operation.ok()

            @settings(max_examples=25, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(operation.as_strategy())
            def fuzz(case):
                response = case.call(base_url=base, session=session, timeout=60)
                label = f"{case.method} {case.path}"
                outcomes.setdefault(label, set()).add(response.status_code)
                assert response.status_code < 500, (label, case.body, case.query, response.text[:500])
                assert "Traceback" not in response.text, (label, response.text[:500])
                if response.status_code >= 400:
                    assert isinstance(response.json().get("message"), str), (label, response.text[:500])

            fuzz()
        # Jobs a fuzzed pull or build started end on their own (nothing is reachable); wait for them.
        for job in session.get(f"{base}/jobs").json()["jobs"]:
            while job["state"] == "running":
                time.sleep(0.1)  # polling a job is what its followers do
                job = session.get(f"{base}/jobs/{job['id']}").json()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    left = {c["Id"] for c in engine.containers_sync([LABEL_ROLE])} - before
    assert not left, "containers left by fuzzed requests"
    print("fuzzed:", {k: sorted(v) for k, v in sorted(outcomes.items())})
    assert len(outcomes) == 18
