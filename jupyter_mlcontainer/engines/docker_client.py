"""The docker SDK's client for one engine address, and the streams read through it.

:class:`~.docker.Engine` asks :func:`sdk_client` for its client (lazily, and again after the
engine was unreachable) and wraps the SDK's event streams in :class:`EngineStream`, so that
reading a stream raises the same typed errors as a call.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import docker

from .base import ContainerBackend


def engine_address(base_url: str | None) -> str:
    """The address an engine is reached at: ``base_url``, else DOCKER_HOST, else the local socket."""
    return base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def sdk_client(base_url: str | None) -> docker.DockerClient:
    """A new SDK client for the engine at ``base_url`` (None: DOCKER_HOST, else the local socket).
    Blocking: the SDK pings the engine for its API version; its exceptions pass through (the
    engine translates them)."""
    return _EngineClient.from_env(max_pool_size=32, environment=_sdk_environment(base_url))


def _sdk_environment(base_url: str | None) -> dict[str, str]:
    """The variables the SDK reads for the engine at ``base_url`` (default: DOCKER_HOST, else the
    local socket). As with the docker CLI, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH apply to a TCP
    address, whichever way it was given (an engine on the network speaks mutual TLS), and
    are left out for a socket or ssh."""
    env = dict(os.environ)
    host = base_url or env.get("DOCKER_HOST", "")
    if host:
        env["DOCKER_HOST"] = host
    if not host.startswith("tcp://"):
        env.pop("DOCKER_TLS_VERIFY", None)
        env.pop("DOCKER_CERT_PATH", None)
    return env


class _EngineAPI(docker.APIClient):
    """The SDK's client, verifying an engine on the network with the engine's own CA
    (DOCKER_CERT_PATH's ca.pem) in every request: requests lets a CA bundle from the machine's
    HTTPS settings (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE; a company proxy's, often) replace a
    session's CA per request, and then no engine certificate verifies. Proxies still apply."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any,
    ) -> dict[str, Any]:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):  # a CA file (TLSConfig.configure_client)
            settings["verify"] = self.verify
        return settings


class _EngineClient(docker.DockerClient):
    """docker.DockerClient on :class:`_EngineAPI` (``from_env`` builds this class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.api = _EngineAPI(*args, **kwargs)


class EngineStream:
    """An engine event stream (a pull's or a build's progress, a container's stats, events):
    iterating it raises the typed errors; ``close()`` stops it (a cancelled pull stops
    downloading). Each item is read through the engine's ``call_sync``, which translates the
    SDK's errors."""

    def __init__(self, engine: ContainerBackend, stream: Any, image: str | None = None) -> None:
        self._engine, self._stream, self._image = engine, stream, image

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iterator = iter(self._stream)
        end = object()
        while True:
            item = self._engine.call_sync(next, iterator, end, image=self._image)
            if item is end:
                return
            yield item

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:  # a stream the engine already ended: nothing left to stop
            pass
