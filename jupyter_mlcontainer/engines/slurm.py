"""Kernels on a Slurm cluster (``placement=slurm``): each kernel is a step of a job of its own,
run in the kernel image's OCI bundle by slurmd's crun as the user, behind the same
:class:`~.base.ContainerBackend` seam as a container on the local engine (docs/slurm.md).

How a kernel container's parts map onto Slurm:

* the container -> a job that holds the allocation (``sbatch --no-requeue``, its batch script
  only waits) and the kernel as a step in it (``srun --jobid J --overlap --container BUNDLE``);
  the job id stands for the container id everywhere; removing the kernel cancels the job;
* the image -> its root file system unpacked once per image id in the user's store, from the
  local engine's copy (``docker save`` -> skopeo -> umoci, as the user: slurm_store.py);
* mounts, files, environment, user, /dev/shm, GPUs -> the kernel's ``config.json``
  (slurm_bundle.py): named volumes are folders of the user's store, the files (connection file,
  passwd, group) are written to the kernel's folder and bound at their paths;
* the five ports -> none published: there is no network namespace, so the kernel binds ports the
  node picks (the connection file asks for port 0) and writes them back into its connection file,
  which is read from the shared file system; it is reached at its node's address;
* GPUs -> ``--gres=gpu:N``; the allocated devices are read from the job and only those bound
  (Slurm's device cgroup confines the job to them as well);
* memory and CPUs -> ``--mem`` and ``--cpus-per-task``: Slurm's cgroups enforce them, and a
  job that runs out of memory is named so;
* death -> the step's ``srun`` client returning, or the job ending (time limit, node failure,
  out of memory, cancelled), polled: the job's state names why;
* signals -> ``scancel --signal`` (an interrupt reaches the kernel's step once); TERM and KILL
  cancel the job.

Everything on the cluster runs through the login node as the user (slurm_login.py). Images,
probes and builds are the local engine's (:class:`~.swarm_manager.ManagerEngine`).
"""

from __future__ import annotations

import atexit
import json
import posixpath
import signal as signals
import subprocess
import tempfile
import threading
import time
from typing import Any, Iterator

from ..core.errors import (
    ContainerNotFound,
    ContainerNotRunning,
    EngineError,
    GpuRequestUnsatisfiable,
    WorkspaceNotOnEngineHost,
)
from ..core.labels import LABEL_IMAGE, LABEL_KERNEL_ID, LABEL_OWNER, LABEL_ROLE
from .base import CONNECTION_DIR_IN_CONTAINER, ContainerSpec, EngineKind, EngineLocation, MountSpec
from .slurm_bundle import kernel_bundle_config
from .slurm_jobs import SlurmJob, jobs_from_squeue
from .slurm_login import LoginNode
from .slurm_store import ClusterUser, UserStore, cluster_user
from .swarm_manager import ManagerEngine

DEFAULT_STORE = "~/.cache/mlcontainer/slurm"
# What a kernel's job runs besides the kernel: nothing, until the job is cancelled.
HOLDER_SCRIPT = "exec sleep infinity"
# How long a restarting kernel's job keeps its allocation for the restart's new step (the
# provisioner removes the old kernel and starts the new one at once): a restart is a new step on
# the same node, on the same ports, with no second wait in the queue.
HOLD_FOR_RESTART = 10.0
# A kernel's labels that go with its job (its --comment), and the label naming its store.
_COMMENT_LABELS = (LABEL_ROLE, LABEL_OWNER, LABEL_KERNEL_ID, LABEL_IMAGE)
STORE_LABEL = "org.jupyter.mlcontainer.slurm-store"


