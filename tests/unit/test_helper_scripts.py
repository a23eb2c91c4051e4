"""The helper image's scripts (cache/helper_image.py's SCRIPTS) are all the keeper needs: copied
alone into a folder, as they are into the image, the keeper runs from there with ``-S -E -s`` and
imports its siblings as plain files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from jupyter_mlcontainer.cache import helper_image


def test_the_shipped_scripts_are_all_the_keeper_imports(tmp_path):
    scripts = tmp_path / "mlc"
    scripts.mkdir()
    for name in helper_image.SCRIPTS:
        shutil.copy(os.path.join(helper_image._SCRIPTS_DIR, name), scripts / name)
    keeper = [sys.executable, "-S", "-E", "-s", str(scripts / "keeper.py")]
    done = subprocess.run(keeper, capture_output=True, text=True, timeout=60, cwd=tmp_path)  # no ROOT: its usage
    assert done.returncode == 2 and done.stderr.startswith("usage: keeper.py ROOT"), done.stderr
    (tmp_path / "cache").mkdir()
    user = ["ada", str(os.getuid()), str(os.getgid())]
    done = subprocess.run([*keeper, str(tmp_path / "cache"), "--prepare-home", *user],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"home": "home/ada", "set_aside": []}
