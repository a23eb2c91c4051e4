"""The keeper's watching: inotify on the folders that lead to blobs, and a full look now and
then for what no watch caught, so that a blob a user downloads is published within moments.

Part of the cache keeper (keeper.py, whose :class:`~keeper.Keeper` is made of model_store.py's
publisher and this module's :class:`FolderWatcher`). Only the paths to blobs are walked
(``home/<user>/.cache/huggingface/hub/<repo>/blobs``), one folder's names at a time, and at most
``max_watches`` folders are watched whatever one user piles up. Standard library only: it runs in
the trusted helper image as a plain file next to keeper.py, and in the package.
"""

import os
import select
import stat
import struct
import time

try:  # in the package (the server, the admin's keeper) or as plain files (the helper image)
    from . import fsops
    from .layout import HOMES, REPO_FOLDER, STAMP_EVERY, USER_HUB, USER_NAME, is_blob_name
    from .model_store import log
except ImportError:
    import fsops
    from layout import HOMES, REPO_FOLDER, STAMP_EVERY, USER_HUB, USER_NAME, is_blob_name
    from model_store import log

LOST_RESCAN_EVERY = 5.0  # after lost events: the soonest a full look comes again
RESCAN_EVERY = 600.0  # a full look at every HOME's hub cache: what no watch caught (budget, lost events)
MAX_WATCHES = 20000
MAX_REPOS_WATCHED_PER_HOME = 1000
# The folders under the cache's root that lead to blobs: home/<user>/.cache/huggingface/hub/<repo>/blobs
BLOBS_DEPTH = 2 + len(USER_HUB) + 2

_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x8, 0x80, 0x100
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_IGNORED = 0x400, 0x800, 0x8000
_IN_Q_OVERFLOW, _IN_ONLYDIR, _IN_ISDIR = 0x4000, 0x1000000, 0x40000000
_EVENT = struct.Struct("iIII")


def _wanted_child(parts, name, is_dir):
    """Whether ``name`` in the folder at ``parts`` is on a path to blobs (or is a blob)."""
    depth = len(parts)
    if depth == BLOBS_DEPTH:
        return not is_dir and is_blob_name(name)
    if not is_dir:
        return False
    if depth == 1:
        return bool(USER_NAME.match(name))
    if 2 <= depth < 2 + len(USER_HUB):
        return name == USER_HUB[depth - 2]
    if depth == 2 + len(USER_HUB):
        return bool(REPO_FOLDER.match(name))
    return depth == BLOBS_DEPTH - 1 and name == "blobs"


def _fixed_child(parts):
    """The one name wanted in the folder at ``parts``, where there is only one; else None."""
    depth = len(parts)
    if 2 <= depth < 2 + len(USER_HUB):
        return USER_HUB[depth - 2]
    return "blobs" if depth == BLOBS_DEPTH - 1 else None


