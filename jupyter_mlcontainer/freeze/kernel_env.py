"""The kernel's own environment (``os.environ`` in the kernel), asked from the kernel: what the
user set with ``%env`` or ``os.environ`` exists only there."""

from __future__ import annotations

import json
from typing import Any


ENV_CODE = "import json as _j, os as _o; print('MLCONTAINER-ENV ' + _j.dumps(dict(_o.environ)))"


def _parse_env_output(text: str) -> dict[str, str] | None:
    for line in text.splitlines():
        if line.startswith("MLCONTAINER-ENV "):
            return json.loads(line[len("MLCONTAINER-ENV "):])
    return None


async def kernel_environment(client: Any, timeout: float = 30) -> dict[str, str] | None:
    """The kernel process's current ``os.environ`` (variables set with %env or os.environ
    included), asked through an async kernel client; None if the kernel does not answer."""
    chunks: list[str] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"].get("text", ""))

    try:
        await client.execute_interactive(ENV_CODE, silent=True, store_history=False, output_hook=collect, timeout=timeout)
    except Exception:
        return None
    return _parse_env_output("".join(chunks))


def kernel_environment_from_file(connection_file: str, timeout: float = 30) -> dict[str, str] | None:
    """Same as :func:`kernel_environment`, from a kernel's connection file (CLI use)."""
    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels()
    try:
        chunks: list[str] = []
        client.execute_interactive(
            ENV_CODE, silent=True, store_history=False, timeout=timeout,
            output_hook=lambda msg: chunks.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
        )
        return _parse_env_output("".join(chunks))
    except Exception:
        return None
    finally:
        client.stop_channels()
