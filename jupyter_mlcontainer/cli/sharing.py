"""``jupyter mlcontainer freeze``, ``restore`` and ``export-binder``: a kernel's environment
written down as a pinned Dockerfile (and into its notebook), and made available again elsewhere."""

from __future__ import annotations

import argparse
import os
import sys

from ..core.identity import current_user
from ..core.options import parse_env_pairs
from ..service import KernelContainer
from .common import CLIError, print_json, service


def cmd_freeze(args: argparse.Namespace) -> int:
    """``freeze``: write a pinned Dockerfile (and requirements) from one of this user's running
    kernels, or a container by id; with --notebook, record the environment in it too."""
    svc = service()
    output_dir, name = None, "Dockerfile"
    if args.output:
        if os.path.isdir(args.output):
            output_dir = args.output
        else:
            output_dir, name = os.path.dirname(os.path.abspath(args.output)), os.path.basename(args.output)
    if args.notebook and not output_dir:
        output_dir = os.path.dirname(os.path.abspath(args.notebook))
    where = dict(output_dir=output_dir, dockerfile_name=name, force=args.force, notebook=args.notebook,
                 write_notebook=True)
    if args.container:  # a container id alone: no kernel to ask for its environment
        result, record = svc.freeze(KernelContainer(svc.engine, args.container), None, **where)
    else:  # any of this user's kernels (from any of their servers), never another user's
        result, record = svc.freeze_kernel(args.kernel_id, user=current_user().name, **where)
    if record is not None:
        print(f"Recorded the environment in {args.notebook}: image {record['image']}, kernel {record['kernelspec']}")
    if args.json:
        print_json(result.to_dict())
        return 0
    print(f"Wrote {result.dockerfile_path} and {result.requirements_path} in {result.seconds:.2f} s")
    pinned = f"@{result.base_digest}" if result.base_digest else " (no registry digest: not portable until pushed)"
    print(f"  base: {result.base_image}{pinned}")
    print(f"  {len(result.packages)} Python packages, {len(result.apt_packages)} Debian packages, "
          f"{len(result.conda_packages)} conda packages, {len(result.env)} environment variables")
    print(f"  machine: {result.machine_summary}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``restore``: show the plan for a frozen notebook (image, Dockerfile, kernelspec), and only
    once it is confirmed (a prompt, or --yes) pull or build the image and add its kernel."""

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
        ignore_checks=args.ignore_checks,
    )
    if done.get("declined"):
        print("Not restored.")
        return 1
    print(f"{args.notebook}: image {done['image']} {done['how']}; kernel {done['kernelspec']} ready")
    for note in done.get("notes") or []:
        print(f"Note: {note}")
    return 0


def cmd_export_binder(args: argparse.Namespace) -> int:
    """``export-binder``: write binder/ for Binder and repo2docker from a frozen Dockerfile."""
    folder = service().export_binder(args.repo, args.dockerfile, overwrite=args.force)
    print(f"Wrote {folder}/Dockerfile and {folder}/requirements-binder.txt "
          "(commit them; Binder builds from the repository)")
    return 0
