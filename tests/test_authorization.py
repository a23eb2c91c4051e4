"""A deployment's Authorizer governs every route of the extension (issue 14, finding 6): with a
read-only authorizer every read works and every change is refused, enumerated over the routes
as registered, so a new route without the check fails here."""

from __future__ import annotations

import re
import uuid

import pytest
from jupyter_server.auth.authorizer import Authorizer
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.handlers import route_table


class ReadOnlyAuthorizer(Authorizer):
    """A read-only share: reads allowed, everything else refused."""

    def is_authorized(self, handler, user, action, resource):
        return action == "read"


@pytest.fixture
def jp_server_config(jp_server_config):
    return {**jp_server_config, "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": ReadOnlyAuthorizer}}


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
