"""Images: pull and build as jobs, probe, prepare, remove; which Swarm nodes hold one; the helper image."""

from __future__ import annotations

from typing import Any

from ..cache.volume import ROLE_KEEPER, remove_cache_keeper
from ..core.errors import Conflict
from ..core.identity import owner_id
from ..core.labels import LABEL_CACHE_VOLUME, LABEL_OWNER, LABEL_ROLE
from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..engines.docker import check_reference
from ..images.jobs import Job
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
