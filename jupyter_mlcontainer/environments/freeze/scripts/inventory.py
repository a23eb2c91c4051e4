"""Run by freeze inside an image or a kernel container, with that Python (3.6+, standard library
only): prints one JSON line with its Python distributions, Debian packages and conda records."""
import json, os, site, subprocess, sys
try:
    from importlib import metadata as md
except ImportError:
    md = None
user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else ""
# A venv image's kernel installs into PIP_PREFIX (in the cache volume) instead: as persistent.
pip_prefix = os.environ.get("PIP_PREFIX") or ""
# The pip a venv without one is lent for %pip (kernels/container_spec.py): ours, not the image's.
lent_pip = os.environ.get("MLCONTAINER_LENT_PIP") or ""
packages = {}
for dist in (md.distributions() if md else []):
    name = dist.metadata["Name"]
    if not name:
        continue
    key = name.lower().replace("_", "-").replace(".", "-")
    if key in packages:
        continue  # the first on sys.path wins, as for imports
    location = str(getattr(dist, "_path", ""))
    if lent_pip and location.startswith(lent_pip + "/"):
        continue
    try:
        direct_url = json.loads(dist.read_text("direct_url.json") or "null")
    except Exception:
        direct_url = None
    packages[key] = {
        "name": name, "version": dist.version, "location": location, "direct_url": direct_url,
        "installer": (dist.read_text("INSTALLER") or "").strip(),
        "user_site": bool(user_site) and location.startswith(user_site),
        "pip_prefix": bool(pip_prefix) and location.startswith(pip_prefix + "/"),
    }
def conda_inventory():
    # conda, mamba and micromamba keep one JSON record per installed package in
    # PREFIX/conda-meta; reading them needs no conda at all.
    for prefix in (sys.prefix, os.environ.get("CONDA_PREFIX"), os.environ.get("MAMBA_ROOT_PREFIX"), "/opt/conda"):
        meta = os.path.join(prefix or "", "conda-meta")
        if prefix and os.path.isdir(meta):
            break
    else:
        return None
    records, owned = {}, []
    for fn in sorted(os.listdir(meta)):
        if not fn.endswith(".json"):
            continue
        try:
            with open(os.path.join(meta, fn)) as f:
                rec = json.load(f)
        except Exception:
            continue
        name = rec.get("name")
        if not name:
            continue
        records[name] = {key: str(rec.get(key) or "") for key in ("version", "build", "channel", "subdir")}
        for path in rec.get("files") or []:
            part = path.split("/")
            for i, piece in enumerate(part):
                if piece.endswith((".dist-info", ".egg-info")):
                    owned.append(os.path.join(prefix, *part[: i + 1]))
                    break
    from shutil import which
    tool = None
    for exe in ("micromamba", "mamba", "conda"):
        candidates = [os.path.join(prefix, "bin", exe), which(exe)]
        tool = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
        if tool:
            break
    return {"prefix": prefix, "packages": records, "owned": sorted(set(owned)), "tool": tool}
conda = conda_inventory()
owned = set((conda or {}).get("owned") or [])
for info in packages.values():
    info["conda"] = info["installer"] == "conda" or info["location"] in owned
def run(cmd):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
        return out.stdout.decode() if out.returncode == 0 else None
    except Exception:
        return None
print(json.dumps({
    "python": "%d.%d.%d" % tuple(sys.version_info[:3]), "executable": sys.executable,
    "packages": packages, "user_site": user_site,
    "dpkg": run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n"]),
    "apt_manual": run(["apt-mark", "showmanual"]),
    "conda": conda,
}))
