#!/usr/bin/env bash
# build-test-images.sh: build the test images offline (no container registry is reachable on
# the CI machine kind, so nothing is pulled). Called by scripts/test.sh (run by .ci/run) before
# pytest, and by scripts/start.sh when no registry is reachable; tests/conftest.py fails (never
# skips) when one of these images is missing.
#
#   mlcontainer-test/base:bookworm         Debian bookworm minbase + python3-ipykernel + pip
#   mlcontainer-test/noipykernel:bookworm  Debian bookworm minbase + Python 3.11 + pip, no ipykernel
#                                          (like the pytorch/pytorch images)
#   mlcontainer-test/torch:2.13-cpu        base + the CPU torch 2.13.0 wheel + numpy + huggingface_hub
#                                          (and deps: what a model notebook loads models with)
#   mlcontainer-test/nopython:latest       one static file, no Python at all
#
# The image matrix (kernel tests run on each; see tests/test_image_matrix.py), shaped like what
# users run, all offline:
#   mlcontainer-test/ipykernel7:bookworm   Debian's Python 3.11 + ipykernel 7.x from PyPI
#   mlcontainer-test/trixie:py3.13         Debian trixie: Python 3.13 + Debian's ipykernel 6.29
#                                          (EXTERNALLY-MANAGED kept, as Debian ships it)
#   mlcontainer-test/venv:bookworm         a venv in /opt/venv first on PATH, ipykernel 7.x
#   mlcontainer-test/uvvenv:bookworm       uv-shaped: a venv in /app/.venv without pip (what
#                                          `uv venv` + `uv sync` make), ipykernel 7.x
#   mlcontainer-test/conda:bookworm        pytorch/pytorch-shaped: /opt/conda prefix with
#                                          conda-meta, NVIDIA_VISIBLE_DEVICES=all, ipykernel 7.x
#   mlcontainer-test/jovyan:bookworm       docker-stacks-shaped: conda + USER 1000 (jovyan)
#   mlcontainer-test/cuda:bookworm         nvidia/cuda-shaped: banner ENTRYPOINT + NVIDIA env,
#                                          ipykernel 7.x
#
# Usage: build-test-images.sh [NAME...]. With no NAME (scripts/test.sh, CI) every image above is
# built. NAMEs (short names: base, noipykernel, torch, nopython, ipykernel7, trixie, venv, uvvenv,
# conda, jovyan, cuda) build only those images and the ones they are built FROM: `torch` builds
# base and torch (one mmdebstrap, no matrix): what scripts/start.sh's offline demo needs.
#   torch <- base;  ipykernel7, venv, uvvenv, conda <- noipykernel;  cuda <- ipykernel7;
#   jovyan <- conda;  base, noipykernel, nopython, trixie: from nothing.
# An image already present is skipped. FORCE=1 rebuilds the images from the cached root file
# systems and wheels; FORCE=all also re-runs mmdebstrap and pip download; FORCE=torch,nopython
# (any of base, noipykernel, torch, nopython) rebuilds just those images.
# Cache: $MLCONTAINER_TEST_CACHE (default /var/cache/mlcontainer-test as root, else
# ~/.cache/mlcontainer-test) keeps the mmdebstrap tarballs and the torch build context (wheels),
# so a rebuild after `docker rmi` is fast.
# Needs a Docker engine (scripts/ensure-engine.sh), mmdebstrap (as root, or as a user with
# /etc/subuid ranges: its unshare mode) and the torch wheel in pip's find-links (or PyPI).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
if [ "$(id -u)" -eq 0 ]; then default_cache=/var/cache/mlcontainer-test
else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/mlcontainer-test; fi
readonly CACHE=${MLCONTAINER_TEST_CACHE:-$default_cache}
readonly FORCE=${FORCE:-0}
readonly SUITE=bookworm
readonly MIRROR=${MLCONTAINER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly TORCH_VERSION=2.13.0
# The torch image's recipe: an image built from an older one is rebuilt (the label says which).
readonly TORCH_RECIPE=2

readonly BASE=mlcontainer-test/base:bookworm
readonly NOIPYKERNEL=mlcontainer-test/noipykernel:bookworm
readonly TORCH=mlcontainer-test/torch:2.13-cpu
readonly NOPYTHON=mlcontainer-test/nopython:latest
readonly IPYKERNEL7=mlcontainer-test/ipykernel7:bookworm
readonly TRIXIE=mlcontainer-test/trixie:py3.13
readonly VENV=mlcontainer-test/venv:bookworm
readonly UVVENV=mlcontainer-test/uvvenv:bookworm
readonly CONDA=mlcontainer-test/conda:bookworm
readonly JOVYAN=mlcontainer-test/jovyan:bookworm
readonly CUDA=mlcontainer-test/cuda:bookworm
readonly NAMES="base|noipykernel|torch|nopython|ipykernel7|trixie|venv|uvvenv|conda|jovyan|cuda"

say() { printf 'build-test-images: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[[ "$FORCE" =~ ^(0|1|all|($NAMES)(,($NAMES))*)$ ]] \
  || die "FORCE must be 0, 1, all or a comma list of ${NAMES//|/,} (got '$FORCE')"

declare -rA TAG_OF=([base]=$BASE [noipykernel]=$NOIPYKERNEL [torch]=$TORCH [nopython]=$NOPYTHON
                    [ipykernel7]=$IPYKERNEL7 [trixie]=$TRIXIE [venv]=$VENV [uvvenv]=$UVVENV
                    [conda]=$CONDA [jovyan]=$JOVYAN [cuda]=$CUDA)
# The image each image is built FROM (none: from a root file system or nothing).
declare -rA BUILT_FROM=([torch]=base [ipykernel7]=noipykernel [venv]=noipykernel [uvvenv]=noipykernel
                        [conda]=noipykernel [cuda]=ipykernel7 [jovyan]=conda)
# WANTED: the images asked for (the NAMEs given; all when none is) and, as "dependency", the
# ones they are built FROM.
declare -A WANTED=()
want() {
  [[ "$1" =~ ^($NAMES)$ ]] || die "unknown image '$1': give short names among ${NAMES//|/, }"
  WANTED[$1]=$2
  local from=${BUILT_FROM[$1]:-}
  if [ -n "$from" ] && [ "${WANTED[$from]:-}" != asked ]; then want "$from" dependency; fi
}
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
readonly REQUESTED="$*"
if [ "$#" -eq 0 ]; then IFS='|' read -ra all_names <<<"$NAMES"; set -- "${all_names[@]}"; fi
for name in "$@"; do want "$name" asked; done

# have_image SHORT-NAME TAG: true when TAG exists and FORCE does not ask to rebuild it.
have_image() {
  case "$FORCE" in
    1|all) return 1 ;;
    0) ;;
    *) [[ ",$FORCE," == *",$1,"* ]] && return 1 ;;
  esac
  docker image inspect "$2" >/dev/null 2>&1
}
refresh_cache() { [ "$FORCE" = all ]; }
torch_recipe() { docker image inspect --format '{{index .Config.Labels "org.jupyter.mlcontainer.test-recipe"}}' "$TORCH" 2>/dev/null || true; }
# up_to_date SHORT-NAME: this run would skip the image (present, not FORCEd, torch's recipe current).
up_to_date() {
  have_image "$1" "${TAG_OF[$1]}" || return 1
  [ "$1" != torch ] || [ "$(torch_recipe)" = "$TORCH_RECIPE" ]
}
# wanted SHORT-NAME: this run deals with the image: asked for, or built FROM by a wanted image
# that this run builds (a present demo image needs no base).
wanted() {
  local child
  case "${WANTED[$1]:-}" in asked) return 0 ;; dependency) ;; *) return 1 ;; esac
  for child in "${!BUILT_FROM[@]}"; do
    if [ "${BUILT_FROM[$child]}" = "$1" ] && wanted "$child" && ! up_to_date "$child"; then return 0; fi
  done
  return 1
}
elapsed() { printf '%d s' "$(( SECONDS - $1 ))"; }

