"""Which clusters the service lists from the kernelspecs (no engine reached)."""

from __future__ import annotations

from types import SimpleNamespace

from jupyter_mlcontainer.core.settings import MLContainer
from jupyter_mlcontainer.service.admin import AdminMixin


class Admin(AdminMixin):
    settings = MLContainer()


def spec(**config):
    return SimpleNamespace(name="k", image="i", config=config)


def test_a_kernelspec_with_an_unknown_placement_leaves_the_lists_usable():
    """A hand-edited kernelspec (an unknown or miscased placement) is skipped, as before the
    registry: the image list and the orphan sweep do not fail for everyone because of it."""
    assert Admin().clusters([spec(placement="nonsense", docker_host="tcp://m:2376"),
                             spec(placement="Swarm", docker_host="tcp://m:2376"),
                             spec(placement="local", docker_host="tcp://m:2376"), spec()]) == []
