"""Container kernels on the real engine: isolation, workspace, user, cache, lifecycle."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import time

import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir

from jupyter_mlcontainer.core.errors import EngineUnavailable, GpuRequestUnsatisfiable, GpuRuntimeMissing, ImageNotFound
from jupyter_mlcontainer.core.errors import ImageNotUsable
from jupyter_mlcontainer.kernels.deaths import last_death
from jupyter_mlcontainer.kernels.container_spec import CONTAINER_PORTS, KERNEL_NETWORK

from .conftest import (
    start_running_cell,
    wait_for_status,
    BASE_IMAGE,
    CACHE_VOLUME,
    CUDA_IMAGE,
    IPYKERNEL7_IMAGE,
    NOIPYKERNEL_IMAGE,
    NOPYTHON_IMAGE,
    TORCH_IMAGE,
    add_spec,
    execute,
    execute_after_error,
    our_kernel_containers,
    running_kernel,
    wait_until,
)


def container_of(km: AsyncKernelManager) -> str:
    return km.provisioner.container_id


async def test_kernel_runs_in_its_own_container(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        cid = container_of(km)
        out, reply = await execute(kc, "import socket, os; print(socket.gethostname()); print(os.path.exists('/etc/debian_version'))")
        assert reply["status"] == "ok"
        hostname, has_debian = out.split()
        # The container's hostname is its short id; the host's is not.
        assert cid.startswith(hostname)
        assert has_debian == "True"
        attrs = engine.api.inspect_container(cid)
        assert attrs["Config"]["Labels"]["org.jupyter.mlcontainer.kernel-id"] == km.kernel_id
        assert attrs["Config"]["Image"] == BASE_IMAGE
    assert our_kernel_containers(engine, km.kernel_id) == []


async def test_ports_loopback_only_and_no_privileges(engine, workspace):
    """With published ports (kernel_transport 'tcp', as for an engine on another host): on
    127.0.0.1 only. The default on this host, Unix sockets, is test_security's."""
    async with running_kernel(engine, BASE_IMAGE, workspace, kernel_transport="tcp") as (km, kc):
        attrs = engine.api.inspect_container(container_of(km))
        ports = attrs["NetworkSettings"]["Ports"]
        assert set(ports) == {f"{p}/tcp" for p in CONTAINER_PORTS.values()}
        for bindings in ports.values():
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        host = attrs["HostConfig"]
        assert host["Privileged"] is False
        assert not host.get("CapAdd")
        assert "no-new-privileges=true" in host["SecurityOpt"]
        assert attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        # The connection info handed to clients points at the published loopback ports.
        info = km.get_connection_info()
        assert (info["ip"], info["transport"]) == ("127.0.0.1", "tcp")
        assert info["shell_port"] == int(ports[f"{CONTAINER_PORTS['shell_port']}/tcp"][0]["HostPort"])
        out, _ = await execute(kc, "import os; print(os.environ.get('SECRET_FROM_HOST', 'absent'))")
        assert out.strip() == "absent"


