"""The cache's in-container scripts with plain Python (no engine): the blob check, the link
step a kernel's bootstrap runs, the keeper's HOME set-up and set-aside rules, and the paths
that must never be followed. The same code runs in the trusted helper image and in kernels:
tests/test_shared_cache.py, tests/test_cache_keeper.py."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from jupyter_mlcontainer.cache.scripts import fsops
from jupyter_mlcontainer.cache.scripts.keeper import Keeper
from jupyter_mlcontainer.cache.scripts.layout import blob_matches, is_blob_name
from jupyter_mlcontainer.cache.scripts.link_models import link_models, link_models_from_env
from jupyter_mlcontainer.core.policy import printable


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_a_blob_matches_only_the_hash_its_name_is():
    data = b"weights"
    assert blob_matches(hashlib.sha256(data).hexdigest(), data)
    assert blob_matches(git_sha1(data), data)
    assert not blob_matches(hashlib.sha256(data).hexdigest(), data + b"!")
    assert not blob_matches(git_sha1(data), b"weightz")
    assert not blob_matches(hashlib.sha1(data).hexdigest(), data)  # plain SHA-1 is not git's
    assert not is_blob_name("../" + "0" * 61) and not is_blob_name("A" * 64) and not is_blob_name("0" * 63)


def test_a_link_is_followed_only_inside_the_hub_cache():
    within = fsops.symlink_target_within
    parts = ("models--a--b", "blobs")
    fd = os.open("/", os.O_RDONLY)
    try:
        for target, expected in (("../../blobs/ab/x", ("blobs", "ab", "x")), ("/etc/passwd", None),
                                 ("../../../x", None), ("../..", None), ("../../blobs/../../x", None)):
            os.symlink(target, "/tmp/.mlc-unit-link")
            try:
                assert within(fd, "/tmp/.mlc-unit-link", parts, ()) == expected, target
            finally:
                os.unlink("/tmp/.mlc-unit-link")
    finally:
        os.close(fd)


@pytest.fixture
def store(tmp_path):
    hub = tmp_path / "models" / "huggingface" / "hub"
    for repo, blobs in (("models--lab--tiny", [b"w1", b"w2"]), ("datasets--lab--set", [b"d1"])):
        folder = hub / repo / "blobs"
        folder.mkdir(parents=True)
        for data in blobs:
            (folder / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (hub / "not-a-repo").mkdir()
    return tmp_path


def test_the_link_step_links_the_stores_blobs_into_the_users_hub_cache(store, tmp_path):
    hub = tmp_path / "home" / "u" / ".cache" / "huggingface" / "hub"
    mine = hub / "models--lab--tiny" / "blobs"
    mine.mkdir(parents=True)
    own = hashlib.sha256(b"w1").hexdigest()
    (mine / own).write_bytes(b"w1")  # downloaded by the user before it was shared: becomes a link
    assert link_models_from_env({"MLCONTAINER_CACHE": str(store), "HF_HUB_CACHE": str(hub)}) == 3
    for repo, data in (("models--lab--tiny", b"w1"), ("models--lab--tiny", b"w2"), ("datasets--lab--set", b"d1")):
        link = hub / repo / "blobs" / hashlib.sha256(data).hexdigest()
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.read_bytes() == data
        assert (hub / repo / "snapshots").is_dir()  # huggingface_hub's cache scan finds a repo it knows
    assert not (hub / "not-a-repo").exists()
    # Nothing changed in the store: nothing to look at again.
    assert link_models(str(store / "models" / "huggingface" / "hub"), str(hub)) == 0
    assert json.loads((hub.parent / ".mlcontainer-links.json").read_text()).keys() == {"models--lab--tiny", "datasets--lab--set"}
    assert sorted(p.name for p in hub.iterdir()) == ["datasets--lab--set", "models--lab--tiny"]  # nothing else in the hub


def test_the_link_step_never_replaces_what_is_not_the_users_own_copy(store, tmp_path):
    hub = tmp_path / "hub"
    mine = hub / "models--lab--tiny" / "blobs"
    mine.mkdir(parents=True)
    name = hashlib.sha256(b"w2").hexdigest()
    (mine / name).write_bytes(b"another size")  # not the same blob: left alone
    os.symlink("/elsewhere", mine / hashlib.sha256(b"w1").hexdigest())  # the user's own link: left alone
    assert link_models(str(store / "models" / "huggingface" / "hub"), str(hub)) == 1  # datasets' one
    assert (mine / name).read_bytes() == b"another size"
    assert os.readlink(mine / hashlib.sha256(b"w1").hexdigest()) == "/elsewhere"
    assert link_models(str(tmp_path / "no-store"), str(hub)) == 0


def test_a_home_is_made_the_users_and_what_took_its_name_is_set_aside(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    keeper = Keeper(str(root))
    keeper.set_up()
    assert oct(stat.S_IMODE(os.stat(root).st_mode)) == "0o755"
    assert oct(stat.S_IMODE(os.stat(root / "home").st_mode)) == "0o1777"
    assert oct(stat.S_IMODE(os.stat(root / "set-aside").st_mode)) == "0o700"
    (root / "home" / "ada").mkdir()
    os.chown(root / "home" / "ada", 4321, 4321)  # someone else's folder at ada's name
    os.symlink("/etc", root / "home" / "bob")  # a link at bob's
    ada = keeper.prepare_home("ada", 1234, 1234)
    bob = keeper.prepare_home("bob", 1235, 1235)
    for name, uid, report in (("ada", 1234, ada), ("bob", 1235, bob)):
        st = os.lstat(root / "home" / name)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == uid and stat.S_IMODE(st.st_mode) == 0o700
        assert len(report["set_aside"]) == 1 and "was set aside as set-aside/home-" + name in report["set_aside"][0], report
    assert "a folder of uid 4321" in ada["set_aside"][0] and "a symlink" in bob["set_aside"][0]
    assert keeper.prepare_home("ada", 1234, 1234) == {"home": "home/ada", "set_aside": []}  # as it is now: kept
    with pytest.raises(ValueError):
        keeper.prepare_home("../etc", 0, 0)


def test_the_cli_shows_what_a_terminal_would_act_on():
    assert printable("a\tb\nc") == "a\tb\nc"
    assert printable("# \x1b[2K\x1b[1GRUN pip") == "# \\x1b[2K\\x1b[1GRUN pip"
    assert printable("x\ry\u202ez\u200b\x7f\x85") == "x\\ry\\u202ez\\u200b\\x7f\\x85"
