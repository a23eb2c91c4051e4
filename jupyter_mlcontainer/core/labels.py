"""The labels every container, volume and service of ours carries: how the rest of the project
finds what it made, whose it is and what it runs."""

LABEL_PREFIX = "org.jupyter.mlcontainer"
LABEL_ROLE = f"{LABEL_PREFIX}.role"  # "kernel" | "probe" | "init" | "kernel-network"
LABEL_KERNEL_ID = f"{LABEL_PREFIX}.kernel-id"
LABEL_KERNEL_NAME = f"{LABEL_PREFIX}.kernel-name"
LABEL_OWNER = f"{LABEL_PREFIX}.owner"  # the owning process's lease id (identity.owner_id)
LABEL_OWNER_USER = f"{LABEL_PREFIX}.owner-user"
LABEL_WORKSPACE = f"{LABEL_PREFIX}.workspace"
LABEL_CACHE_VOLUME = f"{LABEL_PREFIX}.cache-volume"
LABEL_VOLUME_CACHE = f"{LABEL_PREFIX}.cache"  # on the cache volume itself
LABEL_IMAGE = f"{LABEL_PREFIX}.image"  # the image reference the kernelspec names
LABEL_SPARE = f"{LABEL_PREFIX}.spare"  # a warm pool's spare: its template's key (claims.py maps it to a kernel)
LABEL_LIMITS_IGNORED = f"{LABEL_PREFIX}.limits-ignored"  # limits asked for that the engine cannot enforce
LABEL_INJECTED_ENV = f"{LABEL_PREFIX}.injected-env"  # names of variables we set (not the user's)
LABEL_GPUS = f"{LABEL_PREFIX}.gpus"
# On the cache keeper's trusted image (cache/helper_image.py) and its containers.
LABEL_HELPER = f"{LABEL_PREFIX}.helper"  # the image's content SHA-256
LABEL_HELPER_SCRIPTS = f"{LABEL_PREFIX}.helper-scripts"  # the helper scripts' SHA-256 (any interpreter)
LABEL_HELPER_PYTHON = f"{LABEL_PREFIX}.helper-python"  # its Python's path in the image
