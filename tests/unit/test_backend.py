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
