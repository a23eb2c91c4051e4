"""Image inventory and probing: which Python, ipykernel, PyTorch and CUDA an image holds.

A probe runs a tiny Python script once per image id (no network, removed afterwards) and
the answer is cached on disk, so kernel starts and listings never pay for it twice.
:func:`prepare_image` builds a derived image with ipykernel for images that lack it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Callable

from ..core.errors import BadRequest, EngineError, ImageNotFound, ImageNotUsable
from ..core.labels import LABEL_HELPER, LABEL_PREFIX, LABEL_ROLE
from ..core.names import reference_parts
from ..core.policy import write_json_safely
from ..core.state import state_dir
from ..engines.base import ContainerBackend

PROBE_VERSION = 5

# Runs inside the image with whatever Python it has (3.6+) and prints one JSON line; read once,
# from the package (scripts/probe_image.py), and passed to that Python with -c.
PROBE_SCRIPT = (resources.files(f"{__package__}.scripts") / "probe_image.py").read_text(encoding="utf-8")

PYTHON_CANDIDATES = ("python3", "python")


@dataclass
class ImageFacts:
    """What a probe found in an image. ``python`` is None when the image has no Python."""

    image_id: str
    python: str | None = None
    python_version: str | None = None
    ipykernel: str | None = None
    pip: str | None = None
    pip_wheel: str | None = None  # without pip: a pip wheel the image's Python ships (ensurepip's)
    torch: str | None = None
    torch_cuda: str | None = None
    cuda: str | None = None
    conda: bool = False
    venv: str = ""  # the venv's prefix when the image's Python runs in one
    externally_managed: bool = False
    curve: bool = False  # its kernel can encrypt its traffic (CurveZMQ)
    user: str = ""
    env: dict[str, str] = field(default_factory=dict)
    passwd: str = ""
    group: str = ""
    probe_error: str = ""
    probe_version: int = PROBE_VERSION

    @property
    def usable(self) -> bool:
        """Whether a kernel can run in the image as it is (Python with ipykernel)."""
        return bool(self.python and self.ipykernel)

    def summary(self) -> str:
        """``Python 3.11, PyTorch 2.13.0, CUDA 12.1`` (whatever is known)."""
        parts = []
        if self.python_version:
            parts.append("Python " + ".".join(self.python_version.split(".")[:2]))
        if self.torch:
            parts.append(f"PyTorch {self.torch.split('+')[0]}")
        cuda = self.cuda or self.torch_cuda
        if cuda:
            parts.append(f"CUDA {cuda}")
        elif self.torch:
            parts.append("CPU")
        return ", ".join(parts)

    def public(self) -> dict[str, Any]:
        """The facts without the image's passwd/group text (for listings)."""
        data = asdict(self)
        data.pop("passwd")
        data.pop("group")
        data.pop("env")
        return data


def unusable_reason(image: str, facts: ImageFacts) -> str | None:
    """A user message saying why ``image`` cannot host a kernel, or None if it can."""
    if not facts.python:
        detail = f" ({facts.probe_error.strip()})" if facts.probe_error.strip() else ""
        return (
            f"Image {image!r} has no Python interpreter (tried {', '.join(PYTHON_CANDIDATES)} on its "
            f"PATH){detail}. Use an image with Python, or build one FROM it that installs Python "
            "and ipykernel."
        )
    if not facts.ipykernel:
        return (
            f"Image {image!r} has Python {facts.python_version} but not ipykernel, so it cannot run "
            f"a Jupyter kernel. Make it usable with `jupyter mlcontainer image prepare {image}` "
            "(builds a derived image with ipykernel), or add `--prepare` to `kernel add`."
        )
    return None


def _env_dict(image_attrs: dict[str, Any]) -> dict[str, str]:
    """The image's ENV lines as a dict (from its inspect data, without running it)."""
    env = {}
    for item in (image_attrs.get("Config") or {}).get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _cache_path(image_id: str) -> str:
    """Where the facts of ``image_id`` are kept: the id names the content, so they never go stale."""
    return os.path.join(state_dir(), "probes", image_id.replace(":", "_") + ".json")


