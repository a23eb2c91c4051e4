#!/bin/sh
# A banner and exec, like nvidia/cuda's /opt/nvidia/nvidia_entrypoint.sh.
cat <<'BANNER'

==========
== CUDA ==
==========

CUDA Version 12.4.1

Container image Copyright (c) 2016-2024, NVIDIA CORPORATION & AFFILIATES. All rights reserved.
BANNER
if [ ! -e /dev/nvidiactl ]; then
  echo "WARNING: The NVIDIA Driver was not detected.  GPU functionality will not be available."
fi
echo
exec "$@"
