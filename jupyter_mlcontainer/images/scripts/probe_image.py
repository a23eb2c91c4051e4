"""What an image holds: run by :func:`jupyter_mlcontainer.images.probe.probe_image_sync` inside
the image, with whatever Python it has (3.6+), as ``python -c <this file's text>``.

Prints one JSON line: the interpreter, its version, ipykernel (and whether its kernel can encrypt
its traffic), pip (else a pip wheel it ships), PyTorch and the CUDA it was built for,
conda/venv/PEP 668 markers, and the image's passwd and group files. Versions come from package
metadata and torch/version.py, never from importing torch (slow). Standard library only; every
failure reads as "not there".
"""

import json
import os
import re
import sys

out = {"executable": sys.executable, "python_version": "%d.%d.%d" % tuple(sys.version_info[:3])}
try:
    import importlib.util as iu

    def has(mod):
        """Whether ``mod`` can be imported (found, not imported: importing torch is slow)."""
        return iu.find_spec(mod) is not None
except Exception:  # Python 2 (no importlib.util): nothing counts as installed
    def has(mod):
        return False
try:
    from importlib import metadata as md
except Exception:  # Python before 3.8: no package metadata to read
    md = None


def ver(dist):
    """The installed version of the distribution ``dist``, from its metadata; None if unknown."""
    if md is None:
        return None
    try:
        return md.version(dist)
    except Exception:
        return None


out["ipykernel"] = ver("ipykernel") if has("ipykernel") else None
# CurveZMQ transport encryption: ipykernel reads the keys from its connection file from 7.4 on,
# and the image's libzmq must have CURVE.
out["curve"] = False
try:
    major_minor = tuple(int(x) for x in re.findall(r"\d+", out["ipykernel"] or "")[:2])
    if major_minor >= (7, 4):
        import zmq
        out["curve"] = bool(zmq.has("curve"))
except Exception:
    pass
out["pip"] = ver("pip") if has("pip") else None
# Without pip (a venv made by `uv venv`), a pip wheel the image's Python ships, for a kernel's
# `%pip` to run from (kernels/container_spec.py): ensurepip's, or Debian's python3-pip-whl.
out["pip_wheel"] = None
if not out["pip"]:
    try:
        import glob
        spec = iu.find_spec("ensurepip")
        places = [os.path.join(os.path.dirname(spec.origin), "_bundled")] if spec and spec.origin else []
        wheels = [w for place in places + ["/usr/share/python-wheels"]
                  for w in sorted(glob.glob(os.path.join(place, "pip-*.whl")))]
        out["pip_wheel"] = wheels[0] if wheels else None
    except Exception:
        pass
out["torch"] = ver("torch")
out["torch_cuda"] = None
if out["torch"]:
    try:
        spec = iu.find_spec("torch")
        base = list(spec.submodule_search_locations)[0]
        text = open(os.path.join(base, "version.py")).read()
        m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        out["torch_cuda"] = m.group(1) if m else None
    except Exception:
        pass
out["conda"] = os.path.isdir(os.path.join(sys.prefix, "conda-meta"))
out["venv"] = sys.prefix if sys.prefix != getattr(sys, "base_prefix", sys.prefix) else ""
# PEP 668: a system Python whose pip refuses to install outside a venv; a kernel's `%pip install` is
# then told that refusal protects nothing in a throw-away container (kernels/container_spec.py).
out["externally_managed"] = bool(
    __import__("glob").glob(os.path.join(os.path.dirname(os.__file__), "EXTERNALLY-MANAGED"))
)
for name in ("passwd", "group"):
    try:
        out[name] = open("/etc/" + name).read()
    except Exception:
        out[name] = ""
print(json.dumps(out))
