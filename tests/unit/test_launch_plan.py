"""A launch's decisions, without Docker (kernels/launch_plan.py): which transport, which
workspace, which GPUs, whether the container joins its network after start, whether the warm
pool may serve it. The provisioner carries them out (tests/test_provisioner.py and others)."""

from __future__ import annotations

import pytest

from jupyter_mlcontainer.core.errors import BadRequest, EngineError
from jupyter_mlcontainer.engines.base import EngineKind, EngineLocation
from jupyter_mlcontainer.core.labels import LABEL_INJECTED_ENV
from jupyter_mlcontainer.kernels.bootstrap import KEEPER_ENV, NETWORK_GATE_ENV
from jupyter_mlcontainer.kernels.launch_plan import (
    BackendFacts, LaunchSettings, choose_transport, choose_workspace, resolve_gpus,
)

from .test_container_spec import plan

HERE = EngineLocation(True, "127.0.0.1")
ELSEWHERE = EngineLocation(False, "10.1.2.3")
SWARM = EngineLocation(False, "")


def transport(wanted, location=HERE, fits=True, linux=True, desktop=False):
    return choose_transport(wanted, location, "/run/user/1/jupyter/k", fits, on_linux=linux, desktop_vm=desktop)


def test_unix_sockets_when_the_engine_is_on_this_linux_host_and_the_path_fits():
    assert transport("auto") == ("ipc", "")
    assert transport("tcp") == ("tcp", "")
    assert transport("auto", ELSEWHERE) == ("tcp", "") and transport("auto", SWARM) == ("tcp", "")
    assert transport("auto", linux=False) == ("tcp", "") and transport("auto", desktop=True) == ("tcp", "")
    chosen, warning = transport("auto", fits=False)
    assert chosen == "tcp" and "too deep for Unix sockets" in warning
    with pytest.raises(EngineError, match="needs the engine on this host"):
        transport("ipc", ELSEWHERE)
    with pytest.raises(EngineError, match="too long a path"):
        transport("ipc", fits=False)


def test_the_workspace_is_the_server_root_unless_the_kernel_starts_outside_it():
    assert choose_workspace("", "/srv/project", "/srv/project/nb") == "/srv/project"
    assert choose_workspace("/data", "/srv/project", "/data/x") == "/data"
    assert choose_workspace("", "/srv/project", "/tmp/elsewhere") == "/tmp/elsewhere"
    assert choose_workspace("", None, "/home/ada/nb") == "/home/ada/nb"
    with pytest.raises(EngineError, match="Refusing to mount the host's /"):
        choose_workspace("", "/", "/")


def test_auto_gpus_are_the_hosts_unless_a_scheduler_places_them():
    host = BackendFacts(location=HERE)
    cluster = BackendFacts(location=SWARM, gpus_placed_by_scheduler=True)
    asked = []

    def has_gpus(answer):
        def ask():
            asked.append(answer)
            return answer
        return ask

    assert resolve_gpus("auto", host, has_gpus(True)) == "all"
    assert resolve_gpus("auto", host, has_gpus(False)) == "none"
    assert resolve_gpus("auto", cluster, has_gpus(True)) == "none" and asked == [True, False]  # not asked
    assert resolve_gpus("0,1", host, has_gpus(True)) == "0,1" and len(asked) == 2
    with pytest.raises(BadRequest, match="not understood"):
        resolve_gpus("lots", host, has_gpus(True))


def test_host_gpus_are_checked_and_a_scheduler_s_are_not():
    assert plan().check_host_gpus is True
    assert plan(gpus="none").check_host_gpus is False
    swarm = plan(location=SWARM, connection_files={"kernel.json": b"{}", "p": b"", "g": b""},
                 passwd_group=("/f/p", "/f/g"))
    assert swarm.may_use_spare is False  # a spare's FIFO is in a folder of this host


def test_a_cold_start_on_unix_sockets_joins_the_kernels_network_after_start():
    ipc = plan(transport="ipc")
    assert ipc.spec.network == "mlcontainer-kernels" and ipc.spec.network_after_start is None  # a spare's template
    assert ipc.cold_spec.network == "none" and ipc.cold_spec.network_after_start == "mlcontainer-kernels"
    assert ipc.cold_spec.env[NETWORK_GATE_ENV] == "/run/mlcontainer/network-ready"
    assert plan(transport="tcp").cold_spec.network_after_start is None  # its ports are published at create
    named = LaunchSettings(image="repo/img:1", gpus="2", network="bridge")
    assert plan(transport="ipc", settings=named).cold_spec.network == "bridge"  # the user's network: as it is


def test_the_warm_pool_serves_only_when_asked_for():
    assert plan().may_use_spare is False
    pooled = LaunchSettings(image="repo/img:1", gpus="2", warm_pool_size=1)
    assert plan(settings=pooled).may_use_spare is True


def test_a_kernel_restarts_in_its_container_only_where_its_folder_is_this_hosts():
    here = plan()
    assert here.restarts_in_place is True and here.spec.env[KEEPER_ENV] == "1"
    assert KEEPER_ENV in here.spec.labels[LABEL_INJECTED_ENV].split(",")
    elsewhere = plan(location=ELSEWHERE, connection_files={"kernel.json": b"{}", "p": b"", "g": b""})
    assert elsewhere.restarts_in_place is False and KEEPER_ENV not in elsewhere.spec.env
    off = plan(settings=LaunchSettings(image="repo/img:1", gpus="2", warm_restart=False))
    assert off.restarts_in_place is False and KEEPER_ENV not in off.spec.env


def test_a_kernelspec_gpu_variable_overridden_by_no_gpu_is_said():
    quiet = plan(gpus="none")
    assert quiet.warnings == [] and quiet.spec.env["NVIDIA_VISIBLE_DEVICES"] == "void"
    loud = plan(gpus="none", launch_env={"NVIDIA_VISIBLE_DEVICES": "all"}, kernelspec_env={"NVIDIA_VISIBLE_DEVICES": "all"})
    assert any("NVIDIA_VISIBLE_DEVICES=all" in warning for warning in loud.warnings)


def test_what_the_backend_says_shapes_the_container():
    timed = LaunchSettings(image="repo/img:1", gpus="2", placement_timeout=5.0, memory="", shm_size="auto")
    s = plan(settings=timed, kind=EngineKind("podman", True)).spec
    assert s.placement_timeout == 5.0 and s.userns == "keep-id"
    assert s.shm_size == "1g"  # no limit and no engine memory known: 1g
    assert plan(location=ELSEWHERE, connection_files={"kernel.json": b"{}", "p": b"", "g": b""},
                passwd_group=("/f/p", "/f/g")).spec.publish_ip == "10.1.2.3"