class SlurmBackend(ManagerEngine):
    """The operations of :class:`~.base.ContainerBackend` on a Slurm cluster reached through the
    login command ``login`` (slurm_login.py); images come from the local engine."""

    helpers_reach_kernels = False  # a short helper runs on the local engine, not on the nodes
    gpus_placed_by_scheduler = True  # --gres=gpu:N, placed by Slurm
    delivers_signals = True  # scancel --signal reaches the kernel's step
    is_cluster = True
    # The node is known once the job runs (create_and_start_sync's Node.Addr); nothing of this host
    # but the workspace (on the shared file system, at the same path) is assumed there.
    location = EngineLocation(False, "")

    def __init__(self, login: str | None) -> None:
        super().__init__(None)  # the local engine: images, probes, builds
        self.login = LoginNode(login or "")
        self._lock = threading.Lock()
        self._user: ClusterUser | None = None
        self._stores: dict[str, UserStore] = {}
        self._kernels: dict[str, dict[str, Any]] = {}  # job id -> what the backend knows of its kernel
        self._removed: dict[str, int] = {}  # "job.step" -> exit code, of kernels removed (their die event)
        self._steps: dict[str, int] = {}  # job id -> its newest step's number
        self._addresses: dict[str, str] = {}  # node -> its NodeAddr
        self._found: dict[str, tuple[str, str]] = {}  # job id -> (store, name) of kernels another server started
        # Jobs kept allocated with no kernel in them, and the timers cancelling them: by kernel id for
        # that kernel's restart, by warm_key() for the next kernel of the same kernelspec ('hold').
        self._held: dict[str, tuple[str, threading.Timer]] = {}
        _BACKENDS_AT_EXIT.append(self)

    @property
    def address(self) -> str:
        return f"slurm:{self.login.login or 'localhost'}"

    # -- the engine as the provisioner sees it

    def kind_sync(self) -> EngineKind:
        # crun maps the user's own uid into the bundle (keep-id); Slurm's cgroups enforce limits.
        return EngineKind(product="slurm", rootless=True, cgroup_version="2", cgroup_driver="slurm", gpu_devices="slurm")

    def has_nvidia_runtime_sync(self) -> bool:
        return "gpu" in self.login.run(["sinfo", "-h", "-o", "%G"])

    def joins_network_after_start_sync(self) -> bool:
        return False

    def ensure_kernel_network_sync(self, name: str) -> str:
        return ""  # a kernel binds on its node: it joins no network of ours

    def memory_usage_sync(self, container_id: str) -> int | None:
        return None

    def exec_sync(self, container_id: str, command: list[str]) -> tuple[int | None, str, str]:
        raise EngineError("A Slurm kernel runs no second command (freeze asks the kernel itself)")

    def container_diff_sync(self, container_id: str) -> list[dict[str, Any]]:
        raise EngineError("A Slurm kernel's root file system is read-only: there is no diff to read")

    def ensure_service_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """No keeper on a Slurm cluster: each user's cache is a folder of their own store."""
        return {"Id": "", "State": {"Running": True}, "Config": {"Labels": dict(spec.labels)}}

    # -- the user's store

    def user(self) -> ClusterUser:
        if self._user is None:
            self._user = cluster_user(self.login)
        return self._user

    def store(self, root: str) -> UserStore:
        user = self.user()
        root = (root or DEFAULT_STORE).replace("{user}", user.name)
        if root.startswith("~/"):
            root = posixpath.join(self.login.run(["printenv", "HOME"]).strip(), root[2:])
        with self._lock:
            if root not in self._stores:
                store = UserStore(self.login, root, user)
                store.ensure()
                self._stores[root] = store
            return self._stores[root]

    # -- kernels

    def create_and_start_sync(self, spec: ContainerSpec) -> dict[str, Any]:
        """Submit the kernel's job, wait until it runs (or say why it waits: the queue's reason
        and estimated start, after ``placement_timeout``), start the kernel as a step in its
        bundle and wait until it has written its ports back. Inspect-like data: Id (the job id),
        State, NetworkSettings.Ports, Node (Name, Addr)."""
        self._check_folders(spec)
        store = self.store(spec.scheduler.get("store", ""))
        rootfs, image_config = store.image_bundle(self._image_id(spec.image), self._archive(spec.image))
        name = spec.name or "mlc-kernel"
        folder = store.kernel_folder(name)
        job_id = (self._take_held(spec.labels.get(LABEL_KERNEL_ID, "")) or self._take_held(warm_key(spec))
                  or self._submit(spec, name, folder, store))
        # Listed (the kernel list shows why it waits) and cancellable while it waits in the queue.
        self._kernels[job_id] = {"name": name, "folder": folder, "store": store, "client": None, "step": -1,
                                 "said": None, "labels": dict(spec.labels), "image": spec.image, "node": "",
                                 "spec": spec}
        try:
            job = self._wait_running(job_id, spec)
            mounts, files = self._bundle_parts(spec, store, folder)
            devices = self._gpu_devices(job_id, spec)
            config = kernel_bundle_config(
                image_config, _with_mounts(spec, mounts), rootfs=rootfs, uid=store.user.uid, gid=store.user.gid,
                gpu_devices=devices,
            )
            files["config.json"] = (json.dumps(config).encode(), 0o600)
            store.write_files(folder, files)
            # srun's own messages (an out-of-memory kill is reported there), kept on this side.
            said = tempfile.TemporaryFile()
            client = self.login.start(["srun", "--jobid", job_id, "--overlap", f"--container={folder}",
                                       f"--output={folder}/kernel.log", *(spec.entrypoint or []), *spec.command],
                                      output=said)
            self._steps[job_id] = step = self._steps.get(job_id, -1) + 1  # srun numbers a job's steps from 0
            self._kernels[job_id].update(client=client, step=step, said=said, node=job.nodes,
                                         gpus=[device.removeprefix("/dev/nvidia") for device in devices])
            ports = self._wait_for_ports(job_id, spec)
            address = self._node_address(job.nodes)
            self._kernels[job_id]["address"] = address
            asked = _ports_of(spec)  # the connection file's ports stand for the container's
            return {
                "Id": job_id, "Name": name, "State": {"Running": True, "Status": "running"},
                "NetworkSettings": {"Ports": {f"{port}/tcp": [{"HostIp": "", "HostPort": str(ports[field])}]
                                              for field, port in asked.items()}},
                "Node": {"Name": job.nodes, "Addr": address, "ID": job.nodes},
                "Config": {"Labels": dict(spec.labels)},
            }
        except BaseException:
            kernel = self._kernels.pop(job_id, None)
            self.login.run(["scancel", job_id], check=False)  # a failed start keeps nothing
            if kernel is not None and kernel["client"] is not None:
                kernel["client"].kill()
            store.remove_kernel_folder(name)
            raise

    def _take_held(self, key: str) -> str:
        """A held job for this start, while it still runs: the job a restarting kernel's previous
        step ran in (``key``: the kernel id), or one an earlier kernel of the kernelspec left
        (``key``: its :func:`warm_key`)."""
        with self._lock:
            held = self._held.pop(key, None) if key else None
        if held is None:
            return ""
        job_id, timer = held
        timer.cancel()
        job = self.job(job_id)
        if job is not None and job.running:
            return job_id
        self.login.run(["scancel", job_id], check=False)
        return ""

    def _check_folders(self, spec: ContainerSpec) -> None:
        """The workspace (every folder bound from this host's paths) must be on the cluster's shared
        file system at the same path: refused at once, before anything waits in the queue."""
        for mount in spec.mounts:
            if mount.kind == "bind" and not _exists(self.login, mount.source, "-d"):
                raise WorkspaceNotOnEngineHost(
                    f"{mount.source} is not on the Slurm cluster (no such folder on its login node, "
                    f"{self.login.describe()}): the workspace must be on the cluster's shared file system, "
                    "at the same path as here")

    def _image_id(self, image: str) -> str:
        return self.engine.inspect_image_sync(image)["Id"]

    def _archive(self, image: str) -> Iterator[bytes]:
        """``docker save`` of the local engine's image, read lazily (only for a first unpack)."""
        yield from self.call_sync(lambda: self.api.get_image(image))

    def _submit(self, spec: ContainerSpec, name: str, folder: str, store: UserStore) -> str:
        # The labels a later server reads the job by (whose it is, which kernel, where its folder is).
        comment = json.dumps({**{key: spec.labels[key] for key in _COMMENT_LABELS if key in spec.labels},
                              STORE_LABEL: store.root}, separators=(",", ":"))
        options = ["--parsable", "--no-requeue", "-J", name, "-N1", "-n1", f"--output={folder}/job.log",
                   f"--comment={comment}"]
        if spec.nano_cpus:
            options.append(f"--cpus-per-task={max(1, round(spec.nano_cpus / 1e9))}")
        if spec.memory:
            options.append(f"--mem={_megabytes(spec.memory)}M")
        count = _gpu_count(spec)
        if count:
            options.append(f"--gres=gpu:{count}")
        for option in ("partition", "time", "account", "qos"):
            if spec.scheduler.get(option):
                options.append(f"--{option}={spec.scheduler[option]}")
        answer = self.login.run(["sbatch", *options, "--wrap", HOLDER_SCRIPT]).strip()
        return answer.split(";")[0]

    def job(self, job_id: str) -> SlurmJob | None:
        """The job as squeue shows it (None when Slurm has forgotten it)."""
        text = self.login.run(["squeue", "--json", "--states=all", "-j", job_id], check=False)
        try:
            return jobs_from_squeue(text).get(job_id)
        except EngineError:
            return None

    def _wait_running(self, job_id: str, spec: ContainerSpec) -> SlurmJob:
        deadline = time.monotonic() + spec.placement_timeout
        while True:
            job = self.job(job_id)
            if job is not None and job.running:
                return job
            if job is not None and job.ended or job_id not in self._kernels:
                why = (job.why_ended() if job is not None else "") or f"Job {job_id} was cancelled while it waited"
                raise EngineError(f"The kernel's Slurm job ended before the kernel started: {why}")
            if time.monotonic() > deadline:
                why = job.why_waiting() if job is not None else f"Job {job_id} is not in the queue"
                kind = GpuRequestUnsatisfiable if job is not None and "GRES" in job.reason else EngineError
                raise kind(f"{why}. The kernel did not start within {spec.placement_timeout:.0f} s "
                           "(placement_timeout); its job was cancelled")
            time.sleep(0.25)

    def _bundle_parts(self, spec: ContainerSpec, store: UserStore,
                      folder: str) -> tuple[list[MountSpec], dict[str, tuple[bytes, int]]]:
        """The spec's named volumes as folders of the store, and its files as files of the kernel's
        folder bound at their paths (the connection file's folder as a whole: the kernel writes
        its ports back there)."""
        mounts = [MountSpec(m.target, store.volume(m.source), read_only=m.read_only) if m.kind == "volume" else m
                  for m in spec.mounts]
        files: dict[str, tuple[bytes, int]] = {}
        for file in spec.files:
            if posixpath.dirname(file.path) == CONNECTION_DIR_IN_CONTAINER:
                relative = posixpath.join("run", posixpath.basename(file.path))
                files[relative] = (_ports_asked(file.content, spec), 0o600)
            else:
                relative = posixpath.basename(file.path)
                files[relative] = (file.content, 0o644)
                mounts.append(MountSpec(file.path, posixpath.join(folder, relative), read_only=True))
        mounts.append(MountSpec(CONNECTION_DIR_IN_CONTAINER, posixpath.join(folder, "run")))
        return mounts, files

    def _gpu_devices(self, job_id: str, spec: ContainerSpec) -> list[str]:
        """The device nodes of the GPUs Slurm allocated to the job (``scontrol -d``: IDX)."""
        if not _gpu_count(spec):
            return []
        detail = self.login.run(["scontrol", "-d", "show", "job", job_id])
        devices: list[str] = []
        for field in detail.split():
            if field.startswith("GRES=") and "IDX:" in field:
                for part in field.split("IDX:", 1)[1].rstrip(")").split(","):
                    first, _, last = part.partition("-")
                    devices += [f"/dev/nvidia{i}" for i in range(int(first), int(last or first) + 1)]
        return devices

    def _wait_for_ports(self, job_id: str, spec: ContainerSpec) -> dict[str, int]:
        """The ports the kernel bound, once its connection file has them; the kernel's own
        output when it exits first."""
        kernel = self._kernels[job_id]
        path = posixpath.join(kernel["folder"], "run", "kernel.json")
        deadline = time.monotonic() + max(spec.placement_timeout, 120)
        while True:
            try:
                info = json.loads(kernel["store"].read(path) or "{}")
            except ValueError:
                info = {}
            ports = {field: int(info.get(field) or 0) for field in _ports_of(spec)}
            if all(ports.values()):
                return ports
            if kernel["client"].poll() is not None:
                raise EngineError(f"The kernel exited during start-up on {kernel['node']} (exit code "
                                  f"{kernel['client'].returncode}):\n{self.container_logs_sync(job_id, tail=20).strip()}")
            if time.monotonic() > deadline:
                raise EngineError(f"The kernel on {kernel['node']} did not bind its ports within "
                                  f"{deadline - time.monotonic() + max(spec.placement_timeout, 120):.0f} s")
            time.sleep(0.2)

    def _node_address(self, node: str) -> str:
        """Where a node's kernels are reached (its NodeAddr), asked once per node."""
        if node not in self._addresses:
            fields = self.login.run(["scontrol", "show", "node", node]).split()
            self._addresses[node] = next((f.split("=", 1)[1] for f in fields if f.startswith("NodeAddr=")), node)
        return self._addresses[node]

    # -- the kernel's state, output, signals, removal

    def container_state_sync(self, container_id: str) -> dict[str, Any] | None:
        job = self.job(container_id)
        kernel = self._kernels.get(container_id)
        if job is None and kernel is None:
            return None
        client = kernel["client"] if kernel else None
        deadline = time.monotonic() + 5
        while job is not None and job.state == "COMPLETING" and time.monotonic() < deadline:
            time.sleep(0.2)  # the step ended with its job: how the job ended names why
            job = self.job(container_id)
        if job is not None and job.ended:
            return {"Running": False, "Status": "exited", "ExitCode": job.exit_code or -1, "Error": job.why_ended(),
                    "OOMKilled": job.state == "OUT_OF_MEMORY"}
        if client is not None and client.poll() is not None:
            said = _read_all(kernel["said"])
            oom = "out of memory" in said.lower() or "oom_kill" in said.lower()
            return {"Running": False, "Status": "exited", "ExitCode": 137 if oom else client.returncode,
                    "Error": "", "OOMKilled": oom}
        if job is not None and job.waiting or (kernel is not None and client is None):
            return {"Running": False, "Status": "created", "Summary": job.summary() if job else "submitted"}
        return {"Running": True, "Status": "running", "Summary": job.summary() if job else ""}

    def inspect_container_sync(self, container_id: str) -> dict[str, Any]:
        kernel = self._kernels.get(container_id)
        state = self.container_state_sync(container_id)
        if kernel is None or state is None:
            raise ContainerNotFound(f"No kernel of this server runs as Slurm job {container_id}")
        spec: ContainerSpec = kernel["spec"]
        try:
            image_id = self.engine.inspect_image_sync(kernel["labels"].get(LABEL_IMAGE) or kernel["image"])["Id"]
        except EngineError:
            image_id = ""
        return {"Id": container_id, "Name": kernel["name"], "Image": image_id, "State": state,
                "Config": {"Labels": kernel["labels"], "Image": kernel["image"], "WorkingDir": spec.working_dir or "",
                           "Env": [f"{k}={v}" for k, v in spec.env.items()]},
                "Mounts": [{"Destination": m.target, "Type": m.kind} for m in spec.mounts],
                "Node": {"Name": kernel["node"], "Addr": kernel.get("address", "")}}

    def container_logs_sync(self, container_id: str, tail: int | str = "all") -> str:
        kernel = self._kernels.get(container_id)
        if kernel is None:
            return ""
        text = kernel["store"].read(posixpath.join(kernel["folder"], "kernel.log"))
        lines = text.splitlines(keepends=True)
        return "".join(lines if tail == "all" else lines[-int(tail):])

    def signal_container_sync(self, container_id: str, signum: int) -> None:
        """A signal to the kernel's step: an interrupt, or TERM and KILL ending the kernel (its job
        stays until the kernel is removed, which a restart does not do at once). A kernel whose
        job still waits in the queue is cancelled."""
        kernel = self._kernels.get(container_id)
        if kernel is not None and kernel["client"] is None:
            self.remove_container_sync(container_id)
            return
        target = f"{container_id}.{kernel['step']}" if kernel is not None else container_id
        name = signals.Signals(signum).name.removeprefix("SIG")
        try:
            self.login.run(["scancel", f"--signal={name}", target])
        except EngineError as exc:
            text = str(exc).lower()
            if "invalid job id" in text or "completed" in text:
                raise ContainerNotRunning(f"Slurm job {container_id} has ended") from None
            raise
        if signum == signals.SIGKILL and kernel is not None:
            # The step is gone; its srun client takes a second more to notice: not waited for.
            kernel["client"].kill()

    def remove_container_sync(self, container_id: str, *, for_restart: bool = False) -> None:
        """Remove the kernel: its job is cancelled and its folder removed. ``for_restart`` (the
        provisioner's clean-up before the kernel's restart): only the kernel's step ends, and the
        job keeps its allocation for the restart's new step (cancelled after
        :data:`HOLD_FOR_RESTART` s if none comes, at once when the process exits)."""
        kernel = self._kernels.pop(container_id, None)
        found = self._found.pop(container_id, None)
        started = kernel is not None and kernel["client"] is not None
        kernel_id = kernel["labels"].get(LABEL_KERNEL_ID, "") if kernel is not None else ""
        hold = _seconds(kernel["spec"].scheduler.get("hold", "")) if started else 0.0
        if started and not _exiting.is_set() and (for_restart and kernel_id or hold > 0):
            self.login.run(["scancel", f"{container_id}.{kernel['step']}"], check=False)
            key = kernel_id if for_restart else warm_key(kernel["spec"])
            timer = threading.Timer(HOLD_FOR_RESTART if for_restart else hold, self._release, (key, container_id))
            timer.daemon = True
            with self._lock:
                self._held[key] = (container_id, timer)
            timer.start()
        else:
            with self._lock:
                for held_kernel, (job_id, timer) in list(self._held.items()):
                    if job_id == container_id:
                        timer.cancel()
                        del self._held[held_kernel]
            self.login.run(["scancel", container_id], check=False)
        if kernel is None:
            if found and found[0]:  # another server's kernel (an orphan): its folder too
                self.store(found[0]).remove_kernel_folder(found[1])
            return
        if not started:
            return  # its start, waiting for the job, sees the job end and cleans up
        client: subprocess.Popen = kernel["client"]
        try:
            client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
        self._removed[f"{container_id}.{kernel['step']}"] = client.returncode if client.returncode is not None else -9
        kernel["said"].close()
        kernel["store"].remove_kernel_folder(kernel["name"])

    def _release(self, kernel_id: str, job_id: str) -> None:
        """No restart came: cancel the held job."""
        with self._lock:
            if self._held.get(kernel_id, ("",))[0] != job_id:
                return
            del self._held[kernel_id]
        self.login.run(["scancel", job_id], check=False)

    def release_all(self) -> None:
        """Cancel every held job (the process exits)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for job_id, timer in held:
            timer.cancel()
            self.login.run(["scancel", job_id], check=False)

    def wait_container_sync(self, container_id: str, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while True:
            state = self.container_state_sync(container_id)
            if state is None or not state.get("Running") and state.get("Status") == "exited":
                return int((state or {}).get("ExitCode", -1))
            if time.monotonic() > deadline:
                raise EngineError(f"Slurm job {container_id} still runs after {timeout:.0f} s")
            time.sleep(0.2)

    def containers_sync(self, labels: list[str], *, all: bool = True) -> list[dict[str, Any]]:
        """The user's kernels' jobs in the queue (this server's and those a server that died left:
        the orphan reaper judges them by their owner label), as container rows."""
        rows = self._kernel_rows(labels)
        known = {row["Id"] for row in rows}
        text = self.login.run(["squeue", "--json", "--me"], check=False)
        try:
            queued = jobs_from_squeue(text).values()
        except EngineError:
            queued = []
        for job in queued:
            job_labels = _comment_labels(job.comment)
            if job.job_id in known or not job_labels or job.ended:
                continue
            if any(not _matches(job_labels, label) for label in labels):
                continue
            self._found[job.job_id] = (job_labels.get(STORE_LABEL, ""), job.name)
            rows.append({"Id": job.job_id, "Names": [f"/{job.name}"], "Labels": job_labels,
                         "State": "running" if job.running else "created", "Status": job.summary(),
                         "Image": job_labels.get(LABEL_IMAGE, ""), "Node": job.nodes})
        return rows

    def _kernel_rows(self, labels: list[str]) -> list[dict[str, Any]]:
        """This server's kernels whose labels match, as container rows."""
        rows = []
        for job_id, kernel in list(self._kernels.items()):
            if any(not _matches(kernel["labels"], label) for label in labels):
                continue
            state = self.container_state_sync(job_id) or {}
            rows.append({"Id": job_id, "Names": [f"/{kernel['name']}"], "Labels": kernel["labels"],
                         "State": state.get("Status", ""), "Status": state.get("Summary") or state.get("Error") or "",
                         "Image": kernel["image"], "Node": kernel["node"]})
        return rows

    def our_containers_sync(self, role: str | None = None) -> list[dict[str, Any]]:
        return self.containers_sync([f"{LABEL_ROLE}={role}" if role else LABEL_ROLE])

    def events_stream(self, *, since: float, events: list[str], labels: list[str]) -> "KernelEnds":
        return KernelEnds(self, labels)

    def stats_stream(self, container_id: str) -> Iterator[dict[str, Any]]:
        raise ContainerNotFound(f"No live figures for Slurm job {container_id}")

    def cluster_sync(self) -> dict[str, Any]:
        """The cluster as the status shows it: its nodes (name, state, address, GPUs and the kernel
        holding each) and the user's kernels' jobs (queued: why and when; running: where and how
        long is left)."""
        held = {(kernel["node"], index): kernel["labels"].get(LABEL_KERNEL_ID)
                for kernel in list(self._kernels.values()) for index in kernel.get("gpus", [])}
        nodes = []
        for line in self.login.run(["sinfo", "-h", "-N", "-o", "%N|%T|%o|%G"]).splitlines():
            name, state, address, gres = (line.split("|") + ["", "", "", ""])[:4]
            count = sum(int(p.split(":")[-1].split("(")[0]) for p in gres.split(",") if p.startswith("gpu"))
            nodes.append({"hostname": name, "role": "node", "state": state, "address": address,
                          "gpus": [{"id": f"{name}:{i}", "kernel_id": held.get((name, str(i)))} for i in range(count)]})
        kernels = [{"job": row["Id"], "kernel_id": row["Labels"].get(LABEL_KERNEL_ID), "state": row["State"],
                    "status": row["Status"]} for row in self.containers_sync([f"{LABEL_ROLE}=kernel"])]
        return {"kind": "Slurm", "manager": self.address, "nodes": nodes, "kernels": kernels}

    def image_on_nodes(self, image: str, python: str) -> dict[str, str]:
        return {}  # the nodes run bundles from the shared store: no per-node images

    def cached_node_images(self, image: str, python: str) -> dict[str, Any]:
        return {}


