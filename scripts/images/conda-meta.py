"""Write PREFIX/conda-meta/python-*.json for the files of a Python prefix, as conda does.

Used by conda.Dockerfile (the test images have no conda channel to install from)."""
import json
import os
import sys

prefix = sys.argv[1]
version = "%d.%d.%d" % sys.version_info[:3]
build = "h9e4cc4f_0_cpython"
files = []
for top in ("bin", "lib"):
    for root, _dirs, names in os.walk(os.path.join(prefix, top)):
        for name in names:
            files.append(os.path.relpath(os.path.join(root, name), prefix))
files.sort()
os.makedirs(os.path.join(prefix, "conda-meta"), exist_ok=True)
record = {
    "name": "python", "version": version, "build": build, "build_number": 0,
    "channel": "https://conda.anaconda.org/conda-forge/linux-64", "subdir": "linux-64",
    "fn": f"python-{version}-{build}.conda", "requested_spec": f"python={version}",
    "files": files,
}
with open(os.path.join(prefix, "conda-meta", f"python-{version}-{build}.json"), "w") as f:
    json.dump(record, f)
with open(os.path.join(prefix, "conda-meta", "history"), "w") as f:
    f.write(f"==> 2026-11-01 00:00:00 <==\n# cmd: conda create -p {prefix} python={version}\n+conda-forge/linux-64::python-{version}-{build}\n")
