"""The cache keeper: makes the shared cache's folders the box's, so that users share them safely.

Why (README, "One cache for everyone on the box"): the cache follows /tmp's rules. Every
folder belongs to root with mode 1777 (anyone adds files; the sticky bit lets only a file's
owner delete or rename it, and a root-owned folder gives no user the folder owner's power over
others' files), files keep their writer's uid and umask mode (0644: everyone reads them, only
the owner changes them), and lock files are 0666 so that the libraries' locks (filelock, as
huggingface_hub and datasets use it) work across users. A folder is created by whichever
kernel needs it first, as that kernel's user, so something with root's rights has to make it
the box's: this keeper. It watches the cache (inotify) and also repairs, when it starts, a
cache that an earlier version left with user-owned 0755 folders.

Who runs it: for a named volume on a rootful engine, a small container that
``cache.ensure_cache_volume`` keeps running (root with CHOWN, FOWNER and DAC_READ_SEARCH only,
no network, read-only); for a host folder shared by users with an engine each, the admin, as a
service on the host (``jupyter mlcontainer cache-keeper PATH``).

It resolves every path from the cache's root one component at a time without following
symlinks and changes what it opened (a user cannot redirect it with a symlink or a renamed
folder), never touches ``home/<user>`` (private HOMEs), and changes only owners and permission
bits of folders and of lock files with a single link. Standard library only: the container
runs it with the kernel image's Python, from this file's source.
"""

import os
import select
import stat
import struct
import sys
import time

PRIVATE_TOP = "home"  # <cache>/home/<user>: HOME folders, private to their owner
FOLDER_MODE = 0o1777
LOCK_MODE = 0o666
STAMP = ".mlcontainer-keeper"  # touched while the keeper runs: doctor reads its age
STAMP_EVERY = 60.0

_IN_ATTRIB, _IN_MOVED_TO, _IN_CREATE = 0x4, 0x80, 0x100
_IN_Q_OVERFLOW, _IN_ISDIR = 0x4000, 0x40000000
_WATCHED = _IN_ATTRIB | _IN_MOVED_TO | _IN_CREATE
_EVENT = struct.Struct("iIII")
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def is_lock_file(name):
    return name.endswith(".lock")


