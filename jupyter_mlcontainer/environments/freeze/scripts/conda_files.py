"""Run by freeze inside a kernel container: the files that conda packages installed."""
import json, os, sys
prefix, names = sys.argv[1], set(sys.argv[2:])
meta = os.path.join(prefix, "conda-meta")
files = []
for fn in os.listdir(meta):
    if fn.endswith(".json"):
        try:
            with open(os.path.join(meta, fn)) as f:
                rec = json.load(f)
        except Exception:
            continue
        if rec.get("name") in names:
            files += [os.path.join(prefix, p) for p in rec.get("files") or []]
print(json.dumps(files))
