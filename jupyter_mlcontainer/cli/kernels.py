"""``jupyter mlcontainer kernel add|list|remove``: the container kernelspecs of this user (or
of a prefix), written and read through the service as the launcher and the panel do."""

from __future__ import annotations

import argparse
import sys

from ..core.errors import KernelSpecError
from .common import print_json, service


def cmd_kernel_add(args: argparse.Namespace) -> int:
    """``kernel add``: probe IMAGE (with --prepare, build IMAGE + ipykernel when it lacks it) and
    write a kernelspec that runs it, for this user or under a prefix."""
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
        shm_size=args.shm_size, env=args.env, options=[*(args.option or []), *_slurm_pairs(args)], user=not prefix,
        prefix=prefix, facts=facts,
    )
    if args.json:
        print_json(spec.to_dict())
    else:
        print(f"Installed kernelspec {spec.name} in {spec.resource_dir}")
        print(f"  display name: {spec.display_name}")
    return 0


def cmd_kernel_list(args: argparse.Namespace) -> int:
    """``kernel list``: the container kernelspecs, one line each with their options."""
    specs = service().kernelspecs()
    if args.json:
        print_json([spec.to_dict() for spec in specs])
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
    """``kernel remove``: remove container kernelspecs by name."""
    svc = service()
    for name in args.names:
        path = svc.remove_kernelspec(name)
        print(f"Removed kernelspec {name} ({path})")
    return 0


def _slurm_pairs(args: argparse.Namespace) -> list[str]:
    """``--slurm LOGIN --partition P ...`` as the kernelspec's option pairs."""
    parts = {"partition": args.partition, "time": args.time_limit, "account": args.account, "qos": args.qos,
             "gpu_type": args.gpu_type,
             "store": args.slurm_store, "hold": args.slurm_hold}
    if args.slurm is None:
        if any(parts.values()):
            raise KernelSpecError("--partition, --time-limit, --account, --qos, --gpu-type, --slurm-store and "
                                  "--slurm-hold go with --slurm")
        return []
    pairs = ["placement=slurm", f"slurm_login={args.slurm}"]
    return pairs + [f"slurm.{key}={value}" for key, value in parts.items() if value]
