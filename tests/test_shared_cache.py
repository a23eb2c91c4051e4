"""One cache, several OS users (issue 11): what A's kernel downloads, B's kernel loads and adds
to, through the same steps a library takes (huggingface_hub: a filelock lock file, a temp file
beside the blobs, the mode the umask gives, a rename into place), and nobody can delete, alter
or replace another user's files or read another user's HOME.

Real users (``mlctest``, ``mlctest2``) run real kernels on the torch test image (it has
filelock, as every huggingface_hub install does): on one rootful engine with one named volume,
and on a rootful engine's volume laid out by an earlier version (repaired on first use). The
same with an engine per user and a host folder: tests/test_rootless.py.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from jupyter_mlcontainer.container_spec import LABEL_CACHE_VOLUME

from .box_users import OTHER_USER, TEST_USER, BoxUser, finished, package_site
from .cache_steps import A_DOWNLOADS, A_USES_B_FILE, B_LOADS_AND_ADDS, DENIED, LIBRARY, cell_json
from .conftest import BASE_IMAGE, TORCH_IMAGE

@pytest.fixture(scope="module")
def site():
    path = package_site()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def volume(engine):
    from jupyter_mlcontainer.cache import ROLE_KEEPER, remove_cache_volume

    name = f"mlctest-shared-{os.getpid()}"
    yield name
    keepers = [c for c in engine.our_containers_sync(ROLE_KEEPER) if c["Labels"].get(LABEL_CACHE_VOLUME) == name]
    assert len(keepers) == 1 and keepers[0]["State"] == "running"  # the kernels' starts kept one running
    remove_cache_volume(engine, name)


def test_users_share_the_cache_and_nobody_touches_anothers_files(engine, site, volume):
    a, b = BoxUser(TEST_USER, site, volume), BoxUser(OTHER_USER, site, volume)
    try:
        downloaded = cell_json(finished(a.kernel(LIBRARY, A_DOWNLOADS, image=TORCH_IMAGE)), 1)
        assert downloaded["locks"] == "filelock"  # the library itself, as huggingface_hub uses it
        assert downloaded["blob"] == "0o644"  # its owner's alone to change
        # Folders and the lock file are the box's (root's), so no user has a folder owner's say.
        assert sorted(map(tuple, downloaded["shared"].values())) == [("0o1777", 0)] * 4 + [("0o666", 0)], downloaded

        used = cell_json(finished(b.kernel(LIBRARY, B_LOADS_AND_ADDS, image=TORCH_IMAGE)), 1)
        assert used["read"] == "weights of A" and used["own"] == "B's own", used
        assert {k: used[k] for k in DENIED} == DENIED, used
        assert used["content"] == "weights of A"

        back = cell_json(finished(a.kernel(LIBRARY, A_USES_B_FILE, image=TORCH_IMAGE)), 1)
        assert back["read"] == "B's own" and {k: back[k] for k in DENIED} == DENIED, back
    finally:
        a.cleanup()
        b.cleanup()


# A cache as the previous version left it: only the top and home/ open to all, and a model that
# A's kernel downloaded in folders only A could add to, with A's 0644 lock file.
OLD_LAYOUT = r"""
import os, sys
root = "/volume"
os.chmod(root, 0o1777)
os.makedirs(root + "/home", exist_ok=True)
os.chmod(root + "/home", 0o1777)
hub = root + "/huggingface/hub"
for folder in (hub, hub + "/models--lab--old/blobs", hub + "/.locks/models--lab--old"):
    os.makedirs(folder, mode=0o755, exist_ok=True)
for path, text in ((hub + "/models--lab--old/blobs/weights", "old weights"), (hub + "/.locks/models--lab--old/weights.lock", "")):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
for folder, dirs, files in os.walk(root + "/huggingface"):
    for name in [folder] + [os.path.join(folder, n) for n in files]:
        os.chown(name, int(sys.argv[1]), int(sys.argv[1]))
"""

B_USES_OLD = r"""
r = {"read": load("models--lab--old", "weights")}
r["own"] = open(download("models--lab--old", "extra", "B's own")).read()
r.update(trespass("mlctest", "models--lab--old", "weights"))
print(json.dumps(r))
"""


def test_a_cache_from_the_previous_version_is_repaired_on_first_use(engine, site, volume):
    a, b = BoxUser(TEST_USER, site, volume), BoxUser(OTHER_USER, site, volume)
    try:
        engine.api.create_volume(volume, labels={"org.jupyter.mlcontainer.cache": "true"})
        code, out, err = engine.run_to_completion_sync(
            BASE_IMAGE, ["python3", "-c", OLD_LAYOUT, str(a.pw.pw_uid)], user="0:0",
            mounts=[{"Type": "volume", "Source": volume, "Target": "/volume"}],
        )
        assert code == 0, err
        # B's server used the previous version on this volume: its mark says "initialised".
        created = engine.inspect_volume_sync(volume)["CreatedAt"]
        state = os.path.join(b.home, "data", "mlcontainer")
        os.makedirs(state)
        with open(os.path.join(state, "volumes.json"), "w") as f:
            json.dump({f"default|{volume}|{created}": "initialised"}, f)
        for path in (os.path.join(b.home, "data"), state, os.path.join(state, "volumes.json")):
            os.chown(path, b.pw.pw_uid, b.pw.pw_gid)

        used = cell_json(finished(b.kernel(LIBRARY, B_USES_OLD, image=TORCH_IMAGE)), 1)
        assert used["read"] == "old weights" and used["own"] == "B's own", used
        assert {k: used[k] for k in DENIED if k != "read_home"} == {k: v for k, v in DENIED.items() if k != "read_home"}
        assert used["content"] == "old weights"
        with open(os.path.join(state, "volumes.json")) as f:
            assert set(json.load(f).values()) == {"shared-v2"}
    finally:
        a.cleanup()
        b.cleanup()
