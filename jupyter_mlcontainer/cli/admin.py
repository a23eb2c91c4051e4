"""``jupyter mlcontainer status``, ``doctor``, ``cleanup``, ``cache-keeper`` and ``helper-image``:
the machine, what is wrong with it, and its upkeep (some of it an admin's, as root)."""

from __future__ import annotations

import argparse
import os

from ..core.identity import current_user
from ..service.admin import run_cache_keeper
from .common import CLIError, print_json, service


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: the engine, the NVIDIA runtime, the GPUs, the cache volume, this user's warm
    spares and each Swarm's nodes, as a summary or (--json) all of it."""
    svc = service()
    status = svc.status()
    if status["engine"]["reachable"]:
        # This process keeps no pool: the spares are those of this user's running servers.
        status["warm_pool"] = {"spares": svc.live_spares(user=current_user().name)}
    if args.json:
        print_json(status)
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
        kind = cluster.get("kind") or "Cluster"
        if cluster.get("reachable") is False:
            print(f"{kind} {cluster['manager']}: not reachable: {cluster['reason']}")
            continue
        print(f"{kind} {cluster['manager']}: {len(cluster['nodes'])} node(s)")
        for kernel in cluster.get("kernels") or []:
            print(f"  kernel {kernel['kernel_id'] or '-'}: {kernel['status']}")
        for node in cluster["nodes"]:
            free = sum(1 for gpu in node["gpus"] if not gpu["kernel_id"])
            gpus = f", GPUs {free} free of {len(node['gpus'])}" if node["gpus"] else ""
            print(f"  {node['hostname']} ({node['role']}, {node['state']}, {node['address']}){gpus}")
            for gpu in node["gpus"]:
                if gpu["kernel_id"]:
                    print(f"    {gpu['id']}: kernel {gpu['kernel_id']}")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    """``cleanup``: remove (or, --dry-run, list) containers whose Jupyter process died; the spares
    this user's running servers keep are named and kept."""
    orphans = service().orphans(remove=not args.dry_run)
    verb = "Would remove" if args.dry_run else "Removed"
    for orphan in orphans:
        print(f"{verb} {orphan.container_id[:12]} ({orphan.role}, kernel {orphan.kernel_id or '-'}, "
              f"owner {orphan.owner})")
    if not orphans:
        print("No orphaned containers")
    for spare in service().live_spares(user=current_user().name):
        print(f"Kept {spare['container_id'][:12]} (spare of kernelspec {spare['kernelspec'] or '-'}, image "
              f"{spare['image']}): a running server keeps it warm for its next start")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """``doctor``: every readiness check with how to fix what fails; exit code 1 if a blocking one
    fails."""
    from ..service.doctor import notebook_checks, report, run_checks  # its checks load only when doctor runs

    if args.notebook:
        text, code = report(notebook_checks(service(), args.notebook), args.json)
    else:
        text, code = report(run_checks(service()), args.json)
    print(text)
    return code


def cmd_cache_keeper(args: argparse.Namespace) -> int:
    """Run by an admin, as root, as a service on the host (README: one cache for everyone)."""
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
