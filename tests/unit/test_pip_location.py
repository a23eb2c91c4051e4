"""Where `%pip install` goes, as the kernel's environment says it (container_spec.kernel_environment):
the user site under PYTHONUSERBASE (per image, in the cache volume) for system and conda Pythons,
a prefix in the cache volume for a venv (with a pip lent to a venv without one), and the image's
or the user's own settings always win."""

from __future__ import annotations

from importlib import resources

import pytest

from jupyter_mlcontainer.core.identity import HostUser
from jupyter_mlcontainer.core.labels import LABEL_INJECTED_ENV
from jupyter_mlcontainer.engines.base import EngineLocation, MountSpec
from jupyter_mlcontainer.images.probe import ImageFacts
from jupyter_mlcontainer.kernels.bootstrap import NO_PIP_ENV
from jupyter_mlcontainer.kernels.container_spec import (
    LENT_PIP_ENV,
    LENT_PIP_IN_CONTAINER,
    has_user_site,
    kernel_environment,
)
from jupyter_mlcontainer.kernels.launch_plan import BackendFacts, KernelLaunch, LaunchSettings, plan_launch

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


def venv_plan(location_local=True, desktop_vm=False, host_wheel="/usr/share/python-wheels/pip-25.0-py3-none-any.whl",
              **facts):
    """The launch plan of a kernel of a venv image in /app/.venv (launch_plan.plan_launch)."""
    settings = LaunchSettings(image="uv/app:1", gpus="none", cache_volume="cache", cache_mount_path="/c",
                              host_pip_wheel=host_wheel)
    backend = BackendFacts(location=EngineLocation(location_local, "127.0.0.1"), desktop_vm=desktop_vm)
    image = ImageFacts(image_id="sha256:1", python="/app/.venv/bin/python3", python_version="3.12.3",
                       ipykernel="7.4.0", venv="/app/.venv", **facts)
    launch = KernelLaunch(kernel_id="0123456789abcdef", command=["python3", "-m", "ipykernel_launcher"], user=ROOT,
                          cwd="/work", workspace="/work", connection_dir="/run/user/0/k", transport="tcp", gpus="none",
                          connection_files={"kernel.json": b"{}"})
    return plan_launch(settings, backend, image, launch)


def test_a_venv_without_pip_is_lent_the_images_own_pip_wheel():
    """`uv venv` + `uv sync` make no pip; ipykernel's %pip runs `python -m pip`: the pip wheel the
    image's Python ships (ensurepip's) goes on PYTHONPATH after the prefix's site folder, so it
    installs into PIP_PREFIX like a venv's own pip; nothing of this host is mounted."""
    wheel = "/usr/local/lib/python3.12/ensurepip/_bundled/pip-24.0-py3-none-any.whl"
    plan = venv_plan(pip_wheel=wheel)
    env = plan.spec.env
    site = env["PIP_PREFIX"] + "/lib/python3.12/site-packages"
    assert env["PIP_PREFIX"].startswith("/app/.venv/.mlcontainer-cache/")
    assert env["PYTHONPATH"] == f"{site}:{wheel}" and env[LENT_PIP_ENV] == wheel
    assert LENT_PIP_ENV in plan.spec.labels[LABEL_INJECTED_ENV].split(",")  # freeze leaves it out
    assert not any("pip" in m.target for m in plan.spec.mounts) and not plan.warnings


def test_a_venv_without_pip_or_a_wheel_is_lent_this_hosts_pip_read_only():
    host_wheel = "/usr/share/python-wheels/pip-23.0.1-py3-none-any.whl"
    plan = venv_plan(host_wheel=host_wheel)
    assert plan.spec.env["PYTHONPATH"].endswith(f":{LENT_PIP_IN_CONTAINER}")
    assert plan.spec.env[LENT_PIP_ENV] == LENT_PIP_IN_CONTAINER
    assert MountSpec(LENT_PIP_IN_CONTAINER, host_wheel, read_only=True) in plan.spec.mounts
    assert not plan.warnings


@pytest.mark.parametrize("case", [
    dict(location_local=False),  # an engine on another host cannot mount this host's file
    dict(desktop_vm=True),  # Docker Desktop's VM shares only some folders
    dict(host_wheel=""),  # this host has no pip wheel either
])
def test_a_venv_with_no_pip_to_lend_says_what_to_use_instead(case):
    plan = venv_plan(**case)
    assert LENT_PIP_ENV not in plan.spec.env and not any("pip" in m.target for m in plan.spec.mounts)
    assert any("has no pip" in w and "uv venv --seed" in w for w in plan.warnings), plan.warnings
    # ... and the kernel's `%pip` says it too, failing (bootstrap's stand-in pip), not "No module named pip".
    assert "uv venv --seed" in plan.spec.env[NO_PIP_ENV]
    assert NO_PIP_ENV in plan.spec.labels[LABEL_INJECTED_ENV].split(",")


@pytest.mark.parametrize("facts", [dict(pip="24.0"), dict(pip="24.0", pip_wheel="/w/pip.whl")])
def test_a_venv_with_pip_is_lent_nothing(facts):
    plan = venv_plan(**facts)
    assert LENT_PIP_ENV not in plan.spec.env and ":" not in plan.spec.env["PYTHONPATH"] and not plan.warnings


def test_freezes_inventory_leaves_the_lent_pip_out():
    """The freeze inventory script names the lent pip by the variable the kernel gets."""
    script = (resources.files("jupyter_mlcontainer.environments.freeze.scripts") / "inventory.py").read_text()
    assert f'os.environ.get("{LENT_PIP_ENV}")' in script