T_START=$SECONDS
declare -a SUMMARY=()

"$HERE/ensure-engine.sh"
mkdir -p "$CACHE"
# One build at a time per cache (a second run waits instead of racing on the same files).
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  say "another build-test-images.sh holds $CACHE/.lock; waiting for it ..."
  flock 9
fi

need_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing mmdebstrap ..."
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install mmdebstrap >&2 || {
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q update >&2
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q install mmdebstrap >&2
    }
  else
    die "mmdebstrap is needed to build the root file systems (as root: apt-get install mmdebstrap)"
  fi
}

# rootfs NAME PACKAGES [SUITE [KEEP-PEP668]]: sets ROOTFS_TAR to a cached minbase tarball of
# SUITE (default bookworm) holding PACKAGES. PEP 668's marker is dropped unless KEEP-PEP668=keep.
rootfs() {
  local name=$1 packages=$2 suite=${3:-$SUITE} keep=${4:-}
  local tar="$CACHE/$name-$suite.tar"
  if refresh_cache || [ ! -s "$tar" ]; then
    need_mmdebstrap
    say "mmdebstrap $suite minbase + $packages -> $tar ..."
    local t0=$SECONDS partial="$CACHE/.$name-$suite.partial.tar" pep668='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
    [ "$keep" = keep ] && pep668=true
    rm -f "$partial"
    # Hooks run with the root file system as $1: drop PEP 668's EXTERNALLY-MANAGED marker so
    # `pip install` works in the image like in typical ML images, and drop apt's caches.
    # shellcheck disable=SC2016 # "$1" is expanded by mmdebstrap's hook shell, not here
    mmdebstrap --quiet --variant=minbase --include="$packages" \
      --customize-hook="$pep668" \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
      "$suite" "$partial" "$MIRROR" >&2 || {
        rm -f "$partial"
        [ "$(id -u)" -eq 0 ] || say "as a non-root user mmdebstrap needs user namespaces and a range in /etc/subuid and /etc/subgid"
        die "mmdebstrap $name failed"
      }
    mv -f "$partial" "$tar"
    say "mmdebstrap $name took $(elapsed "$t0") ($(du -h "$tar" | cut -f1))"
    SUMMARY+=("mmdebstrap $name: $(elapsed "$t0")")
  else
    say "using cached $tar"
  fi
  ROOTFS_TAR=$tar
}

