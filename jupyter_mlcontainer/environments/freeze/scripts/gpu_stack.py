"""Run by freeze inside a kernel's container, with its Python (3.6+, standard library only):
prints one JSON line with the GPU stack the image carries, as far as it can be read without a
GPU: the CUDA runtime, cuDNN and NCCL of the image (a CUDA toolkit's files, the variables
nvidia/cuda images set, the pip wheels PyTorch brings), and each GPU framework's own build
(its version, CUDA and the architectures it was compiled for).

Every value is text from the image: the host cleans it before it goes anywhere
(machine/facts.py)."""
import glob, json, os, re, subprocess, sys

try:
    from importlib import metadata as md
except ImportError:
    md = None


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read(65536)
    except OSError:
        return ""


def first_match(pattern, text):
    found = re.search(pattern, text)
    return found.group(1) if found else None


def header_version(paths, prefix):
    # cudnn_version.h / nccl.h: #define PREFIX_MAJOR 9 ... MINOR ... PATCHLEVEL (or PATCH)
    for path in paths:
        text = read(path)
        major = first_match(r"#define\s+%s_MAJOR\s+(\d+)" % prefix, text)
        if major is not None:
            minor = first_match(r"#define\s+%s_MINOR\s+(\d+)" % prefix, text) or "0"
            patch = first_match(r"#define\s+%s_(?:PATCHLEVEL|PATCH)\s+(\d+)" % prefix, text) or "0"
            return "%s.%s.%s" % (major, minor, patch)
    return None


LIB_DIRS = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]


def library_version(name):
    # libcudnn.so.9.1.0 -> 9.1.0: the longest version among the files of that name
    best = None
    for folder in LIB_DIRS:
        for path in glob.glob(os.path.join(folder, name + ".so.*")):
            version = path.rsplit(".so.", 1)[1]
            if re.match(r"^\d+(\.\d+)*$", version) and (best is None or len(version) > len(best)):
                best = version
    return best


def cuda_runtime():
    data = read("/usr/local/cuda/version.json")
    if data:
        try:
            parsed = json.loads(data)
            for key in ("cuda", "cuda_cudart"):
                if isinstance(parsed.get(key), dict) and parsed[key].get("version"):
                    return str(parsed[key]["version"])
        except ValueError:
            pass
    found = first_match(r"CUDA Version\s+([0-9.]+)", read("/usr/local/cuda/version.txt"))
    return found or os.environ.get("CUDA_VERSION") or library_version("libcudart")


def distribution(name):
    if md is None:
        return None
    try:
        return md.version(name)
    except Exception:
        return None


def wheels(prefix):
    # PyTorch's and JAX's CUDA come as pip wheels: nvidia-cudnn-cu12, nvidia-nccl-cu12, ...
    found = {}
    for dist in (md.distributions() if md else []):
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith(prefix):
            found[name] = dist.version
    return found


TORCH = (
    "import json, torch\n"
    "flags = getattr(torch._C, '_cuda_getArchFlags', None)\n"
    "arch = (flags() or '').split() if flags else []\n"
    "arch = arch or (torch.cuda.get_arch_list() if torch.version.cuda else [])\n"
    "try:\n"
    "    cudnn = torch.backends.cudnn.version() if torch.version.cuda else None\n"
    "except Exception:\n"
    "    cudnn = None\n"
    "print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, 'arch': arch, 'cudnn': cudnn}))\n"
)
TENSORFLOW = (
    "import json, tensorflow as tf\n"
    "info = dict(tf.sysconfig.get_build_info())\n"
    "print(json.dumps({'version': tf.__version__, 'cuda': info.get('cuda_version'),\n"
    "    'cudnn': info.get('cudnn_version'), 'arch': list(info.get('cuda_compute_capabilities') or [])}))\n"
)


def ask(code):
    # In a process of its own: a framework that crashes on import (a missing library) leaves
    # the other facts standing.
    try:
        out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, timeout=180)
    except Exception as exc:
        return {"error": type(exc).__name__}
    lines = out.stdout.decode(errors="replace").strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.decode(errors="replace").strip().splitlines() or ["exit %d" % out.returncode])[-1]}
    try:
        return json.loads(lines[-1])
    except ValueError:
        return {"error": "unreadable answer"}


frameworks = {}
if distribution("torch"):
    frameworks["torch"] = ask(TORCH)
for name in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
    if distribution(name):
        frameworks["tensorflow"] = ask(TENSORFLOW)
        break
jax = distribution("jax")
if jax:
    # jaxlib's CUDA comes as a plugin wheel named after the CUDA major (jax-cuda12-plugin).
    plugin = next((n for n in wheels("jax-cuda") if n.endswith("-plugin")), "")
    frameworks["jax"] = {"version": jax, "cuda": first_match(r"jax-cuda(\d+)-plugin", plugin), "arch": []}

nvidia = wheels("nvidia-")
include = ["/usr/include", "/usr/local/cuda/include", "/usr/include/x86_64-linux-gnu"]
print(json.dumps({
    "cuda_runtime": cuda_runtime(),
    "cudnn": (os.environ.get("CUDNN_VERSION") or header_version([p + "/cudnn_version.h" for p in include], "CUDNN")
              or library_version("libcudnn")),
    "nccl": (os.environ.get("NCCL_VERSION") or header_version([p + "/nccl.h" for p in include], "NCCL")
             or library_version("libnccl")),
    "wheels": {
        "cuda_runtime": next((v for n, v in nvidia.items() if n.startswith("nvidia-cuda-runtime")), None),
        "cudnn": next((v for n, v in nvidia.items() if n.startswith("nvidia-cudnn")), None),
        "nccl": next((v for n, v in nvidia.items() if n.startswith("nvidia-nccl")), None),
    },
    "frameworks": frameworks,
}))
