"""The error hierarchy's statuses and the one shared setting section (no engine needed)."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.core.errors import (
    BadRequest, ConfigurationError, ContainerNotFound, ContainerNotRunning, ContextTooLarge, EngineError,
    EngineUnavailable, FreezeError, GpuRuntimeMissing, ImageNotFound, ImageNotUsable, JobNotFound,
    KernelContainerNotFound, KernelSpecError, MLContainerError, OutputExists, PathRefused, PortInUse,
    RestorePlanChanged, status_for,
)
from jupyter_mlcontainer.core.settings import MLContainer, server_config


@pytest.mark.parametrize("exc, status", [
    (EngineUnavailable("down"), 503), (ImageNotFound("x"), 404), (ContainerNotFound("x"), 404),
    (KernelContainerNotFound("x"), 404), (JobNotFound("x"), 404), (PortInUse("x"), 409), (ContainerNotRunning("x"), 409),
    (OutputExists("x"), 409), (RestorePlanChanged("x"), 409), (GpuRuntimeMissing("x"), 400), (ImageNotUsable("x"), 400),
    (PathRefused("x"), 400), (ContextTooLarge("x"), 400), (EngineError("x"), 502), (RuntimeError("bug"), 500),
    (KernelSpecError("x"), 400), (FreezeError("x"), 400), (ConfigurationError("x"), 500),
    # A bug's error is a 500, whatever its type: only what is raised on purpose says "your input".
    (ValueError("bug"), 500), (KeyError("bug"), 500),
])
def test_each_error_carries_its_http_status(exc, status):
    assert status_for(exc) == status


def test_one_hierarchy_rooted_where_it_belongs():
    """A refusal of the user's input is no engine failure; an engine's "not found" is both."""
    for refusal in (FreezeError, KernelSpecError, PathRefused, ContextTooLarge, JobNotFound):
        assert issubclass(refusal, MLContainerError) and not issubclass(refusal, (EngineError, ValueError, KeyError))
    assert issubclass(ImageNotFound, EngineError) and status_for(ImageNotFound("x")) == 404
    assert issubclass(PathRefused, BadRequest) and issubclass(GpuRuntimeMissing, BadRequest)


def test_the_shared_settings_come_from_config_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONTAINER_CACHE_VOLUME", "from-env")
    monkeypatch.setenv("DOCKER_HOST", "unix:///env.sock")
    assert MLContainer().cache_volume == "from-env" and MLContainer().docker_host == "unix:///env.sock"
    (tmp_path / "jupyter_server_config.py").write_text("c.MLContainer.cache_volume = 'from-file'\n")
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path))
    settings = MLContainer(config=server_config())
    assert settings.cache_volume == "from-file" and settings.docker_host == "unix:///env.sock"
    monkeypatch.setenv("MLCONTAINER_BUILD_CONTEXT_LIMIT_MB", "lots")
    with pytest.raises(ConfigurationError, match="number of megabytes"):
        MLContainer().build_context_limit_mb


@pytest.mark.parametrize("status, words", [
    (409, "conflict: unable to delete 610d773fbe17 (cannot be forced) - image is being used by running container d0"),
    (409, 'Conflict. The container name "/x" is already in use'), (400, "invalid reference format"),
    (404, "No such volume: v"), (500, "something else"),
])
def test_every_engine_refusal_is_an_engine_error(status, words):
    """Callers that tolerate an engine's refusal catch EngineError (a helper image still in use, a
    name taken): whatever the engine answers must arrive as one, whatever else it also is."""
    import docker.errors
    import requests

    from jupyter_mlcontainer.engines.docker_errors import translate

    response = requests.Response()
    response.status_code = status
    kind = docker.errors.NotFound if status == 404 else docker.errors.APIError  # as docker-py raises them
    error = translate(kind("engine", response=response, explanation=words))
    assert isinstance(error, EngineError), type(error)
    assert status_for(error) == (status if status in (400, 404, 409) else 502)
