# mlcontainer-test/jovyan:bookworm, built by scripts/build-test-images.sh (offline).
# Shaped like the Jupyter docker-stacks images: the conda prefix owned by a non-root user
# jovyan (uid 1000, group users/100), USER 1000, HOME and WORKDIR /home/jovyan.
FROM mlcontainer-test/conda:bookworm
RUN useradd --no-log-init --uid 1000 --gid 100 --create-home --shell /bin/bash jovyan \
 && chown -R 1000:100 /opt/conda
ENV NB_USER=jovyan NB_UID=1000 NB_GID=100 CONDA_DIR=/opt/conda HOME=/home/jovyan
USER 1000
WORKDIR /home/jovyan
LABEL org.opencontainers.image.title="docker-stacks-like image: conda at /opt/conda, USER jovyan (1000)" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: a non-root USER"
