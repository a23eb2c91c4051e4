"""Container kernels: the jupyter_client provisioner and what it is made of (the container's
spec and bootstrap, connection and readiness, the warm pool and claims, deaths, orphans,
kernelspecs).
"""
