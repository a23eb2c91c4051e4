"""One cache, several OS users, on one rootful engine (issue 22): what one user writes never
becomes another user's code or data unless its content is verified.

Real users (``mlctest``, ``mlctest2``) run real kernels. Every cache that can hold code or
credentials is the user's own, in their private HOME; a model one downloads through
huggingface_hub (from a hub on the kernels' network) is loaded by the other without a second
download, from the keeper's verified copy; what one alters or plants is never loaded by the other;
the helpers with root's rights never run a kernel's image; a HOME someone else took is set aside.
The same with an engine per user and a host folder: tests/test_rootless.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
import uuid

import pytest

from jupyter_mlcontainer.core.labels import LABEL_CACHE_VOLUME, LABEL_ROLE

from .box_users import OTHER_USER, TEST_USER, BoxUser, finished, package_site
from .cache_steps import A_DOWNLOADS, B_LOADS, DENIED, LIBRARY, cell_json
from .conftest import BASE_IMAGE, TORCH_IMAGE
from .fake_hub import FakeHub, kernels_gateway


@pytest.fixture(scope="module")
def site():
    path = package_site()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def volume(engine):
    from jupyter_mlcontainer.cache.volume import ROLE_KEEPER, remove_cache_volume

    name = f"mlctest-shared-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield name
    keepers = [c for c in engine.our_containers_sync(ROLE_KEEPER) if c["Labels"].get(LABEL_CACHE_VOLUME) == name]
    assert len(keepers) == 1 and keepers[0]["State"] == "running"  # the kernels' starts kept one running
    assert keepers[0]["Image"].startswith("mlcontainer-helper:") or keepers[0]["ImageID"] == keepers[0]["Image"]
    remove_cache_volume(engine, name)


def keeper_says(engine, volume: str, text: str, timeout: float = 30) -> None:
    """Wait until the cache's keeper has logged ``text``."""
    from jupyter_mlcontainer.cache.volume import keeper_name

    deadline = time.monotonic() + timeout
    while text not in engine.api.logs(keeper_name(volume)).decode(errors="replace"):
        assert time.monotonic() < deadline, f"the keeper never said {text!r}"
        time.sleep(0.05)


@pytest.fixture
def users(site, volume):
    made = [BoxUser(TEST_USER, site, volume), BoxUser(OTHER_USER, site, volume)]
    yield made
    for user in made:
        user.cleanup()


def test_users_share_verified_blobs_and_nothing_else(users):
    """A's download is published and B has it through a link to the store's copy; neither can
    alter the store, add to the cache's top, or reach the other's HOME; each one's caches are
    in their own private HOME."""
    a, b = users
    downloaded = cell_json(finished(a.kernel(LIBRARY, A_DOWNLOADS, image=TORCH_IMAGE)), 1)
    assert downloaded["published"], downloaded
    assert downloaded["home_private"] == ["0o700", True] and downloaded["caches_in_home"] == [], downloaded

    used = cell_json(finished(b.kernel(LIBRARY, B_LOADS, image=TORCH_IMAGE)), 1)
    assert used["mine"] == {"link": True, "to_store": True, "text": "weights of A"}, used
    assert {k: used[k] for k in DENIED} == DENIED, used
    assert used["store_content"] == "weights of A"
    assert used["home_private"] == ["0o700", True] and used["caches_in_home"] == [], used


# A model repository as the hub serves it: an LFS file (named by its SHA-256) and a small one
# (named by its git SHA-1).
WEIGHTS = os.urandom(300_000)
CONFIG = b'{"model_type": "tiny"}'
OTHER = b"the real weights of lab/other"

HF_CELL = r"""
import hashlib, json, os, time
os.environ["HF_ENDPOINT"] = {endpoint!r}
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
from huggingface_hub import hf_hub_download
STORE = "/opt/mlcontainer/cache/models/huggingface/hub"
def wait_published(repo, name, timeout=30):
    path = os.path.join(STORE, repo, "blobs", name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.path.exists(path)
def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
"""

