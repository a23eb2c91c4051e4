#!/usr/bin/env bash
# The README's first command: set up everything and start JupyterLab with a container kernel.
#   1. make sure a Docker engine runs (installs Debian's docker.io and starts dockerd as root
#      where none runs),
#   2. install jupyter-mlcontainer into ./.venv,
#   3. get an image (in the background, during step 2): $MLCONTAINER_IMAGE if set, else pull the
#      documented default PyTorch image; where no registry is reachable, build a PyTorch (CPU)
#      demo image offline (that one image only, not the test-image matrix:
#      `scripts/build-test-images.sh torch`),
#   4. add it as a kernel (building IMAGE-ipykernel first when the image lacks ipykernel),
#   5. start JupyterLab on 127.0.0.1 (arguments go to `jupyter lab`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
default_image=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
say() { printf '\n== %s\n' "$*" >&2; }

say "Docker engine"
bash scripts/ensure-engine.sh

# fetch_image FILE: get the image to start with and write its name to FILE: the default image,
# pulled, else (no registry reachable) the PyTorch (CPU) demo image built offline: that one
# image, not the whole test matrix.
fetch_image() {
  say "pulling $default_image (several GB; set MLCONTAINER_IMAGE to use another image)"
  if docker pull "$default_image"; then
    echo "$default_image" >"$1"
    return 0
  fi
  local demo=mlcontainer-test/torch:2.13-cpu base=mlcontainer-test/base:bookworm had_base=0
  say "no registry reachable: building the PyTorch (CPU) demo image $demo offline"
  docker image inspect "$base" >/dev/null 2>&1 && had_base=1
  bash scripts/build-test-images.sh torch
  # The base was only a step of the demo's build: untag it (its layers stay, under the demo
  # image) so the panel lists the one image to pick. A base that was here before stays.
  if [ "$had_base" = 0 ]; then docker rmi "$base" >/dev/null 2>&1 || true; fi
  echo "$demo" >"$1"
}

image=${MLCONTAINER_IMAGE:-}
if [ -z "$image" ] && docker image inspect "$default_image" >/dev/null 2>&1; then
  image=$default_image
fi
# An image to pull or build is fetched in the background while the package installs (on a
# fresh machine both take a minute or more).
fetch_pid='' choice=''
stop_fetch() {
  [ -n "$choice" ] && rm -f "$choice"
  if [ -n "$fetch_pid" ]; then
    pkill -TERM -P "$fetch_pid" 2>/dev/null || true
    kill "$fetch_pid" 2>/dev/null || true
  fi
}
if [ -z "$image" ]; then
  choice=$(mktemp)
  trap stop_fetch EXIT
  fetch_image "$choice" &
  fetch_pid=$!
fi

say "installing jupyter-mlcontainer into $repo/.venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet . "jupyterlab>=4,<5"
export PATH="$repo/.venv/bin:$PATH"

if [ -n "$fetch_pid" ]; then
  say "jupyter-mlcontainer installed; waiting for the image"
  rc=0
  wait "$fetch_pid" || rc=$?
  fetch_pid=''
  [ "$rc" -eq 0 ] || { say "could not get an image (see above); set MLCONTAINER_IMAGE to use one of yours"; exit "$rc"; }
  image=$(cat "$choice")
  rm -f "$choice"
  choice=''
  trap - EXIT
fi

say "adding $image as a kernel"
jupyter mlcontainer kernel add "$image" --prepare --sys-prefix

root_flag=()
[ "$(id -u)" -eq 0 ] && root_flag=(--allow-root)
say "starting JupyterLab: open the URL below, then pick the kernel '$image' in the launcher"
exec jupyter lab --ip=127.0.0.1 --no-browser "${root_flag[@]}" "$@"
