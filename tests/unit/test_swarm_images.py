"""A node's answer to the image probe, and Swarm's timestamps (swarm_images)."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.engines.swarm_images import _answer, _seconds


@pytest.mark.parametrize("status, said", [
    ({"State": "complete"}, "present"),
    ({"State": "rejected", "Err": "No such image: sha256:0123abcd"}, "missing"),
    ({"State": "failed", "Err": "starting container failed: exec: \"python3\": permission denied"},
     "unknown: starting container failed: exec: \"python3\": permission denied"),
    ({"State": "shutdown"}, "unknown: shutdown"),
    ({"State": "preparing"}, ""),  # no answer yet
    ({"State": "running"}, ""),
])
def test_a_nodes_answer_from_its_task(status, said):
    assert _answer(status) == said


@pytest.mark.parametrize("stamp, seconds", [
    ("2026-11-29T15:10:47.123456789Z", 1795965047.123456),
    ("2026-11-29T15:10:47Z", 1795965047.0),
    ("2026-11-29T15:10:47.5Z", 1795965047.5),
    ("not a time", 0.0),
    ("", 0.0),
])
def test_swarm_timestamps(stamp, seconds):
    assert _seconds(stamp) == pytest.approx(seconds)
