"""The Slurm route of docs/slurm.md on a real cluster (tests/slurm_cluster.py): the kernel's bundle
config (engines/slurm_bundle.py) runs a step as its user with only its own GPU, and the job reader
(engines/slurm_jobs.py) explains a waiting job and names an out-of-memory death, from what Slurm
itself answers. The Slurm backend is not built yet (issue 24); these are the parts it stands on."""

from __future__ import annotations

import json
import os
import pwd

import pytest

from jupyter_mlcontainer.engines.base import ContainerSpec, MountSpec
from jupyter_mlcontainer.engines.slurm_bundle import kernel_bundle_config
from jupyter_mlcontainer.engines.slurm_jobs import jobs_from_squeue

from .box_users import OTHER_USER, TEST_USER
from .conftest import BASE_IMAGE
from .slurm_cluster import make_users_folder

STEP = """
import errno, json, os
opened = {}
for device in ("/dev/nvidia0", "/dev/nvidia1"):
    try:
        os.close(os.open(device, os.O_RDONLY))
        opened[device] = "open"
    except OSError as exc:  # a stand-in device node has no driver: ENXIO means the cgroup let it
        opened[device] = "allowed" if exc.errno == errno.ENXIO else errno.errorcode[exc.errno]
with open("written-by-the-step", "w") as f:
    f.write("x")
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "devices": opened,
                  "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "mine": os.environ.get("MLC_TEST")}))
"""


@pytest.fixture
def jobs(slurm):
    """Every job of the test users is cancelled after the test."""
    yield
    for user in (TEST_USER, OTHER_USER):
        slurm.as_user(user, ["scancel", "-u", user], check=False)


def submit(slurm, user: str, *options: str, command: str = "exec sleep infinity") -> str:
    done = slurm.as_user(user, ["sbatch", "--parsable", "--no-requeue", "-N1", *options, "--wrap", command])
    return done.stdout.strip()


def test_a_kernels_bundle_runs_as_its_user_with_only_its_gpu(slurm, jobs):
    user = pwd.getpwnam(TEST_USER)
    bundle, rootfs = slurm.make_rootfs(TEST_USER, BASE_IMAGE, "base")
    workspace = os.path.join(slurm.shared, f"ws-{TEST_USER}")
    kernel = os.path.join(slurm.shared, f"kernel-{TEST_USER}")
    for folder in (workspace, kernel):
        make_users_folder(folder, user.pw_uid, user.pw_gid)
    spec = ContainerSpec(image=BASE_IMAGE, entrypoint=[], command=[], name="mlc-slurm-test", env={"MLC_TEST": "1"},
                         working_dir=workspace, mounts=[MountSpec(workspace, workspace)])
    with open(os.path.join(bundle, "config.json")) as f:
        image_config = json.load(f)
    config = kernel_bundle_config(image_config, spec, rootfs=rootfs, uid=user.pw_uid, gid=user.pw_gid,
                                  gpu_devices=["/dev/nvidia0", "/dev/nvidia1"])
    # Written by root into the user's folder: a fresh file, never through a name planted there.
    fd = os.open(os.path.join(kernel, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)

    job = submit(slurm, TEST_USER, "-c1", "--mem=200M", "--gres=gpu:1", "--time=10")
    slurm.wait_for_state(job, {"RUNNING"})
    step = slurm.as_user(TEST_USER, ["srun", "--jobid", job, "--overlap", f"--container={kernel}", "python3", "-c", STEP],
                         cwd=workspace)
    seen = json.loads(step.stdout.strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (user.pw_uid, user.pw_gid)  # the user's own uid inside, not root
    assert seen["cwd"] == workspace and seen["mine"] == "1"
    assert seen["cuda"] == "0"
    assert sorted(seen["devices"].values()) == ["EPERM", "allowed"]  # its own GPU, and only that one
    written = os.stat(os.path.join(workspace, "written-by-the-step"))
    assert (written.st_uid, written.st_gid) == (user.pw_uid, user.pw_gid)


def test_a_waiting_job_says_why_and_belongs_to_its_user_only(slurm, jobs):
    for _ in slurm.nodes:  # every core of every node
        slurm.wait_for_state(submit(slurm, TEST_USER, "-c2", "--mem=100M", "--time=10"), {"RUNNING"})
    waiting = submit(slurm, TEST_USER, "-c2", "--mem=100M", "--time=5")
    refused = slurm.as_user(OTHER_USER, ["scancel", waiting], check=False)
    assert refused.returncode != 0 and "Access/permission denied" in refused.stderr

    for _ in range(150):  # the schedulers give a reason and an estimate within their intervals (2 s here)
        job = jobs_from_squeue(slurm.as_user(TEST_USER, ["squeue", "--json", "--states=all"]).stdout)[waiting]
        if job.start_time and job.reason not in ("", "None"):
            break
        slurm.wait_for_state(waiting, {"PENDING"}, timeout=5)
    assert job.waiting and job.reason == "Resources" and job.user == TEST_USER
    text = job.why_waiting()
    assert "the nodes it needs are busy (Resources)" in text and "estimated start" in text, text


def test_an_out_of_memory_death_is_named(slurm, jobs):
    job_id = submit(slurm, TEST_USER, "-c1", "--mem=60M",
                    command="python3 -c 'x = bytearray(400 * 1024 * 1024); import time; time.sleep(5)'")
    slurm.wait_for_state(job_id, {"OUT_OF_MEMORY", "FAILED", "COMPLETED"})
    job = jobs_from_squeue(slurm.as_user(TEST_USER, ["squeue", "--json", "--states=all"]).stdout)[job_id]
    assert job.state == "OUT_OF_MEMORY" and job.nodes in slurm.nodes
    assert f"ran out of memory on {job.nodes}" in job.why_ended()