# import_rootfs TAR TAG TITLE DESCRIPTION [SUITE]
import_rootfs() {
  local tar=$1 tag=$2 title=$3 description=$4 suite=${5:-$SUITE} t0=$SECONDS
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=\"$title\"" \
    --change "LABEL org.opencontainers.image.description=\"$description\"" \
    --change "LABEL org.opencontainers.image.version=\"$suite\"" \
    --change "LABEL org.opencontainers.image.created=\"$(date -u +%FT%TZ)\"" \
    --change 'LABEL org.opencontainers.image.vendor="jupyter-mlcontainer test images"' \
    --message "scripts/build-test-images.sh: mmdebstrap $suite" \
    "$tar" "$tag" >/dev/null
  say "imported $tag in $(elapsed "$t0")"
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# drop_replaced OLD-ID TAG: after FORCE rebuilt TAG, remove the image it replaced unless a
# container or another tag still uses it.
drop_replaced() {
  local old=$1 tag=$2
  [ -n "$old" ] && [ "$old" != "$(image_id "$tag")" ] || return 0
  if docker rmi "$old" >/dev/null 2>&1; then
    say "removed the replaced image ${old#sha256:} of $tag"
  else
    say "kept the replaced image ${old#sha256:} of $tag (still in use)"
  fi
}

# download_wheels DEST REQUIREMENT...: REQUIREMENTs and their dependencies as wheels for the
# images' Python 3.11 (cp311, manylinux x86_64) into a fresh DEST, fetched by the host's pip
# (containers reach no package index here).
download_wheels() {
  local dest=$1
  shift
  rm -rf "$dest"
  mkdir -p "$dest"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    --dest "$dest" "$@" 2>&1 \
    | sed '/is ignored: it is neither a file nor a directory/d' >&2
}

# check IMAGE PYTHON-CODE EXPECTED-EXIT: a quick smoke test of a fresh image, no network.
check() {
  local image=$1 code=$2 want=$3 rc=0
  docker run --rm --network none "$image" python3 -c "$code" >&2 || rc=$?
  [ "$rc" -eq "$want" ] || die "$image: smoke test exited $rc, expected $want"
}

# ---------------------------------------------------------------- base
if ! wanted base; then
  :
elif have_image base "$BASE"; then
  say "$BASE present, skipped (FORCE=1 rebuilds)"
else
  old=$(image_id "$BASE")
  rootfs base python3-ipykernel,python3-pip,ca-certificates
  import_rootfs "$ROOTFS_TAR" "$BASE" "Debian $SUITE, Python 3.11, ipykernel, pip" \
    "jupyter-mlcontainer test image: a Python image with ipykernel"
  check "$BASE" 'import ipykernel, sys, sysconfig, os; print("base ok: python", sys.version.split()[0], "ipykernel", ipykernel.__version__); assert not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))' 0
  drop_replaced "$old" "$BASE"
fi

# ---------------------------------------------------------------- noipykernel
if ! wanted noipykernel; then
  :
elif have_image noipykernel "$NOIPYKERNEL"; then
  say "$NOIPYKERNEL present, skipped (FORCE=1 rebuilds)"
else
  old=$(image_id "$NOIPYKERNEL")
  rootfs noipykernel python3-minimal,python3-pip
  import_rootfs "$ROOTFS_TAR" "$NOIPYKERNEL" "Debian $SUITE, Python 3.11, pip, no ipykernel" \
    "jupyter-mlcontainer test image: Python and pip but no ipykernel (like pytorch/pytorch)"
  check "$NOIPYKERNEL" 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec("ipykernel") is None else 3)' 0
  say "$NOIPYKERNEL ok: python3 runs, ipykernel is absent"
  drop_replaced "$old" "$NOIPYKERNEL"