A_HF_DOWNLOADS = r"""
r = {}
for name in ("model.safetensors", "config.json"):
    path = hf_hub_download("lab/tiny", name)
    blob = os.path.realpath(path)
    r[name] = {"sha256": digest(path), "published": wait_published("models--lab--tiny", os.path.basename(blob))}
print(json.dumps(r))
"""

# A alters its own copy of the weights (its private file), and plants a file under the hash name
# of lab/other's weights that holds something else.
A_TAMPERS = r"""
import glob
blob = os.path.realpath(hf_hub_download("lab/tiny", "model.safetensors"))
r = {"own_copy_is_link": os.path.islink(os.path.join(os.environ["HF_HUB_CACHE"], "models--lab--tiny", "blobs", os.path.basename(blob)))}
if not r["own_copy_is_link"]:
    with open(blob, "r+b") as f:
        f.write(b"POISONED")
other = hashlib.sha256(OTHER_BYTES).hexdigest()
planted = os.path.join(os.environ["HF_HUB_CACHE"], "models--lab--other", "blobs")
os.makedirs(planted, exist_ok=True)
with open(os.path.join(planted, other), "wb") as f:
    f.write(b"POISONED")
print(json.dumps(r))
"""

B_HF_LOADS = r"""
r = {}
for repo, name in (("lab/tiny", "model.safetensors"), ("lab/tiny", "config.json"), ("lab/other", "weights.bin")):
    path = hf_hub_download(repo, name)
    with open(path, "rb") as f:
        data = f.read()
    r[repo + "/" + name] = {"sha256": hashlib.sha256(data).hexdigest(), "poisoned": b"POISONED" in data,
                            "from_store": os.path.realpath(path).startswith(STORE + "/")}
print(json.dumps(r))
"""


def test_a_model_one_user_downloaded_is_loaded_by_another_without_a_second_download(engine, users):
    """huggingface_hub in real kernels against a hub on the kernels' network: B loads A's
    download with no GET of its bytes; what A alters in its own copy, or plants under another
    blob's hash, never reaches B (B downloads that one from the hub itself)."""
    import hashlib

    a, b = users
    files = {"lab/tiny": {"model.safetensors": (WEIGHTS, True), "config.json": (CONFIG, False)},
             "lab/other": {"weights.bin": (OTHER, True)}}
    with FakeHub(kernels_gateway(engine), files) as hub:
        setup = HF_CELL.format(endpoint=hub.endpoint)
        first = finished(a.kernel(setup, A_HF_DOWNLOADS, A_TAMPERS.replace("OTHER_BYTES", repr(OTHER)), image=TORCH_IMAGE))
        downloaded, tampered = cell_json(first, 1), cell_json(first, 2)
        assert downloaded == {"model.safetensors": {"sha256": hashlib.sha256(WEIGHTS).hexdigest(), "published": True},
                              "config.json": {"sha256": hashlib.sha256(CONFIG).hexdigest(), "published": True}}, downloaded
        assert tampered == {"own_copy_is_link": False}, tampered
        keeper_says(engine, a.volume, f"refused models--lab--other/blobs/{hashlib.sha256(OTHER).hexdigest()}")
        assert hub.gets == {"lab/tiny/model.safetensors": 1, "lab/tiny/config.json": 1}, hub.gets

        loaded = cell_json(finished(b.kernel(setup, B_HF_LOADS, image=TORCH_IMAGE)), 1)
        assert loaded["lab/tiny/model.safetensors"] == {
            "sha256": hashlib.sha256(WEIGHTS).hexdigest(), "poisoned": False, "from_store": True}, loaded
        assert loaded["lab/tiny/config.json"]["from_store"] and not loaded["lab/tiny/config.json"]["poisoned"], loaded
        assert loaded["lab/other/weights.bin"] == {
            "sha256": hashlib.sha256(OTHER).hexdigest(), "poisoned": False, "from_store": False}, loaded
        # B asked the hub which blobs the files are (HEAD), and downloaded only lab/other's.
        assert hub.gets == {"lab/tiny/model.safetensors": 1, "lab/tiny/config.json": 1, "lab/other/weights.bin": 1}, hub.gets


