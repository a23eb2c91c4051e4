"""A deployment's Authorizer governs every route of the extension (issue 14, finding 6): with a
read-only authorizer every read works and every change is refused, enumerated over the routes
as registered, so a new route without the check fails here. Each route asks the action
docs/security.md names (issue 22, finding 10: a DELETE asks ``delete``, not ``write``; stopping
a kernel asks about ``kernels``, as jupyter_server's own route does)."""

from __future__ import annotations

import re
import uuid

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.server.handlers import route_table


class ReadOnlyAuthorizer(Authorizer):
    """A read-only share: reads allowed, everything else refused."""

    def is_authorized(self, handler, user, action, resource):
        return action == "read"


ASKED: list[tuple[str, str, str, str]] = []  # (method, path, action, resource)


class RecordingAuthorizer(Authorizer):
    """Allows everything, and records what each request asked."""

    def is_authorized(self, handler, user, action, resource):
        ASKED.append((handler.request.method, handler.request.path, action, resource))
        return True


@pytest.fixture
def jp_server_config(jp_server_config, request):
    authorizer = RecordingAuthorizer if "recording" in request.node.name else ReadOnlyAuthorizer
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": authorizer}}


def concrete(pattern: str) -> str:
    """A route's regex with its groups filled in."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: "0123abcd" if m.group(1) == "job_id" else str(uuid.uuid4()), pattern)


async def test_read_only_authorizer_allows_every_read_and_refuses_every_write(jp_fetch):
    seen = {"get": 0, "post": 0, "delete": 0}
    for pattern, handler in route_table():
        path = concrete(pattern).lstrip("/").split("/")
        for method in ("get", "post", "delete"):
            if getattr(handler, method).__qualname__.startswith(("APIHandler", "JupyterHandler", "RequestHandler")):
                continue  # not implemented by this handler
            seen[method] += 1
            kwargs = {"body": "{}"} if method == "post" else {}
            try:
                response = await jp_fetch(*path, method=method.upper(), **kwargs)
                code = response.code
            except HTTPClientError as exc:
                code = exc.code
            if method == "get":
                assert code != 403, pattern
            else:
                assert code == 403, (method, pattern, code)
    assert seen["get"] >= 8 and seen["post"] >= 5 and seen["delete"] >= 2, seen


# What each route runs: freeze asks the kernel, build and restore run a Dockerfile's RUN lines.
EXECUTES = re.compile(r"/(freeze|images/build|notebooks/restore)$")


async def test_recording_each_route_asks_the_authorizer_what_docs_security_md_says(jp_fetch):
    asked_for = {}
    for pattern, handler in route_table():
        path = concrete(pattern).lstrip("/").split("/")
        for method in ("get", "post", "delete"):
            if getattr(handler, method).__qualname__.startswith(("APIHandler", "JupyterHandler", "RequestHandler")):
                continue
            ASKED.clear()
            try:
                await jp_fetch(*path, method=method.upper(), **({"body": "{}"} if method == "post" else {}))
            except HTTPClientError:
                pass  # a 4xx for the made-up ids: the authorizer was asked before
            ours = [(action, resource) for m, p, action, resource in ASKED if m == method.upper() and p.endswith("/".join(path))]
            assert ours, (method, pattern)
            asked_for[(method, pattern)] = ours[0]
    for (method, pattern), (action, resource) in asked_for.items():
        wanted = {"get": "read", "post": "execute" if EXECUTES.search(pattern.replace("\\", "")) else "write",
                  "delete": "delete"}[method]
        assert action == wanted, (method, pattern, action)
        assert resource == ("kernels" if method == "delete" and "kernels/" in pattern else "mlcontainer"), (method, pattern, resource)
