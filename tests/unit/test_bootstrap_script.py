"""The kernel's bootstrap is a real file (kernels/scripts/bootstrap.py) run with plain Python:
its constants are the package's, and its HOME check refuses what it must, run here as it runs
in a container (``python -c TEXT argv...``)."""

from __future__ import annotations

import os
import subprocess
import sys

from jupyter_mlcontainer.cache.paths import CACHE_MOUNT_ENV
from jupyter_mlcontainer.engines.base import (
    CONNECTION_FILE_IN_CONTAINER, CONNECTION_SECRET_ENV, NO_NEW_PRIVS_ENV,
)
from jupyter_mlcontainer.kernels import bootstrap
from jupyter_mlcontainer.kernels.scripts import bootstrap as script


def test_the_script_speaks_the_packages_names():
    assert script.CACHE_MOUNT_ENV == CACHE_MOUNT_ENV
    assert script.CONNECTION_FILE == CONNECTION_FILE_IN_CONTAINER
    assert script.CONNECTION_SECRET_ENV == CONNECTION_SECRET_ENV and script.NO_NEW_PRIVS_ENV == NO_NEW_PRIVS_ENV
    assert bootstrap.BOOTSTRAP.rstrip().endswith("kernel_main()")
    assert bootstrap.SPARE_BOOTSTRAP.rstrip().endswith("spare_main()")
    compile(bootstrap.BOOTSTRAP, "<bootstrap>", "exec")  # link_models.py's text and the script's, together


def run(cache, home, argv, **env):
    environ = {"PATH": os.environ["PATH"], "HOME": str(home), CACHE_MOUNT_ENV: str(cache), **env}
    return subprocess.run([sys.executable, "-c", bootstrap.BOOTSTRAP, *argv], env=environ, capture_output=True,
                          text=True, timeout=60)


def test_it_makes_a_private_home_then_runs_the_kernels_argv(tmp_path):
    tmp_path = tmp_path / "cache"
    tmp_path.mkdir()
    (tmp_path / "home").mkdir(mode=0o1777)
    os.chmod(tmp_path / "home", 0o1777)
    home = tmp_path / "home" / "ada"
    done = run(tmp_path, home, [sys.executable, "-c", "import os; print('kernel in', os.environ['HOME'])"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"kernel in {home}"
    assert home.is_dir() and (home.stat().st_mode & 0o777) == 0o700


def test_it_refuses_a_home_others_can_write_or_a_link(tmp_path):
    tmp_path = tmp_path / "cache"
    tmp_path.mkdir()
    (tmp_path / "home").mkdir()
    shared = tmp_path / "home" / "ada"
    shared.mkdir()
    os.chmod(shared, 0o777)
    refused = run(tmp_path, shared, [sys.executable, "-c", "print('ran')"])
    assert refused.returncode == bootstrap.HOME_REFUSED_EXIT and "ran" not in refused.stdout
    assert "is not your private folder" in refused.stderr
    link = tmp_path / "home" / "bob"
    link.symlink_to(tmp_path)
    refused = run(tmp_path, link, [sys.executable, "-c", "print('ran')"])
    assert refused.returncode == bootstrap.HOME_REFUSED_EXIT and "a link" in refused.stderr


def test_the_keeper_ends_with_its_kernels_status(tmp_path):
    """Under the keeper (a restart in the kernel's container: kernels/restarts.py) the kernel is
    its child; a kernel that exits or is killed ends the keeper with the same status (128+N for
    signal N), so the container's exit code and the death's message read as before."""
    cache = tmp_path / "cache"
    cache.mkdir()
    home = cache / "ada"
    keeper = {bootstrap.KEEPER_ENV: "1"}
    exited = run(cache, home, [sys.executable, "-c", "import sys; sys.exit(3)"], **keeper)
    assert exited.returncode == 3, exited.stderr
    killed = run(cache, home, [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], **keeper)
    assert killed.returncode == 128 + 15, killed.stderr
    said = run(cache, home, [sys.executable, "-c", "import os; print('parent', os.getppid())"], **keeper)
    assert said.returncode == 0 and said.stdout.split()[0] == "parent"  # a clean end, no restart asked: ends too