fi

# ---------------------------------------------------------------- torch
if ! wanted torch; then
  :
elif up_to_date torch; then
  say "$TORCH present, skipped (FORCE=1 rebuilds)"
else
  t_torch=$SECONDS
  old=$(image_id "$TORCH")
  ctx="$CACHE/torch-$TORCH_VERSION-context"
  stamp="$ctx/wheels/.complete-$TORCH_RECIPE"
  if refresh_cache || [ ! -e "$stamp" ]; then
    say "collecting torch $TORCH_VERSION (CPU), numpy, huggingface_hub and their dependencies as wheels (cp311, manylinux x86_64) ..."
    t0=$SECONDS
    download_wheels "$ctx/wheels" "torch==$TORCH_VERSION" numpy huggingface_hub \
      || die "pip download failed (is the torch $TORCH_VERSION CPU wheel in pip's find-links? see: pip config list)"
    ls "$ctx"/wheels/torch-"$TORCH_VERSION"*.whl >/dev/null 2>&1 || die "pip download did not fetch a torch $TORCH_VERSION wheel"
    ls "$ctx"/wheels/numpy-*.whl >/dev/null 2>&1 || die "pip download did not fetch a numpy wheel"
    ls "$ctx"/wheels/huggingface_hub-*.whl >/dev/null 2>&1 || die "pip download did not fetch a huggingface_hub wheel"
    touch "$stamp"
    say "wheels collected in $(elapsed "$t0"): $(du -sh "$ctx/wheels" | cut -f1), $(find "$ctx/wheels" -name '*.whl' | wc -l) files"
  else
    say "using cached wheels in $ctx/wheels"
  fi
  cp "$HERE/images/torch.Dockerfile" "$ctx/Dockerfile"
  say "docker build $TORCH ..."
  t0=$SECONDS
  docker build --pull=false --label "org.opencontainers.image.created=$(date -u +%FT%TZ)" \
    --label "org.jupyter.mlcontainer.test-recipe=$TORCH_RECIPE" \
    -t "$TORCH" "$ctx" >&2 || die "docker build $TORCH failed"
  # Drop the throw-away install stage (it holds the wheels and a second copy of torch).
  docker image prune --force --filter "label=org.jupyter.mlcontainer.build-stage=torch-install" >/dev/null || true
  say "docker build $TORCH took $(elapsed "$t0")"
  SUMMARY+=("docker build torch: $(elapsed "$t0")")
  docker run --rm --network none "$TORCH" \
    python3 -c "import torch, huggingface_hub; print(torch.__version__, torch.ones(2).sum(), 'huggingface_hub', huggingface_hub.__version__)" >&2 \
    || die "$TORCH: import torch or huggingface_hub failed"
  SUMMARY+=("torch image total (wheels + build + check): $(elapsed "$t_torch")")
  drop_replaced "$old" "$TORCH"
