"""Freeze a running kernel (one path for every front door), restore a shared notebook, export for Binder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import EngineError, FreezeError, KernelContainerNotFound
from ..core.identity import owner_id
from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..environments.freeze import FreezeResult, KernelRunner, container_of_kernel, freeze_container
from ..environments.restore import RestorePlan, plan_restore, restore, start_restore
from ..environments.sharing import environment_record, frozen_names, record_in_notebook


@dataclass(frozen=True)
class KernelContainer:
    """A kernel's container and the backend it runs on (the engine, or a Swarm: its service)."""

    backend: ContainerBackend
    id: str


class SharingMixin:
    """Part of :class:`~jupyter_mlcontainer.service.MLContainerService`."""

    engine: ContainerBackend
    settings: MLContainer

    def container_of_kernel(self, kernel_id: str, *, user: str | None = None) -> KernelContainer:
        """The running container of ``kernel_id``, on the engine or a Swarm a kernelspec names:
        one this process started, or with ``user`` one that user started from any of their
        servers (the CLI's view)."""
        owner = None if user else owner_id()
        for backend in self.backends():
            try:
                return KernelContainer(backend, container_of_kernel(backend, kernel_id, owner=owner, user=user))
            except KernelContainerNotFound:
                continue
            except EngineError:
                if backend is self.engine:
                    raise  # a Swarm that does not answer: the kernel is not found there
        raise KernelContainerNotFound(f"No running container kernel with id {kernel_id}")

    def freeze(
        self, container: KernelContainer, runtime_env: dict[str, str] | None, *, connection_info: dict[str, Any] | None = None,
        output_dir: str | None = None, dockerfile_name: str = "Dockerfile", force: bool = False,
        notebook: str | None = None, write_notebook: bool = False,
    ) -> tuple[FreezeResult, dict[str, Any] | None]:
        """Freeze a running container kernel into a Dockerfile and requirements; with
        ``notebook``, also the environment record for its metadata (written into the file with
        ``write_notebook``; the panel puts it into the open document instead). A kernel on a
        Swarm node runs freeze's scripts itself, through ``connection_info`` (its connection)."""
        runner = None
        if container.backend is not self.engine:
            if connection_info is None:
                raise FreezeError("A kernel on a Swarm node is frozen through its connection; none was given "
                                  "(freeze it by kernel id, from the server that started it)")
            runner = KernelRunner(connection_info)
        try:
            result = freeze_container(
                container.backend, container.id, output_dir=output_dir, dockerfile_name=dockerfile_name,
                overwrite=force, runtime_env=runtime_env, runner=runner,
            )
        finally:
            if runner is not None:
                runner.close()
        record = None
        if notebook:
            tag, kernelspec = frozen_names(notebook, result.dockerfile)
            record = environment_record(result, notebook, tag, kernelspec)
            if write_notebook:
                record_in_notebook(notebook, record)
        return result, record

    def restore_plan(self, notebook: str, *, pull: bool = True, wheelhouse: str | None = None) -> RestorePlan:
        return plan_restore(self.engine, notebook, pull=pull, wheelhouse=wheelhouse,
                            context_limit_mb=self.jobs.context_limit_mb)

    def start_restore(self, notebook: str, fingerprint: str, **kwargs: Any) -> dict[str, Any]:
        return start_restore(self.engine, self.jobs, notebook, fingerprint, **kwargs)

    def restore(self, notebook: str, confirm: Callable[[RestorePlan], bool], **kwargs: Any) -> dict[str, Any]:
        return restore(self.engine, notebook, confirm=confirm, jobs=self.jobs, **kwargs)
