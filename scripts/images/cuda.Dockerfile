# mlcontainer-test/cuda:bookworm, built by scripts/build-test-images.sh (offline).
# Shaped like nvidia/cuda + `pip install ipykernel`: an ENTRYPOINT script that prints a banner
# and execs its arguments, and NVIDIA_VISIBLE_DEVICES=all in the image's ENV (no CUDA inside).
FROM mlcontainer-test/ipykernel7:bookworm
COPY nvidia_entrypoint.sh /opt/nvidia/nvidia_entrypoint.sh
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_VERSION=12.4.1 \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh"]
LABEL org.opencontainers.image.title="nvidia/cuda-like: banner ENTRYPOINT, NVIDIA env, ipykernel 7" \
      org.opencontainers.image.description="jupyter-mlcontainer test image: an ENTRYPOINT script and NVIDIA_VISIBLE_DEVICES=all"
