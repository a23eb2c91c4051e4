"""What a cluster backend leaves to one Docker engine (a Swarm's manager's; for Slurm this host's,
which holds the images the cluster's bundles are made from): the members of the backend seam
(:class:`~.base.ContainerBackend`) that are not about kernels on the nodes.

:class:`ImageEngine` forwards each of them, by name, to the :class:`~.docker.Engine` at its
address; :class:`~.swarm.SwarmBackend` and :class:`~.slurm.SlurmBackend` build on it and answer
the rest (kernels on the nodes, the cluster's GPUs and nodes). Listing them here, rather than
forwarding whatever is asked, keeps the seam explicit: a new member of the protocol needs a
decision for each cluster.
"""

from __future__ import annotations

from typing import IO, Any, Callable, Iterable, TypeVar

import docker

from .docker import Engine, get_engine

T = TypeVar("T")


class ImageEngine:
    """The engine at ``manager_url`` (a DOCKER_HOST; None: the environment's) as the part of a
    cluster backend that one engine answers."""

    def __init__(self, manager_url: str | None) -> None:
        self.engine: Engine = get_engine(manager_url)
        self.base_url = manager_url

    # -- plumbing: the manager's engine makes every call (one SDK client and thread pool per
    # address, its errors translated), the Swarm's own API calls included.

    @property
    def address(self) -> str:
        """The manager's address (the cluster's name in the status, the image list and messages)."""
        return self.engine.address

    @property
    def api(self) -> docker.APIClient:
        """The manager's SDK client: the Swarm API (services, tasks, nodes, secrets) is its."""
        return self.engine.api

    @property
    def client(self) -> docker.DockerClient:
        return self.engine.client

    def call_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.engine.call_sync(fn, *args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.engine.call(fn, *args, **kwargs)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.engine.run_blocking(fn, *args)

    # -- the engine itself: the manager's answers stand for the cluster's (the status, the
    # doctor, the provisioner's reachability check, the memory a kernel's /dev/shm is sized by).

    def info_sync(self) -> dict[str, Any]:
        return self.engine.info_sync()

    def version_sync(self) -> dict[str, Any]:
        return self.engine.version_sync()

    def disk_usage_sync(self) -> dict[str, Any]:
        return self.engine.disk_usage_sync()

    # -- images: the manager's engine holds the images the nodes run (an admin loads each node's
    # copy from it; .swarm_images asks the nodes which hold it), and runs the image probes.

    def inspect_image_sync(self, image: str) -> dict[str, Any]:
        return self.engine.inspect_image_sync(image)

    def images_sync(self) -> list[dict[str, Any]]:
        return self.engine.images_sync()

    def remove_image_sync(self, image: str) -> None:
        self.engine.remove_image_sync(image)

    def import_image_sync(self, data: bytes, tag: str, changes: list[str]) -> None:
        self.engine.import_image_sync(data, tag, changes)

    def pull_stream(self, image: str) -> Iterable[dict[str, Any]]:
        return self.engine.pull_stream(image)

    def build_stream(
        self, context: IO[bytes], tag: str, *, build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Iterable[dict[str, Any]]:
        return self.engine.build_stream(context, tag, build_args=build_args, labels=labels)

    def run_to_completion_sync(self, image: str, command: list[str], **options: Any) -> tuple[int, str, str]:
        """A short helper container on the manager's engine, not on the nodes
        (``helpers_reach_kernels`` is False)."""
        return self.engine.run_to_completion_sync(image, command, **options)

    # -- volumes: the manager engine's own; each node's cache volume is set up by the cache
    # keeper's task on that node (SwarmBackend.ensure_service_sync).

    def inspect_volume_sync(self, name: str) -> dict[str, Any] | None:
        return self.engine.inspect_volume_sync(name)

    def create_volume_sync(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        return self.engine.create_volume_sync(name, labels)

    def remove_volume_sync(self, name: str) -> None:
        self.engine.remove_volume_sync(name)

    # -- containers of the manager's own engine. A kernel's service is none of them: for a kernel
    # these raise ContainerNotFound (the kernel list then shows no live stats for it).

    def stats_stream(self, container_id: str) -> Iterable[dict[str, Any]]:
        return self.engine.stats_stream(container_id)

    def wait_container_sync(self, container_id: str, timeout: float = 120) -> int:
        return self.engine.wait_container_sync(container_id, timeout=timeout)
