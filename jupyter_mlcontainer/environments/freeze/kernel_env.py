"""The kernel's own environment (``os.environ`` in the kernel), asked from the kernel: what the
user set with ``%env`` or ``os.environ`` exists only there."""

from __future__ import annotations

import json
from typing import Any, Callable

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


def kernel_environment(
    connection_info: dict[str, Any], timeout: float = 30, still_current: Callable[[], bool] | None = None,
) -> dict[str, str]:
    """The kernel process's current ``os.environ`` (variables set with %env or os.environ
    included), asked from the kernel through a client of its own made from ``connection_info``:
    the one way freeze reads it, for every front door. Blocking: called from a thread with no
    running event loop (a worker thread, the CLI's).

    The client has a session of its own (no reply meant for another client of the kernel is
    taken for its answer), and is made ready first (jupyter_client's ``wait_for_ready``: a client
    fresh from ``start_channels()`` may not receive IOPub yet, and the answer would be lost). Any
    failure raises :class:`KernelEnvironmentUnavailable` with the reason: freeze never quietly
    falls back to the container's configured environment. ``still_current()``, asked while
    waiting, False when the kernel was restarted meanwhile (the question may have gone to the
    kernel that stopped): the wait ends at once, raising KernelEnvironmentUnavailable."""
    import asyncio

    from jupyter_client.asynchronous import AsyncKernelClient

    async def ask() -> dict[str, str]:
        client = AsyncKernelClient()
        client.load_connection_info(connection_info)
        client.start_channels()
        chunks: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                chunks.append(msg["content"].get("text", ""))

        async def unless_restarted(step: Any) -> Any:
            task = asyncio.ensure_future(step)
            while not (await asyncio.wait({task}, timeout=0.25))[0]:
                if still_current is not None and not still_current():
                    task.cancel()
                    raise KernelEnvironmentUnavailable("The kernel restarted while its environment was read")
            return task.result()

        try:
            await unless_restarted(client.wait_for_ready(timeout=timeout))
            reply = await unless_restarted(client.execute_interactive(
                ENV_CODE, silent=True, store_history=False, output_hook=collect, timeout=timeout,
            ))
        except KernelEnvironmentUnavailable:
            raise
        except Exception as exc:
            raise KernelEnvironmentUnavailable(_reason(exc, timeout)) from None
        finally:
            client.stop_channels()
        return _answer(reply, "".join(chunks))

    # An event loop of its own, in the calling (worker) thread: a blocking client would take
    # whatever loop jupyter_core finds for the thread, which may be another thread's, running.
    return asyncio.run(ask())


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
