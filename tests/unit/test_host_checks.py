"""The checks of a frozen notebook's machine facts against a host (machine/host_checks.py) and
the facts' cleaning (machine/facts.py): pure, no engine."""

from __future__ import annotations

import json

from jupyter_mlcontainer.machine.facts import MACHINE_LABEL, machine_facts, machine_from_record
from jupyter_mlcontainer.machine.gpu import GpuInfo, GpuState
from jupyter_mlcontainer.machine.host_checks import check_host, gpu_count_wanted

H100 = dict(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_total=80 << 30)
TORCH_CU124 = {"version": "2.5.1+cu124", "cuda": "12.4", "arch": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]}


def host(*gpus: dict, driver: str = "550.54.15", cuda: str = "12.4") -> GpuState:
    return GpuState(available=bool(gpus), reason="" if gpus else "NVML found no GPU", driver_version=driver,
                    cuda_driver_version=cuda,
                    gpus=[GpuInfo(index=i, name=g["name"], uuid=f"GPU-{i}", memory_total=g.get("memory_total"),
                                  compute_capability=g.get("compute_capability"), mig_mode=g.get("mig", False))
                          for i, g in enumerate(gpus)])


def frozen(stack: dict, *gpus: dict, driver: str = "550.54.15", cuda: str = "12.4"):
    """The facts as freeze records them, then as restore reads them back from the record."""
    state = host(*gpus, driver=driver, cuda=cuda)
    facts = machine_facts(stack, state, [gpu.index for gpu in state.gpus])
    return machine_from_record(json.loads(json.dumps(facts.to_record())))


def verdicts(checks) -> dict[str, str]:
    return {check.name: check.verdict for check in checks}


def test_the_same_machine_holds_everywhere():
    facts = frozen({"cuda_runtime": "12.4.1", "frameworks": {"torch": TORCH_CU124}}, H100)
    checks = check_host(facts, host(H100), gpus=None)
    assert set(verdicts(checks).values()) == {"holds"}, [c.line() for c in checks]
    assert {"gpu", "driver", "arch-torch"} <= set(verdicts(checks))


def test_driver_too_old_blocks_and_names_the_driver_and_cuda_compat():
    facts = frozen({"frameworks": {"torch": TORCH_CU124}}, H100)
    checks = check_host(facts, host(H100, driver="470.82.01", cuda="11.4"), gpus=None)
    driver = next(c for c in checks if c.name == "driver")
    assert driver.verdict == "blocks"
    assert "470.82.01" in driver.reason and "12.4" in driver.reason
    assert "550.54.14" in driver.fix and "cuda-compat-12-4" in driver.fix


def test_same_major_older_driver_is_minor_version_compatibility():
    facts = frozen({"cuda_runtime": "12.4.1"}, H100)
    checks = check_host(facts, host(H100, driver="535.104.05", cuda="12.2"), gpus=None)
    driver = next(c for c in checks if c.name == "driver")
    assert driver.verdict == "warning" and "minor-version compatibility" in driver.reason


def test_an_architecture_missing_from_the_build_blocks():
    blackwell = dict(name="NVIDIA RTX PRO 6000", compute_capability="12.0", memory_total=96 << 30)
    facts = frozen({"frameworks": {"torch": TORCH_CU124}}, H100)
    checks = check_host(facts, host(blackwell, driver="575.51.03", cuda="12.9"), gpus=None)
    arch = next(c for c in checks if c.name == "arch-torch")
    assert arch.verdict == "blocks" and "sm_120" in arch.reason and "no kernel image" in arch.reason
    assert verdicts(checks)["gpu-model"] == "warning"


def test_same_major_binary_runs_and_ptx_is_a_warning():
    a10 = dict(name="NVIDIA A10", compute_capability="8.6", memory_total=24 << 30)
    only_80 = {"version": "2.1.0", "cuda": "12.1", "arch": ["sm_80"]}
    assert verdicts(check_host(frozen({"frameworks": {"torch": only_80}}, a10), host(a10), gpus=1))["arch-torch"] == "holds"
    ptx = {"version": "2.1.0", "cuda": "12.1", "arch": ["sm_80", "compute_80"]}
    checks = check_host(frozen({"frameworks": {"torch": ptx}}, a10), host(H100), gpus=1)
    assert verdicts(checks)["arch-torch"] == "warning"  # sm_90 from compute_80 PTX, JIT at first use
    specific = {"version": "2.1.0", "cuda": "12.1", "arch": ["sm_90a"]}  # code for the H100 alone
    assert verdicts(check_host(frozen({"frameworks": {"torch": specific}}, H100),
                               host(dict(H100, compute_capability="9.1")), gpus=1))["arch-torch"] == "blocks"


