#!/usr/bin/env bash
# The README's first command: set up everything and start JupyterLab with a container kernel.
#   1. make sure a Docker engine runs (installs Debian's docker.io and starts dockerd as root
#      where none runs),
#   2. install jupyter-mlcontainer into ./.venv,
#   3. get an image: $MLCONTAINER_IMAGE if set, else pull the documented default PyTorch image;
#      where no registry is reachable, build a PyTorch (CPU) demo image offline,
#   4. add it as a kernel (building IMAGE-ipykernel first when the image lacks ipykernel),
#   5. start JupyterLab on 127.0.0.1 (arguments go to `jupyter lab`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
default_image=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
say() { printf '\n== %s\n' "$*" >&2; }

say "Docker engine"
bash scripts/ensure-engine.sh

say "installing jupyter-mlcontainer into $repo/.venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet . "jupyterlab>=4,<5"
export PATH="$repo/.venv/bin:$PATH"

image=${MLCONTAINER_IMAGE:-}
if [ -z "$image" ]; then
  if docker image inspect "$default_image" >/dev/null 2>&1; then
    image=$default_image
  else
    say "pulling $default_image (several GB; set MLCONTAINER_IMAGE to use another image)"
    if docker pull "$default_image"; then
      image=$default_image
    else
      say "no registry reachable: building a PyTorch (CPU) demo image offline"
      bash scripts/build-test-images.sh
      image=mlcontainer-test/torch:2.13-cpu
    fi
  fi
fi

say "adding $image as a kernel"
jupyter mlcontainer kernel add "$image" --prepare --sys-prefix

root_flag=()
[ "$(id -u)" -eq 0 ] && root_flag=(--allow-root)
say "starting JupyterLab: open the URL below, then pick the kernel '$image' in the launcher"
exec jupyter lab --ip=127.0.0.1 --no-browser "${root_flag[@]}" "$@"
