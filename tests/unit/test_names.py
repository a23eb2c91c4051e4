"""Image references, restore names and Dockerfile text: pure rules."""

from __future__ import annotations

from jupyter_mlcontainer.core.names import split_reference
from jupyter_mlcontainer.environments.restore import has_registry


def test_split_reference():
    assert split_reference("repo") == ("repo", "latest")
    assert split_reference("repo:1.0") == ("repo", "1.0")
    assert split_reference("host:5000/team/repo") == ("host:5000/team/repo", "latest")
    assert split_reference("host:5000/team/repo:2") == ("host:5000/team/repo", "2")
    assert split_reference("repo@sha256:abc") == ("repo", "sha256:abc")


def test_only_references_naming_a_registry_are_pulled_by_restore():
    assert has_registry("registry.lab.example/team/env:1") and has_registry("localhost:5000/x") and has_registry("localhost/x")
    assert not has_registry("mlcontainer-frozen/nb:abc") and not has_registry("ubuntu")


def test_reference_parts():
    from jupyter_mlcontainer.core.names import reference_parts
    from jupyter_mlcontainer.images.probe import default_prepared_tag
    from jupyter_mlcontainer.core.names import slug

    assert reference_parts("host:5000/team/repo:2@sha256:ab") == ("host:5000/team/repo", "2", "sha256:ab")
    assert reference_parts("repo@sha256:ab") == ("repo", None, "sha256:ab")
    assert reference_parts("host:5000/repo") == ("host:5000/repo", None, None)
    assert default_prepared_tag("pytorch/pytorch@sha256:ab") == "pytorch/pytorch:latest-ipykernel"
    assert default_prepared_tag("host:5000/x:1") == "host:5000/x:1-ipykernel"
    assert slug("Repo/Img:1@sha256:ab") == "repo-img-1"


def test_check_reference():
    import pytest

    from jupyter_mlcontainer.core.errors import BadRequest
    from jupyter_mlcontainer.core.names import check_reference

    for good in ("ubuntu", "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime", "127.0.0.1:5000/mlctest/pull:Ab_1",
                 "Registry.Lab:5000/team/env@sha256:" + "a" * 64, "sha256:" + "b" * 64, "nvcr.io/nvidia/pytorch:24.01-py3"):
        check_reference(good)
    for bad in ("A", "a;rm -rf /", "Team/env", "repo:", "repo:-x", "repo@md5:zz", "", "x" * 600, "repo/"):
        with pytest.raises(BadRequest, match="Not an image reference"):
            check_reference(bad)
