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

This module is its entry point, its layout and its HOMEs; model_store.py publishes blobs and
watches.py finds them (inotify, periodic looks). All of them travel into the helper image as
plain files side by side (cache/helper_image.py's SCRIPTS, counted in its scripts digest).
"""

import json
import os
import stat
import sys
import time

try:  # in the package (the server, the admin's keeper) or as plain files (the helper image)
    from . import fsops
    from .layout import (
        HOMES, HOMES_MODE, INCOMING, REPO_FOLDER, SET_ASIDE, SET_ASIDE_MODE, STAMP, STORE, STORE_HUB, STORE_MODE,
        TOP_NAMES, USER_NAME,
    )
    from .model_store import BlobPublisher, log
    from .watches import RESCAN_EVERY, FolderWatcher
except ImportError:
    import fsops
    from layout import (
        HOMES, HOMES_MODE, INCOMING, REPO_FOLDER, SET_ASIDE, SET_ASIDE_MODE, STAMP, STORE, STORE_HUB, STORE_MODE,
        TOP_NAMES, USER_NAME,
    )
    from model_store import BlobPublisher, log
    from watches import RESCAN_EVERY, FolderWatcher

TOP_MODE = 0o755
HOME_MODE = 0o700


class Keeper(BlobPublisher, FolderWatcher):
    """The keeper of the cache at ``root``. ``owner``: who owns the shared folders and the store
    (root). ``police_homes``: HOMEs must belong to the user they are named after (the host's
    users; off in a container, which does not know them)."""

    def __init__(self, root, owner=(0, 0), police_homes=False, max_watches=None):
        self.root = os.path.abspath(root)
        self.owner = tuple(owner)
        self.police_homes = police_homes
        self._init_watches(max_watches)
        self.reports = []  # what was set aside, in words
        self.rejected = set()  # (dev, ino, size, mtime) of files whose content is not their name
        self.root_fd = os.open(self.root, fsops.DIR_FLAGS)
        self.aside_fd = self.homes_fd = self.store_hub_fd = self.incoming_fd = -1

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
            self.incoming_fd = fsops.ensure_dir(
                store_fd, INCOMING[1], SET_ASIDE_MODE, self.owner, aside, "models-incoming")
        finally:
            os.close(store_fd)
        self._clear_incoming()
        st = fsops.lstat_at(self.root_fd, STAMP)
        if st is not None and not (stat.S_ISREG(st.st_mode) and st.st_uid == self.owner[0] and st.st_nlink == 1):
            moved = fsops.set_aside(self.root_fd, STAMP, self.aside_fd, "stamp")
            self.reports.append("%s (%s of uid %d) was set aside as %s" % (
                STAMP, fsops.kind_of(st.st_mode), st.st_uid, moved))
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
        """An fd of set-aside/ (root's, 0700), made by :meth:`set_up` before anything is set aside."""
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
        legacy = [name for name in fsops.entries(self.root_fd)
                  if name not in TOP_NAMES and not name.startswith(".mlc-")]
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
        message = ("the earlier version's shared folders (%s) were set aside in %s/%s: nothing in them is used "
                   "any more; remove it when you no longer need it" % (", ".join(sorted(legacy)), SET_ASIDE, folder))
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

    # -- its life --------------------------------------------------------------------------

    def keep(self, rescan_every=RESCAN_EVERY):
        """Set up, migrate an earlier layout, publish what is there, then watch for as long as
        this process lives."""
        self.set_up()
        self.migrate_legacy()
        self._start_watching()
        self.scan()
        self.stamp()
        log("watching %s (%d folders)" % (self.root, len(self._watches)))
        self._watch_forever(rescan_every)

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
