"""What a kernel runs in: image probes and preparation, pulls and builds as jobs, freeze into a
pinned Dockerfile, sharing and restoring a notebook's environment.
"""
