"""The kernel's connection file and where its sockets go (connection.py)."""

from __future__ import annotations

import json
import os

from jupyter_mlcontainer.kernels.connection import ipc_base, ipc_fits, write_connection_file
from jupyter_mlcontainer.kernels.container_spec import CONTAINER_PORTS


def test_on_ipc_the_kernel_binds_sockets_in_its_folder_as_the_container_sees_it(tmp_path):
    path = write_connection_file(str(tmp_path), key=b"k", signature_scheme="hmac-sha256", kernel_name="n",
                                 curve={}, transport="ipc")
    info = json.load(open(path))
    assert (info["transport"], info["ip"]) == ("ipc", "/run/mlcontainer/zmq")
    assert {name: info[name] for name in CONTAINER_PORTS} == CONTAINER_PORTS
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds the key
    tcp = json.load(open(write_connection_file(str(tmp_path), key=b"k", signature_scheme="hmac-sha256",
                                               kernel_name="n", curve={})))
    assert (tcp["transport"], tcp["ip"]) == ("tcp", "0.0.0.0")


def test_a_folder_too_deep_for_a_unix_socket_is_told():
    assert ipc_base("/home/ada/.local/share/jupyter/runtime/mlcontainer-1234abcd-x1y2z3w4") == \
        "/home/ada/.local/share/jupyter/runtime/mlcontainer-1234abcd-x1y2z3w4/zmq"
    assert ipc_fits("/home/ada/.local/share/jupyter/runtime/mlcontainer-1234abcd-x1y2z3w4")
    deep = "/tmp/pytest-of-root/pytest-299/test_pip_install_survives_rest4/runtime/mlcontainer-1234abcd-x1y2z3w4"
    assert not ipc_fits(deep)  # 107 bytes is all a socket's address takes
    assert ipc_fits("/" + "a" * (107 - len("/zmq-20005") - 1)) and not ipc_fits("/" + "a" * (107 - len("/zmq-20005")))
