"""The cache keeper: the one trusted process that writes the shared parts of the model cache.

Why (docs/security.md, "The shared cache"): users share one cache, but what one user writes
must never become another user's code or data unless its content is verified. So every cache
that can hold code or credentials is per user, in the user's private HOME (``home/<user>``), and
the only shared files are Hugging Face blobs, whose names are their content's hash. The keeper
copies a blob from a user's hub cache into the model store (``models/huggingface/hub/<repo>/
blobs/<hash>``), hashing what it copies, and publishes it only when the hash is its name; from
then on it is root's and read-only. Every kernel links the store's blobs into its user's own hub
cache at start (link_models.py), so a model that one user downloaded is loaded by the others
without a second download, and nobody can alter what they load.

It also keeps the layout (root's top, ``home/`` 1777, ``models/`` 0755, ``set-aside/`` 0700;
anything else found where these must be is set aside, never followed), moves the shared folders
of an earlier version into ``set-aside/`` after verifying the blobs in them, and, on a host
whose users it knows (the admin's keeper), sets aside a ``home/<user>`` that is not that user's.

Who runs it: on a rootful engine, a container of the trusted helper image that the first kernel
start brings up (root with DAC_OVERRIDE only, no network, read-only; never a kernel's image);
for a host folder shared by users with an engine each, the admin, on the host
(``jupyter mlcontainer cache-keeper PATH``). ``--prepare-home`` is the one-shot helper that makes
a user's HOME before their first kernel on a rootful engine.

It opens every path one component at a time without following symlinks, works through what it
opened (files a user swaps cannot redirect it), never blocks on a FIFO, never lists a folder into
memory, and holds at most ``--max-watches`` inotify watches. Standard library only.
"""

import errno
import json
import os
import select
import stat
import struct
import sys
import time

try:  # in the package (the server, the admin's keeper) or as plain files (the helper image)
    from . import fsops
    from .layout import (
        BLOB_MODE, HOMES, HOMES_MODE, INCOMING, REPO_FOLDER, SET_ASIDE, SET_ASIDE_MODE, STAMP, STAMP_EVERY, STORE,
        STORE_HUB, STORE_MODE, TOP_NAMES, USER_HUB, USER_NAME, BlobHash, is_blob_name,
    )
except ImportError:
    import fsops
    from layout import (
        BLOB_MODE, HOMES, HOMES_MODE, INCOMING, REPO_FOLDER, SET_ASIDE, SET_ASIDE_MODE, STAMP, STAMP_EVERY, STORE,
        STORE_HUB, STORE_MODE, TOP_NAMES, USER_HUB, USER_NAME, BlobHash, is_blob_name,
    )

TOP_MODE = 0o755
HOME_MODE = 0o700
COPY_CHUNK = 1 << 20
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


def log(message):
    sys.stdout.write("cache keeper: %s\n" % message)
    sys.stdout.flush()


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


