# mlcontainer-test/torch:2.13-cpu, built by scripts/build-test-images.sh (offline).
# A real "PyTorch image": Debian bookworm + ipykernel + the CPU torch 2.13 wheel + numpy +
# huggingface_hub (how notebooks fetch models: the shared cache's tests download with it).
# The build context is a folder of wheels (containers cannot reach a package index here); they
# are installed in a throw-away stage, so no wheel ends up in a layer of the final image.
# Works with the legacy builder and with BuildKit (no RUN --mount needed).
FROM mlcontainer-test/base:bookworm AS install
COPY wheels /tmp/wheels
RUN python3 -m pip install --no-cache-dir --root-user-action=ignore --no-index --find-links /tmp/wheels \
        --target /opt/site torch==2.13.0 numpy huggingface_hub \
 && mkdir -p /opt/site/bin && mv /opt/site/bin /opt/bin
LABEL org.jupyter.mlcontainer.build-stage="torch-install"

FROM mlcontainer-test/base:bookworm
COPY --from=install /opt/bin/ /usr/local/bin/
COPY --from=install /opt/site/ /usr/local/lib/python3.11/dist-packages/
LABEL org.opencontainers.image.title="Debian bookworm, Python 3.11, ipykernel, PyTorch 2.13.0 (CPU)" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: a PyTorch image built offline, with huggingface_hub" \
      org.opencontainers.image.version="2.13.0-cpu" \
      org.opencontainers.image.base.name="mlcontainer-test/base:bookworm" \
      org.jupyter.mlcontainer.torch="2.13.0" \
      org.jupyter.mlcontainer.torch.variant="cpu"
