"""The local engine implements the whole backend seam that pools and clusters will implement."""

from __future__ import annotations

import inspect

from jupyter_mlcontainer.engines.base import ContainerBackend
from jupyter_mlcontainer.engines.docker import Engine


def test_the_engine_implements_the_backend_seam():
    engine = Engine("unix:///nonexistent.sock")  # no call is made
    assert isinstance(engine, ContainerBackend)
    for name, member in inspect.getmembers(ContainerBackend, inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.signature(getattr(Engine, name)).parameters.keys() >= {
                p for p in inspect.signature(member).parameters if p != "options"
            }, name


def test_the_swarm_backend_implements_the_seam_member_by_member():
    from jupyter_mlcontainer.engines.docker import get_engine
    from jupyter_mlcontainer.engines.swarm import SwarmBackend, get_swarm

    backend = SwarmBackend("tcp://127.0.0.1:9")  # no call is made
    assert isinstance(backend, ContainerBackend)
    assert not hasattr(SwarmBackend, "__getattr__")  # each member answered on purpose, none forwarded blindly
    for name, member in inspect.getmembers(ContainerBackend, inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.signature(getattr(SwarmBackend, name)).parameters.keys() >= {
                p for p in inspect.signature(member).parameters if p != "options"
            }, name
    assert get_swarm(None).engine is get_engine(None)  # None: the environment's engine, as get_engine's