def default_max_watches():
    """At most an eighth of the inotify watches root may hold (other services need theirs)."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return max(100, min(MAX_WATCHES, int(f.read()) // 8))
    except (OSError, ValueError):
        return MAX_WATCHES


class FolderWatcher:
    """The watching half of :class:`~keeper.Keeper` (a mixin). It uses what the keeper's set-up
    opened (``root_fd``) and its ``police_home``, ``publish_blob_at`` and ``stamp``; its own
    state is made by :meth:`_init_watches`, inotify by :meth:`_start_watching`."""

    def _init_watches(self, max_watches):
        """No watch yet (the keeper's constructor): a one-shot ``--prepare-home`` never watches."""
        self.max_watches = max_watches or default_max_watches()
        self._inotify = None
        self._watches = {}  # wd -> parts under the root
        self._watched = {}  # parts -> wd
        self._repo_watches = {}  # HOME name -> repos watched
        self._warned_budget = False
        self._lost = False

    def scan(self, parts=(HOMES,)):
        """Walk down from ``parts`` along the paths to blobs: watch each folder (within the
        budget), police HOMEs, publish blobs. One folder's names at a time."""
        try:
            fd = fsops.open_path(self.root_fd, parts)
        except OSError:
            return
        try:
            self._watch(parts, fd)
            if len(parts) == BLOBS_DEPTH:
                for name in fsops.entries(fd):
                    if is_blob_name(name):
                        self.publish_blob_at(parts + (name,))
                return
            fixed = _fixed_child(parts)
            if fixed is not None:  # a HOME's .cache/huggingface/hub, a repo's blobs: no listing
                st = fsops.lstat_at(fd, fixed)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    self.scan(parts + (fixed,))
                return
            for name in fsops.entries(fd):  # home/ (users), a hub cache (repositories)
                if len(parts) == 1:
                    self.police_home(name)
                st = fsops.lstat_at(fd, name)
                if st is not None and _wanted_child(parts, name, stat.S_ISDIR(st.st_mode)):
                    self.scan(parts + (name,))
        finally:
            os.close(fd)

    def _watch(self, parts, fd):
        """Watch the folder at ``parts`` (open as ``fd``) unless it is watched, inotify is off or
        the budget is spent (said once; the periodic look covers the rest)."""
        if self._inotify is None or parts in self._watched:
            return
        if len(self._watches) >= self.max_watches or (
                len(parts) == BLOBS_DEPTH - 1 and self._repo_watches.get(parts[1], 0) >= MAX_REPOS_WATCHED_PER_HOME):
            if not self._warned_budget:
                self._warned_budget = True
                log("watching %d folders, the most it may (--max-watches, %d repositories per HOME): the others are "
                    "looked at every %d s" % (len(self._watches), MAX_REPOS_WATCHED_PER_HOME, RESCAN_EVERY))
            return
        mask = _IN_CREATE | _IN_MOVED_TO | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
        if len(parts) == BLOBS_DEPTH:
            mask |= _IN_CLOSE_WRITE
        # Through the opened fd: what is watched is the folder that was opened without following
        # a link, whatever its path leads to by now.
        wd = self._inotify.inotify_add_watch(self._ifd, ("/proc/self/fd/%d" % fd).encode(), mask)
        if wd >= 0:
            self._watches[wd] = parts
            self._watched[parts] = wd
            if len(parts) == BLOBS_DEPTH - 1:
                self._repo_watches[parts[1]] = self._repo_watches.get(parts[1], 0) + 1

    def _forget_watch(self, wd):
        """Drop the watch ``wd`` (its folder went or moved: inotify ended it, or is told to)."""
        parts = self._watches.pop(wd, None)
        self._watched.pop(parts, None)
        if parts is not None and len(parts) == BLOBS_DEPTH - 1:
            self._repo_watches[parts[1]] = max(0, self._repo_watches.get(parts[1], 1) - 1)

    def _start_watching(self):
        """Open inotify (through libc: no package beyond the standard library). Called by
        :meth:`~keeper.Keeper.keep` before its first scan, which adds the watches."""
        import ctypes

        self._inotify = ctypes.CDLL(None, use_errno=True)
        self._ifd = self._inotify.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def _watch_forever(self, rescan_every):
        """Handle events as they come, touch the stamp every STAMP_EVERY s and look at
        everything again every ``rescan_every`` s; never returns (:meth:`~keeper.Keeper.keep`)."""
        poller = select.poll()
        poller.register(self._ifd, select.POLLIN)
        last_stamp = last_scan = time.monotonic()
        while True:
            if poller.poll(STAMP_EVERY * 1000):
                self._drain()
            now = time.monotonic()
            if now - last_stamp >= STAMP_EVERY:
                self.stamp()
                last_stamp = now
            # Lost events (the kernel's queue overflowed: one user made folders faster than they
            # are looked at) are made up for by one look at everything, at most every few seconds.
            if now - last_scan >= rescan_every or (self._lost and now - last_scan >= LOST_RESCAN_EVERY):
                self._lost = False
                self.scan()
                last_scan = time.monotonic()

    def _drain(self):
        """Handle every event queued now."""
        while True:
            try:
                data = os.read(self._ifd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            self._handle(data)

    def _handle(self, data):
        """Act on a read's worth of inotify events: a new HOME is policed, a new folder on a path
        to blobs is walked (and watched), a blob written or moved in is published."""
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self._lost = True  # events were lost: everything is looked at again soon
                continue
            if mask & (_IN_IGNORED | _IN_DELETE_SELF | _IN_MOVE_SELF):
                if mask & _IN_MOVE_SELF:
                    self._inotify.inotify_rm_watch(self._ifd, wd)
                self._forget_watch(wd)
                continue
            parts = self._watches.get(wd)
            if parts is None or not raw:
                continue
            name = os.fsdecode(raw)
            child = parts + (name,)
            if len(parts) == 1:
                self.police_home(name)
            if len(parts) == BLOBS_DEPTH:
                if is_blob_name(name):
                    self.publish_blob_at(child)
            elif mask & _IN_ISDIR and _wanted_child(parts, name, True):
                if len(child) == BLOBS_DEPTH - 1 and self._repo_watches.get(child[1], 0) >= MAX_REPOS_WATCHED_PER_HOME:
                    continue  # a HOME with more repositories than are watched: the periodic look finds them
                self.scan(child)  # makedirs may have made its children before this folder was watched