fi

# ---------------------------------------------------------------- nopython
if ! wanted nopython; then
  :
elif have_image nopython "$NOPYTHON"; then
  say "$NOPYTHON present, skipped (FORCE=1 rebuilds)"
else
  old=$(image_id "$NOPYTHON")
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/root"
  printf 'This image has no Python (jupyter-mlcontainer test image).\n' >"$tmp/root/README"
  tar -C "$tmp/root" --owner=0 --group=0 -cf "$tmp/rootfs.tar" README
  docker import \
    --change 'CMD ["/README"]' \
    --change 'LABEL org.opencontainers.image.title="No Python at all"' \
    --change 'LABEL org.opencontainers.image.description="jupyter-mlcontainer test image: one static file, no Python"' \
    --message "scripts/build-test-images.sh: one file, no Python" \
    "$tmp/rootfs.tar" "$NOPYTHON" >/dev/null
  say "imported $NOPYTHON"
  drop_replaced "$old" "$NOPYTHON"
fi

# ---------------------------------------------------------------- the image matrix
# Wheels of today's ipykernel 7.x (7.4 or newer: CurveZMQ keys from the connection file) and pip
# for the images' Python 3.11, collected once.
MATRIX_CTX="$CACHE/matrix-context"
matrix_wheels() {
  local stamp="$MATRIX_CTX/wheels/.complete" t0=$SECONDS
  if refresh_cache || [ ! -e "$stamp" ]; then
    say "collecting ipykernel 7.x and pip as wheels (cp311, manylinux x86_64) ..."
    download_wheels "$MATRIX_CTX/wheels" pip "ipykernel>=7.4,<8" \
      || die "pip download of ipykernel 7 failed"
    ls "$MATRIX_CTX"/wheels/ipykernel-7*.whl >/dev/null 2>&1 || die "pip download did not fetch an ipykernel 7 wheel"
    touch "$stamp"
    say "ipykernel wheels collected in $(elapsed "$t0"): $(ls "$MATRIX_CTX"/wheels/ipykernel-*.whl | xargs -n1 basename)"
  fi
  cp "$HERE"/images/{ipykernel7,venv,uvvenv,conda,jovyan,cuda}.Dockerfile "$HERE"/images/conda-meta.py \
     "$HERE"/images/nvidia_entrypoint.sh "$MATRIX_CTX/"
}

# matrix_image SHORT-NAME TAG CHECK-CODE: docker build TAG from images/SHORT-NAME.Dockerfile
# with the wheel context, then run CHECK-CODE with the image's own python3 (through its
# ENTRYPOINT, as users run it).
matrix_image() {
  local short=$1 tag=$2 code=$3 t0=$SECONDS old
  wanted "$short" || return 0
  if have_image "$short" "$tag"; then
    say "$tag present, skipped (FORCE=1 rebuilds)"
    return 0
  fi
  old=$(image_id "$tag")
  matrix_wheels
  say "docker build $tag ..."
  docker build --pull=false --label "org.opencontainers.image.created=$(date -u +%FT%TZ)" \
    -f "$MATRIX_CTX/$short.Dockerfile" -t "$tag" "$MATRIX_CTX" >&2 || die "docker build $tag failed"
  docker image prune --force --filter "label=org.jupyter.mlcontainer.build-stage=matrix-install" >/dev/null || true
  docker run --rm --network none "$tag" python3 -c "$code" >&2 || die "$tag: smoke test failed"
  SUMMARY+=("docker build $short: $(elapsed "$t0")")
  drop_replaced "$old" "$tag"
}

