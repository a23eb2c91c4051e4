"""Images: what an image holds (the probe), preparing one for kernels, pulls and builds as jobs
that any front door follows.
"""
