"""Freeze a running kernel (one path for every front door), restore a shared notebook, export for Binder."""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import EngineError, FreezeError, KernelContainerNotFound, KernelEnvironmentUnavailable, NotFound
from ..core.identity import owner_id
from ..core.settings import MLContainer
from ..engines.base import ContainerBackend
from ..environments.freeze import FreezeResult, KernelRunner, container_of_kernel, freeze_container, kernel_environment
from ..environments.host_fit import HostFit, host_fit
from ..environments.restore import RestorePlan, plan_restore, restore, start_restore
from ..environments.sharing import environment_record, export_binder, frozen_names, read_record, record_in_notebook

log = logging.getLogger("jupyter_mlcontainer.service")
# A freeze that overlaps a kernel restart starts over on the new container this many times.
RESTARTS_DURING_FREEZE = 2


def _connection_file_of(kernel_id: str) -> dict[str, Any] | None:
    """The connection info of ``kernel_id`` from its manager's connection file in this user's
    runtime folder (where jupyter_server and jupyter_client write it), or None."""
    from jupyter_core.paths import jupyter_runtime_dir

    for path in glob.glob(os.path.join(jupyter_runtime_dir(), f"kernel-{glob.escape(kernel_id)}.json")):
        with open(path) as f:
            return json.load(f)
    return None


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

    def freeze_kernel(
        self, kernel_id: str, connection_info: dict[str, Any] | None = None, *, user: str | None = None,
        output_dir: str | None = None, dockerfile_name: str = "Dockerfile", force: bool = False,
        notebook: str | None = None, write_notebook: bool = False,
    ) -> tuple[FreezeResult, dict[str, Any] | None]:
        """Freeze the running kernel ``kernel_id``: the one freeze path of every front door (the
        panel's and the REST API's, the CLI's ``--kernel-id``). Its environment (what the user set
        with %env or os.environ) is asked from the kernel through ``connection_info`` (else the
        connection file the kernel's manager wrote in this user's runtime folder), the one way
        (kernel_env.py). ``user``: a kernel of that user's, from any of their servers (the CLI);
        else one this process started. A restart under the freeze (the kernel's container
        changed while it was asked, or went away) starts it over on the new container, at most
        :data:`RESTARTS_DURING_FREEZE` times. Blocking."""
        if connection_info is None:
            connection_info = _connection_file_of(kernel_id)
        for attempt in range(RESTARTS_DURING_FREEZE + 1):
            try:
                container = self.container_of_kernel(kernel_id, user=user)
                runtime_env = None if connection_info is None else kernel_environment(
                    connection_info, still_current=lambda: self._is_container_of(kernel_id, user, container))
                if not self._is_container_of(kernel_id, user, container):
                    raise KernelEnvironmentUnavailable("The kernel restarted while its environment was read")
                return self.freeze(
                    container, runtime_env, connection_info=connection_info, output_dir=output_dir,
                    dockerfile_name=dockerfile_name, force=force, notebook=notebook, write_notebook=write_notebook,
                )
            except (KernelEnvironmentUnavailable, NotFound):
                if attempt == RESTARTS_DURING_FREEZE or not self._back_after_a_restart(kernel_id, user):
                    raise
                log.info("Kernel %s restarted while it was frozen; freezing its new container", kernel_id)
        raise AssertionError("unreachable")

    def _is_container_of(self, kernel_id: str, user: str | None, container: KernelContainer) -> bool:
        """Whether ``container`` still runs ``kernel_id`` (no restart replaced it)."""
        try:
            return self.container_of_kernel(kernel_id, user=user) == container
        except NotFound:
            return False

    def _back_after_a_restart(self, kernel_id: str, user: str | None, timeout: float = 30) -> bool:
        """Whether the kernel has a running container again within ``timeout`` (a restart
        replaces it; a kernel shut down has none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.container_of_kernel(kernel_id, user=user)
                return True
            except NotFound:
                time.sleep(0.1)
        return False

    def export_binder(self, repo: str, dockerfile: str, *, overwrite: bool = False) -> str:
        """Write ``binder/`` (Dockerfile, requirements) for Binder / repo2docker from a frozen
        Dockerfile; returns the folder."""
        return export_binder(repo, dockerfile, overwrite=overwrite)

    def restore_plan(self, notebook: str, *, pull: bool = True, wheelhouse: str | None = None) -> RestorePlan:
        return plan_restore(self.engine, notebook, pull=pull, wheelhouse=wheelhouse,
                            context_limit_mb=self.jobs.context_limit_mb)

    def notebook_host_fit(self, notebook: str) -> HostFit:
        """Whether a frozen notebook's GPU code can run on the engine's host, without restoring
        it (``doctor --notebook``): the checks restore's plan shows. Blocking (NVML)."""
        return host_fit(self.engine, notebook, read_record(notebook))

    def start_restore(self, notebook: str, fingerprint: str, **kwargs: Any) -> dict[str, Any]:
        return start_restore(self.engine, self.jobs, notebook, fingerprint, **kwargs)

    def restore(self, notebook: str, confirm: Callable[[RestorePlan], bool], **kwargs: Any) -> dict[str, Any]:
        return restore(self.engine, notebook, confirm=confirm, jobs=self.jobs, **kwargs)
