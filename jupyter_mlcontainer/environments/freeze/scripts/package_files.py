"""Run by freeze inside a kernel container: the files that pip (RECORD) and dpkg (its file
lists) installed for the packages named, so that ``docker diff`` does not report them as
changed outside a package manager. argv: the Python distribution names, then "--", then the
Debian package names. Prints one JSON list of absolute paths."""
import json, os, subprocess, sys
try:
    from importlib import metadata as md
except ImportError:
    md = None
args = sys.argv[1:]
cut = args.index("--") if "--" in args else len(args)
dists, debs = set(a.lower() for a in args[:cut]), args[cut + 1:]
files = []
for dist in (md.distributions() if md else []):
    name = (dist.metadata["Name"] or "").lower()
    if name.replace("_", "-") in dists or name in dists:
        for f in dist.files or []:
            files.append(os.path.normpath(str(dist.locate_file(f))))
for deb in debs:
    try:
        out = subprocess.run(["dpkg-query", "-L", deb], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
        files += [line for line in out.stdout.decode().splitlines() if line.startswith("/")]
    except Exception:
        pass
print(json.dumps(sorted(set(files))))