def _load_cached(image_id: str) -> ImageFacts | None:
    """The kept facts of ``image_id``; None when there are none, they are unreadable, or an
    earlier probe (another PROBE_VERSION) found them."""
    try:
        with open(_cache_path(image_id)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if data.get("probe_version") != PROBE_VERSION:
        return None
    try:
        return ImageFacts(**data)
    except TypeError:
        return None


def _store(facts: ImageFacts) -> None:
    """Keep ``facts`` for every later listing and kernel start (written whole or not at all)."""
    path = _cache_path(facts.image_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_safely(path, asdict(facts))


def probe_image_sync(engine: ContainerBackend, image: str, *, refresh: bool = False) -> ImageFacts:
    """Facts about ``image`` (blocking). Probes once per image id; later calls read the cache.

    Raises ImageNotFound when the image is absent, EngineUnavailable when the engine is.
    """
    attrs = engine.inspect_image_sync(image)
    image_id = attrs["Id"]
    if not refresh:
        cached = _load_cached(image_id)
        if cached is not None:
            return cached
    env = _env_dict(attrs)
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    facts = ImageFacts(
        image_id=image_id,
        user=(attrs.get("Config") or {}).get("User") or "",
        env=env,
        cuda=env.get("CUDA_VERSION") or labels.get("com.nvidia.cuda.version") or None,
    )
    errors = []
    for candidate in PYTHON_CANDIDATES:
        code, out, err = engine.run_to_completion_sync(
            image,
            [candidate, "-c", PROBE_SCRIPT],
            user="0:0",
            labels={LABEL_ROLE: "probe"},
            cap_drop=["ALL"],
        )
        if code == 0:
            line = out.strip().splitlines()[-1] if out.strip() else "{}"
            try:
                data = json.loads(line)
            except ValueError:
                errors.append(f"{candidate}: unreadable probe output {out[-200:]!r}")
                continue
            facts.python = data.get("executable") or candidate
            facts.python_version = data.get("python_version")
            facts.ipykernel = data.get("ipykernel")
            facts.pip = data.get("pip")
            facts.pip_wheel = data.get("pip_wheel")
            facts.torch = data.get("torch")
            facts.torch_cuda = data.get("torch_cuda")
            facts.conda = bool(data.get("conda"))
            facts.venv = data.get("venv") or ""
            facts.externally_managed = bool(data.get("externally_managed"))
            facts.curve = bool(data.get("curve"))
            facts.passwd = data.get("passwd") or ""
            facts.group = data.get("group") or ""
            break
        errors.append(f"{candidate}: {(err or out).strip()[-300:] or f'exit code {code}'}")
    if not facts.python:
        facts.probe_error = "; ".join(errors)
    _store(facts)
    return facts


def display_name(image: str, facts: ImageFacts) -> str:
    """The launcher label: the image reference and what runs inside it."""
    summary = facts.summary()
    return f"{image} ({summary})" if summary else image


# -- prepare: a derived image with ipykernel ---------------------------------------------


def default_prepared_tag(image: str) -> str:
    """``repo:tag`` -> ``repo:tag-ipykernel`` (digest references drop the digest)."""
    repo, tag, _ = reference_parts(image)
    return f"{repo}:{tag or 'latest'}-ipykernel"


def _prepare_dockerfile(image: str, facts: ImageFacts, with_wheelhouse: bool, index_url: str | None) -> str:
    """The Dockerfile :func:`prepare_image` builds: ``image`` + ipykernel installed with its own
    pip (from the wheelhouse, or an index), as root, then back to the image's user."""
    python = facts.python or "python3"
    pip_args = ["--no-cache-dir"]
    if with_wheelhouse:
        pip_args += ["--no-index", "--find-links", "/tmp/mlcontainer-wheels"]  # COPY'd from ./wheelhouse
    elif index_url:
        pip_args += ["--index-url", index_url]
    lines = [
        f"FROM {image}",
        "USER root",
    ]
    if with_wheelhouse:
        lines.append("COPY wheelhouse /tmp/mlcontainer-wheels")
    install = json.dumps([python, "-m", "pip", "install", *pip_args, "ipykernel"])
    # PEP 668 images (Debian/Ubuntu 24.04 pythons) refuse pip without this; older pips ignore it.
    lines.append("ENV PIP_BREAK_SYSTEM_PACKAGES=1")
    lines.append(f"RUN {install}")
    if with_wheelhouse:
        lines.append('RUN ["rm", "-rf", "/tmp/mlcontainer-wheels"]')
    lines.append(f'LABEL {LABEL_PREFIX}.prepared-from="{image}"')
    if facts.user and facts.user not in ("root", "0", "0:0"):
        lines.append(f"USER {facts.user}")
    return "\n".join(lines) + "\n"


def prepare_image(
    engine: ContainerBackend,
    image: str,
    *,
    tag: str | None = None,
    wheelhouse: str | None = None,
    index_url: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> tuple[str, ImageFacts]:
    """Build ``tag`` = ``image`` + ipykernel and return (tag, facts of the new image). Blocking.

    ``wheelhouse`` is a host folder of wheels to install from with no index (for machines
    whose containers cannot reach PyPI). ``on_line`` receives the build log line by line.
    """
    facts = probe_image_sync(engine, image)
    if not facts.python:
        raise ImageNotUsable(unusable_reason(image, facts) or "no Python")
    if facts.ipykernel:
        return image, facts
    if not facts.pip:
        raise ImageNotUsable(
            f"Image {image!r} has Python {facts.python_version} but neither ipykernel nor pip, so "
            "ipykernel cannot be added automatically. Build an image FROM it that installs "
            "ipykernel (e.g. with your distribution's python3-ipykernel package)."
        )
    tag = tag or default_prepared_tag(image)
    if wheelhouse and not any(n.endswith((".whl", ".tar.gz", ".zip")) for n in os.listdir(wheelhouse)):
        raise BadRequest(f"wheelhouse {wheelhouse!r} holds no .whl / .tar.gz files")
    from .jobs import JobRegistry, follow  # the one build path (context checks, streaming, log)

    with tempfile.TemporaryDirectory(prefix="mlcontainer-prepare-") as folder:
        dockerfile = os.path.join(folder, "Dockerfile")
        with open(dockerfile, "w") as f:
            f.write(_prepare_dockerfile(image, facts, bool(wheelhouse), index_url))
        job = JobRegistry(engine).build(dockerfile, tag, wheelhouse=wheelhouse, labels={LABEL_ROLE: "prepared"})
        follow(job, on_line)
    if job.state != "done":
        raise EngineError(f"Building {tag} failed: {job.error}")
    return tag, probe_image_sync(engine, tag)


class ImageInventory:
    """Local images with their probed facts; images never probed are probed in the background."""

    def __init__(self, engine: ContainerBackend) -> None:
        self.engine = engine
        self._pending: set[str] = set()
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def list(self, kernelspecs_by_image: dict[str, list[str]]) -> list[dict[str, Any]]:
        """One ``images`` engine call; facts from the probe cache. Blocking."""
        rows = []
        for image in self.engine.images_sync():
            tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
            if not tags:
                continue  # intermediate / dangling layers
            if (image.get("Labels") or {}).get(LABEL_HELPER):
                continue  # the cache keeper's own image (cache/helper_image.py): not one to run notebooks in
            rows.append(self._row(image["Id"], tags, image.get("RepoDigests") or [], image.get("Size"),
                                  image.get("Created"), image.get("Labels") or {}, kernelspecs_by_image))
        return rows

    def row_of(self, image: str, kernelspecs_by_image: dict[str, list[str]]) -> dict[str, Any] | None:
        """The row of one image of this engine, by reference (an image a Swarm's manager holds
        and the Jupyter host's engine does not); None when the engine has none. Blocking."""
        try:
            attrs = self.engine.inspect_image_sync(image)
        except ImageNotFound:
            return None
        tags = [t for t in attrs.get("RepoTags") or [] if t != "<none>:<none>"] or [image]
        return self._row(attrs["Id"], tags, attrs.get("RepoDigests") or [], attrs.get("Size"), attrs.get("Created"),
                         (attrs.get("Config") or {}).get("Labels") or {}, kernelspecs_by_image)

    def _row(self, image_id: str, tags: list[str], digests: list[str], size: Any, created: Any,
             labels: dict[str, str], kernelspecs_by_image: dict[str, list[str]]) -> dict[str, Any]:
        """One image's row of the listing: its facts when probed, else the probe's state (and a
        probe started in the background, so a listing never waits for one)."""
        facts = _load_cached(image_id)
        if facts is not None:
            probe = {"probe": "done", **facts.public()}
        elif image_id in self._failed:
            probe = {"probe": "error", "error": self._failed[image_id]}
        else:
            self._probe_later(image_id)
            probe = {"probe": "pending"}
        return {
            "id": image_id,
            "tags": tags,
            "digests": digests,
            "size": size,
            "created": created,
            "labels": labels,
            "facts": probe,
            "kernelspecs": sorted({name for tag in tags for name in kernelspecs_by_image.get(tag, [])}),
        }

    def _probe_later(self, image_id: str) -> None:
        """Probe ``image_id`` in a thread of its own, once however often it is listed meanwhile;
        a failure is kept for the listing to show."""
        with self._lock:
            if image_id in self._pending:
                return
            self._pending.add(image_id)

        def run() -> None:
            try:
                probe_image_sync(self.engine, image_id)
            except Exception as exc:
                self._failed[image_id] = str(exc)
            finally:
                with self._lock:
                    self._pending.discard(image_id)

        threading.Thread(target=run, name=f"mlcontainer-probe-{image_id[7:19]}", daemon=True).start()
