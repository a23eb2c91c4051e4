"""The Slurm backend's store: one folder of the user's own on the cluster's shared file system.

Every part of it is made and written by the user, through the login node, never by anyone else:
``umoci unpack --rootless`` makes an image's files the unpacker's, so a store shared between
users would let the first user change what the others' kernels run (docs/slurm.md). The store
is 0700 and checked to be a real folder of the user's before anything is put in it.

    <store>/images/<image id>/bundle/   an image's root file system and umoci's config.json,
                                         unpacked once per image id (``ready`` marks it whole)
    <store>/kernels/<kernel's name>/    one kernel's bundle: config.json, run/kernel.json (the
                                         connection file), passwd, group, kernel.log
    <store>/volumes/<volume>/           what a kernel's named volume is on the cluster (the cache:
                                         its HOME and caches; the user's alone)
"""

from __future__ import annotations

import json
import posixpath
import secrets
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.errors import EngineError
from .slurm_login import LoginNode


@dataclass(frozen=True)
class ClusterUser:
    """Who the login node says the user is: the jobs run as this uid, so the bundles map it."""

    name: str
    uid: int
    gid: int


def last_line(text: str) -> str:
    """The last non-empty line of a command's output (a login shell's start-up files may print
    before it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def cluster_user(login: LoginNode) -> ClusterUser:
    """``id`` on the login node: ``uid=1001(mlctest) gid=1001(mlctest) groups=...``."""
    fields = dict(part.split("=", 1) for part in last_line(login.run(["id"])).split() if "=" in part)
    try:
        uid, name = fields["uid"].rstrip(")").split("(")
        gid = fields["gid"].split("(")[0]
        return ClusterUser(name=name, uid=int(uid), gid=int(gid))
    except (KeyError, ValueError):
        raise EngineError(f"The Slurm login node's `id` answered {fields!r}: no user in it") from None


class UserStore:
    """The store at ``root`` (an absolute path on the shared file system) of ``user``."""

    def __init__(self, login: LoginNode, root: str, user: ClusterUser) -> None:
        if not posixpath.isabs(root):
            raise EngineError(f"The Slurm store {root!r} must be an absolute path on the cluster's shared file system")
        self.login, self.root, self.user = login, posixpath.normpath(root), user
        self._images: dict[str, tuple[str, dict[str, Any]]] = {}

    def ensure(self) -> None:
        """Make the store (0700), resolved once to the real path it names, checked (:meth:`check`),
        with its three folders."""
        self.login.run(["mkdir", "-p", "-m", "700", self.root])
        resolved = last_line(self.login.run(["realpath", "-e", self.root]))
        if posixpath.isabs(resolved):
            self.root = resolved
        self.check()
        for part in ("images", "kernels", "volumes"):
            self.login.run(["mkdir", "-p", "-m", "700", self.path(part)])

    def check(self) -> None:
        """Refuse a store that is not a real folder of the user's alone, or that someone else could
        swap for another: every folder above it must be root's or the user's and, where others may
        write to it, sticky (as /tmp; OpenSSH's StrictModes asks the same of ~/.ssh). Run by
        :meth:`ensure` and before each kernel's start."""
        chain = [self.root]
        while chain[-1] != "/":
            chain.append(posixpath.dirname(chain[-1]))
        answers = {}
        for line in self.login.run(["stat", "-c", "%n|%F|%u|%a", *chain]).splitlines():
            name, kind, owner, mode = line.rsplit("|", 3)
            answers[name] = (kind, int(owner), int(mode, 8))
        for path in chain:
            kind, owner, mode = answers.get(path, ("missing", -1, 0))
            if path == self.root:
                bad = kind != "directory" or owner != self.user.uid or mode & 0o077
            else:
                bad = kind != "directory" or owner not in (0, self.user.uid) or (mode & 0o022 and not mode & 0o1000)
            if bad:
                what = "is not a private folder of" if path == self.root else "is above the store and writable by others than"
                raise EngineError(
                    f"The Slurm store {self.root}: {path} {what} {self.user.name} ({kind}, owner uid {owner}, mode "
                    f"{mode:o}): someone else could change what the kernels run. Name another store (the "
                    "kernelspec's slurm option 'store'), e.g. in your HOME")

    def path(self, *parts: str) -> str:
        for part in parts:
            if not part or "/" in part or part in (".", ".."):
                raise EngineError(f"{part!r} cannot name a folder of the Slurm store")
        return posixpath.join(self.root, *parts)

    # -- images

    def image_bundle(self, image_id: str, archive: Iterable[bytes]) -> tuple[str, dict[str, Any]]:
        """The root file system of image ``image_id`` and umoci's config for it, unpacked from
        ``archive`` (``docker save``'s tar stream, read only when the store lacks the image)."""
        if image_id in self._images:
            return self._images[image_id]
        folder = self.path("images", image_id.split(":")[-1])
        if not self.login.test(posixpath.join(folder, "ready")):
            self._unpack(folder, archive)
        config = json.loads(self.login.run(["cat", posixpath.join(folder, "bundle", "config.json")]))
        self._images[image_id] = (posixpath.join(folder, "bundle", "rootfs"), config)
        return self._images[image_id]

    def _unpack(self, folder: str, archive: Iterable[bytes]) -> None:
        """skopeo and umoci, as the user, in a folder of its own renamed into place when whole (two
        kernels starting at once each unpack; the second rename finds the first's and gives way)."""
        work = f"{folder}.{secrets.token_hex(4)}.partial"
        self.login.run(["mkdir", "-m", "700", work])
        try:
            tar = posixpath.join(work, "image.tar")
            self.write_stream(tar, archive)
            self.login.run(["skopeo", "copy", "-q", f"docker-archive:{tar}", f"oci:{work}/layout:image"], timeout=900)
            self.login.run(["rm", "-f", tar])
            self.login.run(["umoci", "unpack", "--rootless", "--image", f"{work}/layout:image",
                            posixpath.join(work, "bundle")], timeout=900)
            self.login.run(["rm", "-rf", posixpath.join(work, "layout")], timeout=300)
            self.login.run(["touch", posixpath.join(work, "ready")])
            self.login.run(["mv", "-T", work, folder], check=False)
        finally:
            self.login.run(["rm", "-rf", work], check=False, timeout=300)

    def write_stream(self, path: str, chunks: Iterable[bytes]) -> None:
        """``chunks`` written to ``path`` on the cluster (``dd`` on the login node, fed through stdin)."""
        process = subprocess.Popen(self.login.argv(["dd", f"of={path}", "bs=1M", "status=none"]),
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stdin is not None
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
            process.stdin.close()
        except BrokenPipeError:
            pass
        error = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.wait() != 0:
            raise EngineError(f"Could not write {path} on the Slurm cluster: {error.strip()[-500:]}")

    # -- kernels

    def kernel_folder(self, name: str) -> str:
        """A fresh, empty folder for kernel ``name`` (what an earlier kernel of that name left goes)."""
        folder = self.path("kernels", name)
        self.login.run(["rm", "-rf", folder])
        self.login.run(["mkdir", "-m", "700", folder])
        return folder

    def write_files(self, folder: str, files: dict[str, tuple[bytes, int]]) -> None:
        """``files`` (relative path -> content, mode) written into ``folder`` in one go (a tar
        unpacked by the user)."""
        import io
        import tarfile

        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            made = set()
            for relative, (content, mode) in sorted(files.items()):
                parent = posixpath.dirname(relative)
                if parent and parent not in made:
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o700
                    tar.addfile(info)
                    made.add(parent)
                info = tarfile.TarInfo(relative)
                info.size, info.mode = len(content), mode
                tar.addfile(info, io.BytesIO(content))
        self.login.run(["tar", "-x", "--no-same-owner", "-C", folder, "-f", "-"], data=buffer.getvalue())

    def read(self, path: str) -> str:
        return self.login.run(["cat", path], check=False)

    def remove_kernel_folder(self, name: str) -> None:
        self.login.run(["rm", "-rf", self.path("kernels", name)], check=False)

    def volume(self, name: str) -> str:
        folder = self.path("volumes", name)
        self.login.run(["mkdir", "-p", "-m", "700", folder])
        return folder
