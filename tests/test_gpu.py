"""GPU state through the fake NVML layer (CI has no GPU) and the --gpus grammar."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.core.errors import BadRequest

from jupyter_mlcontainer.engines.base import GpuRequest
from jupyter_mlcontainer.kernels.container_spec import gpu_requests as gpu_device_requests
from jupyter_mlcontainer.machine.gpu import GpuMonitor, container_id_of_pid
from jupyter_mlcontainer.testing.fake_nvml import FakeNVML

H100 = {
    "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-aaaa", "memory_total": 80 << 30, "memory_used": 3 << 30,
    "memory_reserved": 1 << 29, "utilization": 91, "temperature": 55, "power": 350000, "power_limit": 700000,
    "mig": 0, "processes": [{"pid": 4242, "used": 2 << 30}, {"pid": 4343, "used": None}],
}


def test_snapshot_reads_every_field():
    nvml = FakeNVML({"driver": "550.54.15", "cuda": 12040, "gpus": [H100]})
    state = GpuMonitor(nvml).snapshot()
    assert state.available and state.driver_version == "550.54.15" and state.cuda_driver_version == "12.4"
    (gpu,) = state.gpus
    assert (gpu.name, gpu.uuid, gpu.utilization_gpu, gpu.temperature) == ("NVIDIA H100 80GB HBM3", "GPU-aaaa", 91, 55)
    # memory v2: `used` excludes the driver's reserved memory (v1 would add it).
    assert gpu.memory_used == 3 << 30 and gpu.memory_reserved == 1 << 29
    assert (gpu.power_usage, gpu.power_limit, gpu.mig_mode) == (350.0, 700.0, False)
    assert [(p.pid, p.used_memory) for p in gpu.processes] == [(4242, 2 << 30), (4343, None)]


def test_unsupported_fields_are_none_not_errors():
    bare = {"name": "Tesla T4", "uuid": "GPU-t4", "memory_total": 16 << 30}
    (gpu,) = GpuMonitor(FakeNVML({"gpus": [bare]})).snapshot().gpus
    assert gpu.memory_total == 16 << 30
    assert gpu.utilization_gpu is None and gpu.temperature is None and gpu.power_usage is None and gpu.mig_mode is None


@pytest.mark.parametrize(
    "error, reason",
    [("LibraryNotFound", "NVML library not found"), ("DriverNotLoaded", "driver is not loaded"), ("NoPermission", "no permission")],
)
def test_no_gpu_is_a_state_with_a_reason(error, reason):
    monitor = GpuMonitor(FakeNVML({"error": error}))
    state = monitor.snapshot()
    assert state.available is False and state.gpus == [] and reason in state.reason
    assert monitor.gpu_count() == 0


def test_real_nvml_on_this_machine_is_a_state():
    """The real pynvml path: a GPU machine reports GPUs, CI reports why there are none."""
    state = GpuMonitor().snapshot()
    assert state.available == bool(state.gpus)
    if not state.available:
        assert state.reason


def test_init_once_and_shutdown():
    nvml = FakeNVML({"gpus": [H100]})
    monitor = GpuMonitor(nvml)
    for _ in range(3):
        monitor.snapshot()
    assert nvml.initialised == 1
    monitor.close()
    assert nvml.shutdowns == 1


def test_gpus_grammar():
    assert gpu_device_requests("none") == [] and gpu_device_requests("0") == []
    assert gpu_device_requests("all") == [GpuRequest(count=-1)]
    assert gpu_device_requests("2") == [GpuRequest(count=2)]
    assert gpu_device_requests("0,1") == [GpuRequest(device_ids=("0", "1"))]
    assert gpu_device_requests("device=GPU-abc") == [GpuRequest(device_ids=("GPU-abc",))]
    for bad in ("lots", "device="):
        with pytest.raises(BadRequest):  # the user's value: a 400, a CLI message
            gpu_device_requests(bad)
    with pytest.raises(ValueError):  # resolving auto is the caller's job: a bug, not input
        gpu_device_requests("auto")


def test_pid_to_container_from_cgroup_layouts(tmp_path):
    cid = "a" * 64
    layouts = {
        101: f"12:memory:/docker/{cid}\n11:cpu:/docker/{cid}\n",  # cgroupfs, v1
        102: f"0::/system.slice/docker-{cid}.scope\n",  # systemd, v2
        103: "0::/user.slice/user-1000.slice/session-2.scope\n",  # a host process
    }
    for pid, text in layouts.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    assert container_id_of_pid(101, proc=str(tmp_path)) == cid
    assert container_id_of_pid(102, proc=str(tmp_path)) == cid
    assert container_id_of_pid(103, proc=str(tmp_path)) is None
    assert container_id_of_pid(999999, proc=str(tmp_path)) is None


IDLE = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-bbbb", "memory_total": 80 << 30, "processes": []}


def test_requests_beyond_the_host_name_its_gpus():
    from jupyter_mlcontainer.machine.gpu import unsatisfiable_reason as reason_for

    def unsatisfiable_reason(spec, state):
        return reason_for(gpu_device_requests(spec), state)

    state = GpuMonitor(FakeNVML({"gpus": [H100, IDLE]})).snapshot()
    for fits in ("2", "1", "all", "none", "0,1", "GPU-aaaa", "gpu-BBBB", "device=1"):
        assert unsatisfiable_reason(fits, state) is None, fits
    reason = unsatisfiable_reason("3", state)
    assert reason.startswith("3 GPUs requested. This host has 2 GPUs:"), reason
    assert "0: NVIDIA H100 80GB HBM3 GPU-aaaa (in use by 2 processes)" in reason
    assert "1: NVIDIA H100 80GB HBM3 GPU-bbbb (free)" in reason
    assert unsatisfiable_reason("0,2", state).startswith("GPU 2 does not exist. This host has 2 GPUs")
    assert unsatisfiable_reason("GPU-cccc,7", state).startswith("GPU GPU-cccc, 7 do not exist.")
    no_gpu = GpuMonitor(FakeNVML({"gpus": []})).snapshot()
    assert unsatisfiable_reason("1", no_gpu) == "1 GPU requested. This host has no GPU (NVML found no GPU)."
    # Without NVML there is nothing to compare against: the engine decides.
    assert unsatisfiable_reason("8", GpuMonitor(FakeNVML({"error": "LibraryNotFound"})).snapshot()) is None
