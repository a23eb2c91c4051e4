"""``jupyter mlcontainer image probe|nodes|prepare|remove``, ``pull`` and ``build``: the images
kernels run in, looked at and made through the same service (and job machinery) as the panel."""

from __future__ import annotations

import argparse
import sys
import time

from ..core.options import parse_env_pairs
from ..core.policy import printable
from .common import CLIError, print_json, service


def cmd_image_probe(args: argparse.Namespace) -> int:
    """``image probe``: what Python, ipykernel, PyTorch and CUDA IMAGE holds (cached per image id
    unless --refresh)."""
    facts = service().probe_image(args.image, refresh=args.refresh)
    data = facts.public()
    if args.json:
        print_json(data)
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
        print_json(answers)
        return 0
    for address, nodes in answers.items():
        print(f"{args.image} on the Swarm at {address}:")
        width = max(map(len, nodes), default=0)
        for hostname, state in nodes.items():
            print(f"  {hostname:<{width}}  {state}")
    return 0


def cmd_image_remove(args: argparse.Namespace) -> int:
    """``image remove``: remove images (the service refuses one a kernel or kernelspec uses)."""
    svc = service()
    for image in args.images:
        done = svc.remove_image(image)
        print(f"Removed {done['removed']} ({done['id'][:19]})")
    return 0


def cmd_image_prepare(args: argparse.Namespace) -> int:
    """``image prepare``: build IMAGE + ipykernel (nothing to do when it has ipykernel), the build
    log on stderr."""
    tag, facts = service().prepare_image(
        args.image, tag=args.tag, wheelhouse=args.wheelhouse, index_url=args.index_url,
        on_line=lambda line: print(line, file=sys.stderr),
    )
    if tag == args.image:
        print(f"{tag} already has ipykernel {facts.ipykernel}; nothing to do")
    else:
        print(f"Built {tag} (ipykernel {facts.ipykernel}). Add it: jupyter mlcontainer kernel add {tag}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull with the job machinery the panel uses: a progress bar on a terminal, a line per
    10 % otherwise (logs stay readable)."""
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
    """``build``: build a (frozen) Dockerfile as a job, following its log on stderr."""
    build_args = parse_env_pairs(args.build_arg)
    job = service().build(args.dockerfile, args.tag, wheelhouse=args.wheelhouse, build_args=build_args)
    job.follow(lambda line: print(line, file=sys.stderr))
    if job.state != "done":
        raise CLIError(f"build of {args.tag} failed: {job.error}")
    print(f"Built {args.tag} ({job.result.get('id', '')[:19]}). Add it: jupyter mlcontainer kernel add {args.tag}")
    return 0
