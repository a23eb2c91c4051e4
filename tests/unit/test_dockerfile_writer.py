"""The escaping writer for generated files (dockerfile.py): escape, or refuse what cannot be
written exactly. Freeze's end-to-end check with a real build is in tests/test_freeze.py."""

from __future__ import annotations

import pytest


def test_the_writer_escapes_or_refuses():
    from jupyter_mlcontainer.environments.dockerfile import Unrepresentable, comment, env_instruction, requirement_line

    assert env_instruction("A", 'x"$y\\') == 'ENV A="x\\"\\$y\\\\"'
    assert comment("one\ntwo\rthree") == "# one\\ntwo\\rthree"
    for call in (lambda: env_instruction("A B", "1"), lambda: env_instruction("A", "x\ny"),
                 lambda: requirement_line("x", url="https://a/b\n--index-url http://e"),
                 lambda: requirement_line("x", "1.0 --hash=sha256:00"), lambda: requirement_line("-r", "1")):
        with pytest.raises(Unrepresentable):
            call()
    assert requirement_line("x", url="https://a/b.whl#sha256=00") == "x @ https://a/b.whl#sha256=00"
