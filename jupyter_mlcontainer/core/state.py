"""Where jupyter-mlcontainer keeps its small on-disk state (probe cache, volume marks)."""

from __future__ import annotations

import os

from jupyter_core.paths import jupyter_data_dir

STATE_DIR_ENV = "JUPYTER_MLCONTAINER_STATE_DIR"


def state_dir() -> str:
    """``$JUPYTER_MLCONTAINER_STATE_DIR`` or ``<jupyter data dir>/mlcontainer``."""
    return os.environ.get(STATE_DIR_ENV) or os.path.join(jupyter_data_dir(), "mlcontainer")
