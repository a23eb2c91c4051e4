"""The cache keeper's rules on a real folder, with real inotify (no engine needed): folders the
keeper's owner's with 1777, lock files 0666, other files and HOMEs untouched, symlinks never
followed, also when a folder is swapped for one mid-walk. CI runs as root, so "the box's"
owner is played by uid/gid 4321 and the users by the test process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from jupyter_mlcontainer.cache_keeper import Keeper

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="changing owners needs root (CI runs as root)")
BOX = (4321, 4321)


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner(path: str) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def make_tree(root: str) -> dict[str, str]:
    paths = {
        "models": os.path.join(root, "huggingface", "hub", "models--org--m"),
        "blob": os.path.join(root, "huggingface", "hub", "models--org--m", "blobs", "abc"),
        "lock": os.path.join(root, "huggingface", "hub", ".locks", "models--org--m", "abc.lock"),
        "linked_lock": os.path.join(root, "huggingface", "hub", ".locks", "two.lock"),
        "home": os.path.join(root, "home", "alice"),
        "home_inner": os.path.join(root, "home", "alice", "inner"),
        "outside": os.path.join(os.path.dirname(root), "outside"),
    }
    os.makedirs(os.path.dirname(paths["blob"]), mode=0o755)
    os.makedirs(os.path.dirname(paths["lock"]), mode=0o755)
    os.makedirs(paths["home_inner"], mode=0o700)
    os.chmod(paths["home"], 0o700)
    os.makedirs(paths["outside"], mode=0o755)
    for name in ("blob", "lock", "linked_lock"):
        with open(paths[name], "w") as f:
            f.write("x")
        os.chmod(paths[name], 0o644)
    os.link(paths["linked_lock"], os.path.join(paths["outside"], "elsewhere"))
    os.symlink(paths["outside"], os.path.join(root, "huggingface", "link-out"))
    return paths


def test_repair_makes_folders_and_lock_files_the_boxs(tmp_path):
    root = str(tmp_path / "cache")
    os.makedirs(root)
    paths = make_tree(root)
    Keeper(root, BOX).repair()
    for folder in (root, paths["models"], os.path.dirname(paths["blob"]), os.path.join(root, "home")):
        assert (owner(folder), mode(folder)) == (BOX, 0o1777), folder
    assert (owner(paths["lock"]), mode(paths["lock"])) == (BOX, 0o666)
    assert (owner(paths["blob"]), mode(paths["blob"])) == ((0, 0), 0o644)  # files: their owner's
    assert (owner(paths["linked_lock"]), mode(paths["linked_lock"])) == ((0, 0), 0o644)  # a second link: never
    assert (owner(paths["home"]), mode(paths["home"])) == ((0, 0), 0o700)  # HOMEs stay their users'
    assert mode(paths["home_inner"]) == 0o700
    assert (owner(paths["outside"]), mode(paths["outside"])) == ((0, 0), 0o755)  # a symlink is not followed


def test_lock_files_can_keep_their_creator(tmp_path):
    root = str(tmp_path / "cache")
    os.makedirs(os.path.join(root, "locks"))
    lock = os.path.join(root, "locks", "x.lock")
    open(lock, "w").close()
    Keeper(root, BOX, locks_to_owner=False).repair()
    assert (owner(lock), mode(lock)) == ((0, 0), 0o666)
    assert owner(os.path.join(root, "locks")) == BOX


def test_a_folder_swapped_for_a_symlink_mid_walk_redirects_nothing(tmp_path):
    """Every component is opened without following symlinks: a path through a swapped folder
    fails to open instead of reaching outside."""
    root = str(tmp_path / "cache")
    victim = str(tmp_path / "victim")
    os.makedirs(os.path.join(victim, "sub"), mode=0o755)
    os.makedirs(os.path.join(root, "a"))
    keeper = Keeper(root, BOX)
    os.rmdir(os.path.join(root, "a"))
    os.symlink(victim, os.path.join(root, "a"))
    keeper.visit(("a", "sub"))
    assert (owner(os.path.join(victim, "sub")), mode(os.path.join(victim, "sub"))) == ((0, 0), 0o755)


def test_the_keeper_makes_what_appears_the_boxs(tmp_path):
    root = str(tmp_path / "cache")
    os.makedirs(os.path.join(root, "home"))
    keeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; from jupyter_mlcontainer.cache_keeper import Keeper; "
         "Keeper(sys.argv[1], (4321, 4321)).keep()", root],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert keeper.stdout.readline().startswith("cache keeper: watching")
        # makedirs builds the chain faster than a watch can be added on each new folder.
        deep = os.path.join(root, "huggingface", "hub", "models--a--b", "snapshots", "rev")
        os.makedirs(deep)
        until(lambda: (owner(deep), mode(deep)) == (BOX, 0o1777))
        assert owner(os.path.join(root, "huggingface", "hub")) == BOX
        # A lock file made as filelock makes it, then chmod'ed back by its creator.
        lock = os.path.join(root, "huggingface", "hub", "m.lock")
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
        until(lambda: (owner(lock), mode(lock)) == (BOX, 0o666))
        os.chmod(lock, 0o644)
        until(lambda: mode(lock) == 0o666)
        # A folder moved in from elsewhere, a plain file, and a HOME.
        elsewhere = str(tmp_path / "built")
        os.makedirs(os.path.join(elsewhere, "inner"))
        os.rename(elsewhere, os.path.join(root, "torch"))
        until(lambda: owner(os.path.join(root, "torch", "inner")) == BOX)
        data = os.path.join(deep, "weights.bin")
        with open(data, "w") as f:
            f.write("w")
        private = os.path.join(root, "home", "bob")
        os.makedirs(private, mode=0o700)
        marker = os.path.join(root, "last")
        os.makedirs(marker)  # events are handled in order: once this is done, the rest was seen
        until(lambda: owner(marker) == BOX)
        assert (owner(data), mode(data)) == ((0, 0), 0o644)
        assert (owner(private), mode(private)) == ((0, 0), 0o700)
        assert os.path.exists(os.path.join(root, ".mlcontainer-keeper"))
        assert keeper.poll() is None
    finally:
        keeper.kill()
        keeper.wait()
    assert keeper.stderr.read() == ""