# A plants code everywhere it could once reach another user: the shared cache's folders (a
# torch hub repo's hubconf.py, a parso cache, a Hugging Face token), a folder nobody had made yet
# (a symlink at triton/ into A's own folder), and B's HOME.
A_PLANTS = r"""
marker = "print('PLANTED CODE RAN')\n"
r = {}
hub = os.path.join(os.environ["TORCH_HOME"], "hub", "pytorch_vision_main")
os.makedirs(hub, exist_ok=True)
open(os.path.join(hub, "hubconf.py"), "w").write(marker + "dependencies = []\ndef resnet18(**kw):\n    return 'A model'\n")
os.makedirs(os.environ["HF_HOME"], exist_ok=True)
open(os.path.join(os.environ["HF_HOME"], "token"), "w").write("hf_A_TOKEN")
for name in ("torch", "xdg", "huggingface", "triton", "keras", "conda", "uv"):
    r[name] = attempt(lambda: os.symlink(os.environ["HOME"], os.path.join(CACHE, name)))
r["b_home"] = attempt(lambda: os.makedirs(os.path.join(CACHE, "home", "mlctest2", ".cache", "torch")))
print(json.dumps(r))
"""

B_USES_ITS_CACHES = r"""
import json, os, sys
r = {}
import torch
try:
    r["hub"] = str(torch.hub.load("pytorch/vision", "resnet18", skip_validation=True, trust_repo=True))
except Exception as exc:
    r["hub"] = type(exc).__name__
import huggingface_hub, parso.cache, jedi
r["token"] = huggingface_hub.get_token()
home = os.environ["HOME"] + "/"
r["private"] = {"parso": str(parso.cache._default_cache_path).startswith(home),
                "jedi": str(jedi.settings.cache_directory).startswith(home),
                "torch_hub": str(torch.hub.get_dir()).startswith(home),
                "hf_token_path": str(huggingface_hub.constants.HF_TOKEN_PATH).startswith(home)}
print(json.dumps(r))
"""


def test_caches_that_hold_code_or_credentials_are_each_users_own(users):
    """Finding 1 (a: jedi/parso caches, b: torch hub code, c: a link at a cache folder nobody had
    made) and finding 2 (Hugging Face tokens): what A writes there is A's own; B's are B's."""
    a, b = users
    assert finished(b.kernel("print('B was here')"))["cells"][0][0] == "ok"  # B has a HOME (taking it: the test below)
    planted = cell_json(finished(a.kernel(LIBRARY, A_PLANTS, image=TORCH_IMAGE)), 1)
    assert set(planted.values()) == {"EACCES"}, planted
    used = finished(b.kernel(B_USES_ITS_CACHES, image=TORCH_IMAGE))
    status, out = used["cells"][0]
    assert status == "ok" and "PLANTED" not in out, used
    r = json.loads(out.strip().splitlines()[-1])
    assert r["hub"] != "A model" and r["token"] is None, r  # torch hub goes to the network (there is none)
    assert r["private"] == {"parso": True, "jedi": True, "torch_hub": True, "hf_token_path": True}, r


EVIL_PTH = r"""
import os, shutil
if os.getuid() == 0:
    for root in ("/cache", "/opt/mlcontainer/cache", "/volume"):
        homes = os.path.join(root, "home")
        for name in os.listdir(homes) if os.path.isdir(homes) else ():
            home = os.path.join(homes, name)
            try:
                shutil.copy(os.path.join(home, "secret"), os.path.join(root, "stolen-" + name))
                os.chmod(os.path.join(root, "stolen-" + name), 0o644)
            except OSError:
                pass
            startup = os.path.join(home, ".ipython", "profile_default", "startup")
            os.makedirs(startup, exist_ok=True)
            with open(os.path.join(startup, "00-evil.py"), "w") as f:
                f.write("print('EVIL STARTUP RAN')\n")
            os.chown(os.path.join(startup, "00-evil.py"), os.stat(home).st_uid, os.stat(home).st_gid)
"""


