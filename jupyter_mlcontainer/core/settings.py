"""The settings every part shares: which engine, which cache volume, how large a build may be.

One configurable section, ``c.MLContainer``, read by the server extension (panel, REST API),
by each container kernel's provisioner, and by the ``jupyter mlcontainer`` CLI, so that they
cannot point at different engines or volumes. Set it in ``jupyter_server_config.py`` (the CLI
reads that file too) or through the environment variables named in each ``help``.
"""

from __future__ import annotations

import os

from traitlets import Integer, Unicode, default
from traitlets.config import Config, Configurable

from .errors import ConfigurationError

DEFAULT_CONTEXT_LIMIT_MB = 4096
DEFAULT_VOLUME = "mlcontainer-cache"  # the cache every kernel mounts, unless configured


def is_host_folder(cache: str) -> bool:
    """``cache_volume`` names a host folder (an absolute path) rather than a named volume."""
    return cache.startswith("/")


class MLContainer(Configurable):
    """``c.MLContainer.*``: the settings shared by the server, the kernels and the CLI."""

    docker_host = Unicode(
        config=True,
        help="The container engine's address (unix:///var/run/docker.sock, "
        "unix:///run/user/1000/docker.sock for rootless Docker, tcp://host:2376). "
        "Default: DOCKER_HOST, else the local socket.",
    )
    cache_volume = Unicode(
        config=True,
        help="The named volume every container kernel mounts for model and package caches and "
        "the kernel user's HOME; shown by the panel and `jupyter mlcontainer status`. An "
        "absolute path names a host folder instead (on the engine's host), which is how users "
        "with an engine each (rootless Docker, Podman) share one cache: an admin makes it once "
        "and runs its keeper (sudo mkdir -p /srv/mlcontainer-cache && sudo jupyter mlcontainer "
        "cache-keeper /srv/mlcontainer-cache). A kernelspec may name another one. Default: "
        "MLCONTAINER_CACHE_VOLUME, else mlcontainer-cache.",
    )
    helper_image = Unicode(
        config=True,
        help="The image the cache's keeper and its one-shot set-up run in, with root's rights over "
        "the cache (on a rootful engine). Empty (the default): an image made on the engine from "
        "this server's own Python and the package's helper scripts, offline, named "
        "mlcontainer-helper:<content hash>; never a kernel's image. Set it where every server "
        "must run one image (a Swarm, whose nodes hold it) or where the engine runs another CPU "
        "architecture than this host: the id that `jupyter mlcontainer helper-image` prints (run "
        "where the architecture matches), or name@sha256:... Default: MLCONTAINER_HELPER_IMAGE.",
    )
    build_context_limit_mb = Integer(
        min=1,
        config=True,
        help="Largest build context (the Dockerfile and what its COPY/ADD lines name) a build or "
        "a restore sends to the engine, in MB; larger ones are refused before anything is "
        "packed. Default: MLCONTAINER_BUILD_CONTEXT_LIMIT_MB, else 4096.",
    )

    @default("docker_host")
    def _docker_host_default(self) -> str:
        return os.environ.get("DOCKER_HOST", "")

    @default("cache_volume")
    def _cache_volume_default(self) -> str:
        return os.environ.get("MLCONTAINER_CACHE_VOLUME", DEFAULT_VOLUME)

    @default("helper_image")
    def _helper_image_default(self) -> str:
        return os.environ.get("MLCONTAINER_HELPER_IMAGE", "")

    @default("build_context_limit_mb")
    def _limit_default(self) -> int:
        raw = os.environ.get("MLCONTAINER_BUILD_CONTEXT_LIMIT_MB", "")
        try:
            return int(raw) if raw else DEFAULT_CONTEXT_LIMIT_MB
        except ValueError:
            raise ConfigurationError(f"MLCONTAINER_BUILD_CONTEXT_LIMIT_MB={raw!r}: give a number of megabytes") from None


def server_config() -> Config:
    """The Jupyter server's configuration files (``jupyter_server_config.py`` / ``.json`` on
    Jupyter's config path, later ones winning as in the server), for front doors that are not
    the server (the CLI), so that they see the same ``c.MLContainer`` settings."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    merged = Config()
    for folder in reversed(jupyter_config_path()):
        for loader in (JSONFileConfigLoader, PyFileConfigLoader):
            suffix = ".json" if loader is JSONFileConfigLoader else ".py"
            path = os.path.join(folder, "jupyter_server_config" + suffix)
            if os.path.isfile(path):
                try:
                    merged.merge(loader("jupyter_server_config" + suffix, path=folder).load_config())
                except Exception as exc:  # a broken file is the server's problem; say it
                    raise ConfigurationError(f"Cannot read {path}: {exc}") from None
    return merged
