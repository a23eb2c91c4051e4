"""The cache's layout and the rule that decides what may be shared: standard library only.

This module runs in three places: the Jupyter server (``jupyter_mlcontainer.cache``), the
trusted helper image (as a plain file next to ``keeper.py``), and the admin's keeper on the host.

The rule (docs/security.md, "The shared cache"): what one user writes never becomes another
user's code or data unless its content is verified. So the cache holds two kinds of places:

* ``home/<user>``: each user's own HOME (mode 0700), where every cache that can hold code or
  credentials lives (Python and compiler caches, torch hub code, pip/uv/conda packages, Hugging
  Face tokens and ``modules/``). Nobody else reads or writes it.
* ``models/``: the shared model store. Only the keeper writes there, and only files whose name is
  their content's hash (Hugging Face blobs: SHA-256 for LFS files, git's SHA-1 for the others),
  copied and hashed by the keeper itself before anyone else can read them, then read-only.
"""

import hashlib
import re

HOMES = "home"  # <cache>/home/<user>: root's, 1777 (sticky): each user makes and owns their own
STORE = "models"  # <cache>/models: root's, 0755; written by the keeper alone
SET_ASIDE = "set-aside"  # <cache>/set-aside: root's, 0700: what was found where it must not be
STAMP = ".mlcontainer-keeper"  # touched by a running keeper: doctor reads its age
TOP_NAMES = (HOMES, STORE, SET_ASIDE, STAMP)
LAYOUT = "verified-v3"  # the set-up's mark (earlier: "initialised", "shared-v2")

HOMES_MODE = 0o1777
STORE_MODE = 0o755
SET_ASIDE_MODE = 0o700
BLOB_MODE = 0o444
STAMP_EVERY = 60.0

# Where a user's Hugging Face hub cache is, under their HOME (HF_HUB_CACHE, set by the
# provisioner), and where its verified copies are, under the cache's root.
USER_HUB = (".cache", "huggingface", "hub")
STORE_HUB = (STORE, "huggingface", "hub")
INCOMING = (STORE, ".incoming")  # root's 0700: copies being hashed

# A hub cache's repository folders (models--org--name, datasets--..., spaces--...) and blob names.
REPO_FOLDER = re.compile(r"^(models|datasets|spaces)--[A-Za-z0-9][A-Za-z0-9._-]*(--[A-Za-z0-9._-]+)*$")
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1_NAME = re.compile(r"^[0-9a-f]{40}$")
# A user name as a HOME's folder name (what the provisioner uses): no path separators, no dots first.
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")


def is_blob_name(name):
    """A name a blob's content can be checked against: SHA-256 (LFS files) or git's SHA-1."""
    return bool(SHA256_NAME.match(name) or GIT_SHA1_NAME.match(name))


class BlobHash:
    """Hash a blob's bytes as its name says: SHA-256 of the content for 64 hex digits, git's
    blob SHA-1 (``blob <size>\\0`` + content) for 40. ``size`` is needed up front for git's header;
    a content of another size never matches."""

    def __init__(self, name, size):
        self.name, self.size, self.seen = name, size, 0
        if SHA256_NAME.match(name):
            self._hash = hashlib.sha256()
        elif GIT_SHA1_NAME.match(name):
            self._hash = hashlib.sha1(usedforsecurity=False)  # git's object name, checked with the size
            self._hash.update(b"blob %d\0" % size)
        else:
            raise ValueError("not a blob name: %r" % name)

    def update(self, data):
        """Hash the next bytes of the blob."""
        self.seen += len(data)
        self._hash.update(data)

    def matches(self):
        """Whether all the bytes hashed are the blob its name says (size and hash)."""
        return self.seen == self.size and self._hash.hexdigest() == self.name


def blob_matches(name, data):
    """Whether ``data`` (bytes) is the blob called ``name``."""
    check = BlobHash(name, len(data))
    check.update(data)
    return check.matches()
