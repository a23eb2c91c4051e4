"""Container kernelspecs: list, add (the one place their options are built), remove."""

from __future__ import annotations

from typing import Any

from ..core.options import kernel_options
from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..images.probe import ImageFacts
from ..kernels.kernelspecs import ContainerKernelSpec, add_kernelspec, list_kernelspecs, remove_kernelspec
from ..kernels.pool import get_pool


class KernelspecsMixin:
    """Part of :class:`~jupyter_mlcontainer.service.MLContainerService`."""

    engine: ContainerBackend
    settings: MLContainer

    def kernelspecs(self) -> list[ContainerKernelSpec]:
        return list_kernelspecs(self.kernel_spec_manager)

    def add_kernelspec(
        self, image: str, *, name: str | None = None, display: str | None = None, gpus: Any = None, memory: Any = None,
        cpus: Any = None, shm_size: Any = None, env: Any = None, options: Any = None, user: bool = True,
        prefix: str | None = None, facts: ImageFacts | None = None,
    ) -> ContainerKernelSpec:
        """Write a container kernelspec for ``image`` (the CLI's `kernel add`, the panel's and the
        REST API's "add as kernel"): its options from the front doors' values, in the one place
        that builds them (core/options.py), checked when written. Probes the image once."""
        config = kernel_options(gpus=gpus, memory=memory, cpus=cpus, shm_size=shm_size, env=env, options=options)
        return add_kernelspec(self.engine, image, name=name, display=display, options=config, user=user, prefix=prefix,
                              facts=facts, ksm=self.kernel_spec_manager)

    def remove_kernelspec(self, name: str) -> str:
        """Remove a container kernelspec; this server's spares of it go too."""
        path = remove_kernelspec(name, self.kernel_spec_manager)
        get_pool(self.engine).forget(kernelspec=name)
        return path