async def test_workspace_mounted_and_cwd_is_notebook_folder(engine, workspace, monkeypatch):
    nb_dir = workspace / "notebooks"
    (workspace / "data.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("SECRET_FROM_HOST", "do-not-leak")
    async with running_kernel(engine, BASE_IMAGE, nb_dir, workspace=str(workspace)) as (km, kc):
        out, reply = await execute(
            kc,
            "import os\n"
            "print(os.getcwd())\n"
            "print(open('../data.csv').read().splitlines()[1])\n"
            "open('written-in-container.txt', 'w').write('hello')\n"
            "print(os.environ.get('SECRET_FROM_HOST', 'absent'))",
        )
        assert reply["status"] == "ok", out
        cwd, row, secret = out.split()
        assert cwd == str(nb_dir)
        assert row == "1,2"
        assert secret == "absent"  # the host's environment is not copied into the container
    written = nb_dir / "written-in-container.txt"
    assert written.read_text() == "hello"
    assert (written.stat().st_uid, written.stat().st_gid) == (os.getuid(), os.getgid())


async def test_user_identity_home_and_tools_that_need_them(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        out, reply = await execute(
            kc,
            "import getpass, os, pwd, pathlib\n"
            "print(getpass.getuser())\n"
            "print(pwd.getpwuid(os.getuid()).pw_name)\n"
            "p = pathlib.Path('~/.probe').expanduser(); p.write_text('x'); print(p.read_text())\n"
            "print(os.getuid(), os.getgid())",
        )
        assert reply["status"] == "ok", out
        lines = out.split("\n")
        assert lines[0] and lines[1]
        assert lines[2] == "x"
        assert lines[3] == f"{os.getuid()} {os.getgid()}"


async def test_shared_cache_across_images_survives_containers(engine, workspace):
    marker = f"model-{time.time_ns()}"
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        out, reply = await execute(
            kc,
            "import os, pathlib\n"
            f"p = pathlib.Path(os.environ['HF_HOME']) / 'hub' / '{marker}'\n"
            "p.parent.mkdir(parents=True, exist_ok=True); p.write_text('weights')\n"
            "print(os.environ['HF_HOME'], os.environ['TORCH_HOME'], os.environ['PIP_CACHE_DIR'])",
        )
        assert reply["status"] == "ok", out
        assert all(path.startswith("/opt/mlcontainer/cache/") for path in out.split())
        first = container_of(km)
    assert our_kernel_containers(engine, km.kernel_id) == []
    with pytest.raises(Exception):
        engine.api.inspect_container(first)  # gone
    async with running_kernel(engine, TORCH_IMAGE, workspace) as (km2, kc2):
        out, reply = await execute(
            kc2, f"import os; print(open(os.path.join(os.environ['HF_HOME'], 'hub', '{marker}')).read())"
        )
        assert reply["status"] == "ok", out
        assert out.strip() == "weights"
    volume = engine.api.inspect_volume(CACHE_VOLUME)
    assert volume["Name"] == CACHE_VOLUME


async def test_interrupt_stops_a_sleeping_cell_quickly(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        msg_id = await start_running_cell(kc)
        started = time.monotonic()
        await km.interrupt_kernel()
        while True:
            msg = await kc.get_shell_msg(timeout=10)
            if msg["parent_header"].get("msg_id") == msg_id:
                break
        elapsed = time.monotonic() - started
        assert msg["content"]["status"] == "error"
        assert msg["content"]["ename"] == "KeyboardInterrupt"
        assert elapsed < 10  # the interrupt, not the end of the 60 s sleep (its speed is the benchmark's)
        await wait_for_status(kc, "idle")  # done with the interrupted cell
        out, reply = await execute_after_error(kc, "print('still alive')")
        assert out.strip() == "still alive", (out, reply)


async def test_restart_new_container_same_connection(engine, workspace):
    nb_dir = workspace / "notebooks"
    async with running_kernel(engine, BASE_IMAGE, nb_dir, workspace=str(workspace)) as (km, kc):
        await execute(kc, "x = 41")
        before_info = km.get_connection_info()
        before_container = container_of(km)
        kernel_id = km.kernel_id
        await km.restart_kernel(now=True)
        # The client connected before the restart keeps working, without reconnecting.
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "import os; print(os.getcwd()); print('x' in globals())")
        assert reply["status"] == "ok", out
        assert out.split() == [str(nb_dir), "False"]
        assert km.kernel_id == kernel_id
        assert container_of(km) != before_container
        after_info = km.get_connection_info()
        for key in ("ip", "key", *CONTAINER_PORTS):
            assert after_info[key] == before_info[key], key
        assert our_kernel_containers(engine, kernel_id) and len(our_kernel_containers(engine, kernel_id)) == 1
    assert our_kernel_containers(engine, kernel_id) == []


# Run by the kernel at start, before anything of the user's (as IPython startup files are).
NETWORK_AT_START = (
    "import socket; mlc_network_at_start = (sorted(line.split(':')[0].strip() for line in "
    "open('/proc/net/dev').readlines()[2:]), socket.gethostbyname(socket.gethostname()), "
    "[line.split()[1] for line in open('/etc/resolv.conf') if line.startswith('nameserver')])"
)


@pytest.mark.parametrize("image", [BASE_IMAGE, IPYKERNEL7_IMAGE], ids=["debian-6.17", "ipykernel7"])
async def test_code_a_kernel_runs_at_start_finds_its_network(engine, workspace, image):
    """A cold start on Unix sockets starts the container on no network and joins the kernels'
    network while the kernel imports; the kernel runs nothing of the user's before it is joined:
    its interface, its own name and the network's DNS are there from the first line, after a
    restart too."""
    name = add_spec(engine, image)
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel(cwd=str(workspace), extra_arguments=[f"--IPKernelApp.exec_lines={NETWORK_AT_START}"])
    kc = km.client()
    kc.start_channels()
    try:
        for _ in range(2):  # the start, then a restart (its folder, and so its gate file, kept)
            await kc.wait_for_ready(timeout=60)
            attrs = engine.api.inspect_container(container_of(km))
            assert attrs["HostConfig"]["NetworkMode"] == "none"  # created on none: the late join was taken
            assert list(attrs["NetworkSettings"]["Networks"]) == [KERNEL_NETWORK]
            out, reply = await execute(kc, "print(*mlc_network_at_start[0]); print(mlc_network_at_start[1]); "
                                           "print(*mlc_network_at_start[2])")
            assert reply["status"] == "ok", out
            interfaces, address, nameservers = out.splitlines()
            assert "eth0" in interfaces.split()
            assert address == attrs["NetworkSettings"]["Networks"][KERNEL_NETWORK]["IPAddress"]
            assert nameservers == "127.0.0.11"  # the network's own DNS, as when created on it
            await km.restart_kernel(now=True)
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


@pytest.mark.parametrize("code, exit_code, said", [
    ("import os; os._exit(3)", 3, "exited with code 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137, "SIGKILL"),
])
async def test_death_is_detected_with_exit_code_and_restart_works(engine, workspace, code, exit_code, said):
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        ports = km.get_connection_info()
        kc.execute(code)
        started = time.monotonic()

        async def dead():
            return not await km.is_alive()

        await wait_until(dead, timeout=10)
        assert time.monotonic() - started < 5
        record = last_death(km.kernel_id)
        assert record is not None and record.exit_code == exit_code
        assert not record.oom_killed
        assert said in record.message()
        # A dead kernel restarts into a working one, on the same ports, its client reconnected.
        await km.restart_kernel(now=True)
        await kc.wait_for_ready(timeout=60)
        out, reply = await execute(kc, "print('back')")
        assert out.strip() == "back", (out, reply)
        assert all(km.get_connection_info()[k] == ports[k] for k in CONTAINER_PORTS)
        assert len(our_kernel_containers(engine, km.kernel_id)) == 1


async def test_oom_kill_is_reported_with_the_limit(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace, memory="96m") as (km, kc):
        attrs = engine.api.inspect_container(container_of(km))
        assert attrs["HostConfig"]["Memory"] == 96 * 1024 * 1024
        kc.execute("blocks = []\nwhile True: blocks.append(bytearray(32 * 1024 * 1024))")

        async def dead():
            return not await km.is_alive()

        await wait_until(dead, timeout=30)
        record = last_death(km.kernel_id)
        assert record is not None
        assert record.oom_killed, record
        assert "out of memory" in record.message() and "96m" in record.message()


async def test_shm_size_default_is_large_and_configurable(engine, workspace):
    code = "import os; s = os.statvfs('/dev/shm'); print(s.f_blocks * s.f_frsize)"
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        out, _ = await execute(kc, code)
        assert int(out) > 512 * 1024 * 1024  # Docker's default is 64 MB
    async with running_kernel(engine, BASE_IMAGE, workspace, shm_size="256m") as (km, kc):
        out, _ = await execute(kc, code)
        assert int(out) == 256 * 1024 * 1024


async def test_env_options_and_cpus(engine, workspace):
    async with running_kernel(engine, BASE_IMAGE, workspace, env={"MY_SETTING": "on"}, cpus="1.5") as (km, kc):
        out, _ = await execute(kc, "import os; print(os.environ['MY_SETTING'])")
        assert out.strip() == "on"
        attrs = engine.api.inspect_container(container_of(km))
        assert attrs["HostConfig"]["NanoCpus"] == 1_500_000_000
        injected = attrs["Config"]["Labels"]["org.jupyter.mlcontainer.injected-env"].split(",")
        assert "HF_HOME" in injected and "MY_SETTING" not in injected


async def test_gpu_request_without_nvidia_runtime_fails_cleanly(engine, workspace, monkeypatch):
    from jupyter_mlcontainer.engines.docker import Engine

    if engine.has_nvidia_runtime_sync():  # a GPU host: the same request is real passthrough
        async with running_kernel(engine, BASE_IMAGE, workspace, gpus="0") as (km, kc):
            attrs = engine.api.inspect_container(container_of(km))
            assert attrs["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["0"]
            out, _ = await execute(kc, "import glob; print(len(glob.glob('/dev/nvidia[0-9]*')))")
            assert out.strip() == "1", out
        return

    seen_requests = []
    original_remove = Engine.remove_container_sync

    def remove_and_record(self, container_id):
        # What the engine stored for the container it was asked to create, read back before removal.
        seen_requests.append(self.api.inspect_container(container_id)["HostConfig"]["DeviceRequests"])
        return original_remove(self, container_id)

    monkeypatch.setattr(Engine, "remove_container_sync", remove_and_record)
    name = add_spec(engine, BASE_IMAGE, gpus="0,1")
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(GpuRuntimeMissing) as info:
        await km.start_kernel(cwd=str(workspace))
    assert "NVIDIA Container Toolkit" in str(info.value)
    assert 'could not select device driver "" with capabilities: [[gpu]]' in str(info.value)
    assert seen_requests and seen_requests[0][0]["DeviceIDs"] == ["0", "1"]
    assert seen_requests[0][0]["Capabilities"] == [["gpu"]]
    assert our_kernel_containers(engine, km.kernel_id) == []


async def test_auto_gpus_without_runtime_means_no_device_request(engine, workspace, tmp_path, monkeypatch):
    from jupyter_mlcontainer.machine import gpu

    fake = tmp_path / "nvml.json"
    fake.write_text(json.dumps({"gpus": [{"name": "NVIDIA H100", "uuid": "GPU-1", "memory_total": 1 << 36}]}))
    monkeypatch.setenv(gpu.FAKE_NVML_ENV, str(fake))
    monkeypatch.setattr(gpu, "_monitor", None)
    runtime = engine.has_nvidia_runtime_sync()
    async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
        attrs = engine.api.inspect_container(container_of(km))
        if runtime:  # a GPU host: NVML sees a GPU and the engine can pass it: auto asks for all
            assert attrs["HostConfig"]["DeviceRequests"][0]["Count"] == -1
            assert attrs["Config"]["Labels"]["org.jupyter.mlcontainer.gpus"] == "all"
        else:  # NVML sees a GPU, but this engine has no NVIDIA runtime: auto must not request one
            assert not attrs["HostConfig"].get("DeviceRequests")
            assert attrs["Config"]["Labels"]["org.jupyter.mlcontainer.gpus"] == "none"


async def test_missing_image_fails_at_start_with_a_clear_message(engine, workspace):
    name = add_spec(engine, BASE_IMAGE)
    km = AsyncKernelManager(kernel_name=name)
    spec = km.kernel_spec
    spec.metadata["kernel_provisioner"]["config"]["image"] = "mlcontainer-test/does-not-exist:1"
    with open(os.path.join(spec.resource_dir, "kernel.json"), "w") as f:
        json.dump(spec.to_dict(), f)
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(ImageNotFound, match="not present on the Docker engine.*docker pull"):
        await km.start_kernel(cwd=str(workspace))
    assert our_kernel_containers(engine, km.kernel_id) == []


async def test_image_without_ipykernel_or_python(engine, workspace):
    from jupyter_mlcontainer.kernels.kernelspecs import add_kernelspec

    with pytest.raises(ImageNotUsable, match="not ipykernel.*image prepare"):
        add_kernelspec(engine, NOIPYKERNEL_IMAGE)
    with pytest.raises(ImageNotUsable, match="no Python interpreter"):
        add_kernelspec(engine, NOPYTHON_IMAGE)
    with pytest.raises(ImageNotFound):
        add_kernelspec(engine, "mlcontainer-test/does-not-exist:1")
    # A kernelspec written by hand for such an image fails at start with the same reason.
    name = add_spec(engine, BASE_IMAGE)
    km = AsyncKernelManager(kernel_name=name)
    spec = km.kernel_spec
    spec.metadata["kernel_provisioner"]["config"]["image"] = NOIPYKERNEL_IMAGE
    with open(os.path.join(spec.resource_dir, "kernel.json"), "w") as f:
        json.dump(spec.to_dict(), f)
    km = AsyncKernelManager(kernel_name=name)
    with pytest.raises(ImageNotUsable, match="not ipykernel"):
        await km.start_kernel(cwd=str(workspace))
    assert our_kernel_containers(engine, km.kernel_id) == []


async def test_engine_unreachable_is_a_clear_error(engine, workspace, tmp_path):
    name = add_spec(engine, BASE_IMAGE)
    km = AsyncKernelManager(kernel_name=name)
    km.kernel_spec.metadata["kernel_provisioner"]["config"]["docker_host"] = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(EngineUnavailable, match="Docker engine not reachable.*docker group"):
        await km.start_kernel(cwd=str(workspace))


async def test_concurrent_starts_all_succeed(engine, workspace):
    async def one(i):
        async with running_kernel(engine, BASE_IMAGE, workspace) as (km, kc):
            out, _ = await execute(kc, f"print({i} * 2)")
            return int(out), km.get_connection_info()["ip"]

    results = await asyncio.gather(*(one(i) for i in range(5)))
    assert [value for value, _ in results] == [i * 2 for i in range(5)]
    assert len({sockets for _, sockets in results}) == 5  # each kernel's sockets in its own folder


@pytest.mark.parametrize("gpus", ["none", "0"])
async def test_no_gpu_overrides_the_images_nvidia_env(engine, workspace, gpus):
    """An image that says NVIDIA_VISIBLE_DEVICES=all (nvidia/cuda, pytorch/pytorch) gets every
    GPU from a host whose default runtime is NVIDIA's unless the container says 'void'."""
    image_env = engine.inspect_image_sync(CUDA_IMAGE)["Config"]["Env"]
    assert "NVIDIA_VISIBLE_DEVICES=all" in image_env
    async with running_kernel(engine, CUDA_IMAGE, workspace, gpus=gpus, env={"NVIDIA_VISIBLE_DEVICES": "all"}) as (km, kc):
        attrs = engine.api.inspect_container(container_of(km))
        env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
        assert env["NVIDIA_VISIBLE_DEVICES"] == "void"  # the kernelspec's "all" does not win either
        assert not attrs["HostConfig"].get("DeviceRequests")
        out, _ = await execute(kc, "import os; print(os.environ['NVIDIA_VISIBLE_DEVICES'])")
        assert out.strip() == "void"
        injected = attrs["Config"]["Labels"]["org.jupyter.mlcontainer.injected-env"].split(",")
        assert "NVIDIA_VISIBLE_DEVICES" in injected  # so freeze does not pin it


async def test_more_gpus_than_the_host_has_is_refused_with_its_gpus(engine, workspace, tmp_path, monkeypatch):
    from jupyter_mlcontainer.machine import gpu

    fake = tmp_path / "nvml.json"
    fake.write_text(json.dumps({"gpus": [
        {"name": "NVIDIA H100", "uuid": "GPU-1", "memory_total": 1 << 36, "processes": [{"pid": 1, "used": 1 << 30}]},
    ]}))
    monkeypatch.setenv(gpu.FAKE_NVML_ENV, str(fake))
    monkeypatch.setattr(gpu, "_monitor", None)
    before = set(glob.glob(os.path.join(jupyter_runtime_dir(), "mlcontainer-*-*")))
    for gpus, start in (("2", "2 GPUs requested."), ("0,3", "GPU 3 does not exist.")):
        km = AsyncKernelManager(kernel_name=add_spec(engine, BASE_IMAGE, gpus=gpus))
        with pytest.raises(GpuRequestUnsatisfiable) as info:
            await km.start_kernel(cwd=str(workspace))
        message = str(info.value)
        assert message.startswith(start), message
        assert "This host has 1 GPU: 0: NVIDIA H100 GPU-1 (in use by 1 process)" in message
        assert our_kernel_containers(engine, km.kernel_id) == []
    assert set(glob.glob(os.path.join(jupyter_runtime_dir(), "mlcontainer-*-*"))) == before
