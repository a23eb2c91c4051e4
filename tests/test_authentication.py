"""Every route of the extension needs Jupyter's authentication, enumerated over the routes as
registered (a new route without it fails here): no token, a wrong token, and a cookie session
without the XSRF token for POST and DELETE are all refused."""

from __future__ import annotations

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlcontainer.server.handlers import route_table

from .test_authorization import concrete


def implemented(handler) -> list[str]:
    return [m for m in ("get", "post", "delete")
            if not getattr(handler, m).__qualname__.startswith(("APIHandler", "JupyterHandler", "RequestHandler"))]


async def test_every_route_refuses_a_missing_or_wrong_token(jp_fetch):
    checked = 0
    for pattern, handler in route_table():
        path = concrete(pattern).lstrip("/").split("/")
        for method in implemented(handler):
            for auth in ("", "token wrong-token"):
                with pytest.raises(HTTPClientError) as info:
                    await jp_fetch(*path, method=method.upper(), headers={"Authorization": auth},
                                   **({"body": "{}"} if method == "post" else {}))
                assert info.value.code == 403, (method, pattern, auth, info.value.code)
                checked += 1
    assert checked >= 2 * 15, checked


async def test_changes_from_a_cookie_session_need_the_xsrf_token(jp_fetch, jp_serverapp):
    token = jp_serverapp.identity_provider.token
    # A browser's first visit with ?token=: the server answers with a login cookie.
    login = await jp_fetch("api", "status", params={"token": token}, headers={"Authorization": ""})
    cookies = [c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie")]
    assert cookies, "the server set no login cookie"
    session = {"Authorization": "", "Cookie": "; ".join(cookies)}
    assert (await jp_fetch("mlcontainer", "api", "status", headers=session)).code == 200  # valid for reads
    checked = 0
    for pattern, handler in route_table():
        path = concrete(pattern).lstrip("/").split("/")
        for method in implemented(handler):
            if method == "get":
                continue
            with pytest.raises(HTTPClientError) as info:
                await jp_fetch(*path, method=method.upper(), headers=session,
                               **({"body": "{}"} if method == "post" else {}))
            assert info.value.code == 403, (method, pattern, info.value.code)
            checked += 1
    assert checked >= 7, checked
