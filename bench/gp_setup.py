"""Gateway Provisioners' Docker provisioner, set up as its docs say, for bench/kernel_start.py.

* gateway_provisioners installed in this Python (pip install, with a message, when missing);
* its kernel image (gateway_provisioners_image.sh, built offline FROM GP_BASE_IMAGE when missing);
* its kernelspec from its own `jupyter docker-spec install`, in a private JUPYTER_DATA_DIR;
* on the host: KERNEL_USERNAME non-root (GP refuses root), GP_RESPONSE_IP the docker0 address
  (where its launcher in the container sends the kernel's connection info back).

GP reads GP_SOCKET_TIMEOUT (and its other GP_* variables) when it is imported, so each setting
runs in a process of its own: :class:`GatewayChild` runs ``kernel_start.py --gp-child``, which
starts one kernel per request, so that its starts stay interleaved with the other kinds'.
(Not named gateway_provisioners.py: this folder is first on sys.path and would shadow GP.)
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from typing import Any

GP_BASE_IMAGE = "mlcontainer-test/base:bookworm"  # the same Python and ipykernel as our first row
GP_IMAGE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gateway_provisioners_image.sh")
GP_KERNEL = "gp-bench"


def gp_version() -> str:
    """gateway_provisioners' version here; installed with pip first when missing."""
    if importlib.util.find_spec("gateway_provisioners") is None:
        print("Gateway Provisioners (PyPI gateway_provisioners) is not installed in this Python "
              f"({sys.executable}): installing it with pip for the comparison (--skip-gp leaves it out)...",
              file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "gateway_provisioners"], check=True, stdout=sys.stderr)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"pip install gateway_provisioners failed ({exc}): install it, or run with --skip-gp") from None
        importlib.invalidate_caches()
    return importlib.metadata.version("gateway_provisioners")


def gp_image(version: str) -> str:
    """GP's kernel image for ``version``, built offline by gateway_provisioners_image.sh when missing."""
    image = f"mlcontainer-bench/gateway-provisioners:{version}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        print(f"Building Gateway Provisioners' kernel image {image} (once)...", file=sys.stderr)
        try:
            subprocess.run(["bash", GP_IMAGE_SCRIPT, image, GP_BASE_IMAGE], check=True,
                           env={**os.environ, "GP_VERSION": version})
        except subprocess.CalledProcessError:
            raise SystemExit(f"{GP_IMAGE_SCRIPT} could not build {image} (see above): fix it, or run with --skip-gp") from None
    return image


def docker0_address() -> str:
    """The host's address on the default bridge (`ip -4 addr show docker0`)."""
    try:
        out = subprocess.run(["ip", "-4", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    except FileNotFoundError:  # no iproute2: the engine knows the bridge's gateway
        out = subprocess.run(["docker", "network", "inspect", "bridge", "--format",
                              "inet {{(index .IPAM.Config 0).Gateway}}/"], capture_output=True, text=True).stdout
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    if not found:
        raise SystemExit("No IPv4 address on docker0 (ip -4 addr show docker0), which GP_RESPONSE_IP needs: "
                         "run with --skip-gp")
    return found.group(1)


def setup(data_dir: str) -> tuple[str, dict[str, str]]:
    """Install GP's kernelspec into ``data_dir``; return (a label, the environment GP runs in)."""
    version = gp_version()
    image = gp_image(version)
    env = {**os.environ, "JUPYTER_DATA_DIR": data_dir}
    env.pop("GP_SOCKET_TIMEOUT", None)  # each child says its own
    installed = subprocess.run(
        [sys.executable, "-m", "jupyter", "docker-spec", "install", "--user", "--kernel-name", GP_KERNEL,
         "--image-name", image, "--display-name", f"GP {version} Docker"],
        env=env, capture_output=True, text=True,
    )
    if installed.returncode != 0:
        raise SystemExit(f"jupyter docker-spec install failed (or run with --skip-gp):\n{installed.stderr}")
    env.update({
        # GP refuses root (its unauthorized_users); a name of this run's own also names its containers.
        "KERNEL_USERNAME": f"mlc-bench-{os.getpid()}",
        "GP_RESPONSE_IP": docker0_address(),
        # Its kernelspec runs the launcher as `python`: this interpreter, not a shim in front of it.
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    })
    return f"Gateway Provisioners {version} Docker", env


def cleanup(env: dict[str, str]) -> None:
    """Remove the containers GP's starts of this run left (none when all went well)."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=app=gateway-provisioners",
         "--filter", f"name=^/?{env['KERNEL_USERNAME']}-"], capture_output=True, text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


class GatewayChild:
    """One GP setting: a process (``script --gp-child``) that starts one GP kernel per request."""

    def __init__(self, label: str, env: dict[str, str], script: str, cwd: str) -> None:
        self.label, self.env, self.script, self.cwd = label, env, script, cwd
        self.proc: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, self.script, "--gp-child", GP_KERNEL, self.cwd,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self.env,
        )

    async def measure(self, round_trips: int) -> dict[str, Any]:
        """Start, measure and shut down one kernel there: the child's answer (Start's fields)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{round_trips}\n".encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 300)
        if not line:
            raise RuntimeError(f"{self.label}: its process exited (code {await self.proc.wait()}); see above")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.label}: the start failed: {answer['error']}")
        return answer

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except asyncio.TimeoutError:
                self.proc.kill()
