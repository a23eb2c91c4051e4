"""Scripts that run inside an image with the image's own Python, shipped as package data.

They are read as text (``importlib.resources``) and passed to that Python with ``-c``; nothing
here is imported by the package.
"""
