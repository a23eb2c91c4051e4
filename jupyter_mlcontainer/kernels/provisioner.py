"""The kernel provisioner: runs a Jupyter kernel in its own container (``mlcontainer-docker``).

jupyter_client creates one :class:`DockerKernelProvisioner` per kernel manager (from the
kernelspec's ``metadata.kernel_provisioner``) and keeps it across restarts. It holds the kernel's
options (provisioner_options.py) and its lifecycle: launch, poll, signals, shutdown, clean-up.
The backend its ``placement`` names (engines/registry.py) runs the container; a launch's
decisions are launch_plan.py's, carried out by launcher.py. What a launch does:

* on an engine of this host the kernel binds its five sockets as Unix sockets in its private
  folder (the ipc transport: no TCP port for other users or containers to reach, nothing to
  publish), kept across restarts so open clients keep working; otherwise it binds fixed ports
  inside its own network namespace, and the engine publishes them on 127.0.0.1 with host ports
  of its own choosing (nothing is picked in advance, so no port race); a restart asks for the
  same host ports;
* its traffic is encrypted (CurveZMQ, keys provisioned here) whenever the image's kernel can,
  and it joins a network where no other container reaches its ports;
* the workspace is bind-mounted at its own absolute path and the kernel starts in the
  notebook's folder, as the uid:gid of this process, with no-new-privileges;
* the shared cache volume is mounted and the usual ML cache variables point into it;
* GPUs become engine device requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase

from ..core.errors import (
    ContainerNotFound,
    ContainerNotRunning,
    EngineError,
    EngineUnavailable,
    ImageNotUsable,
    PathRefused,
)
from ..core.settings import MLContainer
from ..engines.base import CONNECTION_FILE_IN_CONTAINER, ContainerBackend
from ..engines.registry import address_setting, backend_class, backend_for
from .deaths import DeathRecord, note_engine_lost, record_death
from .exit_watch import ExitWatch
from .launch_plan import LaunchSettings
from .launcher import LAUNCHES, KernelState, Launcher, discard_container, host_pip_wheel, log_tail
from .provisioner_options import ContainerKernelOptions
from .readiness import zmq_socket_answers
from .restarts import HeldContainer, kernel_ended, say_restart
from .watcher import get_watcher

PROVISIONER_NAME = "mlcontainer-docker"


class DockerKernelProvisioner(ContainerKernelOptions, KernelProvisionerBase):  # type:ignore[misc]
    """Launches each kernel in its own Docker container (``mlcontainer-docker``).

    Every option is a trait settable as ``c.DockerKernelProvisioner.<name>`` in a Jupyter
    config file, from an ``MLCONTAINER_*`` environment variable where noted, and per kernel
    in the kernelspec's ``metadata.kernel_provisioner.config`` (which wins).
    """

    # How a failed start's error reaches the kernel manager's caller. jupyter_server answers
    # anything but a tornado HTTPError with "Unhandled error" and no message, so the server
    # extension installs server/http_errors.py's adapter (through the service) when it starts;
    # elsewhere (nbclient, papermill, jupyter console) the error goes as it is.
    start_error_adapter: Callable[[Exception], Exception] = staticmethod(lambda exc: exc)

    # -- state (per kernel manager, kept across restarts) ---------------------------------

    _stopping: bool = False
    _exit_watch: ExitWatch | None = None  # the container's first process, watched once a shutdown is asked
    _death_recorded: bool = False
    _died: bool = False  # the container stopped unasked: the restart that follows may wait for the engine
    _restart_said: bool = False  # the keeper was told the kernel's end is a restart's (restarts.py)
    _first_process: tuple[str, ExitWatch | None] | None = None  # (container, its first process), for signals

    @property
    def state(self) -> KernelState:
        """What this provisioner knows of its kernel's container (launcher.py)."""
        if "_state" not in self.__dict__:
            self.__dict__["_state"] = KernelState()
        return self.__dict__["_state"]

    # The state's parts that jupyter_client, the tests and the service read by name.
    container_id = property(lambda self: self.state.container_id,
                            lambda self, value: setattr(self.state, "container_id", value))
    host_ports = property(lambda self: self.state.host_ports,
                          lambda self, value: setattr(self.state, "host_ports", value))
    _conn_dir = property(lambda self: self.state.conn_dir)

    @property
    def engine(self) -> ContainerBackend:
        """Where this kernel's container runs: the backend its ``placement`` names, at the address
        its setting holds (``docker_host``; Slurm: ``slurm_login``)."""
        setting = address_setting(self.placement)
        address = getattr(self, setting)
        if not address and backend_class(self.placement).is_cluster and MLContainer.class_traits().get(setting):
            # A kernelspec that empties docker_host still names a cluster's manager: the shared
            # setting's (as the service's list of clusters reads it), never this host's engine.
            address = getattr(MLContainer(parent=self), setting)
        return backend_for(self.placement, address)

    @property
    def has_process(self) -> bool:
        return self.container_id is not None

    def launch_settings(self) -> LaunchSettings:
        """The traits one launch reads, as the launch plan takes them, and this host's pip wheel."""
        traits = {f.name: getattr(self, f.name) for f in dataclasses.fields(LaunchSettings) if f.name != "host_pip_wheel"}
        return LaunchSettings(**traits, host_pip_wheel=host_pip_wheel())

    # -- launch --------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Called by the kernel manager before launch; returns kwargs with ``cmd``, the argv
        to run inside the container (the kernelspec's, with the in-container connection file)."""
        if not self.image:
            raise ImageNotUsable(
                f"Kernelspec {self.kernel_spec.display_name!r} names no image in "
                "metadata.kernel_provisioner.config.image"
            )
        extra = kwargs.pop("extra_arguments", [])
        argv = [
            arg.replace("{connection_file}", CONNECTION_FILE_IN_CONTAINER)
            for arg in self.kernel_spec.argv
        ] + list(extra)
        return await super().pre_launch(cmd=argv, **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Called by the kernel manager: start the container and return its connection info
        (where its sockets are: a folder of this host, or the host ports the engine published)."""
        self._stopping = False
        self._death_recorded = False
        self._exit_watch = None
        self._reconnect_quickly()
        try:
            if self._died:  # the restarter's restart: an engine restarting takes a few seconds
                await self._wait_for_engine()
            launcher = Launcher(
                self.engine, self.launch_settings(), self.state, kernel_id=self.kernel_id, manager=self.parent,
                kernelspec_env=dict(self.kernel_spec.env or {}), display_name=self.kernel_spec.display_name,
                workspace=self.workspace, helper_image=MLContainer(parent=self).helper_image,
                transport_encryption=self.transport_encryption, startup_timeout=self.startup_timeout,
                warm_pool_idle_timeout=self.warm_pool_idle_timeout, log=self.log,
            )
            loop = asyncio.get_running_loop()
            self.connection_info = await loop.run_in_executor(LAUNCHES, launcher.launch, cmd, kwargs)
            return self.connection_info
        except EngineError as exc:
            self.log.error("Kernel %s could not start: %s", self.kernel_id, exc)
            # No chained SDK traceback: jupyter_client logs this error with its traceback.
            raise DockerKernelProvisioner.start_error_adapter(exc) from None

    def _reconnect_quickly(self) -> None:
        """Have the kernel manager's clients (a server's channels to the browser are made from its
        ZeroMQ context) reconnect 10 ms after a kernel's sockets went away, then every 20-50 ms,
        instead of ZeroMQ's fixed 0.1 s: a restart in the kernel's container is back on the same
        sockets in less than that. Sockets made from the context from now on get it."""
        context = getattr(self.parent, "context", None)
        if isinstance(context, zmq.Context) and not context.closed:
            context.setsockopt(zmq.RECONNECT_IVL, 10)
            context.setsockopt(zmq.RECONNECT_IVL_MAX, 50)

    async def _wait_for_engine(self) -> None:
        """Before restarting a kernel whose container stopped unasked (perhaps with its engine):
        wait until the engine answers, at most ``engine_return_timeout`` s; EngineUnavailable
        after that. Answers at once when the engine is up. A coroutine, so that a server that
        exits meanwhile is not held up by it."""
        deadline = time.monotonic() + self.engine_return_timeout
        logged = False
        while True:
            try:
                await self.engine.run_blocking(self.engine.version_sync)
                break
            except EngineUnavailable:
                if time.monotonic() >= deadline:
                    raise
                if not logged:
                    note_engine_lost(self.kernel_id, self.engine.address)
                    self.log.warning(
                        "Kernel %s: waiting up to %.0f s for the Docker engine at %s to answer again before restarting it",
                        self.kernel_id, self.engine_return_timeout, self.engine.address,
                    )
                    logged = True
                await asyncio.sleep(0.25)
        self._died = False
        if logged:
            self.log.info("Kernel %s: the Docker engine answers again; restarting the kernel", self.kernel_id)

    # -- lifecycle -----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """Called by the restarter every few seconds: None while the container runs, else its
        exit code. Reads the process-wide event stream; inspects only when the stream is down."""
        cid = self.container_id
        if cid is None:
            return 0
        if self._restart_said and await self._kernel_ended_soon():
            return 0  # the kernel ended for the restart; its keeper holds the container
        watcher = get_watcher(self.engine)
        event = watcher.exit_of(cid)
        unreachable = ""
        if event is None:
            exit_watch = self._exit_watch
            if self._stopping and exit_watch is not None and exit_watch.container_id == cid and exit_watch.ended():
                return 0  # asked to shut down, and ended: before the engine reports it
            if watcher.healthy:
                return None
            try:
                state = await self._inspect_state(cid)
            except EngineUnavailable as exc:
                # Without its engine the kernel may still run (live-restore): its heartbeat
                # port tells. Closed means the engine took the container down with it.
                if await asyncio.to_thread(self._heartbeat_answers):
                    return None
                state, unreachable = {"ExitCode": -1}, str(exc)
            if state is None:
                code = -1
            elif state.get("Running") or state.get("Restarting"):
                return None
            else:
                code = int(state.get("ExitCode", -1))
        else:
            code = event.exit_code
        if not self._stopping and not self._death_recorded:
            self._death_recorded = True
            await self._record_death(cid, code, unreachable)
        return code

    async def _kernel_ended_soon(self, within: float = 0.1) -> bool:
        """Whether the keeper says the kernel ended, waiting up to ``within`` s for it: the
        kernel manager polls every 0.1 s while a restart's kernel shuts down, and a restart in
        place takes less than that."""
        conn_dir = self.state.conn_dir
        deadline = time.monotonic() + within
        while conn_dir:
            if kernel_ended(conn_dir):
                return True
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.002)
        return False

    def _heartbeat_answers(self) -> bool:
        port = (self.host_ports or {}).get("hb_port")
        return bool(port) and zmq_socket_answers(self.state.kernel_ip, int(port), timeout=0.5, transport=self.state.transport)

    async def _inspect_state(self, cid: str) -> dict[str, Any] | None:
        return await self.engine.run_blocking(self.engine.container_state_sync, cid)

    async def _record_death(self, cid: str, code: int, unreachable: str = "") -> None:
        """Keep why the kernel's container stopped (exit code, OOM, the engine going away) for
        the kernel list and the log. Called once per unexpected exit, by :meth:`poll`."""
        state: dict[str, Any] = {}
        tail = ""
        if not unreachable:
            try:
                state = await self._inspect_state(cid) or {}
                tail = await self.engine.call(log_tail, self.engine, cid)
            except EngineUnavailable as exc:  # the engine went down with the container
                unreachable = str(exc)
            except EngineError:
                pass
        self._died = True
        if unreachable:
            self.log.debug("Kernel %s: engine unreachable: %s", self.kernel_id, unreachable)
        record = DeathRecord(
            kernel_id=self.kernel_id,
            container_id=cid,
            image=self.image,
            exit_code=int(state.get("ExitCode", code)),
            oom_killed=bool(state.get("OOMKilled")),
            memory_limit=self.state.memory_limit,
            engine_error=state.get("Error") or "",
            engine_lost=self.engine.address if unreachable else "",
            log_tail=tail[-4000:],
            time=time.time(),
        )
        record_death(record)
        self.log.warning(
            "Kernel %s (container %s, image %s) died: %s%s",
            self.kernel_id, cid[:12], self.image, record.message(),
            f"\n--- last output ---\n{tail.rstrip()}" if tail.strip() else "",
        )

    async def wait(self) -> int | None:
        """Called by the kernel manager during shutdown: wait for the container to stop."""
        while True:
            code = await self.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.1)

    async def send_signal(self, signum: int) -> None:
        """Deliver ``signum`` to the kernel (interrupts arrive here as SIGINT)."""
        if self.container_id is None:
            return
        if signum == 0:
            await self.poll()
            return
        await self._signal(signum)

    async def _signal(self, signum: int) -> None:
        cid = self.container_id
        if cid is None:
            return
        if signum != signal.SIGKILL and await self._signal_directly(cid, signum):
            return
        try:
            await self.engine.run_blocking(self.engine.signal_container_sync, cid, signum)
        except (ContainerNotRunning, ContainerNotFound):
            return  # it has stopped: nothing to signal
        except EngineUnavailable:
            if await asyncio.to_thread(self._heartbeat_answers):
                raise
            # Its engine took it down: nothing to signal (the restart waits for the engine).

    async def _watch_first_process(self, cid: str) -> ExitWatch | None:
        """The container's first process where this host's /proc shows it (None: it does not),
        found once per container: from what the engine said at its start, else one inspect."""
        known = self._first_process
        if known is None or known[0] != cid:
            watch = ExitWatch.at(cid, self.state.first_pid) or await asyncio.to_thread(ExitWatch.of, self.engine, cid)
            known = self._first_process = (cid, watch)
        return known[1]

    async def _signal_directly(self, cid: str, signum: int) -> bool:
        """Deliver ``signum`` to the container's first process as the engine would, without the
        engine (an interrupt, and the one every shutdown and restart starts with: 10-15 ms less
        each), where this process sees and may signal it: an engine of this host, a kernel of
        this user. Its host PID is asked once per container (exit_watch.py); False: ask the engine."""
        watch = await self._watch_first_process(cid)
        if watch is None or watch.ended():
            return False
        try:
            os.kill(watch.pid, signum)
        except OSError:  # not ours to signal (another user's engine), or just gone
            return False
        return True

    async def kill(self, restart: bool = False) -> None:
        """Called by the kernel manager when a kernel does not stop by itself."""
        self._stopping = True
        await self._signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        self._stopping = True
        await self._signal(signal.SIGTERM)

    async def shutdown_requested(self, restart: bool = False) -> None:
        """Called after the kernel manager sent shutdown_request: the exit that follows is ours,
        and :meth:`poll` sees it through the container's first process where it can (exit_watch.py).
        A kernel under a keeper is told at once whether a restart follows (restarts.py)."""
        self._stopping = True
        cid, state = self.container_id, self.state
        if cid is not None and state.keeper and state.conn_dir:
            try:  # as soon as may be: the keeper gives the word HOLD_GRACE s to come
                say_restart(state.conn_dir, restart)
                self._restart_said = restart
            except FileNotFoundError:
                pass  # its folder is gone: the keeper ends with the kernel
            except (OSError, PathRefused) as exc:
                self.log.warning("Kernel %s: could not tell its container's keeper of the %s: %s", self.kernel_id,
                                 "restart" if restart else "shutdown", exc)
        if cid is not None and not self._restart_said:
            self._exit_watch = await self._watch_first_process(cid)

    async def cleanup(self, restart: bool = False) -> None:
        """Called last on shutdown and before a restart's launch: remove the container.

        On restart the host ports are kept so that the new container publishes the same ones
        (ipc: the folder with the sockets is kept, for the new container to bind them again).
        A container whose keeper holds it for the restart is kept, with its folder (restarts.py).
        """
        cid, self.container_id = self.container_id, None
        state, said, self._restart_said = self.state, self._restart_said, False
        if restart and said and cid is not None and state.made_from and state.conn_dir and kernel_ended(state.conn_dir):
            state.held = HeldContainer(cid, *state.made_from)  # the restart's launch decides (launcher.py)
        elif cid is not None:
            if restart and state.keeper:
                self.log.info("Kernel %s: restarting in a new container: %s", self.kernel_id,
                              "it did not end by itself in time" if said else
                              "the restart was forced (the kernel was killed or had died)")
            await self.engine.call(functools.partial(discard_container, for_restart=restart), self.engine, state, cid)
        self._death_recorded = False
        if not (restart and (state.transport == "ipc" or state.held)):
            state.remove_conn_dir()  # a restart's launch makes a new one
        if not restart:
            self.host_ports = None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return recommended

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(container_id=self.container_id, host_ports=self.host_ports, image=self.image, transport=self.state.transport)
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.container_id = provisioner_info.get("container_id")
        self.host_ports = provisioner_info.get("host_ports")
        self.state.transport = provisioner_info.get("transport", "tcp")

    def resolve_path(self, path_str: str) -> str | None:
        """Paths are the same inside and outside: the workspace is mounted at its host path."""
        path = os.path.expanduser(path_str)
        if not os.path.isabs(path) and self.state.cwd:
            path = os.path.join(self.state.cwd, path)
        return path if os.path.exists(path) else None


__all__ = ["DockerKernelProvisioner", "PROVISIONER_NAME"]
