"""Where containers come from: the backend protocol and its data types (base.py), the Docker
engine (local or remote, rootful or rootless, Podman's differences), a Docker Swarm. The only
part of the package that imports the docker SDK.
"""
