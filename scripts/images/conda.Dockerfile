# mlcontainer-test/conda:bookworm, built by scripts/build-test-images.sh (offline).
# Shaped like pytorch/pytorch: a Python prefix at /opt/conda (python at /opt/conda/bin/python,
# packages in /opt/conda/lib/python3.11/site-packages, conda-meta records, not a venv), first
# on PATH, ipykernel 7.x pip-installed into it, and the NVIDIA variables those images set.
# No conda channel is reachable here: the prefix is Debian's Python copied to /opt/conda with
# Debian's layout undone (dist-packages -> site-packages: sysconfig's scheme patched, and
# site-packages added by sitecustomize, since `site` is frozen into the 3.11 interpreter), and
# conda-meta holds a record for python as conda writes it.
FROM mlcontainer-test/noipykernel:bookworm AS install
COPY wheels /tmp/wheels
COPY conda-meta.py /tmp/conda-meta.py
RUN mkdir -p /opt/conda/bin /opt/conda/lib \
 && cp /usr/bin/python3.11 /opt/conda/bin/python3.11 \
 && ln -s python3.11 /opt/conda/bin/python3 && ln -s python3.11 /opt/conda/bin/python \
 && cp -a /usr/lib/python3.11 /opt/conda/lib/python3.11 \
 && rm -f /opt/conda/lib/python3.11/sitecustomize.py \
 && printf '%s\n' '# A conda-like prefix: its site-packages, as an upstream CPython build has it.' \
        'import site; site.addsitedir("/opt/conda/lib/python3.11/site-packages")' \
        > /opt/conda/lib/python3.11/sitecustomize.py \
 && sed -i 's/^    if sys.base_prefix != sys.prefix or hasattr(sys, "real_prefix"):/    if True:  # a conda-like prefix/' \
        /opt/conda/lib/python3.11/sysconfig.py \
 && rm -f /opt/conda/lib/python3.11/__pycache__/sysconfig.* \
 && mkdir -p /opt/conda/lib/python3.11/site-packages \
 && /opt/conda/bin/python /tmp/conda-meta.py /opt/conda \
 && python3 -m pip --python /opt/conda/bin/python install --no-cache-dir --root-user-action=ignore \
        --no-index --find-links /tmp/wheels pip "ipykernel>=7,<8"
LABEL org.jupyter.mlcontainer.build-stage="matrix-install"

FROM mlcontainer-test/noipykernel:bookworm
COPY --from=install /opt/conda /opt/conda
ENV PATH=/opt/conda/bin:/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64
LABEL org.opencontainers.image.title="conda-layout Python 3.11 at /opt/conda with ipykernel 7" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: shaped like pytorch/pytorch"
