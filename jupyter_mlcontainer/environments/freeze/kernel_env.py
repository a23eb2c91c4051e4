"""The kernel's own environment (``os.environ`` in the kernel), asked from the kernel: what the
user set with ``%env`` or ``os.environ`` exists only there."""

from __future__ import annotations

import json
from typing import Any

from ...core.errors import FreezeError
from ...core.errors import KernelEnvironmentUnavailable



ENV_MARK = "MLCONTAINER-ENV "
# One expression: the user's namespace gains no names.
ENV_CODE = f"print({ENV_MARK!r} + __import__('json').dumps(dict(__import__('os').environ)))"


def marked_json(text: str, mark: str) -> Any:
    """The JSON after ``mark`` on the line of the kernel's output that starts with it (None if
    no line does): how code freeze runs in a kernel answers."""
    for line in text.splitlines():
        if line.startswith(mark):
            return json.loads(line[len(mark):])
    return None


def private_client(km: Any) -> Any:
    """A client of kernel manager ``km`` whose messages nobody else's replies can be mistaken
    for: ``km.client()`` gives every client the manager's session id with a message counter
    starting at 0, so two of them send the same message ids and one takes the other's reply
    (a freeze beside a test's client, two freezes at once)."""
    from jupyter_client.session import Session

    session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme, username=km.session.username)
    return km.client(session=session)


async def kernel_environment(client: Any, timeout: float = 30) -> dict[str, str]:
    """The kernel process's current ``os.environ`` (variables set with %env or os.environ
    included), asked through an async kernel client.

    A client fresh from ``start_channels()`` may not receive IOPub yet (ZeroMQ's slow joiner):
    the answer would be lost and freeze would quietly fall back to the container's configured
    environment. So the client is made ready first (jupyter_client's own ``wait_for_ready``), and
    any failure raises :class:`KernelEnvironmentUnavailable` with the reason."""
    chunks: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"].get("text", ""))

    try:
        await client.wait_for_ready(timeout=timeout)
        reply = await client.execute_interactive(
            ENV_CODE, silent=True, store_history=False, output_hook=collect, timeout=timeout,
        )
    except Exception as exc:
        raise KernelEnvironmentUnavailable(_reason(exc, timeout)) from None
    return _answer(reply, "".join(chunks))


def kernel_environment_from_file(connection_file: str, timeout: float = 30) -> dict[str, str]:
    """Same as :func:`kernel_environment`, from a kernel's connection file (CLI use)."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels()
    chunks: list[str] = []
    try:
        client.wait_for_ready(timeout=timeout)
        reply = client.execute_interactive(
            ENV_CODE, silent=True, store_history=False, timeout=timeout,
            output_hook=lambda msg: chunks.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
        )
    except Exception as exc:
        raise KernelEnvironmentUnavailable(_reason(exc, timeout)) from None
    finally:
        client.stop_channels()
    return _answer(reply, "".join(chunks))


def _reason(exc: Exception, timeout: float) -> str:
    text = str(exc).lower()
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() or "respond" in text or "timeout" in text:
        why = f"it did not answer within {timeout:.0f} s (is a cell still running? interrupt it or wait)"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return (f"Could not read the kernel's environment: {why}. Freeze needs it to pin the variables "
            "set in the kernel (%env, os.environ); nothing was written.")


def _answer(reply: dict[str, Any], text: str) -> dict[str, str]:
    env = marked_json(text, ENV_MARK)
    if env is None or reply.get("content", {}).get("status") != "ok":
        raise KernelEnvironmentUnavailable(
            "Could not read the kernel's environment: the kernel's answer had no environment "
            f"(status {reply.get('content', {}).get('status')!r}); nothing was written."
        )
    return env
