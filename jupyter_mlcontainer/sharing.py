"""Sharing frozen environments: notebook metadata, restoring a colleague's kernel, Binder export.

Freeze records where a notebook's environment comes from in ``metadata.mlcontainer`` of the
notebook. Someone who opens that notebook without the image runs :func:`restore` (REST, CLI or
panel): the image is used if present, else pulled by digest, else built from the recorded
Dockerfile; a kernelspec with the recorded name is written so the notebook's kernel resolves.
"""

from __future__ import annotations

import os
import time
from typing import Any

import nbformat

from .engine import Engine, EngineError
from .freeze import FreezeResult, RestoreError
from .jobs import JobRegistry, follow
from .kernelspecs import add_kernelspec, default_kernel_name, installed_kernelspecs
from .policy import resolve_under

METADATA_KEY = "mlcontainer"


def frozen_names(notebook_path: str, dockerfile_text: str) -> tuple[str, str]:
    """(image tag, kernelspec name) for a notebook's frozen environment: named after the notebook,
    tagged with a hash of the Dockerfile so each freeze gets its own image."""
    import hashlib

    from .images import slug

    stem = slug(os.path.splitext(os.path.basename(notebook_path))[0])[:40]
    digest = hashlib.sha256(dockerfile_text.encode()).hexdigest()[:12]
    return f"mlcontainer-frozen/{stem}:{digest}", f"mlc-frozen-{stem}"