class KernelEnds:
    """The ``die`` events of this server's Slurm kernels. A kernel ends when its step's ``srun``
    client returns, whatever ended it (the kernel's exit, a signal, its job's end: a time limit, a
    node failure, a cancel): the clients are polled here, ten times a second, without asking
    Slurm; the job's state is read once a kernel has ended. Iterable; ``close()`` ends it."""

    def __init__(self, backend: SlurmBackend, labels: list[str], every: float = 0.1) -> None:
        self.backend, self.labels, self.every = backend, labels, every
        self._closed = threading.Event()
        self._reported: set[str] = set()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._closed.is_set():
            # A kernel is a step: a restart's kernel runs in the same job (the same id) as a new step.
            for step, code in list(self.backend._removed.items()):  # the die of a removed kernel
                if step not in self._reported:
                    self._reported.add(step)
                    yield _die(step.split(".")[0], code)
            for job_id, kernel in list(self.backend._kernels.items()):
                client, step = kernel["client"], f"{job_id}.{kernel['step']}"
                if step in self._reported or client is None or client.poll() is None:
                    continue
                if any(not _matches(kernel["labels"], label) for label in self.labels):
                    continue
                self._reported.add(step)
                state = self.backend.container_state_sync(job_id) or {}
                yield _die(job_id, state.get("ExitCode", client.returncode))
            self._closed.wait(self.every)


