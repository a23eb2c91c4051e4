"""Where `%pip install` goes, as the kernel's environment says it (container_spec.kernel_environment):
the user site under PYTHONUSERBASE (per image, in the cache volume) for system and conda Pythons,
pip's own choice in a venv, and the image's or the user's own settings always win."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.kernels.container_spec import has_user_site, kernel_environment
from jupyter_mlcontainer.core.identity import HostUser

ROOT = HostUser(uid=0, gid=0, name="root")
IMAGE_PATH = "/opt/conda/bin:/usr/bin:/bin"


def environment(python="/usr/bin/python3", conda=False, image="repo/img:1", kernelspec_env=None, configured_env=None,
                image_env=None):
    kernelspec_env = kernelspec_env or {}
    return kernel_environment(
        image=image, kernel_id="k" * 36, user=ROOT, home="/c/home/root", cache_mount_path="/c",
        launch_env={"PATH": "/host/bin", **kernelspec_env}, kernelspec_env=kernelspec_env,
        configured_env=configured_env or {}, gpus=[], image_env={"PATH": IMAGE_PATH, **(image_env or {})},
        python=python, conda=conda,
    )


@pytest.mark.parametrize("python, conda, expected", [
    ("/usr/bin/python3", False, True),  # Debian, Ubuntu, nvidia/cuda + apt
    ("/usr/local/bin/python3", False, True),  # the python images, NGC
    ("/opt/conda/bin/python3", True, True),  # pytorch/pytorch, docker-stacks
    ("/opt/venv/bin/python3", False, False),  # a venv: pip refuses --user
    ("/app/.venv/bin/python", False, False),
    ("", False, False),  # not known: leave pip alone
])
def test_which_pythons_install_into_the_user_site(python, conda, expected):
    assert has_user_site(python, conda) is expected


def test_system_python_installs_into_its_per_image_user_site_with_scripts_on_path():
    env = environment(image="mlcontainer-test/base:bookworm")
    base = "/c/home/root/.local/mlcontainer/mlcontainer-test-base-bookworm"
    assert env.env["PYTHONUSERBASE"] == base and env.env["PIP_USER"] == "1"
    assert env.env["PATH"] == f"{base}/bin:{IMAGE_PATH}"  # the image's PATH, never the host's
    assert {"PYTHONUSERBASE", "PIP_USER", "PATH"} <= set(env.injected)  # freeze leaves them out
    other = environment(image="mlcontainer-test/trixie:py3.13")
    assert other.env["PYTHONUSERBASE"] != base  # one image's packages never reach another's kernels


def test_an_image_without_path_gets_the_engines_default_after_the_user_site():
    env = kernel_environment(
        image="i", kernel_id="k", user=ROOT, home="/h", cache_mount_path="/c", launch_env={}, kernelspec_env={},
        configured_env={}, gpus=[], image_env={}, python="/usr/bin/python3",
    )
    assert env.env["PATH"] == "/h/.local/mlcontainer/i/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_conda_prefix_installs_into_the_user_site():
    env = environment(python="/opt/conda/bin/python3", conda=True)
    assert env.env["PIP_USER"] == "1"


@pytest.mark.parametrize("python, image_env", [
    ("/opt/venv/bin/python3", {}),
    ("/usr/local/bin/python3", {"VIRTUAL_ENV": "/usr/local"}),  # a venv made at /usr/local
    ("/usr/bin/python3", {"PYTHONNOUSERSITE": "1"}),  # the image switched the user site off
    ("/usr/bin/python3", {"PIP_PREFIX": "/opt/extra"}),  # the image says where pip installs
    ("", {}),
])
def test_pip_keeps_its_own_choice_where_a_user_site_would_be_refused(python, image_env):
    env = environment(python=python, image_env=image_env)
    assert "PIP_USER" not in env.env and "PATH" not in env.env
    assert "PIP_USER" not in env.injected and "PATH" not in env.injected


@pytest.mark.parametrize("name", ["PIP_USER", "PIP_PREFIX", "PIP_TARGET", "PYTHONNOUSERSITE"])
def test_kernelspec_pip_settings_win(name):
    env = environment(kernelspec_env={name: "0" if name == "PIP_USER" else "/x"})
    assert env.env[name] == ("0" if name == "PIP_USER" else "/x")
    assert "PIP_USER" not in env.injected  # theirs: freeze writes it, as any variable the user set
    assert name not in env.injected


def test_users_own_userbase_and_path_win():
    env = environment(kernelspec_env={"PYTHONUSERBASE": "/mine"})
    assert env.env["PYTHONUSERBASE"] == "/mine" and env.env["PATH"] == f"/mine/bin:{IMAGE_PATH}"
    assert "PYTHONUSERBASE" not in env.injected and "PIP_USER" in env.injected
    env = environment(kernelspec_env={"PATH": "/spec/bin"}, configured_env={})
    assert env.env["PATH"] == "/spec/bin" and "PATH" not in env.injected and env.env["PIP_USER"] == "1"
    env = environment(configured_env={"PATH": "/configured/bin"})
    assert env.env["PATH"] == "/configured/bin" and "PATH" not in env.injected