class Keeper:
    """The keeper of the cache at ``root``. ``owner``: who owns the shared folders and the store
    (root). ``police_homes``: HOMEs must belong to the user they are named after (the host's
    users; off in a container, which does not know them)."""

    def __init__(self, root, owner=(0, 0), police_homes=False, max_watches=None):
        self.root = os.path.abspath(root)
        self.owner = tuple(owner)
        self.police_homes = police_homes
        self.max_watches = max_watches or default_max_watches()
        self.reports = []  # what was set aside, in words
        self.rejected = set()  # (dev, ino, size, mtime) of files whose content is not their name
        self.root_fd = os.open(self.root, fsops.DIR_FLAGS)
        self.aside_fd = self.homes_fd = self.store_hub_fd = self.incoming_fd = -1
        self._inotify = None
        self._watches = {}  # wd -> parts under the root
        self._watched = {}  # parts -> wd
        self._repo_watches = {}  # HOME name -> repos watched
        self._warned_budget = False
        self._lost = False

    # -- layout ----------------------------------------------------------------------------

    def set_up(self):
        """Make the layout (idempotent): the top root's 0755 (nobody else adds to it), home/ 1777,
        models/ 0755, set-aside/ 0700; what is found where they must be is set aside."""
        st = os.fstat(self.root_fd)
        if (st.st_uid, st.st_gid) != self.owner:
            os.fchown(self.root_fd, *self.owner)
        if stat.S_IMODE(st.st_mode) != TOP_MODE:
            os.fchmod(self.root_fd, TOP_MODE)
        self.aside_fd = self._ensure_set_aside()
        aside = (self.aside_fd, self.reports)
        self.homes_fd = fsops.ensure_dir(self.root_fd, HOMES, HOMES_MODE, self.owner, aside, "home")
        store_fd = fsops.ensure_dir(self.root_fd, STORE, STORE_MODE, self.owner, aside, STORE)
        try:
            fd = store_fd
            for name in STORE_HUB[1:]:
                child = fsops.ensure_dir(fd, name, STORE_MODE, self.owner, aside, "models-" + name)
                if fd != store_fd:
                    os.close(fd)
                fd = child
            self.store_hub_fd = fd
            self.incoming_fd = fsops.ensure_dir(store_fd, INCOMING[1], SET_ASIDE_MODE, self.owner, aside, "models-incoming")
        finally:
            os.close(store_fd)
        self._clear_incoming()
        st = fsops.lstat_at(self.root_fd, STAMP)
        if st is not None and not (stat.S_ISREG(st.st_mode) and st.st_uid == self.owner[0] and st.st_nlink == 1):
            moved = fsops.set_aside(self.root_fd, STAMP, self.aside_fd, "stamp")
            self.reports.append("%s (%s of uid %d) was set aside as %s" % (STAMP, fsops.kind_of(st.st_mode), st.st_uid, moved))
        for line in self.reports:
            log(line)

    def _clear_incoming(self, older_than=3600.0):
        """Remove copies a keeper left behind in .incoming (killed while it copied)."""
        now = time.time()
        for name in list(fsops.entries(self.incoming_fd)):
            st = fsops.lstat_at(self.incoming_fd, name)
            if st is not None and now - st.st_mtime > older_than and not stat.S_ISDIR(st.st_mode):
                try:
                    os.unlink(name, dir_fd=self.incoming_fd)
                except OSError:
                    pass

    def _ensure_set_aside(self):
        st = fsops.lstat_at(self.root_fd, SET_ASIDE)
        if st is not None and not (stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == self.owner):
            # Something else has the name: it goes into a new set-aside folder of its own.
            fresh = ".%s-new-%d" % (SET_ASIDE, os.getpid())
            os.mkdir(fresh, SET_ASIDE_MODE, dir_fd=self.root_fd)
            fd = fsops.open_dir(self.root_fd, fresh)
            os.fchown(fd, *self.owner)
            os.fchmod(fd, SET_ASIDE_MODE)
            os.rename(SET_ASIDE, "found-" + SET_ASIDE, src_dir_fd=self.root_fd, dst_dir_fd=fd)
            os.rename(fresh, SET_ASIDE, src_dir_fd=self.root_fd, dst_dir_fd=self.root_fd)
            self.reports.append("%s (%s of uid %d) was set aside as %s/found-%s" % (
                SET_ASIDE, fsops.kind_of(st.st_mode), st.st_uid, SET_ASIDE, SET_ASIDE))
            return fd
        return fsops.ensure_dir(self.root_fd, SET_ASIDE, SET_ASIDE_MODE, self.owner)

    def migrate_legacy(self):
        """An earlier version's shared folders (huggingface/, torch/, pip/, ... at the top, every
        user writing there): the Hugging Face blobs in them whose content is their name go to the
        store; then every such folder goes into set-aside/legacy-<time>/ (root's alone)."""
        legacy = [name for name in fsops.entries(self.root_fd) if name not in TOP_NAMES and not name.startswith(".mlc-")]
        if not legacy:
            return
        try:
            hub_fd = fsops.open_path(self.root_fd, ("huggingface", "hub"))
        except OSError:
            hub_fd = None
        if hub_fd is not None:
            published = 0
            try:
                for repo in fsops.entries(hub_fd):
                    if REPO_FOLDER.match(repo):
                        published += self._publish_repo(hub_fd, repo, owner_uid=None, source="the earlier shared cache")
            finally:
                os.close(hub_fd)
            log("verified %d blob(s) of the earlier shared cache into the model store" % published)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        folder = "legacy-" + stamp
        os.mkdir(folder, SET_ASIDE_MODE, dir_fd=self.aside_fd)
        fd = fsops.open_dir(self.aside_fd, folder)
        try:
            for name in legacy:
                try:
                    os.rename(name, name, src_dir_fd=self.root_fd, dst_dir_fd=fd)
                except FileNotFoundError:
                    pass  # another node's keeper moved it (a Swarm's shared folder)
        finally:
            os.close(fd)
        message = ("the earlier version's shared folders (%s) were set aside in %s/%s: nothing in them is used any more; "
                   "remove it when you no longer need it" % (", ".join(sorted(legacy)), SET_ASIDE, folder))
        self.reports.append(message)
        log(message)

    # -- HOMEs -----------------------------------------------------------------------------

    def prepare_home(self, name, uid, gid):
        """Make ``home/<name>`` the private HOME of uid:gid (0700), setting aside whatever else
        is there (a folder of another user, a symlink, a file; or the user's own folder that
        others could write into). Returns {"home", "set_aside"}."""
        if not USER_NAME.match(name):
            raise ValueError("not a user name for a HOME: %r" % name)
        before = len(self.reports)
        while True:
            st = fsops.lstat_at(self.homes_fd, name)
            if st is not None:
                if stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (uid, gid) and not st.st_mode & 0o022:
                    break
                why = "not %s's" % name if st.st_uid != uid or not stat.S_ISDIR(st.st_mode) else "writable by others"
                moved = fsops.set_aside(self.homes_fd, name, self.aside_fd, "home-" + name)
                self.reports.append("%s/%s (%s of uid %d, %s) was set aside as %s/%s" % (
                    HOMES, name, fsops.kind_of(st.st_mode), st.st_uid, why, SET_ASIDE, moved))
                continue
            try:
                os.mkdir(name, HOME_MODE, dir_fd=self.homes_fd)
            except FileExistsError:
                continue
            fd = fsops.open_dir(self.homes_fd, name)
            try:
                os.fchmod(fd, HOME_MODE)
                os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
            break
        return {"home": "%s/%s" % (HOMES, name), "set_aside": self.reports[before:]}

    def police_home(self, name):
        """On a host whose users the keeper knows: ``home/<name>`` that is not a folder of the
        user called ``name`` is set aside (someone took another's name, or planted a link)."""
        if not self.police_homes:
            return
        import pwd

        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            return
        st = fsops.lstat_at(self.homes_fd, name)
        if st is None or (stat.S_ISDIR(st.st_mode) and st.st_uid == uid):
            return
        moved = fsops.set_aside(self.homes_fd, name, self.aside_fd, "home-" + name)
        message = "%s/%s (%s of uid %d, not %s's) was set aside as %s/%s" % (
            HOMES, name, fsops.kind_of(st.st_mode), st.st_uid, name, SET_ASIDE, moved)
        self.reports.append(message)
        log(message)

    # -- the model store -------------------------------------------------------------------

    def _in_store(self, repo, name):
        try:
            os.stat("%s/blobs/%s" % (repo, name), dir_fd=self.store_hub_fd, follow_symlinks=False)
            return True
        except OSError:
            return False

    def _open_blob(self, hub_fd, repo, blobs_fd, name):
        """An fd of the blob ``name``: a regular file, or (huggingface_hub's own shared blobs) a
        relative link to one that stays inside the same hub cache. None otherwise."""
        try:
            return os.open(name, fsops.FILE_FLAGS, dir_fd=blobs_fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                return None
        parts = fsops.symlink_target_within(blobs_fd, name, (repo, "blobs"), ())
        if parts is None:
            return None
        try:
            folder = fsops.open_path(hub_fd, parts[:-1])
        except OSError:
            return None
        try:
            return os.open(parts[-1], fsops.FILE_FLAGS, dir_fd=folder)
        except OSError:
            return None
        finally:
            os.close(folder)

    def publish_blob(self, hub_fd, repo, blobs_fd, name, owner_uid, source):
        """Copy one blob into the store if its content is its name. ``owner_uid``: the HOME's
        owner, who alone may own the file (None: an earlier version's shared cache). Returns
        "published", "present" or "refused"."""
        if self._in_store(repo, name):
            return "present"
        fd = self._open_blob(hub_fd, repo, blobs_fd, name)
        if fd is None:
            return "refused"
        tmp = None
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if not stat.S_ISREG(st.st_mode) or (owner_uid is not None and st.st_uid != owner_uid) or key in self.rejected:
                return "refused"
            os.set_blocking(fd, True)
            began = time.monotonic()
            tmp = ".%s.%d.%d" % (name, os.getpid(), time.monotonic_ns())
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=self.incoming_fd)
            check = BlobHash(name, st.st_size)
            try:
                while True:
                    data = os.read(fd, COPY_CHUNK)
                    if not data:
                        break
                    check.update(data)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(out, view):]
                if not check.matches():
                    if len(self.rejected) > 100000:
                        self.rejected.clear()
                    self.rejected.add(key)
                    log("refused %s/blobs/%s from %s: its content is not what its name says" % (repo, name, source))
                    return "refused"
                os.fchmod(out, BLOB_MODE)
                os.fsync(out)
            finally:
                os.close(out)
            repo_fd = fsops.ensure_dir(self.store_hub_fd, repo, STORE_MODE, self.owner)
            try:
                store_blobs = fsops.ensure_dir(repo_fd, "blobs", STORE_MODE, self.owner)
            finally:
                os.close(repo_fd)
            try:
                os.link(tmp, name, src_dir_fd=self.incoming_fd, dst_dir_fd=store_blobs)
            except FileExistsError:
                return "present"
            finally:
                os.close(store_blobs)
            log("published %s/blobs/%s (%d bytes, verified in %.3f s) from %s" % (
                repo, name, st.st_size, time.monotonic() - began, source))
            return "published"
        except OSError as exc:
            log("could not publish %s/blobs/%s from %s: %s" % (repo, name, source, exc))
            return "refused"
        finally:
            os.close(fd)
            if tmp is not None:
                try:
                    os.unlink(tmp, dir_fd=self.incoming_fd)
                except OSError:
                    pass

    def _publish_repo(self, hub_fd, repo, owner_uid, source):
        try:
            blobs_fd = fsops.open_path(hub_fd, (repo, "blobs"))
        except OSError:
            return 0
        published = 0
        try:
            for name in fsops.entries(blobs_fd):
                if is_blob_name(name):
                    published += self.publish_blob(hub_fd, repo, blobs_fd, name, owner_uid, source) == "published"
        finally:
            os.close(blobs_fd)
        return published

    def _home_hub(self, name):
        """(fd of home/<name>/.cache/huggingface/hub, the HOME's owner), or None."""
        try:
            home_fd = fsops.open_dir(self.homes_fd, name)
        except OSError:
            return None
        try:
            owner = os.fstat(home_fd).st_uid
            return fsops.open_path(home_fd, USER_HUB), owner
        except OSError:
            return None
        finally:
            os.close(home_fd)

    def publish_blob_at(self, parts):
        """A blob event at ``parts`` (home, <user>, .cache, huggingface, hub, <repo>, blobs, <name>)."""
        found = self._home_hub(parts[1])
        if found is None:
            return
        hub_fd, owner = found
        try:
            repo, name = parts[-3], parts[-1]
            try:
                blobs_fd = fsops.open_path(hub_fd, (repo, "blobs"))
            except OSError:
                return
            try:
                self.publish_blob(hub_fd, repo, blobs_fd, name, owner, "%s's cache" % parts[1])
            finally:
                os.close(blobs_fd)
        finally:
            os.close(hub_fd)

    # -- looking and watching --------------------------------------------------------------

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
        parts = self._watches.pop(wd, None)
        self._watched.pop(parts, None)
        if parts is not None and len(parts) == BLOBS_DEPTH - 1:
            self._repo_watches[parts[1]] = max(0, self._repo_watches.get(parts[1], 1) - 1)

    def keep(self, rescan_every=RESCAN_EVERY):
        """Set up, migrate an earlier layout, publish what is there, then watch for as long as
        this process lives."""
        import ctypes

        self.set_up()
        self.migrate_legacy()
        self._inotify = ctypes.CDLL(None, use_errno=True)
        self._ifd = self._inotify.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._ifd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.scan()
        self.stamp()
        log("watching %s (%d folders)" % (self.root, len(self._watches)))
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

    def stamp(self):
        """Touch the stamp (root's, 0644) so that doctor can tell the keeper runs."""
        try:
            fd = os.open(STAMP, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644,
                         dir_fd=self.root_fd)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
                os.utime(fd)
        finally:
            os.close(fd)


