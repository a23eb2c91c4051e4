"""jupyter-mlcontainer: Jupyter kernels inside CUDA/PyTorch Docker images."""

try:
    from ._version import __version__
except ImportError:  # running from a source tree that was never built
    __version__ = "0.0.0+unknown"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-mlcontainer"}]


def _jupyter_server_extension_points():
    from .server.app import MLContainerApp

    return [{"module": "jupyter_mlcontainer", "app": MLContainerApp}]
