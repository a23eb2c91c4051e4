# mlcontainer-test/venv:bookworm, built by scripts/build-test-images.sh (offline).
# A venv-based image, as many Dockerfiles make them: Python in /opt/venv, first on PATH,
# ipykernel 7.x from PyPI inside the venv, the system Python without ipykernel.
FROM mlcontainer-test/noipykernel:bookworm AS install
COPY wheels /tmp/wheels
RUN python3 -m venv --without-pip /opt/venv \
 && python3 -m pip --python /opt/venv/bin/python install --no-cache-dir --root-user-action=ignore \
        --no-index --find-links /tmp/wheels pip "ipykernel>=7,<8"
LABEL org.jupyter.mlcontainer.build-stage="matrix-install"

FROM mlcontainer-test/noipykernel:bookworm
COPY --from=install /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.opencontainers.image.title="Python 3.11 venv in /opt/venv with ipykernel 7" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: a venv-based image"
