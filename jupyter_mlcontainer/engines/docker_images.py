"""Images and short helper containers on one Docker (or Podman) engine: the part of
:class:`~.docker.Engine` that the image list, image probes, pulls, builds, ``docker import`` and the
cache volume's set-up use.

A helper container (:meth:`EngineImages.run_to_completion_sync`) is registered while it exists,
so that a process exiting meanwhile removes it rather than leave it to an orphan clean-up.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import threading
from typing import IO, Any, Callable, Iterator

import docker
import docker.errors

from ..core.errors import EngineError, EngineUnavailable
from ..core.identity import owner_id
from ..core.labels import LABEL_OWNER
from ..core.names import split_reference
from .base import NO_NEW_PRIVILEGES
from .docker_client import EngineStream
from .docker_errors import _explanation


class EngineImages:
    """Images (inspect, list, import, remove, pull, build) and helper containers run to
    completion. A mixin of :class:`~.docker.Engine`: the engine's ``api`` and ``call_sync`` make
    the calls, so errors come out typed as for any other call."""

    api: docker.APIClient  # the engine's SDK client (blocking)
    call_sync: Callable[..., Any]  # the engine's: runs a blocking call, translating errors

    def inspect_image_sync(self, image: str) -> dict[str, Any]:
        """The image's inspect data (its id, config, labels); ImageNotFound when absent."""
        return self.call_sync(lambda: self.api.inspect_image(image), image=image)

    def images_sync(self) -> list[dict[str, Any]]:
        """The engine's images (``docker images``), for the image list and the helper image's clean-up."""
        return self.call_sync(lambda: self.api.images())

    def import_image_sync(self, data: bytes, tag: str, changes: list[str]) -> None:
        """Make image ``tag`` from a file system given as a tar (``docker import``). Blocking."""
        repository, _, name = tag.rpartition(":")

        def do_import() -> None:
            answer = self.api.import_image_from_data(data, repository=repository, tag=name, changes=changes)
            for line in str(answer).splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("error"):
                    raise EngineError(f"Could not import {tag}: {event['error']}")

        self.call_sync(do_import)

    def remove_image_sync(self, image: str) -> None:
        """Remove a tag (or an image by id); the engine refuses (Conflict) while a container uses it."""
        self.call_sync(lambda: self.api.remove_image(image), image=image)

    def pull_stream(self, image: str) -> EngineStream:
        """The engine's progress events of pulling ``image`` (a closable stream; an ``error``
        key in an event is the pull's failure). Blocking."""
        repo, tag = split_reference(image)
        # No ``image=``: a registry's "not found" is the pull's failure, in the engine's words,
        # not "the image is not present here".
        stream = self.call_sync(lambda: self.api.pull(repo, tag=tag, stream=True, decode=True))
        return EngineStream(self, stream)

    def build_stream(
        self, context: IO[bytes], tag: str, *, build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> EngineStream:
        """The engine's events of building the tar ``context`` (streamed from the file, never
        read into memory) as ``tag``. Blocking."""
        stream = self.call_sync(
            lambda: self.api.build(
                fileobj=_LargeReads(context), custom_context=True, tag=tag, rm=True, forcerm=True, decode=True,
                buildargs=build_args or {}, labels=labels or None,
            )
        )
        return EngineStream(self, stream)

    def run_to_completion_sync(
        self,
        image: str,
        command: list[str],
        *,
        user: str | None = None,
        mounts: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None,
        cap_drop: list[str] | None = None,
        cap_add: list[str] | None = None,
        init: bool = False,
        timeout: float = 120,
        read_only: bool = False,
        pids_limit: int | None = None,
        memory: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a short helper container without network; return (exit code, stdout, stderr).

        Used for image probes and volume initialisation. The container is always removed.
        A command that cannot be executed in the image returns exit code 127 with the
        engine's reason in stderr.
        """

        def run() -> tuple[int, str, str]:
            host_config = self.api.create_host_config(
                network_mode="none", mounts=mounts or [], cap_drop=cap_drop, cap_add=cap_add,
                security_opt=[NO_NEW_PRIVILEGES], init=init or None, read_only=read_only or None,
                pids_limit=pids_limit, mem_limit=memory,
            )
            cid = self._create_helper(image, command, user or "", labels or {}, host_config)
            try:
                return self._run_helper(cid, timeout)
            finally:
                try:
                    self.api.remove_container(cid, force=True)
                except docker.errors.APIError:
                    pass
                _HELPERS.discard(cid)

        return self.call_sync(run, image=image)

    def _create_helper(
        self, image: str, command: list[str], user: str, labels: dict[str, str], host_config: dict[str, Any],
    ) -> str:
        """Create the helper container (owned by this server's user, on no network) and register it
        for removal at exit; its id. Blocking (inside :meth:`run_to_completion_sync`'s call)."""
        with _HELPERS.creating():
            cid = self.api.create_container(
                image, entrypoint=command[:1], command=command[1:], user=user,
                labels={LABEL_OWNER: owner_id(), **labels}, host_config=host_config, network_disabled=True,
            )["Id"]
            _HELPERS.add(cid, self)
        return cid

    def _run_helper(self, cid: str, timeout: float) -> tuple[int, str, str]:
        """Start the created helper and wait for it: (exit code, stdout, stderr); 127 and the
        engine's reason when its command cannot be executed. Blocking."""
        try:
            self.api.start(cid)
        except docker.errors.APIError as exc:
            text = _explanation(exc)
            if "executable file not found" in text or "no such file or directory" in text:
                return 127, "", text
            raise
        result = self.api.wait(cid, timeout=timeout)
        out = self.api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
        err = self.api.logs(cid, stdout=False, stderr=True).decode(errors="replace")
        return int(result.get("StatusCode", -1)), out, err


class _LargeReads:
    """A file whose ``read(n)`` returns up to 1 MiB whatever ``n`` is: http.client sends a body
    file in 8 KiB reads, a Python loop that would hand the GIL back and forth with the event
    loop 130 000 times per GB of build context."""

    mode = "rb"

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._f = fileobj

    def read(self, n: int = -1) -> bytes:
        return self._f.read(-1 if n is None or n < 0 else max(n, 1 << 20))

    def fileno(self) -> int:
        return self._f.fileno()

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, *args: Any) -> int:
        return self._f.seek(*args)


class _HelperContainers:
    """The helper containers (image probes, volume set-up) this process is running. A process
    that exits meanwhile (a server stopped right after it listed new images) removes them at exit,
    created or running, rather than leave them until an orphan clean-up finds them: it first
    waits for creations under way (a thread frozen at exit between its create and its clean-up
    would leave one), and starts no new one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._creating = 0
        self._exiting = False
        self._ids: dict[str, Any] = {}  # container id -> the Engine that made it (its api removes it)

    @contextlib.contextmanager
    def creating(self) -> Iterator[None]:
        """Around a helper container's create call and :meth:`add`."""
        with self._changed:
            if self._exiting:
                raise EngineUnavailable("This process is exiting: no helper container is started")
            self._creating += 1
        try:
            yield
        finally:
            with self._changed:
                self._creating -= 1
                self._changed.notify_all()

    def add(self, container_id: str, engine: Any) -> None:
        with self._changed:
            self._ids[container_id] = engine

    def discard(self, container_id: str) -> None:
        with self._changed:
            self._ids.pop(container_id, None)

    def remove_all(self, wait: float = 10.0) -> None:
        with self._changed:
            self._exiting = True
            self._changed.wait_for(lambda: self._creating == 0, timeout=wait)
            left = list(self._ids.items())
        for container_id, engine in left:
            try:
                engine.api.remove_container(container_id, force=True)
            except Exception:  # gone already, or the engine with it
                pass


_HELPERS = _HelperContainers()
atexit.register(_HELPERS.remove_all)
