"""Kernel cells for the shared cache's tests (tests/test_shared_cache.py, tests/test_rootless.py):
the steps huggingface_hub takes in a user's hub cache (a filelock lock file, a temp file beside the
blobs, a rename into place under the blob's hash), and everything another user might try on what
is shared or on someone else's HOME, which must fail."""

from __future__ import annotations

import json

# The first cell of every kernel here.
LIBRARY = r"""
import errno, fcntl, hashlib, json, os, stat, tempfile, time
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
HUB = os.environ["HF_HUB_CACHE"]
CACHE = "/opt/mlcontainer/cache"
STORE = CACHE + "/models/huggingface/hub"
HOMES = os.path.dirname(os.environ["HOME"])
CACHE_VARS = ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "PIP_CACHE_DIR", "UV_CACHE_DIR",
              "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "CUDA_CACHE_PATH", "KERAS_HOME", "CONDA_PKGS_DIRS")

def download(repo, text):
    # huggingface_hub's steps: a lock, a temp file beside the blobs, a rename to the blob's hash
    name = hashlib.sha256(text.encode()).hexdigest()
    blobs, locks = os.path.join(HUB, repo, "blobs"), os.path.join(HUB, ".locks", repo)
    os.makedirs(blobs, exist_ok=True)
    os.makedirs(locks, exist_ok=True)
    with FileLock(os.path.join(locks, name + ".lock"), timeout=30):
        fd, tmp = tempfile.mkstemp(dir=blobs, suffix=".incomplete")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(blobs, name))
    return name

def plant(repo, name, text):
    # a file under a hash name that is not its content's
    blobs = os.path.join(HUB, repo, "blobs")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(blobs, name), "w") as f:
        f.write(text)

def published(repo, name, timeout=30):
    # the keeper copies a verified blob into the store right after it appears
    path = os.path.join(STORE, repo, "blobs", name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True

def in_my_cache(repo, name):
    path = os.path.join(HUB, repo, "blobs", name)
    if not os.path.lexists(path):
        return None
    with open(path) as f:
        return {"link": os.path.islink(path), "to_store": os.path.realpath(path).startswith(STORE + "/"), "text": f.read()}

def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def mine():
    home = os.environ["HOME"]
    st = os.stat(home)
    return {"home_private": [oct(stat.S_IMODE(st.st_mode)), st.st_uid == os.getuid()],
            "caches_in_home": sorted(v for v in CACHE_VARS if not os.environ[v].startswith(home + "/"))}

def trespass(other, repo, name):
    # what must fail for anyone: altering the store, adding to it or to the cache's top, and
    # anything in another user's HOME
    blob = os.path.join(STORE, repo, "blobs", name)
    other_home = os.path.join(HOMES, other)
    return {
        "store_delete": attempt(lambda: os.remove(blob)),
        "store_modify": attempt(lambda: open(blob, "r+").write("poisoned")),
        "store_replace": attempt(lambda: os.rename(tempfile.mkstemp(dir=HUB)[1], blob)),
        "store_chmod": attempt(lambda: os.chmod(blob, 0o666)),
        "store_add": attempt(lambda: open(os.path.join(os.path.dirname(blob), "0" * 64), "w").close()),
        "top_add": attempt(lambda: os.symlink(HUB, os.path.join(CACHE, "triton"))),
        "other_home_list": attempt(lambda: os.listdir(other_home)),
        "other_home_plant": attempt(lambda: open(os.path.join(other_home, "x.pth"), "w").close()),
        "store_content": open(blob).read(),
    }
"""

A_DOWNLOADS = r"""
name = download("models--lab--tiny", "weights of A")
print(json.dumps({"name": name, "published": published("models--lab--tiny", name), **mine()}))
"""

# B's kernel started after A's download was published: B has it through a link to the store.
B_LOADS = r"""
name = hashlib.sha256(b"weights of A").hexdigest()
r = {"mine": in_my_cache("models--lab--tiny", name), **mine()}
r.update(trespass("mlctest", "models--lab--tiny", name))
print(json.dumps(r))
"""

DENIED = {"store_delete": "EACCES", "store_modify": "EACCES", "store_replace": "EACCES", "store_chmod": "EPERM",
          "store_add": "EACCES", "top_add": "EACCES", "other_home_list": "EACCES", "other_home_plant": "EACCES"}


def cell_json(run: dict, index: int) -> dict:
    status, out = run["cells"][index]
    assert status == "ok", run
    return json.loads(out.strip().splitlines()[-1])
