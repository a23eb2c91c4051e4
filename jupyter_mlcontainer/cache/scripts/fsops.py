"""File operations for a process with root's rights in a folder that users write: every path is
walked one component at a time from an open folder, never following a symlink, and acted on
through what was opened. Standard library only (runs in the trusted helper image too)."""

import os
import stat
import time

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone planted returns at once instead of blocking for good.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_dir(parent_fd, name):
    """An fd of the folder ``name`` in ``parent_fd``; OSError if it is anything else (ELOOP for a
    symlink, ENOTDIR for a file)."""
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


def open_path(root_fd, parts):
    """An fd of root/parts..., each component a real folder (no symlink followed)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = open_dir(fd, part)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def lstat_at(parent_fd, name):
    """The entry's own stat (a symlink's, not its target's), or None when it is absent."""
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def set_aside(parent_fd, name, aside_fd, label):
    """Move ``name`` (whatever it is) out of ``parent_fd`` into the set-aside folder, under a
    name saying what it was and when. Returns that name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        target = "%s-%s%s" % (label, stamp, "-%d" % n if n else "")
        if lstat_at(aside_fd, target) is None:
            os.rename(name, target, src_dir_fd=parent_fd, dst_dir_fd=aside_fd)
            return target
    raise OSError("no free name in the set-aside folder for %s" % label)


def ensure_dir(parent_fd, name, mode, owner, aside=None, label=None):
    """An fd of the folder ``name`` in ``parent_fd``, made if absent, owned by ``owner`` (uid,
    gid) with ``mode``. Anything else found there (a symlink, a file, a FIFO, another's folder) is
    set aside (``aside``: (fd, reports list)) or, without ``aside``, refused with OSError."""
    while True:
        st = lstat_at(parent_fd, name)
        if st is None:
            try:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
            except FileExistsError:
                continue  # someone made something there meanwhile: look again
            fd = open_dir(parent_fd, name)
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            return fd
        if stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == tuple(owner):
            fd = open_dir(parent_fd, name)
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                os.fchmod(fd, mode)
            return fd
        if aside is None:
            raise OSError("%s is not a folder of uid %d (found mode %o, uid %d)" % (
                name, owner[0], st.st_mode, st.st_uid))
        aside_fd, reports = aside
        try:
            moved = set_aside(parent_fd, name, aside_fd, label or name)
        except FileNotFoundError:
            continue  # another keeper moved it meanwhile
        reports.append("%s (%s of uid %d) was set aside as %s" % (name, kind_of(st.st_mode), st.st_uid, moved))


def kind_of(mode):
    """What a stat's ``mode`` is, in words, for what the keeper reports it set aside."""
    for test, word in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "a device"


def entries(fd):
    """The names in folder ``fd``, one at a time (a folder of a million entries is never held in
    memory). The fd stays open and is not moved."""
    dup = os.dup(fd)
    try:
        with os.scandir(dup) as it:
            for entry in it:
                yield entry.name
    finally:
        os.close(dup)


def symlink_target_within(blobs_fd, name, blobs_parts, top_parts):
    """For a symlink ``name`` in the folder at ``blobs_parts`` (relative to some root): the parts
    of its target when that target is relative and stays under ``top_parts``; else None.
    (huggingface_hub 2.4+ may make a repo's blob a relative link into its cache's own store.)"""
    try:
        target = os.readlink(name, dir_fd=blobs_fd)
    except OSError:
        return None
    if not target or target.startswith("/"):
        return None
    parts = list(blobs_parts)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if len(parts) <= len(top_parts):
                return None
            parts.pop()
        else:
            parts.append(part)
    if tuple(parts[:len(top_parts)]) != tuple(top_parts) or len(parts) == len(top_parts):
        return None
    return tuple(parts)
