"""A spare's template: what must match for a start to claim it (pool.py), without an engine."""

from __future__ import annotations

import dataclasses

from jupyter_mlcontainer.kernels.launch_plan import LaunchSettings
from jupyter_mlcontainer.kernels.spares import template_of

from .test_container_spec import spec

SETTINGS = LaunchSettings(image="repo/img:1", gpus="2", memory="8g", cpus="1.5", shm_size="4g", cache_volume="cache",
                          cache_mount_path="/c", env={"CONFIGURED": "yes"})


def template(tmp_path, image_id="sha256:1", passwd="root:x:0:0::/root:/bin/sh\n", **overrides):
    folder = tmp_path / f"launch-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    (folder / "passwd").write_text(passwd)
    (folder / "group").write_text("root:x:0:\n")
    built = spec(connection_dir=str(folder), passwd_group=(str(folder / "passwd"), str(folder / "group")), **overrides)
    return template_of(built, image_id, str(folder), "/work")


def test_what_differs_per_kernel_does_not_change_the_template(tmp_path):
    first = template(tmp_path)
    other_kernel = template(
        tmp_path, kernel_id="fedcba9876543210", cwd="/work/other/folder", restarts=0,
        launch_env={"JPY_SESSION_NAME": "other.ipynb", "MY_SPEC_VAR": "from-spec"},
    )
    assert other_kernel.key == first.key
    assert first.files["/etc/passwd"].startswith("root:x:0:0")


def test_anything_a_kernel_would_see_differently_does(tmp_path):
    key = template(tmp_path).key
    changed = [
        template(tmp_path, image_id="sha256:2"),  # the tag names a rebuilt image
        template(tmp_path, settings=dataclasses.replace(SETTINGS, env={"CONFIGURED": "no"})),
        template(tmp_path, settings=dataclasses.replace(SETTINGS, memory="4g")),
        template(tmp_path, gpus="none"),
        template(tmp_path, workspace="/elsewhere"),
        template(tmp_path, passwd="root:x:0:0::/root:/bin/bash\n"),
        template(tmp_path, command=["python3", "-m", "other_kernel", "-f", "/run/mlcontainer/kernel.json"]),
    ]
    assert all(t.key != key for t in changed)
    assert len({t.key for t in changed}) == len(changed)