def _die(job_id: str, code: Any) -> dict[str, Any]:
    return {"Action": "die", "id": job_id, "time": time.time(),
            "Actor": {"ID": job_id, "Attributes": {"exitCode": str(code if code is not None else -1)}}}


def warm_key(spec: ContainerSpec) -> str:
    """What a held job must match for a kernel to start in it: the image and every resource and
    scheduler option its job was submitted with."""
    return "warm:" + json.dumps([spec.image, spec.memory, spec.nano_cpus, _gpu_count(spec),
                                 sorted(spec.scheduler.items())], default=str)


def _seconds(value: str) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _comment_labels(comment: str) -> dict[str, str]:
    """The labels a kernel's job carries in its comment ({} for any other job of the user's)."""
    try:
        labels = json.loads(comment) if comment.startswith("{") else {}
    except ValueError:
        return {}
    if not isinstance(labels, dict) or LABEL_ROLE not in labels:
        return {}
    return {str(key): str(value) for key, value in labels.items()}


def _exists(login: LoginNode, path: str, test: str = "-e") -> bool:
    try:
        login.run(["test", test, path])
        return True
    except EngineError:
        return False


def _read_all(file: Any) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def _matches(labels: dict[str, str], wanted: str) -> bool:
    key, _, value = wanted.partition("=")
    return key in labels and (not value or labels[key] == value)


