"""Image references, restore names and Dockerfile text: pure rules."""

from __future__ import annotations

from jupyter_mlcontainer.engine import split_reference
from jupyter_mlcontainer.restore import has_registry


def test_split_reference():
    assert split_reference("repo") == ("repo", "latest")
    assert split_reference("repo:1.0") == ("repo", "1.0")
    assert split_reference("host:5000/team/repo") == ("host:5000/team/repo", "latest")
    assert split_reference("host:5000/team/repo:2") == ("host:5000/team/repo", "2")
    assert split_reference("repo@sha256:abc") == ("repo", "sha256:abc")


def test_only_references_naming_a_registry_are_pulled_by_restore():
    assert has_registry("registry.lab.example/team/env:1") and has_registry("localhost:5000/x") and has_registry("localhost/x")
    assert not has_registry("mlcontainer-frozen/nb:abc") and not has_registry("ubuntu")
