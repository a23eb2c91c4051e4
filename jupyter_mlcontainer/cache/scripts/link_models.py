"""Run by every kernel's bootstrap, as the kernel's user, before the kernel: link the model
store's verified blobs into the user's own Hugging Face hub cache.

huggingface_hub asks the hub which blob a file is (its etag, a hash) and downloads it only when
``<hub cache>/<repo>/blobs/<etag>`` is missing. A link there to the store's verified, read-only
copy (keeper.py) makes it load the model another user downloaded without downloading it again;
the hub's own answer still decides which blob a file is, so nothing another user says about a
repository (refs, snapshots) is taken. A blob the user downloaded themselves that the store holds
too becomes a link, so a shared model takes its disk space once.

Only names are compared and links made: nothing is read, and a repo folder is looked at again
only when the store's folder changed (its mtime, kept in ``.mlcontainer-links.json`` beside the
hub cache: a file inside it would be a "corrupted repo" to huggingface_hub's cache scan).
Self-contained (the bootstrap runs this file's text with the image's own Python): standard library
only, no import of the package.
"""

import json
import os
import re
import stat

_REPO = re.compile(r"^(models|datasets|spaces)--[A-Za-z0-9][A-Za-z0-9._-]*(--[A-Za-z0-9._-]+)*$")
_BLOB = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
_STATE = ".mlcontainer-links.json"


def link_models(store_hub, hub):
    """Link every blob of ``store_hub`` (the store's hub folder) missing from ``hub`` (the
    user's hub cache). Returns the number of links made. Never raises for what it finds: a
    kernel starts whatever the store or the cache hold."""
    try:
        repos = sorted(name for name in os.listdir(store_hub) if _REPO.match(name))
    except OSError:
        return 0
    state_path = os.path.join(os.path.dirname(os.path.normpath(hub)), _STATE)
    try:
        with open(state_path) as f:
            seen = json.load(f)
        if not isinstance(seen, dict):
            seen = {}
    except (OSError, ValueError):
        seen = {}
    made = 0
    changed = False
    for repo in repos:
        store_blobs = os.path.join(store_hub, repo, "blobs")
        try:
            mark = os.lstat(store_blobs).st_mtime_ns
        except OSError:
            continue
        if seen.get(repo) == mark:
            continue
        mine = os.path.join(hub, repo, "blobs")
        try:
            os.makedirs(mine, exist_ok=True)
            # huggingface_hub's cache scan reports a repo folder without snapshots/ as corrupted
            os.makedirs(os.path.join(hub, repo, "snapshots"), exist_ok=True)
            names = [name for name in os.listdir(store_blobs) if _BLOB.match(name)]
        except OSError:
            continue
        for name in names:
            made += _link_one(os.path.join(store_blobs, name), os.path.join(mine, name))
        seen[repo] = mark
        changed = True
    if changed:
        try:
            os.makedirs(os.path.dirname(state_path), exist_ok=True)
            tmp = "%s.%d" % (state_path, os.getpid())
            with open(tmp, "w") as f:
                json.dump(seen, f)
            os.replace(tmp, state_path)
        except OSError:
            pass
    return made


def _link_one(source, target):
    """Link ``target`` to ``source``; replace a regular file of the same size there (the user's
    own download of the same blob). Returns 1 when a link was made."""
    relative = os.path.relpath(source, os.path.dirname(target))
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError:
        return 0
    if st is not None:
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
            return 0
        try:
            if os.stat(source).st_size != st.st_size:
                return 0
        except OSError:
            return 0
    try:
        tmp = "%s.mlc-link.%d" % (target, os.getpid())
        os.symlink(relative, tmp)
        os.replace(tmp, target)
        return 1
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return 0


def link_models_from_env(environ):
    """What the bootstrap calls: the store under ``MLCONTAINER_CACHE`` (the cache's mount), the
    user's hub cache where huggingface_hub will look (HF_HUB_CACHE, or HF_HOME's hub)."""
    root = environ.pop("MLCONTAINER_CACHE", None)
    if not root:
        return 0
    hub = environ.get("HF_HUB_CACHE")
    if not hub:
        hf_home = environ.get("HF_HOME")
        if not hf_home:
            hf_home = os.path.join(environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
        hub = os.path.join(hf_home, "hub")
    return link_models(os.path.join(root, "models", "huggingface", "hub"), hub)