def no_new_privileges():
    """PR_SET_NO_NEW_PRIVS on this process (and what it starts, which is nothing): where the
    container's runtime could not set it (a Swarm service), the keeper sets it itself."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(38, *(ctypes.c_ulong(v) for v in (1, 0, 0, 0)))
    except (OSError, AttributeError):
        pass


USAGE = ("usage: keeper.py ROOT [--police-homes] [--max-watches N] [--rescan-every S]\n"
         "       keeper.py ROOT --prepare-home NAME UID GID\n")


def main(argv=None):
    """``keeper.py ROOT``: set ROOT up and keep it (runs until killed). ``--prepare-home NAME UID
    GID``: set it up, make NAME's HOME, print what was done as JSON, exit. ``--police-homes``: the
    host's users are known here (the admin's keeper)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        root = args.pop(0)
        options = {"--police-homes": False, "--max-watches": 0, "--rescan-every": RESCAN_EVERY}
        prepare = None
        while args:
            flag = args.pop(0)
            if flag == "--prepare-home":
                name, uid, gid = args.pop(0), int(args.pop(0)), int(args.pop(0))
                prepare = (name, uid, gid)
            elif flag == "--police-homes":
                options[flag] = True
            elif flag in ("--max-watches", "--rescan-every"):
                options[flag] = type(options[flag])(args.pop(0))
            else:
                raise ValueError(flag)
    except (IndexError, ValueError):
        sys.stderr.write(USAGE)
        return 2
    no_new_privileges()
    keeper = Keeper(root, (os.getuid(), os.getgid()), police_homes=options["--police-homes"],
                    max_watches=options["--max-watches"])
    if prepare is not None:
        keeper.set_up()
        print(json.dumps(keeper.prepare_home(*prepare)))
        return 0
    keeper.keep(options["--rescan-every"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
