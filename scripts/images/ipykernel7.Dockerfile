# mlcontainer-test/ipykernel7:bookworm, built by scripts/build-test-images.sh (offline).
# What `pip install ipykernel` gives a Debian image today: Debian's Python 3.11 with the newest
# ipykernel 7.x from PyPI in /usr/local (as `pip install --break-system-packages` puts it).
# The context is a folder of wheels; they stay in the throw-away stage.
FROM mlcontainer-test/noipykernel:bookworm AS install
COPY wheels /tmp/wheels
RUN python3 -m pip install --no-cache-dir --root-user-action=ignore --no-index --find-links /tmp/wheels \
        --target /opt/site "ipykernel>=7,<8" \
 && mkdir -p /opt/site/bin && mv /opt/site/bin /opt/bin
LABEL org.jupyter.mlcontainer.build-stage="matrix-install"

FROM mlcontainer-test/noipykernel:bookworm
COPY --from=install /opt/bin/ /usr/local/bin/
COPY --from=install /opt/site/ /usr/local/lib/python3.11/dist-packages/
LABEL org.opencontainers.image.title="Debian bookworm, Python 3.11, ipykernel 7 from PyPI" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: today's ipykernel on a Debian Python"
