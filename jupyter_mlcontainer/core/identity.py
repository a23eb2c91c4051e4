"""Who runs the kernel and which process owns it.

A kernel container runs as the uid:gid of the process that starts it. Images do not know
that uid, so :func:`passwd_files` writes ``/etc/passwd`` and ``/etc/group`` copies that add
it (``getpass.getuser()``, ``~`` and ``pwd.getpwuid`` then work inside the container).

Containers are labelled with :func:`owner_id`, a random id whose lease (a locked file in the
user's runtime folder) the owning process holds, so a later server can tell a dead owner's
orphans from a live server's kernels without trusting hostnames or pids.
"""

from __future__ import annotations

import atexit
import fcntl
import getpass
import hashlib
import os
import socket
import threading
import uuid
from dataclasses import dataclass

from .policy import write_text_safely


@dataclass(frozen=True)
class HostUser:
    uid: int
    gid: int
    name: str

    @property
    def docker_user(self) -> str:
        return f"{self.uid}:{self.gid}"


def current_user() -> HostUser:
    """The uid, gid and login name of this process."""
    uid, gid = os.getuid(), os.getgid()
    try:
        name = getpass.getuser()
    except Exception:  # no passwd entry and no $USER: still give the kernel a name
        name = f"user{uid}"
    # A name usable in /etc/passwd inside any image.
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "._-") or f"user{uid}"
    return HostUser(uid=uid, gid=gid, name=safe)


class _Lease:
    """This process's claim on the containers it labels, held as an exclusive ``flock`` on a
    file in the user's private Jupyter runtime folder.

    The owner label is a random id, so two processes never share one (hostname + pid did:
    a server in another PID namespace, or in a ``--network host`` container, has the same
    hostname and may have the same pid). Whether the owner is alive is read from the lock,
    which the kernel drops when the process ends however it ends (SIGKILL included), in any
    PID namespace. A process that cannot see an owner's lease file (another user, another
    machine, a container with its own filesystem) never judges that owner.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.owner = ""
        self._file = None

    def get(self) -> str:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a lease of its own
                self._take()
            return self.owner

    def _take(self) -> None:
        folder = lease_folder()
        os.makedirs(folder, mode=0o700, exist_ok=True)
        owner = uuid.uuid4().hex
        path = os.path.join(folder, owner + LEASE_SUFFIX)
        # Locked before it gets its name: a reaper never sees this lease unheld.
        handle = open(path + ".new", "x")  # never an existing file; closed on exec (PEP 446)
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(f"{socket.gethostname()} pid {os.getpid()} (this file is held while that process runs)\n")
        handle.flush()
        os.rename(path + ".new", path)
        self._file, self._pid, self.owner = handle, os.getpid(), owner
        atexit.register(_release, handle, path)


def _release(handle, path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
    handle.close()


LEASE_SUFFIX = ".lease"
_LEASE = _Lease()


def lease_folder() -> str:
    """Where this user's processes keep their owner leases: the private Jupyter runtime folder."""
    from jupyter_core.paths import jupyter_runtime_dir

    return os.path.join(jupyter_runtime_dir(), "mlcontainer-owners")


def owner_id() -> str:
    """The owner label of containers this process creates: a random id whose lease this
    process holds until it ends."""
    return _LEASE.get()


def owner_is_dead(owner: str) -> bool | None:
    """True when ``owner``'s lease is here and no process holds it any more, False while one
    does, None when it is not ours to judge (no lease file here: another user's, another
    machine's or another filesystem's process; or an owner label of an older version)."""
    if not owner or not all(ch in "0123456789abcdef" for ch in owner) or len(owner) != 32:
        return None
    path = os.path.join(lease_folder(), owner + LEASE_SUFFIX)
    try:
        handle = open(path)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def forget_dead_owner(owner: str) -> None:
    """Remove a dead owner's lease once its containers are gone (the reaper calls this)."""
    if owner_is_dead(owner):
        try:
            os.unlink(os.path.join(lease_folder(), owner + LEASE_SUFFIX))
        except OSError:
            pass


def dead_owners() -> list[str]:
    """Owners whose lease file is here and held by no process (crashed processes)."""
    try:
        names = os.listdir(lease_folder())
    except OSError:
        return []
    owners = [name[: -len(LEASE_SUFFIX)] for name in names if name.endswith(LEASE_SUFFIX)]
    return [owner for owner in owners if owner_is_dead(owner)]


def passwd_files(directory: str, user: HostUser, home: str, image_passwd: str, image_group: str) -> tuple[str, str]:
    """Write passwd/group files = the image's own + an entry for ``user``; return their paths.

    Files are named by content, so kernels of the same image and user share them.
    """
    passwd_lines = [line for line in image_passwd.splitlines() if line.strip()]
    group_lines = [line for line in image_group.splitlines() if line.strip()]
    if not any(line.split(":")[2:3] == [str(user.uid)] for line in passwd_lines):
        names = {line.split(":", 1)[0] for line in passwd_lines}
        name = user.name if user.name not in names else f"{user.name}-{user.uid}"
        passwd_lines.append(f"{name}:x:{user.uid}:{user.gid}:jupyter-mlcontainer user:{home}:/bin/sh")
    if not any(line.split(":")[2:3] == [str(user.gid)] for line in group_lines):
        names = {line.split(":", 1)[0] for line in group_lines}
        name = user.name if user.name not in names else f"{user.name}-{user.gid}"
        group_lines.append(f"{name}:x:{user.gid}:")
    passwd = "\n".join(passwd_lines) + "\n"
    group = "\n".join(group_lines) + "\n"
    digest = hashlib.sha256((passwd + "\0" + group).encode()).hexdigest()[:16]
    os.makedirs(directory, mode=0o700, exist_ok=True)
    paths = []
    for kind, text in (("passwd", passwd), ("group", group)):
        path = os.path.join(directory, f"{kind}-{digest}")
        if not os.path.exists(path):
            write_text_safely(path, text, 0o644)  # mounted read-only into the container
        paths.append(path)
    return paths[0], paths[1]
