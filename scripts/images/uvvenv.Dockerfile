# mlcontainer-test/uvvenv:bookworm, built by scripts/build-test-images.sh (offline).
# Shaped like what `uv venv` + `uv sync` make (uv's Docker guide): a project venv in /app/.venv,
# first on PATH, with ipykernel 7.x and no pip in it (uv needs none); the system Python's pip
# stays outside the venv, and no pip wheel (ensurepip's, python3-pip-whl) is in the image.
FROM mlcontainer-test/noipykernel:bookworm AS install
COPY wheels /tmp/wheels
RUN python3 -m venv --without-pip /app/.venv \
 && python3 -m pip --python /app/.venv/bin/python install --no-cache-dir --root-user-action=ignore \
        --no-index --find-links /tmp/wheels "ipykernel>=7,<8"
LABEL org.jupyter.mlcontainer.build-stage="matrix-install"

FROM mlcontainer-test/noipykernel:bookworm
COPY --from=install /app/.venv /app/.venv
WORKDIR /app
ENV PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.opencontainers.image.title="Python 3.11 venv in /app/.venv with ipykernel 7 and no pip (uv-shaped)" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: a venv built without pip"
