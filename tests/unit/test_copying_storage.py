"""An engine on vfs storage copies the whole image into every new container (issue 26: 38.7 s a
start for a 337 MB image on rootless Podman): doctor, the start's warning and the status the
panel shows say so with the fix, and the start's warning says what the warm pool does about it.
The same on a rootless Podman left on vfs: tests/test_rootless.py."""

from __future__ import annotations

from jupyter_mlcontainer.engines.base import EngineKind
from jupyter_mlcontainer.kernels.launch_plan import LaunchSettings, copying_storage_note
from jupyter_mlcontainer.machine.status import machine_status
from jupyter_mlcontainer.service.doctor import engine_checks

from .test_container_spec import plan

ROOTLESS_PODMAN_VFS = EngineKind("podman", True, storage_driver="vfs")


def test_only_vfs_is_said_with_a_fix_for_its_engine():
    for quiet in (EngineKind(storage_driver="overlay2"), EngineKind("podman", True, storage_driver="overlay"),
                  EngineKind()):
        assert quiet.copying_storage_reason == "" and quiet.copying_storage_fix == ""
    assert "rootless Podman stores images on vfs" in ROOTLESS_PODMAN_VFS.copying_storage_reason
    fix = ROOTLESS_PODMAN_VFS.copying_storage_fix
    assert "fuse-overlayfs" in fix and "5.13" in fix and 'driver = "overlay"' in fix
    assert "~/.config/containers/storage.conf" in fix
    # It deletes the images: said, and before the driver changes (podman-system-reset(1)).
    assert fix.index("`podman system reset`") < fix.index('driver = "overlay"') and "deletes" in fix
    rootful = EngineKind("podman", False, storage_driver="vfs").copying_storage_fix
    assert "sudo podman system reset" in rootful and "/etc/containers/storage.conf" in rootful
    docker = EngineKind("docker", True, storage_driver="vfs").copying_storage_fix
    assert '"storage-driver": "overlay2"' in docker and "~/.config/docker/daemon.json" in docker


def test_the_starts_warning_says_what_the_warm_pool_hides():
    assert copying_storage_note(EngineKind(storage_driver="overlay2"), 1, True) == ""
    pooled = copying_storage_note(ROOTLESS_PODMAN_VFS, 1, True)
    assert "vfs" in pooled and "keeps a spare of this kernelspec ready" in pooled
    assert "Fix: use overlay" in pooled and "podman system reset" in pooled
    assert "every start waits" in copying_storage_note(ROOTLESS_PODMAN_VFS, 0, True)
    assert "another host" in copying_storage_note(ROOTLESS_PODMAN_VFS, 1, False)  # no spares for it
    assert not any("vfs" in w for w in plan(kind=EngineKind("podman", True, storage_driver="overlay")).warnings)
    warned = plan(kind=ROOTLESS_PODMAN_VFS, settings=LaunchSettings(image="repo/img:1", gpus="2", warm_pool_size=1))
    assert [w for w in warned.warnings if "vfs" in w] == [copying_storage_note(ROOTLESS_PODMAN_VFS, 1, True)]


class _Engine:
    """The few blocking answers doctor's engine checks and the status read."""

    address = "unix:///run/user/1000/podman/podman.sock"

    def __init__(self, driver: str):
        self.driver = driver

    def info_sync(self):
        return {"Driver": self.driver, "CgroupVersion": "2", "Name": "box", "Runtimes": {}}

    def version_sync(self):
        return {"Version": "4.3.1", "Components": [{"Name": "Podman Engine"}]}

    def kind_sync(self):
        return EngineKind("podman", True, storage_driver=self.driver)

    def has_nvidia_runtime_sync(self):
        return False

    def call_sync(self, fn, *args):
        return fn(*args)

    def inspect_volume_sync(self, name):
        return None


class _NoGpus:
    def snapshot(self, with_processes=True):
        from types import SimpleNamespace

        return SimpleNamespace(available=False, gpus=[], reason="no NVML", driver_version=None, cuda_driver_version=None)


class _Service:
    def __init__(self, driver: str):
        self.engine, self.gpu_monitor = _Engine(driver), _NoGpus()


def test_doctor_and_the_status_name_vfs_with_its_fix():
    checks = {c.name: c for c in engine_checks(_Service("vfs"))}
    storage = checks["image storage"]
    assert not storage.ok and not storage.blocking and "vfs" in storage.detail
    assert storage.line().startswith("[warn] image storage: rootless Podman stores images on vfs")
    assert "fix: use overlay" in storage.line() and "podman system reset" in storage.fix
    assert "image storage" not in {c.name for c in engine_checks(_Service("overlay"))}
    engine = machine_status(_Engine("vfs"), _NoGpus(), "cache")["engine"]
    assert engine["storage_driver"] == "vfs" and "vfs" in engine["storage_warning"]
    assert engine["storage_fix"] == ROOTLESS_PODMAN_VFS.copying_storage_fix
    engine = machine_status(_Engine("overlay"), _NoGpus(), "cache")["engine"]
    assert engine["storage_warning"] is None and engine["storage_fix"] is None