def _ports_of(spec: ContainerSpec) -> dict[str, int]:
    """The ports the launch's connection file names (field -> port): the launcher reads the
    kernel's ports back as these container ports' published ones."""
    for file in spec.files:
        if file.path.startswith(CONNECTION_DIR_IN_CONTAINER + "/") and file.path.endswith(".json"):
            info = json.loads(file.content)
            return {field: int(value) for field, value in info.items() if field.endswith("_port")}
    raise EngineError("A Slurm kernel's launch has no connection file to give it (the tcp transport is needed)")


def _ports_asked(connection: bytes, spec: ContainerSpec) -> bytes:
    """The connection file with the ports the kernel binds on its node: a restart's previous ones
    (``spec.ports``' host ports: on the same node, its clients keep working), else 0 for each, so
    that the kernel binds ports its node has free (there is no network namespace to give it fixed
    ones) and writes them back."""
    info = json.loads(connection)
    for field in list(info):
        if field.endswith("_port"):
            info[field] = spec.ports.get(int(info[field])) or 0
    return json.dumps(info).encode()


def _gpu_count(spec: ContainerSpec) -> int:
    count = 0
    for request in spec.gpus:
        if request.device_ids:
            raise GpuRequestUnsatisfiable("A Slurm kernel asks for a number of GPUs (--gpus N): Slurm picks which")
        if request.count == -1:
            raise GpuRequestUnsatisfiable("A Slurm kernel asks for a number of GPUs (--gpus N), not all of a node's")
        count += request.count or 0
    return count


def _megabytes(size: str) -> int:
    from .base import parse_size

    return max(1, parse_size(size) // (1024 * 1024))


def _with_mounts(spec: ContainerSpec, mounts: list[MountSpec]) -> ContainerSpec:
    import dataclasses

    return dataclasses.replace(spec, mounts=mounts)


_BACKENDS_AT_EXIT: list[SlurmBackend] = []
_exiting = threading.Event()


@atexit.register
def _cancel_held_jobs() -> None:
    """Run before the provisioner's own atexit removal (registered earlier, so run later): from
    now on a removed kernel's job is cancelled at once, and the held ones are."""
    _exiting.set()
    for backend in _BACKENDS_AT_EXIT:
        backend.release_all()


_backends: dict[str, SlurmBackend] = {}
_backends_lock = threading.Lock()


def get_slurm(login: str | None = None) -> SlurmBackend:
    """The process-wide backend for the Slurm cluster reached through the login command ``login``
    (empty: Slurm's tools on this host's PATH)."""
    with _backends_lock:
        key = (login or "").strip()
        if key not in _backends:
            _backends[key] = SlurmBackend(key)
        return _backends[key]
