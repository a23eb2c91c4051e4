"""The command line of ``jupyter mlcontainer``: every command, its arguments and the function that
runs it (``func``). :func:`~.main` parses with :func:`build_parser`; one ``_add_*`` function per
command, called in the order ``--help`` lists them."""

from __future__ import annotations

import argparse
from typing import Any

from .admin import cmd_cache_keeper, cmd_cleanup, cmd_doctor, cmd_helper_image, cmd_status
from .common import package_version
from .images import cmd_build, cmd_image_nodes, cmd_image_prepare, cmd_image_probe, cmd_image_remove, cmd_pull
from .kernels import cmd_kernel_add, cmd_kernel_list, cmd_kernel_remove
from .sharing import cmd_export_binder, cmd_freeze, cmd_restore

Commands = Any  # what add_subparsers returns (argparse's _SubParsersAction: private)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; called once per run by :func:`~.main`."""
    parser = argparse.ArgumentParser(
        prog="jupyter mlcontainer",
        description="Jupyter kernels inside CUDA/PyTorch Docker images.",
    )
    parser.add_argument("--version", action="version", version=package_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_kernel, _add_image, _add_freeze, _add_doctor, _add_pull, _add_build, _add_restore,
                _add_export_binder, _add_status, _add_cache_keeper, _add_helper_image, _add_cleanup):
        add(sub)
    return parser


def _add_kernel(sub: Commands) -> None:
    kernel = sub.add_parser("kernel", help="add, list and remove container kernelspecs")
    ksub = kernel.add_subparsers(dest="kernel_command", required=True, metavar="ACTION")
    add = ksub.add_parser("add", help="write a kernelspec that runs IMAGE")
    add.add_argument("image", metavar="IMAGE")
    add.add_argument("--name", help="kernelspec name (default: mlc-<image>)")
    add.add_argument("--display-name", help="name shown in the launcher (default: image and versions)")
    add.add_argument("--gpus", help="all | none | auto | N | ID,ID (default: auto)")
    add.add_argument("--memory", help="memory limit, e.g. 8g")
    add.add_argument("--cpus", help="CPU limit, e.g. 4")
    add.add_argument("--shm-size", help="/dev/shm size, e.g. 2g (default: auto)")
    add.add_argument("--env", action="append", metavar="KEY=VALUE", help="environment variable (repeatable)")
    add.add_argument("--option", action="append", metavar="KEY=VALUE",
                     help="any other kernel option of the kernelspec (repeatable): placement, docker_host, "
                          "cache_volume, workspace, network, kernel_transport, transport_encryption, "
                          "placement_timeout, slurm_login, slurm.partition..., pull (auto: a missing image is pulled at start; never)")
    slurm = add.add_argument_group("Slurm", "the kernel runs as a job on a Slurm cluster (docs/slurm.md)")
    slurm.add_argument("--slurm", metavar="LOGIN", nargs="?", const="",
                       help="placement slurm; LOGIN runs Slurm's tools as you on the login node, e.g. 'ssh login1' "
                            "(none: this host has them)")
    slurm.add_argument("--partition", help="the job's partition")
    slurm.add_argument("--time-limit", metavar="TIME", help="the job's time limit, as sbatch takes it (2:00:00)")
    slurm.add_argument("--account", help="the job's account")
    slurm.add_argument("--qos", help="the job's QOS")
    slurm.add_argument("--gpu-type", help="the GPUs' gres type, e.g. h100 (--gpus 1 then asks for gpu:h100:1)")
    slurm.add_argument("--slurm-store", metavar="PATH", help="your folder on the cluster's shared file system for "
                       "images and the cache ({user}: your name; default ~/.cache/mlcontainer/slurm)")
    slurm.add_argument("--slurm-hold", metavar="SECONDS", help="keep a shut-down kernel's job allocated this long "
                       "for the next kernel of this kernelspec (a warm start; default: off)")
    where = add.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user (default)")
    where.add_argument("--sys-prefix", action="store_true", help="install into this Python's prefix (venv/conda)")
    where.add_argument("--prefix", help="install under this prefix")
    add.add_argument("--prepare", action="store_true", help="if IMAGE lacks ipykernel, build IMAGE-ipykernel first")
    add.add_argument("--tag", help="tag of the prepared image (with --prepare)")
    add.add_argument("--wheelhouse", help="folder of wheels for --prepare when containers have no index")
    add.add_argument("--index-url", help="package index for --prepare")
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(func=cmd_kernel_add)
    lst = ksub.add_parser("list", help="list container kernelspecs")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_kernel_list)
    rm = ksub.add_parser("remove", help="remove container kernelspecs")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=cmd_kernel_remove)


def _add_image(sub: Commands) -> None:
    image = sub.add_parser("image", help="inspect images and make them kernel-ready")
    isub = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    probe = isub.add_parser("probe", help="show Python / ipykernel / PyTorch / CUDA in IMAGE")
    probe.add_argument("image", metavar="IMAGE")
    probe.add_argument("--refresh", action="store_true", help="probe again instead of using the cache")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=cmd_image_probe)
    nodes = isub.add_parser("nodes", help="which nodes of a Swarm hold IMAGE (this very build: the manager's image id)")
    nodes.add_argument("image", metavar="IMAGE")
    nodes.add_argument("--swarm", metavar="MANAGER", help="the Swarm manager's address (default: every Swarm "
                       "the container kernelspecs name)")
    nodes.add_argument("--json", action="store_true")
    nodes.set_defaults(func=cmd_image_nodes)
    prep = isub.add_parser("prepare", help="build IMAGE + ipykernel (for images without it)")
    prep.add_argument("image", metavar="IMAGE")
    prep.add_argument("-t", "--tag", help="tag of the new image (default: IMAGE-ipykernel)")
    prep.add_argument("--wheelhouse", help="host folder of wheels to install from, offline")
    prep.add_argument("--index-url", help="package index to install from")
    prep.set_defaults(func=cmd_image_prepare)
    rm = isub.add_parser("remove", help="remove images no container kernel or kernelspec uses")
    rm.add_argument("images", nargs="+", metavar="IMAGE")
    rm.set_defaults(func=cmd_image_remove)


