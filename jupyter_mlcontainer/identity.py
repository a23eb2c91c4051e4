"""Who runs the kernel and which process owns it.

A kernel container runs as the uid:gid of the process that starts it. Images do not know
that uid, so :func:`passwd_files` writes ``/etc/passwd`` and ``/etc/group`` copies that add
it (``getpass.getuser()``, ``~`` and ``pwd.getpwuid`` then work inside the container).

Containers are labelled with :func:`owner_id` (host/pid/process start time) so a later server
can tell a dead owner's orphans from a live server's kernels.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from dataclasses import dataclass


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


def _process_start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks since boot (Linux), None elsewhere or if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def owner_id(pid: int | None = None) -> str:
    """``host/pid/start-ticks`` identifying a (server) process on this host."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{pid}/{_process_start_ticks(pid) or '?'}"


def owner_is_dead(owner: str) -> bool | None:
    """True if ``owner`` is a process of this host that no longer runs, False if it runs,
    None if it is not ours to judge (another host or an unreadable label)."""
    try:
        host, pid_text, ticks = owner.split("/")
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    current = _process_start_ticks(pid)
    if current is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        # No /proc (not Linux): the pid runs; we cannot tell a reused pid apart.
        return False
    return ticks != "?" and current != ticks


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
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