@pytest.fixture
def evil_image(engine):
    """An image whose Python runs code of its maker's at every start (a .pth file), which tries,
    when it runs as root, to copy every HOME's secret and plant an IPython startup file there."""
    tag = f"mlctest-evil:{uuid.uuid4().hex[:8]}"
    dockerfile = (f"FROM {BASE_IMAGE}\nCOPY evil.py /usr/lib/python3/evil.py\n"
                  "RUN echo 'import os; exec(open(\"/usr/lib/python3/evil.py\").read())' > /usr/lib/python3/dist-packages/zz-evil.pth\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("evil.py", EVIL_PTH)):
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    buffer.seek(0)
    for _ in engine.api.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, decode=True):
        pass
    yield tag
    engine.api.remove_image(tag, force=True)


def test_helpers_with_roots_rights_never_run_a_kernels_image(engine, users, evil_image):
    """Finding 3: B's HOME holds a 0600 secret; A's first kernel runs an image with a .pth that
    steals and plants when it runs as root. The cache's one-shot helper and keeper run the
    trusted helper image only: nothing is stolen or planted, and B's next kernel runs clean."""
    a, b = users
    since = time.time() - 1
    first = finished(b.kernel("import os; open(os.path.join(os.environ['HOME'], 'secret'), 'w').write('B SECRET'); "
                              "os.chmod(os.path.join(os.environ['HOME'], 'secret'), 0o600)"))
    assert first["cells"][0][0] == "ok", first
    attacked = finished(a.kernel("import os; print(sorted(os.listdir('/opt/mlcontainer/cache')))", image=evil_image))
    assert attacked["started"] and attacked["cells"][0][0] == "ok", attacked
    assert "stolen" not in attacked["cells"][0][1], attacked
    again = finished(b.kernel("import glob, os; print(glob.glob(os.environ['HOME'] + '/.ipython/*/startup/*.py'))"))
    assert again["cells"][0] == ["ok", "[]\n"], again
    helpers = [event["Actor"]["Attributes"] for event in engine.api.events(
        since=since, until=time.time(), decode=True, filters={"type": "container", "event": "create"})
        if event["Actor"]["Attributes"].get(LABEL_ROLE) in ("cache-helper", "cache-keeper")]
    assert helpers, "no helper ran: the test would prove nothing"
    assert {h["image"].split(":")[0] for h in helpers} <= {"mlcontainer-helper", "sha256"}, helpers
    assert not any(h["image"] == evil_image for h in helpers), helpers


