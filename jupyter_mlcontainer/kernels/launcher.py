"""Carrying a kernel's launch out: the blocking part of the provisioner's ``launch_kernel``.

The provisioner makes a :class:`Launcher` per launch and runs :meth:`Launcher.launch` in a thread
of :data:`LAUNCHES`. It gathers what the launch plan (launch_plan.py) decides from: the image's
facts (probed once per image), what the backend says about itself, the kernel's private folder
(connection file, passwd/group); then it claims a spare of the warm pool or creates the
container, and waits until the kernel's five sockets answer. What it learns about the kernel's
container goes into the provisioner's :class:`KernelState`, kept across restarts.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import logging
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..cache.paths import home_in_cache
from ..cache.volume import ensure_cache, forget_home
from ..core.errors import (
    EngineError,
    EngineUnavailable,
    GpuRequestUnsatisfiable,
    HomeRefused,
    HostCheckFailed,
    ImageNotFound,
    ImageNotUsable,
    PortInUse,
)
from ..core.identity import HostUser, current_user, owner_id, passwd_files
from ..core.policy import write_text_safely
from ..engines.base import ContainerBackend, ContainerSpec, GpuRequest
from ..images.jobs import made_here, progress_line, start_pulls
from ..images.probe import ImageFacts, probe_image_sync, unusable_reason
from ..machine.facts import MACHINE_LABEL, machine_from_record
from ..machine.gpu import get_monitor, unsatisfiable_reason
from ..machine.host_checks import WARNING, blocking, check_host
from .bootstrap import HOME_REFUSED_EXIT, NETWORK_GATE_IN_CONTAINER
from .claims import forget_claim, record_claim
from .connection import curve_keys, ipc_base, ipc_fits, new_connection_dir, published_ports, write_connection_file
from .container_spec import CONTAINER_PORTS, KERNEL_NETWORK, container_user_for
from .exit_watch import first_pid
from .launch_plan import (
    BackendFacts,
    KernelLaunch,
    LaunchPlan,
    LaunchSettings,
    choose_transport,
    choose_workspace,
    plan_launch,
    resolve_gpus,
)
from .pool import WarmPool, claimed, discard_spare, get_pool, remove_at_exit
from .readiness import KernelNotReady, wait_for_kernel_ports
from .restarts import HeldContainer, hand_restart, kernel_ended, why_not_in_place
from .spares import Spare, Template, template_of
from .watcher import get_watcher

# Launches wait for their kernel's ports (up to startup_timeout) in threads of their own: in
# the engine's pool, 16 slow starts held every thread and the panel's requests queued behind them.
LAUNCHES = ThreadPoolExecutor(max_workers=64, thread_name_prefix="mlcontainer-launch")

# Containers this process started and has not removed yet, with their connection folders:
# removed at interpreter exit, so a front end that exits without shutting its kernel down
# (jupyter console does) leaves neither a container nor a key file behind.
_LIVE: dict[str, tuple[ContainerBackend, str]] = {}


@atexit.register
def _remove_live_containers() -> None:
    remove_at_exit(_LIVE)


@dataclass
class KernelState:
    """What a provisioner knows of its kernel's container; one per kernel manager, kept across
    restarts (a restart asks for the same host ports, and on Unix sockets keeps its folder)."""

    container_id: str | None = None
    host_ports: dict[str, int] | None = None
    restarts: int = 0
    conn_dir: str | None = None
    transport: str = "tcp"  # this kernel's: "ipc" keeps its folder (the sockets' path) across restarts
    kernel_ip: str = "127.0.0.1"  # where its published ports are reached; ipc: the sockets' base
    cwd: str | None = None
    memory_limit: str = ""  # as asked ('8g'), for a death's message
    keeper: bool = False  # the kernel runs under a keeper: a restart may reuse its container (restarts.py)
    made_from: tuple[str, str] | None = None  # (template key, image id) of the running container
    held: HeldContainer | None = None  # the container a restart in place would reuse
    first_pid: int = 0  # the container's first process as the engine started it (its PID there)

    def remove_conn_dir(self) -> None:
        conn_dir, self.conn_dir = self.conn_dir, None
        if conn_dir:
            shutil.rmtree(conn_dir, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def host_pip_wheel() -> str:
    """This host's pip wheel ("" if none), which a venv image without pip is lent for `%pip`
    where the image's Python ships none (launch_plan.lent_pip_wheel): the one this Python's
    ensurepip bundles, else Debian's python3-pip-whl. Read-only to the kernel; asked once."""
    try:
        import ensurepip
        places = [os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")]
    except ImportError:  # Debian's Python without python3-venv
        places = []
    wheels = [w for place in places + ["/usr/share/python-wheels"] for w in sorted(glob.glob(f"{place}/pip-*.whl"))]
    return os.path.realpath(wheels[0]) if wheels else ""


def log_tail(backend: ContainerBackend, container_id: str, lines: int = 20) -> str:
    """The container's last output ("" when the engine cannot say). Blocking."""
    try:
        return backend.container_logs_sync(container_id, tail=lines)
    except EngineError:
        return ""


def discard_container(backend: ContainerBackend, state: KernelState, container_id: str, *,
                      for_restart: bool = False) -> None:
    """Remove the kernel's container and forget it (a failed launch, and cleanup; ``for_restart``
    before a restart). Blocking. An unreachable engine does not fail the clean-up: the watcher
    removes the container when the engine answers again."""
    watcher = get_watcher(backend)
    try:
        backend.remove_container_sync(container_id, for_restart=for_restart)
        watcher.forget(container_id)
        forget_claim(container_id)
    except EngineUnavailable:
        watcher.remove_when_back(container_id)
    _LIVE.pop(container_id, None)
    state.container_id = None


class Launcher:
    """One launch of one kernel (a start or a restart's start). Made by the provisioner, which
    passes its settings, its state and its kernel manager (the session key, the kernel's name,
    the CurveZMQ pair it keeps)."""

    def __init__(
        self, backend: ContainerBackend, settings: LaunchSettings, state: KernelState, *, kernel_id: str,
        manager: Any, kernelspec_env: dict[str, str], display_name: str, workspace: str, helper_image: str,
        transport_encryption: str, startup_timeout: float, warm_pool_idle_timeout: float, log: logging.Logger,
    ) -> None:
        self.backend, self.settings, self.state = backend, settings, state
        self.kernel_id, self.manager, self.kernelspec_env = kernel_id, manager, kernelspec_env
        self.display_name, self.workspace_setting, self.helper_image = display_name, workspace, helper_image
        self.transport_encryption, self.startup_timeout = transport_encryption, startup_timeout
        self.warm_pool_idle_timeout, self.log = warm_pool_idle_timeout, log
        self.kernel_name = getattr(manager, "kernel_name", "") or ""
        self.signature_scheme = manager.session.signature_scheme if manager is not None else "hmac-sha256"

    def launch(self, cmd: list[str], launch_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Start the kernel; return its connection info. Blocking (run in :data:`LAUNCHES`).
        A container held for a restart in place that this launch did not reuse is removed."""
        try:
            return self._launch(cmd, launch_kwargs)
        finally:
            held, self.state.held = self.state.held, None
            if held is not None:
                discard_container(self.backend, self.state, held.container_id, for_restart=True)

    def _launch(self, cmd: list[str], launch_kwargs: dict[str, Any]) -> dict[str, Any]:
        backend, image = self.backend, self.settings.image
        try:
            facts = probe_image_sync(backend, image)
        except ImageNotFound:
            if not self._may_pull():
                raise
            self._pull()
            facts = probe_image_sync(backend, image)
        reason = unusable_reason(image, facts)
        if reason:
            raise ImageNotUsable(reason)
        user = backend.kernel_user_sync() or current_user()  # a Slurm login's account, else ours
        cwd = os.path.abspath(launch_kwargs.get("cwd") or os.getcwd())
        server_root = getattr(getattr(self.manager, "parent", None), "root_dir", None)
        workspace = choose_workspace(self.workspace_setting, server_root, cwd)
        self.state.cwd = cwd
        self._ensure_cache(user)
        get_watcher(backend).start()
        key = self.manager.session.key if self.manager is not None else b""
        if not key:
            raise EngineError("The kernel manager has no session key")
        for attempt in (1, 2):
            # A private folder (0700, removed by cleanup): the connection file with the kernel's
            # key, mounted read-write because ipykernel may rewrite it; one per launch, but on the
            # ipc transport one per kernel (its sockets' path is the connection clients keep).
            state = self.state
            kept = state.held is not None or (state.transport == "ipc" and state.host_ports)
            if not (kept and state.conn_dir and os.path.isdir(state.conn_dir)):
                state.conn_dir = new_connection_dir(self.kernel_id)
            try:
                return self._launch_in(state.conn_dir, facts, user, cwd, workspace, key, cmd, launch_kwargs)
            except BaseException as exc:
                if state.container_id is not None:  # e.g. cancelled while waiting for readiness
                    discard_container(backend, state, state.container_id)
                state.remove_conn_dir()
                if not isinstance(exc, HomeRefused) or attempt == 2:
                    raise
                # Someone put something at the HOME's name since it was made: set it aside, once.
                self.log.warning("Kernel %s: %s; setting it aside and starting again", self.kernel_id, exc)
            forget_home(backend, self.settings.cache_volume, user)
            self._ensure_cache(user)
        raise AssertionError("unreachable")

    def _may_pull(self) -> bool:
        """Whether a start pulls its missing image (``pull`` "auto"): never an image built here
        (made_here), whose start says it is missing, as before; a cluster's nodes get their
        images their own way."""
        return self.settings.pull != "never" and not self.backend.is_cluster and not made_here(self.settings.image)

    def _pull(self) -> None:
        """Pull the kernel's missing image as a job the panel shows and can cancel, its progress
        in the log every few seconds; the start fails with the pull's reason."""
        backend, image = self.backend, self.settings.image
        job = start_pulls(backend).pull(image)
        self.log.info("Kernel %s: image %s is not on the engine: pulling it (job %s)", self.kernel_id, image, job.id)
        started = time.monotonic()
        while not job.wait(2.0):
            self.log.info("Kernel %s: pulling %s: %s (%.0f s)", self.kernel_id, image, progress_line(job),
                          time.monotonic() - started)
        if job.state == "cancelled":
            raise ImageNotFound(f"The pull of {image} was cancelled, so the kernel did not start")
        if job.state != "done":
            raise ImageNotFound(f"Image {image} is not on the engine and pulling it failed: {job.error}")
        self.log.info("Kernel %s: pulled %s in %.1f s", self.kernel_id, image, time.monotonic() - started)

    def _ensure_cache(self, user: HostUser) -> None:
        for note in ensure_cache(self.backend, self.settings.cache_volume, user, self.helper_image):
            self.log.warning("Kernel %s: %s", self.kernel_id, note)

    def _backend_facts(self) -> BackendFacts:
        backend, info = self.backend, self.backend.info_sync()
        return BackendFacts(
            location=backend.location, kind=backend.kind_sync(), memory_total=int(info.get("MemTotal") or 0),
            desktop_vm="desktop" in str(info.get("OperatingSystem", "")).lower(),
            gpus_placed_by_scheduler=backend.gpus_placed_by_scheduler,
            joins_network_after_start=backend.joins_network_after_start_sync(),
            # The kernels' network is made on first use: not when the user named another.
            kernel_network="" if self.settings.network else backend.ensure_kernel_network_sync(KERNEL_NETWORK),
        )

    def _launch_in(
        self, conn_dir: str, facts: ImageFacts, user: HostUser, cwd: str, workspace: str, key: bytes,
        cmd: list[str], launch_kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """The launch in the folder ``conn_dir``: plan, folder files, spare or cold start, readiness."""
        settings, state, backend_facts = self.settings, self.state, self._backend_facts()
        location = backend_facts.location
        curve = curve_keys(settings.image, facts, self.transport_encryption, self.manager,
                           shared_network=not location.local)
        transport, warning = choose_transport(
            settings.kernel_transport, location, conn_dir, ipc_fits(conn_dir),
            on_linux=sys.platform.startswith("linux"), desktop_vm=backend_facts.desktop_vm,
        )
        if warning:
            self.log.warning("Kernel %s: %s", self.kernel_id, warning)
        state.transport = transport
        write_connection_file(conn_dir, key=key, signature_scheme=self.signature_scheme, kernel_name=self.kernel_name,
                              curve=curve, transport=transport)
        gpus = resolve_gpus(settings.gpus, backend_facts, self._host_has_gpus)
        home = home_in_cache(settings.cache_mount_path, user.name)
        root = container_user_for(user, backend_facts.kind) == "0:0"
        passwd_group = None if root else passwd_files(conn_dir, user, home, facts.passwd, facts.group)
        launch = KernelLaunch(
            kernel_id=self.kernel_id, command=cmd, user=user, cwd=cwd, workspace=workspace, connection_dir=conn_dir,
            transport=transport, gpus=gpus, kernel_name=self.kernel_name, restarts=state.restarts, owner=owner_id(),
            launch_env=launch_kwargs.get("env") or {}, kernelspec_env=self.kernelspec_env,
            host_ports=state.host_ports, passwd_group=passwd_group,
            connection_files=None if location.local else _folder_files(conn_dir),
        )
        plan = plan_launch(settings, backend_facts, facts, launch)
        if plan.check_host_gpus:
            self._check_gpus_exist(plan.gpu_requests)
            self._check_frozen_machine(plan.gpu_requests)
        for warning in plan.warnings:
            self.log.warning("Kernel %s: %s", self.kernel_id, warning)
        state.memory_limit = plan.memory_limit
        state.kernel_ip = location.address
        template = template_of(plan.spec, facts.image_id, conn_dir, workspace)
        held, state.held = state.held, None
        started = self._restart_in_place(held, plan, template, conn_dir) if held is not None else None
        container_id, host_ports = started or self._start(plan, template, conn_dir, key, curve)
        state.keeper, state.made_from = plan.restarts_in_place, (template.key, template.image_id)
        conn_dir = state.conn_dir or conn_dir  # a claimed spare's folder, if one was claimed
        state.container_id = container_id
        _LIVE[container_id] = (self.backend, conn_dir)
        state.host_ports = host_ports
        state.restarts += 1
        if transport == "ipc":
            state.kernel_ip = ipc_base(conn_dir)
        self._wait_until_listening(container_id, host_ports)
        self.log.info(
            "Kernel %s started in container %s (image %s, gpus=%s, workspace %s, cwd %s, %s, %s)",
            self.kernel_id, container_id[:12], settings.image, gpus, workspace, cwd,
            "Unix sockets in its folder" if transport == "ipc" else f"ports on {state.kernel_ip}",
            "encrypted (CurveZMQ)" if curve else "not encrypted",
        )
        return {
            **host_ports, "ip": state.kernel_ip, "key": key, "transport": transport,
            "signature_scheme": self.signature_scheme, "kernel_name": self.kernel_name, **curve,
        }

    def _start(
        self, plan: LaunchPlan, template: Template, conn_dir: str, key: bytes, curve: dict[str, str],
    ) -> tuple[str, dict[str, int]]:
        """Claim a spare of the warm pool for the plan's container (``template``), else create it;
        then offer the pool a spare for the next start. A restart asks for its previous host ports
        (ipc: keeps its folder): only a fresh start can take a spare."""
        pool = get_pool(self.backend) if plan.may_use_spare else None
        spare = pool.claim(template.key, template.image_id) if pool is not None and not self.state.host_ports else None
        if spare is not None:
            started = self._start_on_spare(pool, spare, plan, conn_dir, key, curve)
        else:
            started = self._create_and_start(plan.cold_spec)
        if pool is not None:
            pool.offer(template, self.settings.warm_pool_size, self.warm_pool_idle_timeout)
        return started

    def _restart_in_place(
        self, held: HeldContainer, plan: LaunchPlan, template: Template, conn_dir: str,
    ) -> tuple[str, dict[str, int]] | None:
        """A restart whose container its keeper holds (restarts.py): hand the keeper the kernel's
        part (the connection file is written) and keep the container, its ports and folder;
        None, with the container removed and the reason logged, when the restart must be cold."""
        backend, state = self.backend, self.state
        watcher = get_watcher(backend)
        cid = held.container_id
        running = watcher.exit_of(cid) is None and (watcher.healthy or _running(backend, cid))
        reason = why_not_in_place(held, template.key, template.image_id, self.settings.image, running,
                                  kernel_ended(conn_dir))
        if not reason:
            spec = plan.spec
            try:
                hand_restart(conn_dir, {"env": spec.env, "cwd": spec.working_dir, "argv": spec.command})
                self.log.info("Kernel %s: restarting in its container %s", self.kernel_id, cid[:12])
                return cid, dict(state.host_ports or {})
            except OSError as exc:
                reason = f"its keeper did not take the restart ({exc})"
        self.log.info("Kernel %s: restarting in a new container: %s", self.kernel_id, reason)
        discard_container(backend, state, cid, for_restart=True)
        return None

    def _start_on_spare(
        self, pool: WarmPool, spare: Spare, plan: LaunchPlan, conn_dir: str, key: bytes, curve: dict[str, str],
    ) -> tuple[str, dict[str, int]]:
        """Hand the kernel's own part to a spare: its connection file, then (through the FIFO)
        its environment, working directory and argv; the launch's own folder gives way to the
        spare's. A spare that does not take it is discarded and the start goes cold."""
        spec = plan.spec
        try:
            write_connection_file(spare.conn_dir, key=key, signature_scheme=self.signature_scheme,
                                  kernel_name=self.kernel_name, curve=curve, transport=self.state.transport)
            record_claim(spare.container_id, self.kernel_id, self.kernel_name)
            pool.hand_over(spare, {"env": spec.env, "cwd": spec.working_dir, "argv": spec.command})
        except OSError as exc:
            self.log.info("Kernel %s: spare %s did not take the claim (%s); starting cold", self.kernel_id,
                          spare.container_id[:12], exc)
            discard_spare(self.backend, spare.container_id, spare.conn_dir)
            return self._create_and_start(plan.cold_spec)
        claimed(spare.container_id)
        shutil.rmtree(conn_dir, ignore_errors=True)
        self.state.conn_dir, self.state.first_pid = spare.conn_dir, spare.pid
        self.log.debug("Kernel %s: claimed spare %s", self.kernel_id, spare.container_id[:12])
        return spare.container_id, spare.host_ports

    def _create_and_start(self, spec: ContainerSpec) -> tuple[str, dict[str, int]]:
        """Start the container; return (id, host ports). A restart asks for the previous host
        ports, which the engine releases a moment after the old container goes: retried for a
        few seconds, then new ports (clients must reconnect). A container that exits at once
        (e.g. its HOME was refused) fails the start with its own output."""
        backend = self.backend
        gate = os.path.join(self.state.conn_dir or "", os.path.basename(NETWORK_GATE_IN_CONTAINER))
        if spec.network_after_start:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(gate)  # a restart's, in the folder an ipc kernel keeps
        deadline = time.monotonic() + 5
        while True:
            try:
                attrs = backend.create_and_start_sync(spec)
                break
            except PortInUse:
                if not any(spec.ports.values()):
                    raise
                if time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                self.log.warning("Kernel %s: its previous host ports are taken; restarting on new ports "
                                 "(connected clients must reconnect)", self.kernel_id)
                spec.ports = dict.fromkeys(spec.ports)
        cid = attrs["Id"]
        self.state.first_pid = first_pid(attrs.get("State") or {})
        if spec.network_after_start:
            write_text_safely(gate, "")  # the kernel's bootstrap waits for it (scripts/bootstrap.py)
        self.state.kernel_ip = (attrs.get("Node") or {}).get("Addr") or self.state.kernel_ip  # a scheduler's node
        state = attrs.get("State") or {}
        if not state.get("Running"):
            tail = log_tail(backend, cid)
            backend.remove_container_sync(cid)
            raise self._exited_error(state.get("ExitCode", "?"), tail)
        if not spec.ports:
            return cid, dict(CONTAINER_PORTS)  # the ipc transport: sockets in the kernel's folder
        try:
            return cid, published_ports(attrs, spec.publish_ip)
        except EngineError:
            backend.remove_container_sync(cid)
            raise

    def _wait_until_listening(self, container_id: str, host_ports: dict[str, int]) -> None:
        """Block until a ZeroMQ socket answers on each of the kernel's ports (readiness.py), or
        raise if the container exits first or the start-up timeout passes. Works for any kernel
        that binds the ports of its connection file; the container is removed when the kernel
        does not come up."""
        backend, state = self.backend, self.state
        watcher = get_watcher(backend)

        def exited() -> bool:
            return watcher.exit_of(container_id) is not None or (not watcher.healthy and not _running(backend, container_id))

        try:
            waited = wait_for_kernel_ports(state.kernel_ip, host_ports, timeout=self.startup_timeout, gone=exited,
                                           transport=state.transport)
        except KernelNotReady as exc:
            tail = log_tail(backend, container_id)
            discard_container(backend, state, container_id)
            raise EngineError(
                f"The kernel in {self.settings.image} did not open its ports within {exc.waited:.0f} s "
                f"({', '.join(exc.missing)} silent); raise c.DockerKernelProvisioner.startup_timeout "
                "if the image is slow to import" + (f". Its last output:\n{tail.strip()}" if tail.strip() else "")
            ) from None
        if exited():
            tail = log_tail(backend, container_id)
            event = watcher.exit_of(container_id)
            discard_container(backend, state, container_id)
            raise self._exited_error(event.exit_code if event else "?", tail)
        self.log.debug("Kernel %s: ports answered after %.3f s", self.kernel_id, waited)

    def _exited_error(self, code: Any, tail: str) -> EngineError:
        """The error for a kernel that exited during start-up, with its last output."""
        kind = HomeRefused if code == HOME_REFUSED_EXIT else EngineError
        return kind(f"The kernel in {self.settings.image} exited during start-up (exit code {code})"
                    + (f":\n{tail.strip()}" if tail.strip() else ""))

    def _host_has_gpus(self) -> bool:
        return self.backend.has_nvidia_runtime_sync() and get_monitor().gpu_count() > 0

    def _check_gpus_exist(self, requests: list[GpuRequest]) -> None:
        """Refuse a request for GPUs this host does not have, naming the ones it has."""
        reason = unsatisfiable_reason(requests, get_monitor().snapshot(with_processes=True))
        if reason:
            raise GpuRequestUnsatisfiable(f"{reason} Change --gpus of kernelspec {self.display_name!r}.")

    def _check_frozen_machine(self, requests: list[GpuRequest]) -> None:
        """An image built from a frozen Dockerfile carries what its GPU code was built for and ran
        on (machine/facts.py): refuse a start this host's driver or GPUs cannot serve, with the
        reason and what to do, rather than a kernel whose first CUDA cell fails; log the warnings."""
        labels = (self.backend.inspect_image_sync(self.settings.image).get("Config") or {}).get("Labels") or {}
        facts = machine_from_record(labels.get(MACHINE_LABEL))
        if facts is None:
            return
        state = get_monitor().snapshot(with_processes=False)
        count = sum(len(r.device_ids) if r.device_ids else (len(state.gpus) if r.count == -1 else r.count or 0)
                    for r in requests)
        checks = check_host(facts, state, gpus=count)
        for check in checks:
            if check.verdict == WARNING:
                self.log.warning("Kernel %s: %s %s", self.kernel_id, check.reason, check.fix)
        blocked = [f"{check.reason} {check.fix}" for check in blocking(checks)]
        if blocked:
            raise HostCheckFailed(
                f"Kernelspec {self.display_name!r} runs {self.settings.image}, frozen from a kernel whose GPU code this "
                f"host cannot run: {' '.join(blocked)} (Or start it without GPUs: --gpus none.)")


def _running(backend: ContainerBackend, container_id: str) -> bool:
    try:
        state = backend.container_state_sync(container_id) or {}
    except EngineError:
        return False
    return bool(state.get("Running"))


def _folder_files(folder: str) -> dict[str, bytes]:
    """The files of a launch's private folder (for a backend that cannot mount it)."""
    contents = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            contents[name] = f.read()
    return contents

