"""The cache's keeper as an admin runs it on the host (``jupyter mlcontainer cache-keeper PATH``)
for users with an engine each, against what real OS users of the box do in the folder: it never
follows a link, never blocks, never changes a file of theirs, keeps its memory and inotify
watches bounded whatever one user piles up, and publishes only blobs whose content is their name
(issue 22, findings 8 and 9, and the model store's rule). The same keeper runs in a container for
a rootful engine's volume: tests/test_shared_cache.py."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from .box_users import OTHER_USER, REPO, TEST_USER, users_ready

HUB = ".cache/huggingface/hub"


def as_user(user: str, code: str, *args: str, timeout: float = 600) -> str:
    """Run ``code`` with Debian's python3 as ``user`` (a real OS user of the box); its stdout."""
    done = subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", code, *args],
                          capture_output=True, text=True, timeout=timeout, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class RunningKeeper:
    def __init__(self, path: str) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_mlcontainer.cache.scripts.keeper", path, "--police-homes"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The keeper's first output line holding ``text`` (it is never silent for long:
        each step it takes is a line)."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the keeper exited: {self.proc.stderr.read()[-2000:]}")
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the keeper never said {text!r}: {self.lines[-20:]}")

    def status(self, field: str) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

    def inotify_watches(self) -> int:
        count = 0
        for fd in os.listdir(f"/proc/{self.proc.pid}/fdinfo"):
            with open(f"/proc/{self.proc.pid}/fdinfo/{fd}") as f:
                count += sum(line.startswith("inotify wd:") for line in f)
        return count

    def stop(self) -> None:
        assert self.proc.poll() is None, self.proc.stderr.read()  # it was still running
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def folder():
    """A cache folder as an admin made it by the earlier instructions (1777, no keeper yet)."""
    if not users_ready():
        subprocess.run(["bash", os.path.join(REPO, "scripts", "setup-test-user.sh")], check=True)
    path = tempfile.mkdtemp(prefix="mlctest-keeper-", dir="/srv")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def keeper(folder):
    running = RunningKeeper(folder)
    running.wait_for("watching")
    yield running
    running.stop()


def mode_owner(path: str) -> tuple[str, int]:
    st = os.lstat(path)
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid


def test_the_hosts_keeper_follows_no_link_blocks_on_no_fifo_and_changes_no_users_file(folder):
    """Before the keeper first runs, A makes ``home`` a link to a folder of A's holding a folder
    named after B (finding 8: the earlier keeper made B's HOME root 1777 through it), a FIFO at
    the keeper's stamp (finding 9: it blocked the keeper for good) and a Cargo.lock (finding 9:
    made root's 0666). The keeper sets each aside, makes the layout, and changes nothing of A's."""
    a, b = TEST_USER, OTHER_USER
    as_user(a, "import os, sys\n"
               "top = sys.argv[1]\n"
               "os.makedirs(top + '/pub/mlctest2/.ipython', mode=0o755)\n"
               "open(top + '/pub/Cargo.lock', 'w').write('data')\n"
               "os.chmod(top + '/pub/Cargo.lock', 0o644)\n"
               "os.symlink('pub', top + '/home')\n"
               "os.mkfifo(top + '/.mlcontainer-keeper')\n", folder)
    running = RunningKeeper(folder)
    try:
        running.wait_for("watching")
        assert mode_owner(folder) == ("0o755", 0)
        assert mode_owner(os.path.join(folder, "home")) == ("0o1777", 0) and os.path.isdir(os.path.join(folder, "home"))
        stamp = os.lstat(os.path.join(folder, ".mlcontainer-keeper"))
        assert stat.S_ISREG(stamp.st_mode) and stamp.st_uid == 0
        aside = os.path.join(folder, "set-aside")
        assert mode_owner(aside) == ("0o700", 0)
        names = sorted(os.listdir(aside))
        assert [n.split("-2")[0] for n in names] == ["home", "legacy", "stamp"], names
        legacy = os.path.join(aside, next(n for n in names if n.startswith("legacy")), "pub")
        a_uid = int(as_user(a, "import os; print(os.getuid())"))
        assert mode_owner(os.path.join(legacy, "mlctest2")) == ("0o755", a_uid)  # nothing of A's changed
        assert mode_owner(os.path.join(legacy, "Cargo.lock")) == ("0o644", a_uid)

        # B makes its HOME; A makes a folder at the name of the user nobody: the keeper sets A's
        # aside (so it has seen B's too, which came first) and leaves B's as B made it.
        as_user(b, "import os, sys; os.mkdir(sys.argv[1] + '/home/mlctest2', 0o700)", folder)
        as_user(a, "import os, sys; os.mkdir(sys.argv[1] + '/home/nobody')", folder)
        running.wait_for("home/nobody (a folder of uid")
        b_uid = int(as_user(b, "import os; print(os.getuid())"))
        assert mode_owner(os.path.join(folder, "home", "mlctest2")) == ("0o700", b_uid)
        assert not os.path.lexists(os.path.join(folder, "home", "nobody"))
    finally:
        running.stop()


FLOOD = r"""
import os, sys
hub = os.path.join(sys.argv[1], "home", "mlctest", ".cache", "huggingface", "hub")
blobs = os.path.join(hub, "models--flood--entries", "blobs")
os.makedirs(blobs)
for i in range(int(sys.argv[2])):
    os.close(os.open(os.path.join(blobs, "entry-%07d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
for i in range(int(sys.argv[2])):
    os.mkdir(os.path.join(hub, "models--flood--f%07d" % i))
"""

