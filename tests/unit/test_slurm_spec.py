"""A kernel's Slurm job from its ContainerSpec, and Slurm's answers read back
(engines/slurm_spec.py), and the held jobs' bookkeeping (engines/slurm_holds.py)."""

from __future__ import annotations

import json
import threading

import pytest

from jupyter_mlcontainer.core.errors import GpuRequestUnsatisfiable
from jupyter_mlcontainer.engines.base import ContainerSpec, FileSpec, GpuRequest
from jupyter_mlcontainer.engines.slurm_holds import HeldJobs
from jupyter_mlcontainer.engines.slurm_spec import (
    STORE_LABEL,
    allocated_gpu_devices,
    comment_labels,
    node_address,
    node_gpu_count,
    ports_asked,
    ports_of,
    sbatch_options,
    warm_key,
)

CONNECTION = json.dumps({"shell_port": 20001, "iopub_port": 20002, "stdin_port": 20003, "control_port": 20004,
                         "hb_port": 20005, "ip": "0.0.0.0", "key": "k"}).encode()


def spec(**fields) -> ContainerSpec:
    labels = {"org.jupyter.mlcontainer.role": "kernel", "org.jupyter.mlcontainer.owner": "ab" * 16,
              "org.jupyter.mlcontainer.kernel-id": "k-1", "org.jupyter.mlcontainer.workspace": "/w"}
    return ContainerSpec(image="img", command=[], labels=labels,
                         files=[FileSpec("/run/mlcontainer/kernel.json", CONNECTION, 0o600, 1, 1)], **fields)


def test_the_jobs_options_carry_its_resources_its_scheduler_options_and_its_labels():
    options = sbatch_options(spec(memory="1.5g", nano_cpus=4_000_000_000, gpus=[GpuRequest(count=2)],
                                  scheduler={"partition": "gpu", "time": "2:00:00", "store": "/s", "hold": "60"}),
                             "mlc-k", "/s/kernels/mlc-k", "/s")
    assert options[:4] == ["--parsable", "--no-requeue", "-J", "mlc-k"]
    assert {"--cpus-per-task=4", "--mem=1536M", "--gres=gpu:2", "--partition=gpu", "--time=2:00:00"} <= set(options)
    assert not any(o.startswith(("--store", "--hold")) for o in options)  # ours, not sbatch's
    comment = json.loads(next(o for o in options if o.startswith("--comment="))[len("--comment="):])
    assert comment[STORE_LABEL] == "/s" and comment["org.jupyter.mlcontainer.kernel-id"] == "k-1"
    assert "org.jupyter.mlcontainer.workspace" not in comment  # only what a later server reads the job by
    assert comment_labels(json.dumps(comment))["org.jupyter.mlcontainer.owner"] == "ab" * 16
    assert comment_labels("a user's own comment") == {} and comment_labels('{"x": 1}') == {}


def test_a_gpu_type_makes_the_gres_typed():
    options = sbatch_options(spec(gpus=[GpuRequest(count=1)], scheduler={"gpu_type": "h100"}), "n", "/f", "/s")
    assert "--gres=gpu:h100:1" in options and not any(o.startswith("--gpu_type") for o in options)
    assert "--gres=gpu:h100:1" not in sbatch_options(spec(scheduler={"gpu_type": "h100"}), "n", "/f", "/s")


def test_gpus_are_asked_for_by_number_only():
    for request in (GpuRequest(device_ids=("0",)), GpuRequest(count=-1)):
        with pytest.raises(GpuRequestUnsatisfiable, match="number of GPUs"):
            sbatch_options(spec(gpus=[request]), "n", "/f", "/s")


def test_a_kernel_binds_ports_its_node_has_free_and_a_restart_its_previous_ones():
    fresh = json.loads(ports_asked(CONNECTION, spec(ports=dict.fromkeys(range(20001, 20006)))))
    assert [fresh[f] for f in ("shell_port", "hb_port")] == [0, 0] and fresh["key"] == "k"
    restart = json.loads(ports_asked(CONNECTION, spec(ports={p: p + 10000 for p in range(20001, 20006)})))
    assert restart["shell_port"] == 30001 and restart["hb_port"] == 30005
    assert ports_of(spec())["iopub_port"] == 20002


def test_the_allocated_gpus_and_a_nodes_address_are_read_from_scontrol():
    assert allocated_gpu_devices("JobId=7 Nodes=n1 CPU_IDs=0 Mem=300 GRES=gpu:1(IDX:1)") == ["/dev/nvidia1"]
    assert allocated_gpu_devices("GRES=gpu:3(IDX:0,2-3)") == ["/dev/nvidia0", "/dev/nvidia2", "/dev/nvidia3"]
    assert allocated_gpu_devices("JobId=7 GRES=") == []
    assert allocated_gpu_devices("GRES=gpu:h100:1(IDX:0),shard:2(0/8,0/8)") == ["/dev/nvidia0"]
    assert node_gpu_count("gpu:h100:4(S:0-1),shard:8") == 4 and node_gpu_count("gpu:2") == 2
    assert node_gpu_count("(null)") == 0
    assert node_address("NodeName=n1 Arch=x86_64 NodeAddr=10.0.0.3 NodeHostName=n1", "n1") == "10.0.0.3"
    assert node_address("NodeName=n1", "n1") == "n1"


def test_a_held_job_fits_only_a_kernel_of_the_same_shape():
    base = spec(memory="1g", scheduler={"partition": "gpu"})
    assert warm_key(base) == warm_key(spec(memory="1g", scheduler={"partition": "gpu"}))
    assert warm_key(base) != warm_key(spec(memory="2g", scheduler={"partition": "gpu"}))
    assert warm_key(base) != warm_key(spec(memory="1g", scheduler={"partition": "cpu"}))


def test_held_jobs_are_taken_once_forgotten_on_cancel_and_cancelled_when_nobody_takes_them():
    cancelled: list[str] = []
    expired = threading.Event()

    def cancel(job_id: str) -> None:
        cancelled.append(job_id)
        expired.set()

    held = HeldJobs(cancel)
    held.hold("k-1", "11", 60)
    assert held.holds("11") and held.take("k-1") == "11" and held.take("k-1") == ""
    held.hold("k-2", "12", 60)
    held.forget("12")
    assert not held.holds("12") and held.take("k-2") == ""
    held.hold("k-3", "13", 0.05)
    assert expired.wait(5) and cancelled == ["13"]
    held.hold("k-4", "14", 60)
    held.hold("k-4", "15", 60)  # one job per key: the older is cancelled
    held.release_all()
    assert cancelled == ["13", "14", "15"]