def test_no_gpu_here_is_a_cpu_kernel_naming_the_cells():
    facts = frozen({"frameworks": {"torch": TORCH_CU124}}, H100)
    checks = check_host(facts, host(), gpus=None, cuda_cells=[2, 5])
    assert verdicts(checks) == {"gpu": "warning"}
    assert "CPU" in checks[0].reason and "2, 5" in checks[0].reason and "H100" in checks[0].reason


def test_less_memory_mig_and_fewer_gpus_are_warnings():
    mig = dict(H100, mig=True)
    facts = frozen({"frameworks": {"torch": TORCH_CU124}}, H100, H100)
    small = dict(name="NVIDIA H100 80GB HBM3", compute_capability="9.0", memory_total=40 << 30, mig=True)
    checks = check_host(facts, host(small), gpus=gpu_count_wanted("2", facts))
    assert verdicts(checks)["gpu-count"] == "warning" and "gets 1" in next(c for c in checks if c.name == "gpu-count").reason
    assert verdicts(checks)["gpu-memory"] == "warning" and verdicts(checks)["mig"] == "warning"
    assert "blocks" not in verdicts(check_host(frozen({}, mig), host(mig), gpus=1)).values()


def test_cpu_notebooks_and_older_records():
    assert verdicts(check_host(frozen({"frameworks": {"torch": {"version": "2.13.0+cpu", "arch": []}}}), host(H100),
                               gpus=0)) == {"gpu": "holds"}
    assert check_host(None, host(H100), gpus=None) == []  # nothing recorded, nothing checked
    assert gpu_count_wanted("none", None) == 0 and gpu_count_wanted("all", None) == -1
    assert gpu_count_wanted("0,1", None) == 2 and gpu_count_wanted("", None) is None


def test_facts_from_someone_else_keep_only_what_freeze_writes():
    raw = {"version": 1, "cuda_runtime": "12.4\nRUN curl evil", "cudnn": "9.1.0",
           "frameworks": {"torch": {"version": "2.5.1", "cuda": "12.4", "arch": ["sm_90", "$(id)", 7]},
                          "other": {"version": "1"}},
           "gpus": [{"name": "NVIDIA H100\x1b[2J", "compute_capability": "9.0"}, {"name": "A100", "compute_capability": "x"}],
           "driver": "550.54.15"}
    facts = machine_from_record(json.dumps(raw))
    assert facts.cuda_runtime is None and facts.cudnn == "9.1.0"
    assert list(facts.frameworks) == ["torch"] and facts.frameworks["torch"].arch == ["sm_90"]
    assert [g.name for g in facts.gpus] == ["A100"] and facts.gpus[0].compute_capability is None
    assert machine_from_record("not json") is None and machine_from_record({"image": "x"}) is None
    labels = machine_facts({"frameworks": {"torch": TORCH_CU124}}, host(H100), [0]).labels()
    assert machine_from_record(labels[MACHINE_LABEL]).frameworks["torch"].arch == TORCH_CU124["arch"]
    assert labels["org.jupyter.mlcontainer.torch-arch"].startswith("sm_50 ")
    assert labels["org.jupyter.mlcontainer.gpus"] == "NVIDIA H100 80GB HBM3 (sm_90, 80 GiB)"


def test_which_gpus_a_container_had_and_the_options_it_ran_with():
    from jupyter_mlcontainer.environments.freeze.machine import kernel_gpu_indices, kernel_options_of

    state = host(H100, H100, H100)
    state.gpus[2].uuid = "GPU-abc"

    def had(*requests):
        return kernel_gpu_indices({"HostConfig": {"DeviceRequests": list(requests)}}, state)

    assert had() == [] and had({"Count": -1}) == [0, 1, 2] and had({"Count": 2}) == [0, 1]
    assert had({"Count": 0, "DeviceIDs": ["1", "gpu-ABC"]}) == [1, 2]
    assert had({"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=all"]}) == [0, 1, 2]
    assert had({"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=2"]}) == [2]
    attrs = {"HostConfig": {"Memory": 8 << 30, "NanoCpus": 2_500_000_000, "ShmSize": 64 << 20}}
    assert kernel_options_of(attrs, [0, 1], ["B", "A"]) == {"gpus": "2", "memory": "8g", "shm_size": "64m",
                                                            "cpus": "2.5", "env": ["A", "B"]}
    assert kernel_options_of({}, None, [])["env"] == [] and "gpus" not in kernel_options_of({}, None, [])
