"""``jupyter mlcontainer``: the command line front door over the same service as the REST API.

:func:`main` is the ``jupyter-mlcontainer`` script (pyproject's ``jupyter_mlcontainer.cli:main``;
``jupyter mlcontainer`` finds it by name) and ``python -m jupyter_mlcontainer.cli``. The parser is
parser.py; the commands are grouped by topic: kernels.py, images.py, sharing.py (freeze, restore,
Binder), admin.py (status, doctor, cleanup, the cache's keeper); common.py holds what they share.
Like every front door it imports only the service and core (pyproject's import contracts).
"""

from __future__ import annotations

import sys
from typing import Sequence

from ..core.errors import MLContainerError
from ..core.policy import PrintableStream
from .common import CLIError
from .parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (``argv``, else this process's); its exit code. Errors raised on
    purpose are one line on stderr and exit code 1; anything else is a bug, with its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Everything printed passes through one guard: no control character from a notebook, an
    # image or an engine reaches the terminal (docs/security.md, "Restoring someone's notebook").
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrintableStream(sys.stdout), PrintableStream(sys.stderr)
    try:
        return args.func(args)
    except (MLContainerError, CLIError) as exc:  # raised on purpose: anything else is a bug, with its traceback
        print(f"jupyter mlcontainer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout, sys.stderr = streams
