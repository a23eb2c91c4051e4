"""A real Slurm cluster on this one machine (``scripts/setup-slurm-cluster.sh``): a controller that
is also the login node, and compute nodes, all containers of the main engine, with munge, the
host's cgroups, stand-in GPU device nodes as gres and Slurm's OCI container support.

Tests run Slurm's tools on the login node as a real user (``as_user``: ``docker exec -u UID``,
so munge signs the request with that uid and Slurm enforces who owns which job), and make OCI
bundles of test images in the shared folder as the user (``make_rootfs``), as docs/slurm.md says
a site does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "setup-slurm-cluster.sh")


@dataclass(frozen=True)
class SlurmNode:
    name: str
    address: str  # on the cluster network, reachable from this host
    gpus: int


def make_users_folder(path: str, uid: int, gid: int) -> None:
    """A fresh folder at ``path`` owned by uid:gid, made by root in the world-writable shared
    folder: whatever a user left at the name goes first (a link is removed, not followed), and
    the new folder is made and given away without following a link."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path, 0o755)  # fails if someone made the name again meanwhile
    os.chown(path, uid, gid, follow_symlinks=False)


class SlurmCluster:
    """``up()`` runs the setup script (fast when the cluster is up) and reads what it prints;
    ``down()`` removes everything the script made."""

    def __init__(self) -> None:
        self.login = ""
        self.shared = ""
        self.nodes: dict[str, SlurmNode] = {}
        self.setup_seconds = 0.0

    def up(self, timeout: float = 600) -> "SlurmCluster":
        began = time.monotonic()
        done = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=timeout)
        self.setup_seconds = time.monotonic() - began
        if done.returncode:
            raise RuntimeError(f"{SCRIPT} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        for line in done.stdout.splitlines():
            key, _, value = line.partition("=")
            if key == "SLURM_LOGIN":
                self.login = value
            elif key == "SLURM_SHARED":
                self.shared = value
            elif key == "SLURM_NODE":
                name, address, gpus = value.split()
                self.nodes[name] = SlurmNode(name, address, int(gpus))
        return self

    def down(self) -> None:
        subprocess.run(["bash", SCRIPT, "--down"], capture_output=True, text=True, timeout=300)

    def as_user(self, user: str, argv: list[str], *, cwd: str = "/tmp", timeout: float = 120,
                check: bool = True) -> subprocess.CompletedProcess:
        """``argv`` run on the login node as ``user`` (its host uid, the same on every node)."""
        entry = pwd.getpwnam(user)
        done = subprocess.run(
            ["docker", "exec", "-u", f"{entry.pw_uid}:{entry.pw_gid}", "-e", "HOME=/tmp", "-w", cwd, self.login, *argv],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and done.returncode:
            raise AssertionError(f"{argv} as {user} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def make_rootfs(self, user: str, image: str, name: str) -> tuple[str, str]:
        """``image`` of the main engine unpacked in the shared folder by ``user`` (skopeo + umoci
        --rootless, as the user); returns (its bundle folder, its root file system)."""
        store = os.path.join(self.shared, f"store-{user}")
        entry = pwd.getpwnam(user)
        make_users_folder(store, entry.pw_uid, entry.pw_gid)
        # The archive is written as root: into a folder of root's (the shared folder is
        # everyone's, the store the user's), never through a name a user could have planted.
        staging = tempfile.mkdtemp(dir=self.shared, prefix=".archive-")
        try:
            os.chmod(staging, 0o755)
            archive = os.path.join(staging, f"{name}.tar")
            subprocess.run(["docker", "save", "-o", archive, image], check=True, timeout=300)
            os.chmod(archive, 0o644)
            self.as_user(user, ["skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{store}/layout:{name}"],
                         timeout=300)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        bundle = os.path.join(store, name)
        self.as_user(user, ["umoci", "unpack", "--rootless", "--image", f"{store}/layout:{name}", bundle], timeout=300)
        return bundle, os.path.join(bundle, "rootfs")

    def wait_for_state(self, job_id: str, states: set[str], timeout: float = 60) -> str:
        """Until squeue shows job ``job_id`` in one of ``states``; its state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            done = subprocess.run(["docker", "exec", self.login, "squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"],
                                  capture_output=True, text=True, timeout=30)
            state = done.stdout.strip()
            if state in states:
                return state
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} is {state or 'unknown'}, not one of {sorted(states)}, after {timeout} s")
