"""A kernel's bundle config on Slurm, from the real config umoci wrote for a test image
(data/umoci-rootless-config.json: `umoci unpack --rootless` by uid 1001 on the test cluster).
The same config ran a step on the test cluster (docs/slurm.md): uid 1001 inside, the workspace
at its path, only the allocated GPU's device node openable under ConstrainDevices."""

from __future__ import annotations

import json
import os

from jupyter_mlcontainer.engines.base import ContainerSpec, MountSpec
from jupyter_mlcontainer.engines.slurm_bundle import kernel_bundle_config

DATA = os.path.join(os.path.dirname(__file__), "data", "umoci-rootless-config.json")


def bundle(**spec_options):
    with open(DATA) as f:
        image = json.load(f)
    spec = ContainerSpec(**{
        "image": "mlcontainer-test/base:bookworm", "entrypoint": ["python3", "-c", "BOOTSTRAP"],
        "command": ["-m", "ipykernel_launcher", "-f", "/conn/kernel.json"], "name": "mlc-k-1",
        "env": {"HOME": "/home/u"}, "working_dir": "/srv/shared/ws",
        "mounts": [MountSpec("/srv/shared/ws", "/srv/shared/ws"), MountSpec("/conn", "/srv/shared/k/conn", read_only=True)],
        "labels": {"org.jupyter.mlcontainer.role": "kernel"}, **spec_options})
    return image, kernel_bundle_config(image, spec, rootfs="/srv/shared/store/sha256-x/rootfs", uid=1001, gid=1002,
                                       gpu_devices=["/dev/nvidia0", "/dev/nvidia1"])


def test_the_kernel_runs_as_the_user_in_the_shared_root_file_system():
    image, config = bundle()
    assert image["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]  # umoci's: the user as root
    assert config["linux"]["uidMappings"] == [{"containerID": 1001, "hostID": 1001, "size": 1}]
    assert config["linux"]["gidMappings"] == [{"containerID": 1002, "hostID": 1002, "size": 1}]
    assert config["process"]["user"] == {"uid": 1001, "gid": 1002}
    assert "capabilities" not in config["process"] and config["process"]["noNewPrivileges"] is True
    assert config["root"] == {"path": "/srv/shared/store/sha256-x/rootfs", "readonly": True}
    assert config["process"]["terminal"] is False
    assert image["process"]["terminal"] is True and image["root"] == {"path": "rootfs"}  # the image's is untouched


def test_the_kernel_gets_what_an_engine_would_mount_and_set():
    _, config = bundle()
    process = config["process"]
    assert process["args"] == ["python3", "-c", "BOOTSTRAP", "-m", "ipykernel_launcher", "-f", "/conn/kernel.json"]
    assert process["cwd"] == "/srv/shared/ws" and process["env"] == ["HOME=/home/u"]
    mounts = {m["destination"]: m for m in config["mounts"]}
    assert mounts["/srv/shared/ws"]["source"] == "/srv/shared/ws" and "rw" in mounts["/srv/shared/ws"]["options"]
    assert "ro" in mounts["/conn"]["options"]
    assert mounts["/dev/nvidia1"]["source"] == "/dev/nvidia1"
    assert "size=1g" in mounts["/dev/shm"]["options"] and [m["destination"] for m in config["mounts"]].count("/dev/shm") == 1
    assert all(ns["type"] != "network" for ns in config["linux"]["namespaces"])  # listens on its node's address
    assert config["hostname"] == "mlc-k-1"
    assert config["annotations"]["org.jupyter.mlcontainer.label.org.jupyter.mlcontainer.role"] == "kernel"


def test_shm_follows_the_kernelspec():
    _, config = bundle(shm_size="4g")
    shm = next(m for m in config["mounts"] if m["destination"] == "/dev/shm")
    assert "size=4g" in shm["options"]