PLANT_AT_B = r"""
import os, json
home = "/opt/mlcontainer/cache/home/mlctest2"
kind = {kind!r}
if kind == "folder":
    startup = os.path.join(home, ".ipython", "profile_default", "startup")
    os.makedirs(startup)
    open(os.path.join(startup, "00-a.py"), "w").write("print('CODE OF A RAN')\n")
    os.chmod(home, 0o755)
else:  # a link to a folder that does not exist yet (finding 4)
    os.symlink("../mlctest/later", home)
print(json.dumps({{"planted": os.path.lexists(home)}}))
"""


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_home_someone_else_took_is_set_aside_and_the_user_gets_a_working_kernel(engine, site, volume, kind):
    """Finding 4: A makes B's HOME first (a folder with a startup file, or a link to a folder A
    makes later). B's start sets it aside (reported), B's kernel runs with a HOME of B's own
    (0700), and nothing of A's runs. Then B removes its HOME and A takes the name again: the
    kernel's own check refuses it, and the start sets it aside and goes on."""
    # A has a HOME (and the layout exists); B has never started a kernel on this cache.
    a, b = BoxUser(TEST_USER, site, volume), BoxUser(OTHER_USER, site, volume)
    try:
        planted = cell_json(finished(a.kernel(PLANT_AT_B.format(kind=kind))), 0)
        assert planted["planted"]
        proc = b.kernel("import os; print(oct(os.lstat(os.environ['HOME']).st_mode), os.lstat(os.environ['HOME']).st_uid)")
        run = finished(proc)
        assert run["started"] and run["cells"][0][0] == "ok", run
        assert run["cells"][0][1].split() == ["0o40700", str(b.pw.pw_uid)] and "CODE OF A" not in run["cells"][0][1], run
        assert "set aside" in proc.stderr.read(), "not reported"

        # B's HOME is gone (B removed it) and A takes the name again, after B's HOME was made.
        removed = finished(b.kernel("import os, shutil; shutil.rmtree(os.environ['HOME'], ignore_errors=True)"))
        assert removed["cells"][0][0] == "ok", removed
        # What B's exiting kernel may write back into its HOME (IPython's files) is gone too: the
        # name must be free for A, else A's plant fails on B's folder, not on what is tested.
        left = os.path.join(engine.inspect_volume_sync(volume)["Mountpoint"], "home", OTHER_USER)
        if os.path.lexists(left):
            shutil.rmtree(left)
        replanted = finished(a.kernel(PLANT_AT_B.format(kind=kind)))
        assert replanted["cells"][0][0] == "ok", replanted
        proc = b.kernel("import os; print(oct(os.lstat(os.environ['HOME']).st_mode), os.lstat(os.environ['HOME']).st_uid)")
        run = finished(proc)
        assert run["started"] and run["cells"][0][1].split() == ["0o40700", str(b.pw.pw_uid)], run
        # B's HOME was made before (its mark is kept): only the kernel's own refusal of the HOME
        # makes the start set the name aside again, and go on.
        assert "set aside" in proc.stderr.read()
    finally:
        a.cleanup()
        b.cleanup()


# A cache as the previous version (shared-v2) left it: every cache folder shared at the top, a
# model A downloaded (its blob named by its content's hash), a blob planted under another hash,
# A's lock file, and a keeper running the kernel's image.
OLD_LAYOUT = r"""
import hashlib, os, sys
root = "/volume"
os.chmod(root, 0o1777)
uid = int(sys.argv[1])
hub = root + "/huggingface/hub"
good = b"weights of A, from before"
bad_name = hashlib.sha256(b"something else").hexdigest()
for folder in (root + "/home", hub + "/models--lab--old/blobs", hub + "/.locks/models--lab--old", root + "/torch/hub"):
    os.makedirs(folder, exist_ok=True)
    os.chmod(folder, 0o1777)
files = {hub + "/models--lab--old/blobs/" + hashlib.sha256(good).hexdigest(): good,
         hub + "/models--lab--old/blobs/" + bad_name: b"POISONED",
         hub + "/.locks/models--lab--old/x.lock": b"", root + "/torch/hub/Cargo.lock": b"data"}
for path, data in files.items():
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, uid, uid)
print(hashlib.sha256(good).hexdigest(), bad_name)
"""

B_USES_OLD = r"""
import hashlib, json, os
hub = os.environ["HF_HUB_CACHE"] + "/models--lab--old/blobs"
good, bad = {good!r}, {bad!r}
print(json.dumps({{"good": open(os.path.join(hub, good)).read() if os.path.exists(os.path.join(hub, good)) else None,
                   "bad": os.path.lexists(os.path.join(hub, bad)),
                   "top": sorted(os.listdir("/opt/mlcontainer/cache"))}}))
"""


