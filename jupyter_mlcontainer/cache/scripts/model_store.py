"""The keeper's model store: a blob a user downloaded is copied into ``models/huggingface/hub/
<repo>/blobs/<hash>``, hashed while it is copied, and published (root's, read-only) only when
its content is its name (docs/security.md, "The shared cache").

Part of the cache keeper (keeper.py, whose :class:`~keeper.Keeper` is made of this module's
:class:`BlobPublisher` and watches.py's watcher); also where the keeper's :func:`log` lives, the
one module every part of it imports. Standard library only: it runs in the trusted helper image
as a plain file next to keeper.py, and in the package (the admin's keeper on the host).
"""

import errno
import os
import stat
import sys
import time

try:  # in the package (the server, the admin's keeper) or as plain files (the helper image)
    from . import fsops
    from .layout import BLOB_MODE, STORE_MODE, USER_HUB, BlobHash, is_blob_name
except ImportError:
    import fsops
    from layout import BLOB_MODE, STORE_MODE, USER_HUB, BlobHash, is_blob_name

COPY_CHUNK = 1 << 20
MAX_REJECTED = 100000  # files remembered as not their name's content; then the memory starts over


def log(message):
    """One line of the keeper's log on stdout (a container's log; the admin's service journal),
    flushed at once: the tests and doctor read it as it comes."""
    sys.stdout.write("cache keeper: %s\n" % message)
    sys.stdout.flush()


class BlobPublisher:
    """The publishing half of :class:`~keeper.Keeper` (a mixin). It uses what the keeper's
    set-up opened: ``homes_fd``, ``store_hub_fd``, ``incoming_fd``, ``owner``, and ``rejected``
    (the files already found not to be their name's content, never hashed twice)."""

    def _in_store(self, repo, name):
        """Whether the store holds ``<repo>/blobs/<name>`` already (then there is nothing to copy)."""
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
        "published", "present" or "refused". Called for each blob a scan or an event finds."""
        if self._in_store(repo, name):
            return "present"
        fd = self._open_blob(hub_fd, repo, blobs_fd, name)
        if fd is None:
            return "refused"
        tmp = None
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            theirs = owner_uid is None or st.st_uid == owner_uid
            if not stat.S_ISREG(st.st_mode) or not theirs or key in self.rejected:
                return "refused"
            os.set_blocking(fd, True)
            began = time.monotonic()
            tmp = ".%s.%d.%d" % (name, os.getpid(), time.monotonic_ns())
            if not self._copy_verified(fd, tmp, BlobHash(name, st.st_size)):
                if len(self.rejected) > MAX_REJECTED:
                    self.rejected.clear()
                self.rejected.add(key)
                log("refused %s/blobs/%s from %s: its content is not what its name says" % (repo, name, source))
                return "refused"
            if not self._link_into_store(tmp, repo, name):
                return "present"
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

    def _copy_verified(self, fd, tmp, check):
        """Copy the open blob ``fd`` to ``tmp`` in the store's .incoming (root's alone), hashing
        what is read; whether the copy is the content its name says (then it is read-only and on
        disk). The copy is what gets published: the user's file may change after it was hashed."""
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=self.incoming_fd)
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
                return False
            os.fchmod(out, BLOB_MODE)
            os.fsync(out)
            return True
        finally:
            os.close(out)

    def _link_into_store(self, tmp, repo, name):
        """Link the verified copy ``tmp`` in as the store's ``<repo>/blobs/<name>``; False when
        the store has it already (another keeper published it meanwhile)."""
        repo_fd = fsops.ensure_dir(self.store_hub_fd, repo, STORE_MODE, self.owner)
        try:
            store_blobs = fsops.ensure_dir(repo_fd, "blobs", STORE_MODE, self.owner)
        finally:
            os.close(repo_fd)
        try:
            os.link(tmp, name, src_dir_fd=self.incoming_fd, dst_dir_fd=store_blobs)
        except FileExistsError:
            return False
        finally:
            os.close(store_blobs)
        return True

    def _publish_repo(self, hub_fd, repo, owner_uid, source):
        """Publish every blob of one repository of a hub cache; how many were new to the store."""
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
