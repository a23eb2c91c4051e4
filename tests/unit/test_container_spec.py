"""The kernel container as plain data: built without an engine (container_spec.py)."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.core.errors import BadRequest

from jupyter_mlcontainer.engines.base import (
    EngineKind, CONNECTION_DIR_IN_CONTAINER, NO_NEW_PRIVILEGES, GpuRequest, MountSpec, parse_size,
)
from jupyter_mlcontainer.engines.base import EngineLocation
from jupyter_mlcontainer.images.probe import ImageFacts
from jupyter_mlcontainer.kernels.container_spec import CONTAINER_PORTS, gpu_requests, kernel_environment, shm_size_for
from jupyter_mlcontainer.kernels.launch_plan import BackendFacts, KernelLaunch, LaunchSettings, plan_launch
from jupyter_mlcontainer.core.labels import LABEL_GPUS, LABEL_INJECTED_ENV, LABEL_KERNEL_ID, LABEL_OWNER
from jupyter_mlcontainer.core.identity import HostUser

USER = HostUser(uid=1234, gid=1234, name="ada")
ROOT = HostUser(uid=0, gid=0, name="root")


def environment(**overrides):
    args = dict(
        image="repo/img:1", kernel_id="k" * 36, user=USER, home="/c/home/ada", cache_mount_path="/c",
        launch_env={"JPY_SESSION_NAME": "nb.ipynb", "JPY_PARENT_PID": "1", "MY_SPEC_VAR": "from-spec", "PATH": "/host"},
        kernelspec_env={"MY_SPEC_VAR": "x"}, configured_env={"CONFIGURED": "yes"}, gpus=[], image_env={},
    )
    args.update(overrides)
    return kernel_environment(**args)


def test_environment_holds_ours_the_users_and_never_the_hosts():
    env = environment()
    assert env.env["HOME"] == "/c/home/ada" and env.env["USER"] == "ada" and env.env["HF_HOME"].startswith("/c/")
    assert env.env["JPY_SESSION_NAME"] == "nb.ipynb" and "JPY_PARENT_PID" not in env.env
    assert env.env["MY_SPEC_VAR"] == "from-spec" and env.env["CONFIGURED"] == "yes"
    assert "PATH" not in env.env  # the host's environment is not copied in
    # What freeze must leave out: ours, not the user's.
    assert {"HOME", "HF_HOME", "JPY_SESSION_NAME"} <= set(env.injected)
    assert "MY_SPEC_VAR" not in env.injected and "CONFIGURED" not in env.injected


def test_no_gpu_means_void_whatever_the_kernelspec_says():
    env = environment(kernelspec_env={"NVIDIA_VISIBLE_DEVICES": "all"}, launch_env={"NVIDIA_VISIBLE_DEVICES": "all"})
    assert env.env["NVIDIA_VISIBLE_DEVICES"] == "void" and env.overridden_gpu_env == "all"
    with_gpu = environment(gpus=[GpuRequest(count=1)])
    assert "NVIDIA_VISIBLE_DEVICES" not in with_gpu.env
    assert with_gpu.env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert "NVIDIA_DRIVER_CAPABILITIES" not in environment(gpus=[GpuRequest(count=1)], image_env={"NVIDIA_DRIVER_CAPABILITIES": "all"}).env


LOCAL = EngineLocation(True, "127.0.0.1")


def plan(user=USER, kind=EngineKind(), location=LOCAL, settings=None, **overrides):
    """The launch plan of a kernel of repo/img:1 with 2 GPUs, 8g, 1.5 CPUs (launch_plan.py)."""
    launch = dict(
        kernel_id="0123456789abcdef", kernel_name="mlc-img", restarts=2, owner="f" * 32,
        command=["python3", "-m", "ipykernel_launcher", "-f", "/run/mlcontainer/kernel.json"], user=user,
        cwd="/work/nb", workspace="/work", connection_dir="/run/user/1234/jupyter/mlcontainer-01234567-x",
        transport="tcp", gpus="2", passwd_group=("/p", "/g") if user.uid else None,
        launch_env={"JPY_SESSION_NAME": "nb.ipynb", "MY_SPEC_VAR": "from-spec"}, kernelspec_env={"MY_SPEC_VAR": "x"},
    )
    launch.update(overrides)
    settings = settings or LaunchSettings(image="repo/img:1", gpus="2", memory="8g", cpus="1.5", shm_size="4g",
                                          cache_volume="cache", cache_mount_path="/c", env={"CONFIGURED": "yes"})
    backend = BackendFacts(location=location, kind=kind, joins_network_after_start=True)
    facts = ImageFacts(image_id="sha256:1", python="/usr/bin/python3", ipykernel="6.29.5")
    return plan_launch(settings, backend, facts, KernelLaunch(**launch))


def spec(user=USER, **overrides):
    return plan(user, **overrides).spec


def test_kernel_container_runs_as_the_user_with_least_privilege():
    s = spec()
    assert s.user == "1234:1234" and s.cap_drop == ["ALL"] and s.security_opt == [NO_NEW_PRIVILEGES]
    assert spec(user=ROOT).cap_drop is None  # root keeps the engine's reduced set
    assert s.entrypoint[:2] == ["/usr/bin/python3", "-c"] and s.command[-1] == "/run/mlcontainer/kernel.json"
    assert s.working_dir == "/work/nb" and s.network == "mlcontainer-kernels" and s.init is True
    assert s.memory == "8g" and s.nano_cpus == 1_500_000_000 and s.shm_size == "4g"
    assert s.gpus == [GpuRequest(count=2)] and s.labels[LABEL_GPUS] == "2"
    assert s.name == "mlc-repo-img-1-01234567-2"


def test_kernel_container_mounts_and_labels():
    s = spec()
    assert MountSpec("/work", "/work") in s.mounts  # the workspace at its own path
    assert MountSpec("/c", "cache", kind="volume") in s.mounts
    assert MountSpec(CONNECTION_DIR_IN_CONTAINER, "/run/user/1234/jupyter/mlcontainer-01234567-x") in s.mounts
    assert MountSpec("/etc/passwd", "/p", read_only=True) in s.mounts
    assert not any(m.target == "/etc/passwd" for m in spec(user=ROOT).mounts)
    assert s.labels[LABEL_KERNEL_ID] == "0123456789abcdef" and s.labels[LABEL_OWNER] == "f" * 32
    assert "HOME" in s.labels[LABEL_INJECTED_ENV].split(",")


def test_ports_are_published_where_the_engine_chooses_or_where_they_were():
    assert spec().ports == dict.fromkeys(CONTAINER_PORTS.values())
    again = spec(host_ports={"shell_port": 40001, "iopub_port": 40002})
    assert again.ports[CONTAINER_PORTS["shell_port"]] == 40001 and again.ports[CONTAINER_PORTS["hb_port"]] is None
    assert spec(transport="ipc", host_ports={"shell_port": 40001}).ports == {}  # ipc: sockets in the folder


def test_gpu_grammar_and_sizes():
    assert gpu_requests("all") == [GpuRequest(count=-1)] and gpu_requests("none") == []
    assert gpu_requests("GPU-a,1") == [GpuRequest(device_ids=("GPU-a", "1"))]
    with pytest.raises(BadRequest, match="not understood"):
        gpu_requests("lots")
    assert parse_size("512m") == 512 << 20 and parse_size("1.5g") == 3 << 29 and parse_size("100") == 100
    with pytest.raises(BadRequest, match="not a size"):
        parse_size("big")
    assert shm_size_for("auto", "8g", 0) == str(4 << 30)  # half the memory limit
    assert shm_size_for("", None, 16 << 30) == str(8 << 30)  # half the engine's memory
    assert shm_size_for("2g", "8g", 0) == "2g"


def test_pip_is_allowed_to_install_on_externally_managed_images():
    assert environment(externally_managed=True).env["PIP_BREAK_SYSTEM_PACKAGES"] == "1"
    assert "PIP_BREAK_SYSTEM_PACKAGES" in environment(externally_managed=True).injected  # freeze leaves it out
    assert "PIP_BREAK_SYSTEM_PACKAGES" not in environment().env
    mine = environment(externally_managed=True, kernelspec_env={"PIP_BREAK_SYSTEM_PACKAGES": "0"},
                       launch_env={"PIP_BREAK_SYSTEM_PACKAGES": "0"})
    assert mine.env["PIP_BREAK_SYSTEM_PACKAGES"] == "0"  # the user's own setting wins


def test_the_container_user_is_the_host_user_under_every_engine_kind():
    rootful, rootless_docker = EngineKind("docker", False), EngineKind("docker", True)
    rootless_podman = EngineKind("podman", True)
    assert spec(kind=rootful).user == "1234:1234"
    # Rootless Docker: container root is the user; no passwd entry needed; the default caps act
    # in the user's own namespace only.
    as_root = spec(kind=rootless_docker, passwd_group=None)
    assert as_root.user == "0:0" and as_root.cap_drop is None and as_root.userns is None
    # Rootless Podman keeps the user's own uid inside.
    kept = spec(kind=rootless_podman)
    assert kept.user == "1234:1234" and kept.userns == "keep-id" and kept.cap_drop == ["ALL"]
    assert [k.title for k in (rootful, rootless_docker, rootless_podman)] == ["Docker", "rootless Docker", "rootless Podman"]


def test_limits_a_rootless_engine_on_cgroup_v1_would_drop_are_named():
    assert EngineKind("docker", True, "1", "none").limits_ignored_reason.startswith("rootless Docker on cgroup v1")
    assert EngineKind("podman", True, "2", "systemd").limits_ignored_reason == ""
    assert EngineKind("docker", False, "1", "cgroupfs").limits_ignored_reason == ""
    cgroup_v1 = plan(kind=EngineKind("docker", True, "1", "none"), passwd_group=None)
    note = cgroup_v1.spec.labels["org.jupyter.mlcontainer.limits-ignored"]
    assert note.startswith("memory 8g, cpus 1.5 not enforced: rootless Docker on cgroup v1") and note in cgroup_v1.warnings
    assert "org.jupyter.mlcontainer.limits-ignored" not in spec().labels


def test_where_the_engine_is_decides_what_may_be_mounted():
    from jupyter_mlcontainer.engines.base import EngineLocation, engine_location

    local = EngineLocation(True, "127.0.0.1")
    for url in ("", None, "unix:///var/run/docker.sock", "unix:///run/user/1000/docker.sock", "tcp://127.0.0.1:2375",
                "tcp://localhost:2376"):
        assert engine_location(url) == local, url
    assert engine_location("tcp://10.1.2.3:2376") == EngineLocation(False, "10.1.2.3")
    assert engine_location("ssh://ada@gpu-box") == EngineLocation(False, "gpu-box")


def test_an_engine_on_another_host_gets_the_files_not_this_hosts_folders():
    from jupyter_mlcontainer.engines.base import EngineLocation

    folder = "/run/user/1234/jupyter/mlcontainer-01234567-x"
    files = {"kernel.json": b'{"key": "k"}', "passwd-1": b"ada:x:1234:1234::/c/home/ada:/bin/sh\n", "group-1": b"ada:x:1234:\n"}
    s = spec(connection_dir=folder, passwd_group=(f"{folder}/passwd-1", f"{folder}/group-1"),
             location=EngineLocation(False, "10.1.2.3"), connection_files=files)
    assert s.labels[LABEL_GPUS] == "2"
    assert [m.target for m in s.mounts] == ["/work", "/c"]  # the workspace and the cache volume only
    assert {f.path: (f.mode, f.uid) for f in s.files} == {
        "/run/mlcontainer/kernel.json": (0o600, 1234), "/etc/passwd": (0o644, 0), "/etc/group": (0o644, 0)}
    assert s.publish_ip == "10.1.2.3" and {f.path: f.content for f in s.files}["/etc/passwd"] == files["passwd-1"]


def test_gpu_requests_as_cdi_device_names():
    from jupyter_mlcontainer.engines.base import cdi_devices
    from jupyter_mlcontainer.kernels.container_spec import gpu_requests

    assert cdi_devices(gpu_requests("all")) == ["nvidia.com/gpu=all"]
    assert cdi_devices(gpu_requests("2")) == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    assert cdi_devices(gpu_requests("1,GPU-abc")) == ["nvidia.com/gpu=1", "nvidia.com/gpu=GPU-abc"]
    assert cdi_devices(gpu_requests("none")) == []


def test_each_engine_kind_gets_gpus_its_own_way():
    from jupyter_mlcontainer.engines.base import EngineKind
    from jupyter_mlcontainer.kernels.container_spec import gpu_requests
    from jupyter_mlcontainer.engines.docker_spec import _gpu_options

    two = gpu_requests("2")
    (runtime,) = _gpu_options(two, EngineKind())["device_requests"]
    assert runtime["Count"] == 2 and runtime["Capabilities"] == [["gpu"]] and not runtime.get("Driver")
    (cdi,) = _gpu_options(two, EngineKind(gpu_devices="cdi"))["device_requests"]
    assert cdi["Driver"] == "cdi" and cdi["DeviceIDs"] == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    assert _gpu_options([], EngineKind(gpu_devices="cdi")) == {}


def test_keeper_names_fit_a_swarm_service_name():
    from jupyter_mlcontainer.cache.volume import keeper_name

    assert keeper_name("mlcontainer-cache") == "mlc-cache-keeper-mlcontainer-cache"
    long_one, other = "/srv/shared/" + "x" * 100 + "/cache", "/srv/shared/" + "x" * 100 + "/cache2"
    assert len(keeper_name(long_one)) <= 63 and keeper_name(long_one) != keeper_name(other)
