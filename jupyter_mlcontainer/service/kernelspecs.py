"""Container kernelspecs: list, add (the one place their options are built), remove."""

from __future__ import annotations

from typing import Any

from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..kernels.kernelspecs import ContainerKernelSpec, add_kernelspec, list_kernelspecs, remove_kernelspec
from ..kernels.pool import get_pool


class KernelspecsMixin:
    """Part of :class:`~jupyter_mlcontainer.service.MLContainerService`."""

    engine: ContainerBackend
    settings: MLContainer

    def kernelspecs(self) -> list[ContainerKernelSpec]:
        return list_kernelspecs(self.kernel_spec_manager)

    def add_kernelspec(self, image: str, **kwargs: Any) -> ContainerKernelSpec:
        return add_kernelspec(self.engine, image, ksm=self.kernel_spec_manager, **kwargs)

    def remove_kernelspec(self, name: str) -> str:
        """Remove a container kernelspec; this server's spares of it go too."""
        path = remove_kernelspec(name, self.kernel_spec_manager)
        get_pool(self.engine).forget(kernelspec=name)
        return path