DOWNLOAD = r"""
import hashlib, os, sys, tempfile
text = sys.argv[2].encode()
blobs = os.path.join(sys.argv[1], "home", sys.argv[3], ".cache", "huggingface", "hub", "models--lab--" + sys.argv[3], "blobs")
os.makedirs(blobs, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=blobs, suffix=".incomplete")
os.write(fd, text)
os.close(fd)
os.replace(tmp, os.path.join(blobs, hashlib.sha256(text).hexdigest()))
"""


def test_one_users_flood_neither_kills_the_keeper_nor_starves_the_others(keeper):
    """Finding 9: a folder of 200,000 entries and 200,000 repository folders in A's cache. The
    keeper lists folders one name at a time (its memory stays far below the 128 MB its container
    gets), watches at most 1,000 repositories per HOME (root's inotify budget is not exhausted),
    and still publishes B's download."""
    folder = keeper.path
    for user in (TEST_USER, OTHER_USER):
        as_user(user, "import os, sys; os.mkdir(os.path.join(sys.argv[1], 'home', sys.argv[2]), 0o700)", folder, user)
    baseline = keeper.status("VmRSS")
    as_user(TEST_USER, FLOOD, folder, "200000", timeout=900)
    as_user(OTHER_USER, DOWNLOAD, folder, "weights of B", OTHER_USER)
    name = hashlib.sha256(b"weights of B").hexdigest()
    keeper.wait_for(f"published models--lab--mlctest2/blobs/{name}", timeout=300)
    assert os.path.isfile(os.path.join(folder, "models", "huggingface", "hub", "models--lab--mlctest2", "blobs", name))
    peak = keeper.status("VmHWM")
    assert peak < 64 * 1024, f"peak {peak} kB"  # KiB; the container keeper's limit is 128 MB
    assert peak - baseline < 16 * 1024, (baseline, peak)  # not one name of the 200,000 is kept
    assert keeper.inotify_watches() <= 1000 + 50, keeper.inotify_watches()


BLOBS = r"""
import hashlib, json, os, sys
hub = os.path.join(sys.argv[1], "home", "mlctest", ".cache", "huggingface", "hub")
blobs = os.path.join(hub, "models--lab--rules", "blobs")
os.makedirs(blobs)
def sha(data): return hashlib.sha256(data).hexdigest()
def put(name, data):
    with open(os.path.join(blobs, name), "wb") as f:
        f.write(data)
names = {}
passwd = open("/etc/passwd", "rb").read()
names["absolute_link"] = sha(passwd)
os.symlink("/etc/passwd", os.path.join(blobs, names["absolute_link"]))
names["escaping_link"] = sha(b"x")
os.symlink("../../../../../../../../etc/passwd", os.path.join(blobs, names["escaping_link"]))
names["fifo"] = sha(b"fifo")
os.mkfifo(os.path.join(blobs, names["fifo"]))
names["wrong_content"] = sha(b"what the name says")
put(names["wrong_content"], b"something else")
config = b'{"a": 1}'
names["git_sha1"] = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
put(names["git_sha1"], config)
shared = os.path.join(hub, "blobs", "ab")  # huggingface_hub 2.4's own store, inside the same cache
os.makedirs(shared)
names["hub_shared_link"] = sha(b"weights in the hub's own store")
with open(os.path.join(shared, "x" * 64), "wb") as f:
    f.write(b"weights in the hub's own store")
os.symlink("../../blobs/ab/" + "x" * 64, os.path.join(blobs, names["hub_shared_link"]))
names["last"] = sha(b"the last one")
put(names["last"], b"the last one")
print(json.dumps(names))
"""


def test_only_blobs_whose_content_is_their_name_are_published(keeper):
    """What the keeper copies into the store: SHA-256 blobs and git SHA-1 blobs whose content
    matches, and huggingface_hub's own relative links inside the same cache; never a link out
    (absolute, or climbing out of the hub cache), never a FIFO, never a file whose content is not
    its name. Published files are root's and read-only."""
    folder = keeper.path
    as_user(TEST_USER, "import os, sys; os.mkdir(os.path.join(sys.argv[1], 'home', 'mlctest'), 0o700)", folder)
    names = json.loads(as_user(TEST_USER, BLOBS, folder))
    # One more blob, written after all those: once it is published, the keeper has looked at them.
    final = as_user(TEST_USER, "import hashlib, os, sys\n"
                    "p = os.path.join(sys.argv[1], 'home/mlctest/.cache/huggingface/hub/models--lab--rules/blobs')\n"
                    "open(os.path.join(p, hashlib.sha256(b'final').hexdigest()), 'wb').write(b'final')\n"
                    "print(hashlib.sha256(b'final').hexdigest())", folder).strip()
    keeper.wait_for(f"published models--lab--rules/blobs/{final}")
    names["final"] = final
    store = os.path.join(folder, "models", "huggingface", "hub", "models--lab--rules", "blobs")
    published = {kind for kind, name in names.items() if os.path.exists(os.path.join(store, name))}
    assert published == {"git_sha1", "hub_shared_link", "last", "final"}, published
    for name in os.listdir(store):
        assert mode_owner(os.path.join(store, name)) == ("0o444", 0)
    assert mode_owner(store) == ("0o755", 0)
