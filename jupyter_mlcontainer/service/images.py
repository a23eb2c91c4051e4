"""Images: pull and build as jobs, probe, prepare, remove; which Swarm nodes hold one; the helper image."""

from __future__ import annotations

from typing import Any, Callable

from ..cache.helper_image import HelperImage, helper_image
from ..cache.volume import ROLE_KEEPER, remove_cache_keeper
from ..core.errors import BadRequest, Conflict, ImageNotFound
from ..core.identity import owner_id
from ..core.labels import LABEL_CACHE_VOLUME, LABEL_OWNER, LABEL_ROLE
from ..core.names import check_reference
from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..engines.registry import backend_for
from ..images.jobs import Job
from ..images.probe import ImageFacts, prepare_image, probe_image_sync
from ..kernels.claims import is_spare, kernel_id_of
from ..kernels.pool import get_pool


class ImagesMixin:
    """Part of :class:`~jupyter_mlcontainer.service.MLContainerService`."""

    engine: ContainerBackend
    settings: MLContainer

    def pull(self, image: str) -> Job:
        return self.jobs.pull(image)

    def build(
        self, dockerfile: str, tag: str, *, build_args: dict[str, str] | None = None, wheelhouse: str | None = None,
    ) -> Job:
        """Start building ``dockerfile`` (its context checked and packed here) as ``tag``."""
        return self.jobs.build(dockerfile, tag, build_args=build_args, wheelhouse=wheelhouse)

    def remove_image(self, image: str) -> dict[str, Any]:
        """Remove an image (a tag, or an id) unless a container kernelspec or a kernel uses it:
        the refusal (409) names them. Returns what was removed."""
        check_reference(image)
        attrs = self.engine.inspect_image_sync(image)
        image_id = attrs["Id"]
        names = set(attrs.get("RepoTags") or []) | {image, image_id}
        specs = [s.name for s in self.kernelspecs() if s.image in names or (s.facts or {}).get("image_id") == image_id]
        if specs:
            raise Conflict(f"{image} is the image of kernelspec(s) {', '.join(sorted(specs))}: remove them first "
                           "(jupyter mlcontainer kernel remove NAME)")
        users = [c for c in self.engine.containers_sync([f"{LABEL_ROLE}=kernel"]) if c.get("ImageID") == image_id]
        pool = get_pool(self.engine)
        for spare in [c for c in users if is_spare(c) and not kernel_id_of(c)]:
            if (spare.get("Labels") or {}).get(LABEL_OWNER) == owner_id():
                pool.forget(container_id=spare["Id"])  # this server's own spare goes with the image
                users.remove(spare)
        if users:
            kernels = ", ".join(sorted(kernel_id_of(c) or c["Id"][:12] for c in users))
            raise Conflict(f"{image} is used by kernel container(s) of kernel(s) {kernels}: stop them first")
        for keeper in self.engine.containers_sync([f"{LABEL_ROLE}={ROLE_KEEPER}"]):
            if keeper.get("ImageID") == image_id:  # the next kernel start runs it again, from the helper image
                remove_cache_keeper(self.engine, (keeper.get("Labels") or {}).get(LABEL_CACHE_VOLUME, ""))
        self.engine.remove_image_sync(image)
        return {"removed": image, "id": image_id}

    def probe_image(self, image: str, *, refresh: bool = False) -> ImageFacts:
        """What ``image`` holds (Python, ipykernel, PyTorch, CUDA): the probe's answer, cached
        per image id unless ``refresh``."""
        return probe_image_sync(self.engine, image, refresh=refresh)

    def prepare_image(
        self, image: str, *, tag: str | None = None, wheelhouse: str | None = None, index_url: str | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[str, ImageFacts]:
        """``image`` with ipykernel: itself if it has it, else a derived image built as ``tag``.
        Returns (the image to use, its facts). Blocking, for as long as the build takes."""
        return prepare_image(self.engine, image, tag=tag, wheelhouse=wheelhouse, index_url=index_url, on_line=on_line)

    def image_nodes(
        self, image: str, manager: str | None = None, on_ask: Callable[[str], None] | None = None,
    ) -> dict[str, dict[str, str]]:
        """For each Swarm (``manager``, else every one a kernelspec names): which of its nodes hold
        this very build of ``image`` (engines/swarm_images.py), asked there and then. ``on_ask``
        hears each manager's address before its nodes are asked (a few seconds each)."""
        backends = [backend_for("swarm", manager)] if manager else self.clusters()
        if not backends:
            raise BadRequest("No Swarm to ask: no container kernelspec has placement=swarm; name its manager with "
                             "--swarm (e.g. unix:///var/run/docker.sock on the manager, or tcp://manager:2376 with TLS)")
        answers: dict[str, dict[str, str]] = {}
        for backend in backends:
            try:
                python = probe_image_sync(backend, image).python or "python3"
            except ImageNotFound:
                python = "python3"  # not on the manager: the nodes are asked for it by its tag
            if on_ask is not None:
                on_ask(backend.address)
            answers[backend.address] = backend.image_on_nodes(image, python)
        return answers

    def helper_image(self) -> HelperImage:
        """The trusted image the cache's keeper runs in (cache/helper_image.py), made on the engine
        if it is not there."""
        return helper_image(self.engine, self.settings.helper_image)