def test_a_cache_of_the_previous_version_is_moved_aside_after_its_models_are_verified(engine, site, volume):
    """The shared folders of the previous layout are set aside (root's alone); the blobs in them
    whose content is their name reach the store, the planted one does not; the keeper that ran
    a kernel's image is replaced by one of the helper image."""
    from jupyter_mlcontainer.cache.volume import ROLE_KEEPER, keeper_name

    a, b = BoxUser(TEST_USER, site, volume), BoxUser(OTHER_USER, site, volume)
    try:
        engine.api.create_volume(volume, labels={"org.jupyter.mlcontainer.cache": "true"})
        code, out, err = engine.run_to_completion_sync(
            BASE_IMAGE, ["python3", "-c", OLD_LAYOUT, str(a.pw.pw_uid)], user="0:0",
            mounts=[{"Type": "volume", "Source": volume, "Target": "/volume"}],
        )
        assert code == 0, err
        good, bad = out.split()
        old_keeper = engine.api.create_container(
            BASE_IMAGE, ["sleep", "infinity"], name=keeper_name(volume),
            labels={LABEL_ROLE: ROLE_KEEPER, LABEL_CACHE_VOLUME: volume},
            host_config=engine.api.create_host_config(binds={volume: {"bind": "/cache", "mode": "rw"}}),
        )["Id"]
        engine.api.start(old_keeper)

        # A's first kernel sets the cache up and replaces the keeper, which then verifies the old
        # blobs and moves the old folders aside; B's kernel after that links the verified one.
        assert finished(a.kernel("print('up')"))["cells"][0] == ["ok", "up\n"]
        keeper_says(engine, volume, "were set aside in set-aside/legacy-")
        used = cell_json(finished(b.kernel(B_USES_OLD.format(good=good, bad=bad))), 0)
        assert used == {"good": "weights of A, from before", "bad": False,
                        "top": [".mlcontainer-keeper", "home", "models", "set-aside"]}, used
        keeper = engine.api.inspect_container(keeper_name(volume))
        assert keeper["Id"] != old_keeper and keeper["Config"]["Image"].startswith("mlcontainer-helper:"), keeper["Config"]
        code, out, err = engine.run_to_completion_sync(
            BASE_IMAGE, ["python3", "-c", "import os, json, stat; p='/v/set-aside'; "
                         "print(json.dumps([oct(stat.S_IMODE(os.stat(p).st_mode)), os.stat(p).st_uid, sorted(os.listdir(p)), "
                         "oct(stat.S_IMODE(os.stat([os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if f == 'Cargo.lock'][0]).st_mode))]))"],
            user="0:0", mounts=[{"Type": "volume", "Source": volume, "Target": "/v"}],
        )
        mode, owner, aside, lock_mode = json.loads(out)
        assert (mode, owner) == ("0o700", 0) and len(aside) == 1 and aside[0].startswith("legacy-"), out
        assert lock_mode == "0o644", "a data file named *.lock was changed"  # finding 9: never made 0666
    finally:
        a.cleanup()
        b.cleanup()


def test_an_upgrade_while_the_previous_versions_keeper_runs_makes_the_new_helper_image(engine):
    """A server of the new version makes its helper image while a keeper of the previous one
    still runs: that keeper's image cannot be removed yet, and the kernel start goes on (CI found
    the engine's 409 escaping as an error that no EngineError handler caught)."""
    import docker

    from jupyter_mlcontainer.cache.helper_image import _remove_older, scripts_digest
    from jupyter_mlcontainer.core.labels import LABEL_HELPER, LABEL_HELPER_SCRIPTS

    client = docker.from_env()
    tag = f"mlcontainer-test/old-helper:{uuid.uuid4().hex[:8]}"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        text = f"FROM {BASE_IMAGE}\nLABEL {LABEL_HELPER}=previous {LABEL_HELPER_SCRIPTS}=previous-scripts\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    context.seek(0)
    old, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    keeper = client.containers.run(tag, ["sleep", "600"], detach=True, labels={LABEL_ROLE: "test-old-keeper"})
    try:
        _remove_older(engine, scripts_digest())  # raised Conflict before
        assert client.images.get(old.id).id == old.id  # its keeper still runs it
        keeper.remove(force=True)
        _remove_older(engine, scripts_digest())
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(old.id)  # gone once nothing runs it
    finally:
        for remove in (lambda: keeper.remove(force=True), lambda: client.images.remove(old.id, force=True)):
            try:
                remove()
            except docker.errors.NotFound:
                pass  # removed by the test itself
