"""Where freeze's scripts run: inside the kernel's container, as the kernel's user.

On an engine that reaches the container, ``docker exec`` (:func:`engine_runner`). A kernel on a
Swarm node is out of the manager's reach (it runs no command in another node's container), so
there the kernel itself runs the script as a subprocess, asked through its own channel with
Jupyter's key, the way freeze already asks for the kernel's environment (:class:`KernelRunner`).
"""

from __future__ import annotations

from typing import Any, Callable

from ...core.errors import FreezeError
from .kernel_env import marked_json

# (exit code, stdout, stderr) of a command run in the kernel's container.
Runner = Callable[[list[str]], tuple[int | None, str, str]]

RUN_MARK = "MLCONTAINER-RUN "
# One expression, so that the user's namespace gains no names; the command is a list literal
# (repr), never a shell string.
_RUN_CODE = (
    "(lambda s, j: print({mark!r} + j.dumps((lambda r: [r.returncode, r.stdout, r.stderr])(s.run(\n"
    "    {command!r}, stdin=s.DEVNULL, capture_output=True, text=True, errors='replace')))))"
    "(__import__('subprocess'), __import__('json'))"
)


def engine_runner(backend: Any, container_id: str) -> Runner:
    """Commands through the engine (``docker exec``), in the container as its user."""
    return lambda command: backend.exec_sync(container_id, command)


class KernelRunner:
    """Commands run by the kernel as subprocesses. Blocking: the freeze runs in a worker thread,
    so this is a client of its own (with its own session: no reply can be taken for another
    client's). Made from the kernel's connection info; ``close()`` when done."""

    def __init__(self, connection_info: dict[str, Any], timeout: float = 120) -> None:
        from jupyter_client import BlockingKernelClient

        self.timeout = timeout
        self.client = BlockingKernelClient()
        self.client.load_connection_info(connection_info)
        self.client.start_channels()
        self._ready = False  # made ready (IOPub joined) before the first command, once

    def __call__(self, command: list[str]) -> tuple[int | None, str, str]:
        chunks: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream" and msg["content"].get("name") == "stdout":
                chunks.append(msg["content"].get("text", ""))

        try:
            if not self._ready:
                self.client.wait_for_ready(timeout=30)
                self._ready = True
            reply = self.client.execute_interactive(
                _RUN_CODE.format(mark=RUN_MARK, command=list(command)), silent=True, store_history=False,
                output_hook=collect, timeout=self.timeout,
            )
        except Exception as exc:  # a busy kernel times out; a dead one fails to connect
            raise FreezeError(
                f"The kernel did not run freeze's inventory ({type(exc).__name__}: {exc}); is a cell still "
                "running? Interrupt it or wait, then freeze again. Nothing was written."
            ) from None
        answer = marked_json("".join(chunks), RUN_MARK)
        if answer is not None:
            code, out, err = answer
            return code, out, err
        status = reply.get("content", {}).get("status")
        raise FreezeError(f"The kernel ran freeze's inventory without an answer (status {status!r}); nothing was written.")

    def close(self) -> None:
        self.client.stop_channels()