def _add_freeze(sub: Commands) -> None:
    fr = sub.add_parser("freeze", help="write a pinned Dockerfile from a running container kernel")
    which = fr.add_mutually_exclusive_group(required=True)
    which.add_argument("--kernel-id", help="the kernel to freeze")
    which.add_argument("--container", help="the kernel's container id")
    fr.add_argument("-o", "--output", help="Dockerfile path or folder (default: the notebook's folder)")
    fr.add_argument("--force", action="store_true", help="overwrite existing files")
    fr.add_argument("--notebook", help="record the environment in this notebook's metadata")
    fr.add_argument("--json", action="store_true")
    fr.set_defaults(func=cmd_freeze)


def _add_doctor(sub: Commands) -> None:
    dr = sub.add_parser(
        "doctor", help="check that this machine is ready for container kernels; each failure says how to fix it")
    dr.add_argument("--json", action="store_true")
    dr.add_argument("--notebook", metavar="NOTEBOOK.ipynb",
                    help="instead: whether this host runs a frozen notebook's GPU code as it ran (its driver against "
                         "the image's CUDA, its GPUs against the framework's build), without restoring it")
    dr.set_defaults(func=cmd_doctor)


def _add_pull(sub: Commands) -> None:
    pl = sub.add_parser("pull", help="pull an image, with progress (the panel's pull, from the command line)")
    pl.add_argument("image", metavar="IMAGE")
    pl.set_defaults(func=cmd_pull)


def _add_build(sub: Commands) -> None:
    bd = sub.add_parser("build", help="build an image from a (frozen) Dockerfile, with progress")
    bd.add_argument("dockerfile", metavar="PATH/Dockerfile")
    bd.add_argument("-t", "--tag", required=True)
    bd.add_argument("--wheelhouse", help="folder of wheels sent as ./wheelhouse (offline builds)")
    bd.add_argument("--build-arg", action="append", metavar="KEY=VALUE", help="e.g. PIP_NO_INDEX=1 (repeatable)")
    bd.set_defaults(func=cmd_build)


def _add_restore(sub: Commands) -> None:
    rs = sub.add_parser("restore", help="make a frozen notebook's environment available: shows the plan, then pulls "
                                        "or builds and adds its kernel")
    rs.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    rs.add_argument("--no-pull", action="store_true", help="build from the Dockerfile without trying a pull")
    rs.add_argument("--wheelhouse", help="folder of wheels for an offline build")
    rs.add_argument("--build-arg", action="append", metavar="KEY=VALUE")
    rs.add_argument("--ignore-checks", action="store_true",
                    help="restore even when a check of this host blocks (a driver too old for the image's CUDA, a GPU "
                         "its framework was not built for), as a CPU kernel: for when you will fix the host")
    rs.add_argument("-y", "--yes", action="store_true",
                    help="confirm the plan without a prompt (it is printed first: the image, the Dockerfile, the "
                         "kernelspec)")
    rs.set_defaults(func=cmd_restore)


def _add_export_binder(sub: Commands) -> None:
    eb = sub.add_parser("export-binder", help="write binder/ for Binder / repo2docker from a frozen Dockerfile")
    eb.add_argument("--dockerfile", default="Dockerfile", help="the frozen Dockerfile (default: ./Dockerfile)")
    eb.add_argument("--repo", default=".", help="the repository root (default: .)")
    eb.add_argument("--force", action="store_true", help="replace an existing binder/Dockerfile")
    eb.set_defaults(func=cmd_export_binder)


def _add_status(sub: Commands) -> None:
    st = sub.add_parser("status", help="engine, NVIDIA runtime, GPUs and cache volume")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)


def _add_cache_keeper(sub: Commands) -> None:
    ck = sub.add_parser(
        "cache-keeper",
        help="(admin, as root on the host) keep a host-folder cache shared safely by users with an engine each: "
             "sets it up, verifies the models users download into the shared store, sets aside a HOME "
             "someone else made at a user's name",
    )
    ck.add_argument("path", help="the cache folder (c.MLContainer.cache_volume of every user)")
    ck.add_argument("--max-watches", type=int, default=0,
                    help="the most folders it watches with inotify (default: 20000, at most an eighth of "
                         "fs.inotify.max_user_watches; the rest are looked at every 10 minutes)")
    ck.set_defaults(func=cmd_cache_keeper)


def _add_helper_image(sub: Commands) -> None:
    hi = sub.add_parser(
        "helper-image",
        help="make the image the cache's keeper runs in (from this Python, never a kernel's image) on the engine, "
             "and print its name: load it on every node of a Swarm",
    )
    hi.set_defaults(func=cmd_helper_image)


def _add_cleanup(sub: Commands) -> None:
    clean = sub.add_parser("cleanup", help="remove containers left by Jupyter processes that died")
    clean.add_argument("--dry-run", action="store_true", help="only list them")
    clean.set_defaults(func=cmd_cleanup)
