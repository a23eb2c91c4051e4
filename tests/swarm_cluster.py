"""A real multi-node Docker Swarm on this one machine, for tests of kernels as Swarm service tasks.

``scripts/setup-swarm-cluster.sh`` makes it: a manager and workers that are containers of the main
engine, each running its own dockerd, so the main engine never enters swarm mode and nothing runs
as a second dockerd on the host (which may delete the host's docker0, see disposable_engine.py).
The workers advertise fake GPUs as Swarm generic resources (``NVIDIA-GPU=GPU-fake-w<i>-<j>``), and
one host folder (``shared``) is bind-mounted into every node at the same path, a stand-in for NFS.

Tests talk to the manager (``manager_url``, a DOCKER_HOST) with the docker SDK, and make a node
fail with ``stop_node``/``start_node`` (docker stop/start of its container). A task started with
a generic resource reservation finds its GPU ids in ``DOCKER_RESOURCE_NVIDIA-GPU`` (with a
hyphen: ``os.environ`` has it, a POSIX shell such as dash drops it).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

import docker

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "setup-swarm-cluster.sh")
GPU_RESOURCE = "NVIDIA-GPU"
GPU_ENV = "DOCKER_RESOURCE_NVIDIA-GPU"


@dataclass(frozen=True)
class SwarmNode:
    name: str  # the node container's name on the main engine = the node's hostname in the swarm
    role: str  # "manager" or "worker"
    url: str  # the node's own engine API: a unix socket on the host (root and the docker group)
    gpus: tuple[str, ...]  # its fake GPU ids (generic resources of kind NVIDIA-GPU)


class SwarmCluster:
    """``up()`` runs the setup script (idempotent: fast when the cluster is already up) and reads
    what it prints; ``down()`` removes everything the script made."""

    def __init__(self, images: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.images = tuple(images)
        self.env = {**os.environ, **(env or {})}
        self.manager_url = ""
        self.shared = ""
        self.network = ""
        self.nodes: dict[str, SwarmNode] = {}
        self.setup_seconds = 0.0

    # ------------------------------------------------------------------ lifecycle
    def up(self, timeout: float = 600) -> "SwarmCluster":
        began = time.monotonic()
        done = subprocess.run(["bash", SCRIPT, *self.images], capture_output=True, text=True,
                              timeout=timeout, env=self.env)
        self.setup_seconds = time.monotonic() - began
        if done.returncode:
            raise RuntimeError(f"{SCRIPT} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        self._parse(done.stdout)
        return self

    def _parse(self, stdout: str) -> None:
        nodes = {}
        for line in stdout.splitlines():
            key, _, value = line.partition("=")
            if key == "SWARM_MANAGER":
                self.manager_url = value
            elif key == "SWARM_SHARED":
                self.shared = value
            elif key == "SWARM_NETWORK":
                self.network = value
            elif key == "SWARM_NODE":
                name, role, url, gpus = value.split()
                nodes[name] = SwarmNode(name, role, url, tuple(g for g in gpus.split(",") if g and g != "-"))
        if not (self.manager_url and self.shared and nodes):
            raise RuntimeError(f"{SCRIPT} printed no cluster description:\n{stdout}")
        self.nodes = nodes

    def down(self, purge: bool = False) -> None:
        argv = ["bash", SCRIPT, "--down", *(["--purge"] if purge else [])]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=self.env)
        if done.returncode:
            raise RuntimeError(f"{SCRIPT} --down failed ({done.returncode}):\n{done.stderr[-4000:]}")

    # ------------------------------------------------------------------ nodes
    @property
    def manager(self) -> str:
        return next(n.name for n in self.nodes.values() if n.role == "manager")

    @property
    def workers(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.role == "worker"]

    def client(self, timeout: int = 30) -> docker.DockerClient:
        """A docker SDK client of the manager (close it when done)."""
        return docker.DockerClient(base_url=self.manager_url, timeout=timeout)

    def node_states(self) -> dict[str, str]:
        """hostname -> Swarm status as the manager sees it ("ready", "down", "unknown", ...).
        A hostname listed twice (a stale entry) reports "ready" if any entry is."""
        client = self.client(timeout=10)
        try:
            states: dict[str, str] = {}
            for node in client.api.nodes():
                host = node["Description"]["Hostname"]
                state = node["Status"]["State"]
                if states.get(host) != "ready":
                    states[host] = state
            return states
        finally:
            client.close()

    def wait_node(self, name: str, state: str, timeout: float = 60) -> float:
        """Wait until the manager reports ``name`` in ``state``; returns the seconds waited."""
        began = time.monotonic()
        last: object = None
        while True:
            try:
                last = self.node_states().get(name)
            except Exception as exc:  # the manager itself may be restarting
                last = exc
            if last == state:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"node {name} not {state} within {timeout} s (last: {last!r})")
            time.sleep(0.5)

    def stop_node(self, name: str, kill: bool = False, timeout: float = 60) -> float:
        """Stop the node's container (``kill``: SIGKILL at once, as a node that loses power; else
        ``docker stop``, its dockerd shutting down its tasks) and, for a worker, wait until the
        manager reports it down. Returns the seconds until then."""
        self._check(name)
        began = time.monotonic()
        argv = ["docker", "kill", name] if kill else ["docker", "stop", "--time", "10", name]
        subprocess.run(argv, check=True, capture_output=True, timeout=timeout)
        if name != self.manager:
            self.wait_node(name, "down", timeout=max(1.0, timeout - (time.monotonic() - began)))
        return time.monotonic() - began

    def start_node(self, name: str, timeout: float = 90) -> float:
        """Start the node's container and wait until the manager reports it ready (for the
        manager: until it answers and reports itself and every worker whose container runs
        ready; they reconnect a few seconds after it); returns the seconds taken."""
        self._check(name)
        began = time.monotonic()
        subprocess.run(["docker", "start", name], check=True, capture_output=True, timeout=timeout)
        waiting = [name]
        if name == self.manager:
            waiting += [w for w in self.workers if self._running(w)]
        for node in waiting:
            self.wait_node(node, "ready", timeout=max(1.0, timeout - (time.monotonic() - began)))
        return time.monotonic() - began

    @staticmethod
    def _running(name: str) -> bool:
        done = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name],
                              capture_output=True, text=True)
        return done.stdout.strip() == "true"

    def _check(self, name: str) -> None:
        if name not in self.nodes:
            raise ValueError(f"{name} is not a node of this cluster ({', '.join(self.nodes)})")
