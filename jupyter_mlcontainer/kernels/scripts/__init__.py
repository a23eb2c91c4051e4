"""Code that runs inside kernel containers, as real files (shipped as package data and run with
the image's Python; see kernels/bootstrap.py). Standard library only."""
