"""The steps a library takes in the shared cache (huggingface_hub: a filelock lock file, a
temp file beside the blobs, the mode the umask gives, a rename into place), as kernel cells, and
the trespasses that must fail: for tests/test_shared_cache.py and tests/test_rootless.py."""

from __future__ import annotations

import json

# The first cell of every kernel here: the library steps, and a way to try what must fail.
LIBRARY = r"""
import errno, fcntl, json, os, stat, tempfile, time
try:
    from filelock import FileLock
except ImportError:  # an image without it: the same steps filelock takes (open, flock)
    class FileLock:
        def __init__(self, path, timeout):
            self.path = path
        def __enter__(self):
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        def __exit__(self, *exc):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
LOCKS = FileLock.__module__.split(".")[0]  # "filelock", or "__main__" for the stand-in
HUB = os.path.join(os.environ["HF_HOME"], "hub")
HOMES = os.path.dirname(os.environ["HOME"])

def download(repo, name, text):
    blobs, locks = os.path.join(HUB, repo, "blobs"), os.path.join(HUB, ".locks", repo)
    os.makedirs(blobs, exist_ok=True)
    os.makedirs(locks, exist_ok=True)
    with FileLock(os.path.join(locks, name + ".lock"), timeout=30):
        fd, tmp = tempfile.mkstemp(dir=blobs, suffix=".incomplete")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        probe = tmp + ".mode"  # the mode a new file gets here (umask, default ACLs)
        open(probe, "w").close()
        os.chmod(tmp, stat.S_IMODE(os.stat(probe).st_mode))
        os.remove(probe)
        os.replace(tmp, os.path.join(blobs, name))
    return os.path.join(blobs, name)

def load(repo, name):
    with FileLock(os.path.join(HUB, ".locks", repo, name + ".lock"), timeout=30):
        with open(os.path.join(HUB, repo, "blobs", name)) as f:
            return f.read()

def read_cached(repo, name):
    # huggingface_hub takes the lock only to download; a file in the cache is read as it is.
    with open(os.path.join(HUB, repo, "blobs", name)) as f:
        return f.read()

def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def when_shared(paths, timeout=10):
    # The cache's keeper makes new folders (and lock files) the box's right after they appear.
    deadline = time.monotonic() + timeout
    while True:
        found = {os.path.relpath(p, HUB): [oct(stat.S_IMODE(os.lstat(p).st_mode)), os.lstat(p).st_uid] for p in paths}
        if all(mode in ("0o1777", "0o666") for mode, _ in found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)

def trespass(owner, repo, name):
    blob = os.path.join(HUB, repo, "blobs", name)
    fd, mine = tempfile.mkstemp(dir=os.path.dirname(blob))
    os.close(fd)
    return {
        "delete": attempt(lambda: os.remove(blob)),
        "modify": attempt(lambda: open(blob, "r+").write("poisoned")),
        "replace": attempt(lambda: os.replace(mine, blob)),
        "chmod": attempt(lambda: os.chmod(blob, 0o666)),
        "move_folder": attempt(lambda: os.rename(os.path.dirname(blob), os.path.dirname(blob) + ".moved")),
        "read_home": attempt(lambda: os.listdir(os.path.join(HOMES, owner))),
        "content": open(blob).read(),
    }
"""

A_DOWNLOADS = r"""
blob = download("models--lab--tiny", "weights", "weights of A")
locks = os.path.join(HUB, ".locks", "models--lab--tiny")
print(json.dumps({"locks": LOCKS, "blob": oct(stat.S_IMODE(os.stat(blob).st_mode)), "shared": when_shared(
    [HUB, os.path.dirname(blob), os.path.dirname(os.path.dirname(blob)), locks, os.path.join(locks, "weights.lock")])}))
"""

B_LOADS_AND_ADDS = r"""
r = {"read": load("models--lab--tiny", "weights")}
r["own"] = open(download("models--lab--tiny", "extra", "B's own")).read()
r.update(trespass("mlctest", "models--lab--tiny", "weights"))
print(json.dumps(r))
"""

A_USES_B_FILE = r"""
r = {"read": read_cached("models--lab--tiny", "extra")}
r.update(trespass("mlctest2", "models--lab--tiny", "extra"))
print(json.dumps(r))
"""

DENIED = {"delete": "EPERM", "modify": "EACCES", "replace": "EPERM", "chmod": "EPERM",
          "move_folder": "EPERM", "read_home": "EACCES"}


def cell_json(run: dict, index: int) -> dict:
    status, out = run["cells"][index]
    assert status == "ok", run
    return json.loads(out.strip().splitlines()[-1])
