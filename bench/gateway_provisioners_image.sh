#!/usr/bin/env bash
# Build the kernel image that Gateway Provisioners' Docker provisioner needs, offline, for
# bench/kernel_start.py (which runs this when the image is missing).
#
# As GP's docs and kernel-image Dockerfile set a kernel image up: gateway_provisioners installed in
# the image, its launchers and bootstrap-kernel.sh installed by its own image-bootstrap tool, CMD
# bootstrap-kernel.sh (made executable), KERNEL_LANGUAGE=python and a `python` on PATH (the
# script runs `python launch_ipykernel.py`). The base keeps its own ipykernel, so GP's kernel and
# ours run the same kernel code. Containers here reach no package index: the wheels are
# downloaded on the host (for the base image's Python and architecture) into the build context.
#
#     bench/gateway_provisioners_image.sh [IMAGE] [BASE]
set -euo pipefail

IMAGE=${1:-mlcontainer-bench/gateway-provisioners:0.5.0}
BASE=${2:-mlcontainer-test/base:bookworm}
GP_VERSION=${GP_VERSION:-0.5.0}

ctx=$(mktemp -d "${TMPDIR:-/tmp}/mlc-bench-gp-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# The base image's Python and architecture, so that the wheels fit it (not the host's Python).
read -r pyver arch < <(docker run --rm --entrypoint python3 "$BASE" -c \
    'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())')
platforms=(--platform "manylinux2014_$arch")
for minor in $(seq 40 -1 17); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done

echo "Downloading gateway_provisioners $GP_VERSION and its dependencies for Python $pyver ($arch)..." >&2
python3 -m pip download --quiet --disable-pip-version-check --dest "$ctx/wheels" \
    --only-binary=:all: --python-version "$pyver" "${platforms[@]}" "gateway_provisioners==$GP_VERSION"

# GP's docs run `jupyter image-bootstrap install`; a Debian base has no `jupyter` front command
# (Debian's jupyter_core satisfies GP's requirement, so pip does not bring one), so its console
# script jupyter-image-bootstrap is called: the same application.
cat > "$ctx/Dockerfile" <<EOF
FROM $BASE
USER root
COPY wheels /tmp/gp-wheels
RUN python3 -m pip install --no-cache-dir --break-system-packages --no-index --find-links /tmp/gp-wheels \\
        "gateway_provisioners==$GP_VERSION" \\
    && rm -rf /tmp/gp-wheels \\
    && jupyter-image-bootstrap install --languages python \\
    && chmod 0755 /usr/local/bin/bootstrap-kernel.sh \\
    && chmod -R a+rX /usr/local/bin/kernel-launchers \\
    && { command -v python >/dev/null || ln -s "\$(command -v python3)" /usr/local/bin/python; }
ENV KERNEL_LANGUAGE=python
LABEL org.opencontainers.image.description="jupyter-mlcontainer benchmark: Gateway Provisioners $GP_VERSION kernel image on $BASE"
CMD ["/usr/local/bin/bootstrap-kernel.sh"]
EOF

echo "Building $IMAGE from $BASE..." >&2
if ! docker build --tag "$IMAGE" "$ctx" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2
    exit 1
fi
echo "Built $IMAGE" >&2
