"""When a restart may reuse the kernel's container (kernels/restarts.py): only when what a new
container of the restart's launch would be is what the held one was made from."""

from __future__ import annotations

from jupyter_mlcontainer.kernels.restarts import HeldContainer, kernel_ended, say_restart, why_not_in_place

HELD = HeldContainer("c" * 64, template_key="t1", image_id="sha256:" + "a" * 64)


def test_the_same_template_and_image_restart_in_place():
    assert why_not_in_place(HELD, "t1", HELD.image_id, "repo/img:1", running=True, ended=True) == ""


def test_anything_else_restarts_in_a_new_container_with_the_reason():
    assert why_not_in_place(HELD, "t1", HELD.image_id, "repo/img:1", running=False, ended=True) == "its container stopped"
    assert "keeper did not hold" in why_not_in_place(HELD, "t1", HELD.image_id, "repo/img:1", running=True, ended=False)
    rebuilt = why_not_in_place(HELD, "t1", "sha256:" + "b" * 64, "repo/img:1", running=True, ended=True)
    assert rebuilt.startswith("repo/img:1 now names another image (sha256:bbbbbbbbbbbb, was sha256:aaaaaaaaaaaa)")
    assert "settings changed" in why_not_in_place(HELD, "t2", HELD.image_id, "repo/img:1", running=True, ended=True)


def test_the_words_are_files_of_the_kernels_folder(tmp_path):
    tmp_path = tmp_path / "kernel"
    tmp_path.mkdir()
    say_restart(str(tmp_path), True)
    say_restart(str(tmp_path), False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restart-hold", "shutdown"]
    assert not kernel_ended(str(tmp_path))
    (tmp_path / "kernel-ended").touch()
    assert kernel_ended(str(tmp_path))
