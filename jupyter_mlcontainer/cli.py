"""``jupyter mlcontainer``: the command line front door over the same service as the REST API.

Every command calls :func:`~.service.cli_service`, which reads ``c.MLContainer`` from the
server's config files and the environment: the CLI acts on the engine and cache volume the
server and its kernels use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from .core.errors import ConfigurationError, MLContainerError
from .core.options import parse_env_pairs
from .core.policy import PrintableStream, printable
from .service import MLContainerService, cli_service


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jupyter-mlcontainer")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


def service() -> MLContainerService:
    try:
        return cli_service()
    except ConfigurationError as exc:  # a broken config file or setting
        raise CLIError(str(exc)) from None


def cmd_kernel_add(args: argparse.Namespace) -> int:
    svc = service()
    image = args.image
    facts = svc.probe_image(image)
    if args.prepare and facts.python and not facts.ipykernel:
        print(f"Image {image} has no ipykernel: building a derived image with it...", file=sys.stderr)
        image, facts = svc.prepare_image(
            image, tag=args.tag, wheelhouse=args.wheelhouse, index_url=args.index_url,
            on_line=lambda line: print(f"  {line}", file=sys.stderr),
        )
        print(f"Built {image}", file=sys.stderr)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    spec = svc.add_kernelspec(
        image, name=args.name, display=args.display_name, gpus=args.gpus, memory=args.memory, cpus=args.cpus,
        shm_size=args.shm_size, env=args.env, options=args.option, user=not prefix, prefix=prefix, facts=facts,
    )
    if args.json:
        _print_json(spec.to_dict())
    else:
        print(f"Installed kernelspec {spec.name} in {spec.resource_dir}")
        print(f"  display name: {spec.display_name}")
    return 0


def cmd_kernel_list(args: argparse.Namespace) -> int:
    specs = service().kernelspecs()
    if args.json:
        _print_json([spec.to_dict() for spec in specs])
        return 0
    if not specs:
        print("No container kernels. Add one: jupyter mlcontainer kernel add IMAGE")
        return 0
    width = max(len(spec.name) for spec in specs)
    for spec in specs:
        extras = " ".join(f"{k}={v}" for k, v in spec.config.items() if k != "env")
        print(f"{spec.name:<{width}}  {spec.display_name}  {extras}".rstrip())
    return 0


def cmd_kernel_remove(args: argparse.Namespace) -> int:
    svc = service()
    for name in args.names:
        path = svc.remove_kernelspec(name)
        print(f"Removed kernelspec {name} ({path})")
    return 0


def cmd_image_probe(args: argparse.Namespace) -> int:
    facts = service().probe_image(args.image, refresh=args.refresh)
    data = facts.public()
    if args.json:
        _print_json(data)
        return 0
    print(f"{args.image}  ({facts.image_id[:19]})")
    print(f"  python:    {facts.python or '-'} {facts.python_version or ''}".rstrip())
    print(f"  ipykernel: {facts.ipykernel or 'missing'}")
    print(f"  pytorch:   {facts.torch or '-'}")
    print(f"  cuda:      {facts.cuda or facts.torch_cuda or '-'}")
    if facts.probe_error:
        print(f"  probe:     {facts.probe_error}")
    return 0


def cmd_image_nodes(args: argparse.Namespace) -> int:
    """Which nodes of each Swarm (--swarm, else those the kernelspecs name) hold IMAGE."""
    answers = service().image_nodes(args.image, args.swarm, on_ask=lambda address: print(
        f"asking every node of the Swarm at {address} (one short task each) ...", file=sys.stderr))
    if args.json:
        _print_json(answers)
        return 0
    for address, nodes in answers.items():
        print(f"{args.image} on the Swarm at {address}:")
        width = max(map(len, nodes), default=0)
        for hostname, state in nodes.items():
            print(f"  {hostname:<{width}}  {state}")
    return 0


def cmd_image_remove(args: argparse.Namespace) -> int:
    svc = service()
    for image in args.images:
        done = svc.remove_image(image)
        print(f"Removed {done['removed']} ({done['id'][:19]})")
    return 0


def cmd_image_prepare(args: argparse.Namespace) -> int:
    tag, facts = service().prepare_image(
        args.image, tag=args.tag, wheelhouse=args.wheelhouse, index_url=args.index_url,
        on_line=lambda line: print(line, file=sys.stderr),
    )
    if tag == args.image:
        print(f"{tag} already has ipykernel {facts.ipykernel}; nothing to do")
    else:
        print(f"Built {tag} (ipykernel {facts.ipykernel}). Add it: jupyter mlcontainer kernel add {tag}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .core.identity import current_user

    svc = service()
    status = svc.status()
    if status["engine"]["reachable"]:
        # This process keeps no pool: the spares are those of this user's running servers.
        status["warm_pool"] = {"spares": svc.live_spares(user=current_user().name)}
    if args.json:
        _print_json(status)
        return 0
    engine = status["engine"]
    if engine["reachable"]:
        print(f"Engine: {engine['kind']} {engine['version']} at {engine['address']} on host {engine['host']} "
              f"({engine['storage_driver']}, cgroup v{engine['cgroup_version']})")
        print(f"NVIDIA runtime: {'yes' if engine['nvidia_runtime'] else 'no'}")
    else:
        print(f"Docker engine: not reachable: {engine.get('reason')}")
    nvml = status["nvml"]
    if nvml["available"]:
        print(f"GPUs: {nvml['gpu_count']} (driver {nvml['driver_version']}, CUDA {nvml['cuda_driver_version']})")
    else:
        print(f"GPUs: none ({nvml['reason']})")
    cache = status["cache_volume"]
    where = ("a host folder of the engine's host" if cache.get("host_folder")
             else "present" if cache.get("exists") else "created on first kernel start")
    print(f"Cache volume: {cache['name']} ({where})")
    spares = status.get("warm_pool", {}).get("spares") or []
    if spares:
        total = sum(s["memory_usage"] or 0 for s in spares) / 2**20
        print(f"Warm spares kept by your running servers: {len(spares)} ({total:.0f} MiB)")
        for spare in spares:
            print(f"  {spare['container_id'][:12]} kernelspec {spare['kernelspec']} ({spare['image']}), "
                  f"{(spare['memory_usage'] or 0) / 2**20:.0f} MiB")
    for cluster in status.get("clusters") or []:
        if cluster.get("reachable") is False:
            print(f"Swarm {cluster['manager']}: not reachable: {cluster['reason']}")
            continue
        print(f"Swarm {cluster['manager']}: {len(cluster['nodes'])} node(s)")
        for node in cluster["nodes"]:
            free = sum(1 for gpu in node["gpus"] if not gpu["kernel_id"])
            gpus = f", GPUs {free} free of {len(node['gpus'])}" if node["gpus"] else ""
            print(f"  {node['hostname']} ({node['role']}, {node['state']}, {node['address']}){gpus}")
            for gpu in node["gpus"]:
                if gpu["kernel_id"]:
                    print(f"    {gpu['id']}: kernel {gpu['kernel_id']}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from .core.identity import current_user

    orphans = service().orphans(remove=not args.dry_run)
    verb = "Would remove" if args.dry_run else "Removed"
    for orphan in orphans:
        print(f"{verb} {orphan.container_id[:12]} ({orphan.role}, kernel {orphan.kernel_id or '-'}, owner {orphan.owner})")
    if not orphans:
        print("No orphaned containers")
    for spare in service().live_spares(user=current_user().name):
        print(f"Kept {spare['container_id'][:12]} (spare of kernelspec {spare['kernelspec'] or '-'}, image "
              f"{spare['image']}): a running server keeps it warm for its next start")
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    import os

    from .core.identity import current_user
    from .service import KernelContainer

    svc = service()
    output_dir, name = None, "Dockerfile"
    if args.output:
        if os.path.isdir(args.output):
            output_dir = args.output
        else:
            output_dir, name = os.path.dirname(os.path.abspath(args.output)), os.path.basename(args.output)
    if args.notebook and not output_dir:
        output_dir = os.path.dirname(os.path.abspath(args.notebook))
    where = dict(output_dir=output_dir, dockerfile_name=name, force=args.force, notebook=args.notebook, write_notebook=True)
    if args.container:  # a container id alone: no kernel to ask for its environment
        result, record = svc.freeze(KernelContainer(svc.engine, args.container), None, **where)
    else:  # any of this user's kernels (from any of their servers), never another user's
        result, record = svc.freeze_kernel(args.kernel_id, user=current_user().name, **where)
    if record is not None:
        print(f"Recorded the environment in {args.notebook}: image {record['image']}, kernel {record['kernelspec']}")
    if args.json:
        _print_json(result.to_dict())
        return 0
    print(f"Wrote {result.dockerfile_path} and {result.requirements_path} in {result.seconds:.2f} s")
    print(f"  base: {result.base_image}" + (f"@{result.base_digest}" if result.base_digest else " (no registry digest: not portable until pushed)"))
    print(f"  {len(result.packages)} Python packages, {len(result.apt_packages)} Debian packages, "
          f"{len(result.conda_packages)} conda packages, {len(result.env)} environment variables")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    def confirm(plan) -> bool:
        print(plan.describe())
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise CLIError("Not restored: read the plan above, then run again with --yes to confirm it")
        return input("Proceed? [y/N] ").strip().lower() in ("y", "yes")

    done = service().restore(
        args.notebook, confirm, pull=not args.no_pull, wheelhouse=args.wheelhouse,
        build_args=parse_env_pairs(args.build_arg), on_line=lambda line: print(line, file=sys.stderr),
    )
    if done.get("declined"):
        print("Not restored.")
        return 1
    print(f"{args.notebook}: image {done['image']} {done['how']}; kernel {done['kernelspec']} ready")
    for note in done.get("notes") or []:
        print(f"Note: {note}")
    return 0


def cmd_export_binder(args: argparse.Namespace) -> int:
    folder = service().export_binder(args.repo, args.dockerfile, overwrite=args.force)
    print(f"Wrote {folder}/Dockerfile and {folder}/requirements-binder.txt (commit them; Binder builds from the repository)")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .service.doctor import report, run_checks

    text, code = report(run_checks(service()), args.json)
    print(text)
    return code


def cmd_cache_keeper(args: argparse.Namespace) -> int:
    """Run by an admin, as root, as a service on the host (README: one cache for everyone)."""
    from .service.admin import run_cache_keeper

    if os.geteuid() != 0:
        raise CLIError("the cache keeper owns the cache's shared folders and reads every HOME in it: run it as root "
                       "(a service on the host)")
    path = os.path.abspath(args.path)
    if not os.path.isdir(path):
        raise CLIError(f"{path} is not a folder: make it first (sudo mkdir -p {path})")
    return run_cache_keeper(path, max_watches=args.max_watches)


def cmd_helper_image(args: argparse.Namespace) -> int:
    """Make the trusted helper image on the engine (if it is not there) and print its name: what
    an admin loads on every node of a Swarm (docker save NAME | docker load)."""
    made = service().helper_image()
    print(f"{made.ref} (pinned: {made.image})")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull with the job machinery the panel uses: a progress bar on a terminal, a line per
    10 % otherwise (logs stay readable)."""
    import time

    job = service().pull(args.image)
    tty = sys.stderr.isatty()
    shown = -1
    while not job.wait(0.2):
        progress = job.progress
        if progress is None:
            continue
        done = sum(1 for layer in job.layers.values() if layer.get("status") in ("Pull complete", "Already exists"))
        if tty:
            bar = "#" * int(progress * 30)
            print(f"\r{printable(args.image)}  [{bar:<30}] {progress:4.0%}  {done}/{len(job.layers)} layers", end="",
                  file=getattr(sys.stderr, "raw", sys.stderr))  # its \r is ours
        elif int(progress * 10) > shown:
            shown = int(progress * 10)
            print(f"{args.image}: {progress:.0%} ({done}/{len(job.layers)} layers)", file=sys.stderr)
    if tty:
        print(file=sys.stderr)
    elif job.state == "done" and shown < 10:
        print(f"{args.image}: 100% ({len(job.layers)}/{len(job.layers)} layers)", file=sys.stderr)
    if job.state != "done":
        raise CLIError(f"pull of {args.image} failed: {job.error or job.state}")
    digest = (job.result.get("digests") or [""])[0]
    print(f"Pulled {args.image} in {time.time() - job.started:.1f} s" + (f" ({digest})" if digest else ""))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    build_args = parse_env_pairs(args.build_arg)
    job = service().build(args.dockerfile, args.tag, wheelhouse=args.wheelhouse, build_args=build_args)
    job.follow(lambda line: print(line, file=sys.stderr))
    if job.state != "done":
        raise CLIError(f"build of {args.tag} failed: {job.error}")
    print(f"Built {args.tag} ({job.result.get('id', '')[:19]}). Add it: jupyter mlcontainer kernel add {args.tag}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter mlcontainer",
        description="Jupyter kernels inside CUDA/PyTorch Docker images.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
                     help="any other kernel option of the kernelspec (repeatable): placement, docker_host, cache_volume, "
                          "workspace, network, kernel_transport, transport_encryption, placement_timeout")
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

    fr = sub.add_parser("freeze", help="write a pinned Dockerfile from a running container kernel")
    which = fr.add_mutually_exclusive_group(required=True)
    which.add_argument("--kernel-id", help="the kernel to freeze")
    which.add_argument("--container", help="the kernel's container id")
    fr.add_argument("-o", "--output", help="Dockerfile path or folder (default: the notebook's folder)")
    fr.add_argument("--force", action="store_true", help="overwrite existing files")
    fr.add_argument("--notebook", help="record the environment in this notebook's metadata")
    fr.add_argument("--json", action="store_true")
    fr.set_defaults(func=cmd_freeze)

    dr = sub.add_parser("doctor", help="check that this machine is ready for container kernels; each failure says how to fix it")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    pl = sub.add_parser("pull", help="pull an image, with progress (the panel's pull, from the command line)")
    pl.add_argument("image", metavar="IMAGE")
    pl.set_defaults(func=cmd_pull)

    bd = sub.add_parser("build", help="build an image from a (frozen) Dockerfile, with progress")
    bd.add_argument("dockerfile", metavar="PATH/Dockerfile")
    bd.add_argument("-t", "--tag", required=True)
    bd.add_argument("--wheelhouse", help="folder of wheels sent as ./wheelhouse (offline builds)")
    bd.add_argument("--build-arg", action="append", metavar="KEY=VALUE", help="e.g. PIP_NO_INDEX=1 (repeatable)")
    bd.set_defaults(func=cmd_build)

    rs = sub.add_parser("restore", help="make a frozen notebook's environment available: shows the plan, then pulls or builds and adds its kernel")
    rs.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    rs.add_argument("--no-pull", action="store_true", help="build from the Dockerfile without trying a pull")
    rs.add_argument("--wheelhouse", help="folder of wheels for an offline build")
    rs.add_argument("--build-arg", action="append", metavar="KEY=VALUE")
    rs.add_argument("-y", "--yes", action="store_true",
                    help="confirm the plan without a prompt (it is printed first: the image, the Dockerfile, the kernelspec)")
    rs.set_defaults(func=cmd_restore)

    eb = sub.add_parser("export-binder", help="write binder/ for Binder / repo2docker from a frozen Dockerfile")
    eb.add_argument("--dockerfile", default="Dockerfile", help="the frozen Dockerfile (default: ./Dockerfile)")
    eb.add_argument("--repo", default=".", help="the repository root (default: .)")
    eb.add_argument("--force", action="store_true", help="replace an existing binder/Dockerfile")
    eb.set_defaults(func=cmd_export_binder)

    st = sub.add_parser("status", help="engine, NVIDIA runtime, GPUs and cache volume")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

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

    hi = sub.add_parser(
        "helper-image",
        help="make the image the cache's keeper runs in (from this Python, never a kernel's image) on the engine, "
             "and print its name: load it on every node of a Swarm",
    )
    hi.set_defaults(func=cmd_helper_image)

    clean = sub.add_parser("cleanup", help="remove containers left by Jupyter processes that died")
    clean.add_argument("--dry-run", action="store_true", help="only list them")
    clean.set_defaults(func=cmd_cleanup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
