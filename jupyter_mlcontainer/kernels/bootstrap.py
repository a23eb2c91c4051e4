"""The text a kernel container's first process runs (``python -c TEXT``): composed once from real
files, kernels/scripts/bootstrap.py and the cache's link_models.py (see their docstrings).

The container spec (container_spec.py) makes :data:`BOOTSTRAP` a kernel's entrypoint, the warm
pool (pool.py) makes :data:`SPARE_BOOTSTRAP` a spare's. Text and not a file in the image: the
image is the user's, unchanged, and a bind mount of this package would not reach a remote engine.
"""

from __future__ import annotations

from importlib import resources

from ..engines.base import CONNECTION_DIR_IN_CONTAINER
from .scripts import bootstrap as _script


def _text(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


_SOURCE = _text("jupyter_mlcontainer.cache.scripts", "link_models.py") + "\n" + _text(
    "jupyter_mlcontainer.kernels.scripts", "bootstrap.py"
)
BOOTSTRAP = _SOURCE + "\nkernel_main()\n"
SPARE_BOOTSTRAP = _SOURCE + "\nspare_main()\n"

# What the provisioner and the pool share with the script (held equal by a unit test).
HOME_REFUSED_EXIT = _script.HOME_REFUSED_EXIT
NETWORK_GATE_ENV = _script.NETWORK_GATE_ENV
NO_PIP_ENV = _script.NO_PIP_ENV
NETWORK_GATE_IN_CONTAINER = f"{CONNECTION_DIR_IN_CONTAINER}/network-ready"
CLAIM_FIFO_IN_CONTAINER = _script.CLAIM_FIFO
KEEPER_ENV = _script.KEEPER_ENV
# The keeper's files, in the kernel's private folder (kernels/restarts.py reads and writes them there).
RESTART_FILES_IN_CONTAINER = (_script.RESTART_FIFO, _script.RESTART_HOLD, _script.SHUTDOWN_MARK, _script.KERNEL_ENDED)