def environment_record(result: FreezeResult, notebook_path: str, image_tag: str, kernelspec: str) -> dict[str, Any]:
    """The ``metadata.mlcontainer`` block for a notebook frozen into ``result``."""
    folder = os.path.dirname(os.path.abspath(notebook_path))
    return {
        "image": image_tag,
        "base_image": result.base_image,
        "base_digest": result.base_digest,
        "dockerfile": os.path.relpath(result.dockerfile_path or "", folder),
        "requirements": os.path.relpath(result.requirements_path or "", folder),
        "kernelspec": kernelspec,
        "frozen_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def record_in_notebook(notebook_path: str, record: dict[str, Any]) -> None:
    """Write ``record`` into the notebook file's metadata (and name its kernelspec)."""
    nb = nbformat.read(notebook_path, as_version=4)
    nb.metadata[METADATA_KEY] = record
    spec = nb.metadata.setdefault("kernelspec", {})
    spec.update(name=record["kernelspec"], display_name=spec.get("display_name") or record["image"], language="python")
    nbformat.write(nb, notebook_path)


def read_record(notebook_path: str) -> dict[str, Any]:
    """The notebook's environment record; RestoreError when it has none."""
    record = nbformat.read(notebook_path, as_version=4).metadata.get(METADATA_KEY)
    if not record or not record.get("image"):
        raise RestoreError(
            f"{notebook_path} has no mlcontainer environment record: freeze its kernel first "
            "(jupyter mlcontainer freeze)"
        )
    return record


def dockerfile_of(notebook_path: str, record: dict[str, Any]) -> str:
    """The Dockerfile a notebook's record names, resolved (symlinks too) inside the notebook's
    folder: the record is untrusted, so an absolute path, ``../`` or a link out is refused."""
    return resolve_under(
        os.path.dirname(os.path.abspath(notebook_path)), record.get("dockerfile") or "Dockerfile",
        "The notebook's Dockerfile", allow_absolute=False,
    )


def restore_kernelspec(engine: Engine, image: str, wanted: str | None) -> tuple[str, str]:
    """Write (or reuse) the kernelspec a restored notebook runs on; return (name, note).

    The name comes from an untrusted record: it never replaces an existing kernelspec, compared
    case-insensitively (a record naming "Python3" must not replace the user's python3). A
    container kernelspec of that name for the same image is reused as it is; any other match
    makes restore pick a free name, and the note says so.
    """
    wanted = (wanted or default_kernel_name(image)).lower()
    existing = installed_kernelspecs()
    if wanted not in existing:
        return add_kernelspec(engine, image, name=wanted).name, ""
    if existing[wanted] == image:
        return wanted, ""
    base, n = f"{wanted}-restored", 1
    name = base
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    spec = add_kernelspec(engine, image, name=name)
    return spec.name, f"a kernelspec named {wanted!r} exists already and was left as it is; the notebook's kernel is {spec.name!r}"


def restore_async(engine: Engine, jobs: JobRegistry, notebook_path: str, **build: Any) -> dict[str, Any]:
    """Non-blocking restore for the REST API: the kernelspec now if the image is here, else a
    build job that adds the kernelspec when it succeeds. Returns {"kernelspec"} or {"job"}."""
    record = read_record(notebook_path)
    image, name = record["image"], record.get("kernelspec")
    try:
        engine.inspect_image_sync(image)
    except EngineError:
        dockerfile = dockerfile_of(notebook_path, record)
        if not os.path.isfile(dockerfile):
            raise RestoreError(f"Image {image} is missing and its Dockerfile {dockerfile} is not there either")
        def then(job) -> None:
            kernelspec, note = restore_kernelspec(engine, image, name)
            job.result.update(kernelspec=kernelspec, note=note)

        return {"job": jobs.build(dockerfile, image, then=then, **build)}
    kernelspec, note = restore_kernelspec(engine, image, name)
    return {"kernelspec": kernelspec, **({"note": note} if note else {})}


def restore(
    engine: Engine,
    notebook_path: str,
    *,
    jobs: JobRegistry | None = None,
    pull: bool = True,
    wheelhouse: str | None = None,
    build_args: dict[str, str] | None = None,
    on_line=None,
) -> dict[str, Any]:
    """Make ``notebook_path``'s recorded environment available here. Blocking.

    Returns {"image", "kernelspec", "how": "present"|"pulled"|"built"}. With ``pull`` the image is
    first asked from its registry (someone may have pushed it); the Dockerfile is the fallback.
    """
    record = read_record(notebook_path)
    image, how = record["image"], "present"
    jobs = jobs or JobRegistry(engine)
    try:
        engine.inspect_image_sync(image)
    except EngineError:
        how = "built"
        if pull:
            job = jobs.pull(image)
            job.wait(600)
            if job.state == "done":
                how = "pulled"
    if how == "built":
        dockerfile = dockerfile_of(notebook_path, record)
        if not os.path.isfile(dockerfile):
            raise RestoreError(f"Image {image} is missing and its Dockerfile {dockerfile} is not there either")
        job = jobs.build(dockerfile, image, wheelhouse=wheelhouse, build_args=build_args)
        follow(job, on_line)
        if job.state != "done":
            raise RestoreError(f"Building {image} from {dockerfile} failed: {job.error}")
    kernelspec, note = restore_kernelspec(engine, image, record.get("kernelspec"))
    return {"image": image, "kernelspec": kernelspec, "how": how, "note": note}


BINDER_DOCKERFILE = """\
# Binder / repo2docker: built by mybinder.org from this folder (Binder's Dockerfile rules:
# an explicit tag, a uid 1000 user, the repository copied into $HOME).
# Generated by `jupyter mlcontainer export-binder` from {source}.
FROM {image}

ARG NB_USER=jovyan
ARG NB_UID=1000
ENV USER=${{NB_USER}} HOME=/home/${{NB_USER}}

USER root
RUN (id -u ${{NB_UID}} >/dev/null 2>&1 || useradd --create-home --uid ${{NB_UID}} --home-dir ${{HOME}} ${{NB_USER}}) \\
    && mkdir -p ${{HOME}}
COPY binder/requirements-binder.txt /tmp/requirements-binder.txt
RUN {python} -m pip install --no-cache-dir -r /tmp/requirements-binder.txt && rm /tmp/requirements-binder.txt
COPY . ${{HOME}}
RUN chown -R ${{NB_UID}} ${{HOME}}
WORKDIR ${{HOME}}
USER ${{NB_UID}}
"""


def export_binder(repo_root: str, dockerfile: str, *, overwrite: bool = False) -> str:
    """Write ``<repo_root>/binder/Dockerfile`` for Binder from a frozen Dockerfile. Returns the folder.

    Binder builds from the repository itself, so the frozen Dockerfile is inlined: its base and
    pins become Binder's (the frozen requirements plus jupyterlab, which Binder needs to serve).
    """
    folder = os.path.join(repo_root, "binder")
    target = os.path.join(folder, "Dockerfile")
    if os.path.exists(target) and not overwrite:
        raise RestoreError(f"{target} exists; pass --force to replace it")
    source = open(dockerfile).read().splitlines()
    base = next((line.split(None, 1)[1] for line in source if line.startswith("FROM ")), None)
    if not base:
        raise RestoreError(f"{dockerfile} has no FROM line")
    python = "python3"
    for line in source:
        if " -m pip install" in line and line.startswith("RUN "):
            python = line.split()[1]
    requirements = os.path.join(os.path.dirname(dockerfile), "requirements-frozen.txt")
    pins = open(requirements).read() if os.path.exists(requirements) else ""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "requirements-binder.txt"), "w") as f:
        f.write(pins + "jupyterlab>=4,<5\n")
    with open(target, "w") as f:
        f.write(BINDER_DOCKERFILE.format(image=base, python=python, source=os.path.relpath(dockerfile, repo_root)))
    env_lines = [line for line in source if line.startswith("ENV ")]
    if env_lines:
        with open(target, "a") as f:
            f.write("\n".join(env_lines) + "\n")
    return folder