matrix_image ipykernel7 "$IPYKERNEL7" \
  'import ipykernel, sys, zmq; v = tuple(map(int, ipykernel.__version__.split(".")[:2])); assert (7, 4) <= v < (8, 0), ipykernel.__version__; assert zmq.has("curve"); assert ipykernel.__file__.startswith("/usr/local/"); print("ipykernel7 ok:", sys.executable, ipykernel.__version__, "with CurveZMQ")'
matrix_image venv "$VENV" \
  'import ipykernel, sys; assert sys.prefix == "/opt/venv" != sys.base_prefix; assert ipykernel.__version__.startswith("7."); print("venv ok:", sys.executable, ipykernel.__version__)'
matrix_image uvvenv "$UVVENV" \
  'import importlib.util as iu, ipykernel, sys; assert sys.prefix == "/app/.venv" != sys.base_prefix; assert iu.find_spec("pip") is None; assert ipykernel.__version__.startswith("7."); print("uvvenv ok:", sys.executable, ipykernel.__version__, "without pip")'
matrix_image conda "$CONDA" \
  'import ipykernel, os, sys; assert sys.prefix == sys.base_prefix == "/opt/conda", sys.prefix; assert ipykernel.__file__.startswith("/opt/conda/lib/python3.11/site-packages/"), ipykernel.__file__; assert os.listdir("/opt/conda/conda-meta"); print("conda ok:", sys.executable, ipykernel.__version__)'
matrix_image jovyan "$JOVYAN" \
  'import ipykernel, os, sys; assert os.getuid() == 1000 and sys.prefix == "/opt/conda"; print("jovyan ok: uid", os.getuid(), sys.executable, ipykernel.__version__)'
matrix_image cuda "$CUDA" \
  'import ipykernel, os; assert os.environ["NVIDIA_VISIBLE_DEVICES"] == "all"; print("cuda ok:", ipykernel.__version__)'

# ---------------------------------------------------------------- trixie (Python 3.13, ipykernel 6.29)
if ! wanted trixie; then
  :
elif have_image trixie "$TRIXIE"; then
  say "$TRIXIE present, skipped (FORCE=1 rebuilds)"
else
  old=$(image_id "$TRIXIE")
  rootfs trixie python3-ipykernel,python3-pip,ca-certificates trixie keep
  import_rootfs "$ROOTFS_TAR" "$TRIXIE" "Debian trixie, Python 3.13, ipykernel 6.29, pip" \
    "jupyter-mlcontainer test image: a newer Python with Debian's ipykernel" trixie
  check "$TRIXIE" 'import ipykernel, sys; assert sys.version_info >= (3, 12); assert ipykernel.__version__.startswith("6.29"), ipykernel.__version__; print("trixie ok: python", sys.version.split()[0], "ipykernel", ipykernel.__version__)' 0
  drop_replaced "$old" "$TRIXIE"
fi

for image in "$BASE" "$NOIPYKERNEL" "$TORCH" "$NOPYTHON" "$IPYKERNEL7" "$TRIXIE" "$VENV" "$UVVENV" "$CONDA" "$JOVYAN" "$CUDA"; do
  short=${image#mlcontainer-test/}
  short=${short%%:*}
  case "${WANTED[$short]:-}" in
    asked) ;;
    dependency) docker image inspect "$image" >/dev/null 2>&1 || continue ;;
    *) continue ;;
  esac
  say "$(docker image inspect --format '{{.Size}}' "$image" | awk -v i="$image" '{printf "%-40s %8.1f MB", i, $1/1e6}')"
done
for line in "${SUMMARY[@]}"; do say "$line"; done
if [ -n "$REQUESTED" ]; then
  say "test images ready (what '$REQUESTED' needs) in $(elapsed "$T_START")"
else
  say "test images ready in $(elapsed "$T_START")"
fi