class Keeper:
    """``owner``: the (uid, gid) that folders get (root's); ``locks_to_owner``: lock files get
    it too, which lock libraries need when they refuse a lock file owned by neither the user
    nor the folder's owner (filelock 4) or when the kernel refuses O_CREAT on it
    (fs.protected_regular); off where that owner is not mapped into the users' namespaces
    (rootless engines see it as nobody, which filelock 4 refuses too)."""

    def __init__(self, root, owner=(0, 0), locks_to_owner=True):
        self.root = os.path.abspath(root)
        self.owner = owner
        self.locks_to_owner = locks_to_owner
        self.root_fd = os.open(self.root, _OPEN | os.O_DIRECTORY)

    # -- one entry

    def fix(self, fd, name):
        """Make the opened entry ``name`` the box's, if it is a folder or a lock file."""
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            if (st.st_uid, st.st_gid) != self.owner:
                os.fchown(fd, *self.owner)
            if stat.S_IMODE(st.st_mode) != FOLDER_MODE:
                os.fchmod(fd, FOLDER_MODE)
        elif stat.S_ISREG(st.st_mode) and is_lock_file(name) and st.st_nlink == 1:
            if self.locks_to_owner and (st.st_uid, st.st_gid) != self.owner:
                os.fchown(fd, *self.owner)
            if stat.S_IMODE(st.st_mode) != LOCK_MODE:
                os.fchmod(fd, LOCK_MODE)
        return stat.S_ISDIR(st.st_mode)

    def open_relative(self, parts):
        """An fd of root/parts..., every component opened without following a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for part in parts:
                child = os.open(part, _OPEN, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def visit(self, parts, on_folder=None):
        """Fix root/parts and everything below it (HOMEs excepted); ``on_folder(parts)`` for
        each folder."""
        parts = tuple(parts)
        if len(parts) > 1 and parts[0] == PRIVATE_TOP:
            return
        pending = [parts]
        while pending:
            here = pending.pop()
            try:
                fd = self.open_relative(here)
            except OSError:
                continue  # gone, a symlink now, or unreadable: nothing to do
            try:
                try:
                    is_folder = self.fix(fd, here[-1] if here else "")
                except OSError:  # not ours to change (another user's, under a rootless engine)
                    is_folder = stat.S_ISDIR(os.fstat(fd).st_mode)
                if not is_folder:
                    continue
                if on_folder:
                    on_folder(here)
                if here == (PRIVATE_TOP,):
                    continue  # home/ itself is the box's; the HOMEs in it are their users'
                try:
                    names = [entry.name for entry in os.scandir(fd)]
                except OSError:
                    continue
            finally:
                os.close(fd)
            pending.extend(here + (name,) for name in names if here or name != STAMP)

    def repair(self):
        """The whole cache, once (at start, and after lost events)."""
        self.visit(())

    # -- watching

    def keep(self):
        """Repair, then watch for as long as this process lives."""
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        watched = {}
        warned = []

        def watch(parts):
            path = os.path.join(self.root, *parts)
            wd = libc.inotify_add_watch(fd, os.fsencode(path), _WATCHED | 0x2000000)  # IN_DONT_FOLLOW
            if wd >= 0:
                watched[wd] = parts
            elif not warned:
                warned.append(True)
                sys.stderr.write("cache keeper: cannot watch more folders of %s (errno %d: raise "
                                 "fs.inotify.max_user_watches); new folders in them stay their creator's\n"
                                 % (self.root, ctypes.get_errno()))

        self.visit((), watch)
        self.stamp()
        print("cache keeper: watching %s (%d folders)" % (self.root, len(watched)), flush=True)
        last_stamp = time.monotonic()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if not poller.poll(STAMP_EVERY * 1000):
                self.stamp()
                last_stamp = time.monotonic()
                continue
            data = os.read(fd, 65536)
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW:
                    self.visit((), watch)  # events were lost: look at everything again
                    continue
                parent = watched.get(wd)
                if parent is None or not name:
                    continue
                parts = parent + (os.fsdecode(name),)
                if mask & _IN_ISDIR and mask & (_IN_CREATE | _IN_MOVED_TO):
                    # makedirs may have made its children before this folder was watched
                    self.visit(parts, watch)
                elif mask & _IN_ISDIR or is_lock_file(parts[-1]):
                    self.visit(parts)
            if time.monotonic() - last_stamp > STAMP_EVERY:
                self.stamp()
                last_stamp = time.monotonic()

    def stamp(self):
        """Touch root/STAMP (root's, 0644), so that doctor can tell the keeper runs."""
        try:
            fd = os.open(STAMP, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self.root_fd)
        except OSError:
            return
        try:
            if os.fstat(fd).st_uid == os.getuid():
                os.utime(fd)
        finally:
            os.close(fd)


USAGE = "usage: cache_keeper ROOT [--once] [--locks-keep-creator]\n"


def main(argv=None):
    """``cache_keeper ROOT``: set ROOT up for the box and keep it so; ``--once``: set it up
    (repair) and exit; ``--locks-keep-creator``: leave lock files' owners alone."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = {a for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if len(args) != 1 or options - {"--once", "--locks-keep-creator"}:
        sys.stderr.write(USAGE)
        return 2
    locks_to_owner = "--locks-keep-creator" not in options
    root = args[0]
    st = os.stat(root)
    if stat.S_IMODE(st.st_mode) != FOLDER_MODE or st.st_uid != os.getuid():
        os.chown(root, os.getuid(), os.getgid())
        os.chmod(root, FOLDER_MODE)
    home = os.path.join(root, PRIVATE_TOP)
    if not os.path.isdir(home):
        os.makedirs(home, exist_ok=True)
    keeper = Keeper(root, (os.getuid(), os.getgid()), locks_to_owner)
    if "--once" in options:
        keeper.repair()
    else:
        keeper.keep()
    return 0


if __name__ == "__main__":
    sys.exit(main())
