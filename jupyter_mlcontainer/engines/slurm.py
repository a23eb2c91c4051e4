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
probes and builds are the local engine's (:class:`~.image_engine.ImageEngine`). The job's options
and Slurm's answers are read in :mod:`.slurm_spec`, held jobs kept in :mod:`.slurm_holds`,
kernel ends followed in :mod:`.slurm_ends`, the user's store in :mod:`.slurm_store`.
"""
# Over 500 lines because of the mapping above: the class is the seam's members and the steps of
# a start (submit, wait in the queue, bundle, step, ports), each a method of a few lines.

from __future__ import annotations

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
from ..core.identity import HostUser
from ..core.labels import LABEL_IMAGE, LABEL_KERNEL_ID, LABEL_ROLE
from .base import CONNECTION_DIR_IN_CONTAINER, ContainerSpec, EngineKind, EngineLocation, MountSpec
from .image_engine import ImageEngine
from .slurm_bundle import kernel_bundle_config
from .slurm_ends import KernelEnds
from .slurm_holds import HeldJobs, exiting
from .slurm_jobs import SlurmJob, jobs_from_squeue
from .slurm_login import LoginNode
from .slurm_spec import (
    FOLDER_LABEL,
    HOLDER_SCRIPT,
    STORE_LABEL,
    allocated_gpu_devices,
    comment_labels,
    gpu_count,
    hold_seconds,
    job_comment,
    matches,
    node_address,
    node_gpu_count,
    ports_asked,
    ports_of,
    sbatch_options,
    warm_key,
    with_mounts,
)
from .slurm_store import ClusterUser, UserStore, cluster_user, last_line

DEFAULT_STORE = "~/.cache/mlcontainer/slurm"
# How long a restarting kernel's job keeps its allocation for the restart's new step (the
# provisioner removes the old kernel and starts the new one at once): a restart is a new step on
# the same node, on the same ports, with no second wait in the queue.
HOLD_FOR_RESTART = 30.0


class SlurmBackend(ImageEngine):
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
        self.held = HeldJobs(self._cancel)  # jobs kept for a restart or the next kernel (slurm_holds.py)

    @property
    def address(self) -> str:
        return f"slurm:{self.login.login or 'localhost'}"

    # -- the engine as the provisioner sees it

    def kernel_user_sync(self) -> HostUser | None:
        """The login node's user (``id``): Slurm runs the kernel's job as that account."""
        user = self.user()
        return HostUser(uid=user.uid, gid=user.gid, name=user.name)

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
            root = posixpath.join(last_line(self.login.run(["printenv", "HOME"])), root[2:])
        with self._lock:
            if root not in self._stores:
                store = UserStore(self.login, root, user)
                store.ensure()
                self._stores[root] = store
                return store
        self._stores[root].check()  # still the user's alone, at each start
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
        try:
            job_id = self._take_held(spec.labels.get(LABEL_KERNEL_ID, ""))
            if not job_id:
                job_id = self._take_held(warm_key(spec))
                if job_id:  # another kernel's job now: its labels and folder, for a later server
                    self.login.run(["scontrol", "update", f"JobId={job_id}",
                                    f"Comment={job_comment(spec, name, store.root)}"], check=False)
            job_id = job_id or self._submit(spec, name, folder, store)
        except BaseException:  # refused by Slurm: nothing of the kernel stays
            store.remove_kernel_folder(name)
            raise
        # Listed (the kernel list shows why it waits) and cancellable while it waits in the queue.
        self._kernels[job_id] = {"name": name, "folder": folder, "store": store, "client": None, "step": -1,
                                 "said": None, "labels": dict(spec.labels), "image": spec.image, "node": "",
                                 "spec": spec}
        try:
            job = self._wait_running(job_id, spec)
            mounts, files = self._bundle_parts(spec, store, folder)
            devices = self._gpu_devices(job_id, spec)
            config = kernel_bundle_config(
                image_config, with_mounts(spec, mounts), rootfs=rootfs, uid=store.user.uid, gid=store.user.gid,
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
            asked = ports_of(spec)  # the connection file's ports stand for the container's
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

    def _cancel(self, job_id: str) -> None:
        self.login.run(["scancel", job_id], check=False)

    def _take_held(self, key: str) -> str:
        """A held job for this start, while it still runs: the job a restarting kernel's previous
        step ran in (``key``: the kernel id), or one an earlier kernel of the same shape left
        (``key``: its :func:`~.slurm_spec.warm_key`)."""
        job_id = self.held.take(key)
        if not job_id:
            return ""
        job = self.job(job_id)
        if job is not None and job.running:
            return job_id
        self.login.run(["scancel", job_id], check=False)
        return ""

    def _check_folders(self, spec: ContainerSpec) -> None:
        """The workspace (every folder bound from this host's paths) must be on the cluster's shared
        file system at the same path: refused at once, before anything waits in the queue."""
        for mount in spec.mounts:
            if mount.kind == "bind" and not self.login.test(mount.source, "-d"):
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
        options = sbatch_options(spec, name, folder, store.root)
        try:
            answer = last_line(self.login.run(["sbatch", *options, "--wrap", HOLDER_SCRIPT])).split(";")[0]
        except EngineError as exc:
            gres = next((o.split("=", 1)[1] for o in options if o.startswith("--gres=")), "")
            if gres and "node configuration is not available" in str(exc):
                raise GpuRequestUnsatisfiable(
                    f"No node of the Slurm cluster (partition {spec.scheduler.get('partition') or 'default'}) has "
                    f"{gres}: Slurm refused the kernel's job ({str(exc).split(': ', 1)[-1]}). Change --gpus or "
                    "the kernelspec's gpu_type") from None
            raise
        if not answer.isdigit():
            raise EngineError(f"sbatch answered {answer!r}, not a job id: does the login node's shell print at start?")
        return answer

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
                files[relative] = (ports_asked(file.content, spec), 0o600)
            else:
                relative = posixpath.basename(file.path)
                files[relative] = (file.content, 0o644)
                mounts.append(MountSpec(file.path, posixpath.join(folder, relative), read_only=True))
        mounts.append(MountSpec(CONNECTION_DIR_IN_CONTAINER, posixpath.join(folder, "run")))
        return mounts, files

    def _gpu_devices(self, job_id: str, spec: ContainerSpec) -> list[str]:
        """The device nodes of the GPUs Slurm allocated to the job."""
        if not gpu_count(spec):
            return []
        return allocated_gpu_devices(self.login.run(["scontrol", "-d", "show", "job", job_id]))

    def _wait_for_ports(self, job_id: str, spec: ContainerSpec) -> dict[str, int]:
        """The ports the kernel bound, once its connection file has them; the kernel's own
        output when it exits first."""
        kernel = self._kernels[job_id]
        path = posixpath.join(kernel["folder"], "run", "kernel.json")
        waits = max(spec.placement_timeout, 120)
        deadline = time.monotonic() + waits
        while True:
            try:
                info = json.loads(kernel["store"].read(path) or "{}")
            except ValueError:
                info = {}
            ports = {field: int(info.get(field) or 0) for field in ports_of(spec)}
            if all(ports.values()):
                return ports
            if kernel["client"].poll() is not None:
                raise EngineError(f"The kernel exited during start-up on {kernel['node']} (exit code "
                                  f"{kernel['client'].returncode}):\n{self.container_logs_sync(job_id, tail=20).strip()}")
            if time.monotonic() > deadline:
                raise EngineError(f"The kernel on {kernel['node']} did not bind its ports within {waits:.0f} s")
            time.sleep(0.2)

    def _node_address(self, node: str) -> str:
        """Where a node's kernels are reached (its NodeAddr), asked once per node."""
        if node not in self._addresses:
            self._addresses[node] = node_address(self.login.run(["scontrol", "show", "node", node]), node)
        return self._addresses[node]

    # -- the kernel's state, output, signals, removal

    def container_state_sync(self, container_id: str) -> dict[str, Any] | None:
        """The kernel as a container's State (Running, Status, ExitCode, Error, OOMKilled; Summary:
        the job's line for the kernel list); None when neither Slurm nor this server knows it."""
        job = self.job(container_id)
        deadline = time.monotonic() + 5
        while job is not None and job.state == "COMPLETING" and time.monotonic() < deadline:
            time.sleep(0.2)  # the step ended with its job: how the job ended names why
            job = self.job(container_id)
        return self._state_of(job, self._kernels.get(container_id))

    def _state_of(self, job: SlurmJob | None, kernel: dict[str, Any] | None) -> dict[str, Any] | None:
        if job is None and kernel is None:
            return None
        client = kernel["client"] if kernel else None
        if job is not None and job.ended:
            code = job.exit_code if job.exit_code is not None else -1
            return {"Running": False, "Status": "exited", "ExitCode": code, "Error": job.why_ended(),
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
        :data:`HOLD_FOR_RESTART` s if none comes, at once when the process exits); with the
        kernelspec's ``hold``, a shut-down kernel's job is kept likewise for the next kernel."""
        kernel = self._kernels.get(container_id)
        started = kernel is not None and kernel["client"] is not None
        kernel_id = kernel["labels"].get(LABEL_KERNEL_ID, "") if kernel is not None else ""
        hold = hold_seconds(kernel["spec"]) if started else 0.0
        keep = started and not exiting.is_set() and bool(for_restart and kernel_id or hold > 0)
        # Slurm first: a kernel is forgotten only once its job (or step) is told to end, so that a
        # login node that does not answer leaves it for the watcher's retry, not running unseen.
        self.login.run(["scancel", f"{container_id}.{kernel['step']}" if keep else container_id], check=False)
        if not keep:
            self.held.forget(container_id)
        self._kernels.pop(container_id, None)
        found = self._found.pop(container_id, None)
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
        kernel["said"].close()
        kernel["store"].remove_kernel_folder(kernel["name"])
        if keep:  # held from now (the step has ended): the job's id will be another kernel's
            self.held.hold(kernel_id if for_restart else warm_key(kernel["spec"]), container_id,
                           HOLD_FOR_RESTART if for_restart else hold)
        else:  # the job is gone for good: its kernel's end, for a watcher that did not see it
            self._removed[f"{container_id}.{kernel['step']}"] = client.returncode if client.returncode is not None else -9

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
        """The user's kernels' jobs (this server's, and those a server that died left: the orphan
        reaper judges them by their owner label), as container rows; one ``squeue`` for all."""
        text = self.login.run(["squeue", "--json", "--me", "--states=all"], check=False)
        try:
            queue = jobs_from_squeue(text)
        except EngineError:
            queue = {}
        rows = []
        for job_id, kernel in list(self._kernels.items()):
            if any(not matches(kernel["labels"], label) for label in labels):
                continue
            state = self._state_of(queue.get(job_id), kernel) or {}
            rows.append({"Id": job_id, "Names": [f"/{kernel['name']}"], "Labels": kernel["labels"],
                         "State": state.get("Status", ""), "Status": state.get("Summary") or state.get("Error") or "",
                         "Image": kernel["image"], "Node": kernel["node"]})
        known = {row["Id"] for row in rows}
        for job in queue.values():
            job_labels = comment_labels(job.comment)
            if job.job_id in known or job.job_id in self._kernels or not job_labels or job.ended:
                continue
            if self.held.holds(job.job_id):
                continue  # kept for a restart or the next kernel: no kernel of anyone's now
            if any(not matches(job_labels, label) for label in labels):
                continue
            self._found[job.job_id] = (job_labels.get(STORE_LABEL, ""), job_labels.get(FOLDER_LABEL) or job.name)
            rows.append({"Id": job.job_id, "Names": [f"/{job.name}"], "Labels": job_labels,
                         "State": "running" if job.running else "created", "Status": job.summary(),
                         "Image": job_labels.get(LABEL_IMAGE, ""), "Node": job.nodes})
        return rows

    def our_containers_sync(self, role: str | None = None) -> list[dict[str, Any]]:
        return self.containers_sync([f"{LABEL_ROLE}={role}" if role else LABEL_ROLE])

    def events_stream(self, *, since: float, events: list[str], labels: list[str]) -> KernelEnds:
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
            count = node_gpu_count(gres)
            nodes.append({"hostname": name, "role": "node", "state": state, "address": address,
                          "gpus": [{"id": f"{name}:{i}", "kernel_id": held.get((name, str(i)))} for i in range(count)]})
        kernels = [{"job": row["Id"], "kernel_id": row["Labels"].get(LABEL_KERNEL_ID), "state": row["State"],
                    "status": row["Status"]} for row in self.containers_sync([f"{LABEL_ROLE}=kernel"])]
        return {"kind": "Slurm", "manager": self.address, "nodes": nodes, "kernels": kernels}

    def image_on_nodes(self, image: str, python: str) -> dict[str, str]:
        return {}  # the nodes run bundles from the shared store: no per-node images

    def cached_node_images(self, image: str, python: str) -> dict[str, Any]:
        return {}


def _read_all(file: Any) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


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
