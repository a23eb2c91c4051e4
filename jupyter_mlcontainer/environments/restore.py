"""Restoring a colleague's frozen notebook: plan, show the plan, then do exactly that plan.

A notebook someone sends, and its folder, are untrusted (docs/security.md). Every front door
(REST and panel, CLI) first calls :func:`plan_restore`, shows what it found (the image and where
it comes from, the Dockerfile's text and the files its build sends, the kernelspec it will
write) and then calls :func:`start_restore` with the plan's fingerprint: if the notebook, its
Dockerfile or the engine's images changed since the plan was shown, nothing is done.

Names are never taken over. An image built from a shared notebook is tagged
``mlcontainer-restored/<notebook>:<hash of its build context>`` (labelled with the full hash),
never with the name the notebook records: a notebook must not retag an image that other
kernelspecs run. A recorded image is pulled only when no image of that name is here. The
kernelspec name never replaces an existing kernelspec (compared case-insensitively).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from ..core.errors import EngineError, EngineUnavailable, HostCheckFailed, RestoreError, RestorePlanChanged
from ..core.names import check_reference, slug
from ..core.policy import resolve_under
from ..engines.base import ContainerBackend
from ..images.jobs import BuildContext, Job, JobRegistry, PackedContext, collect_context, follow, raise_for_error
from ..kernels.kernelspecs import add_kernelspec, default_kernel_name, installed_kernelspecs
from .host_fit import host_fit
from .sharing import read_record

RESTORED_REPOSITORY = "mlcontainer-restored"
CONTEXT_LABEL = "org.jupyter.mlcontainer.context-sha256"


@dataclass
class RestorePlan:
    """What a restore will do, for a person to confirm. ``source`` is "present" (the image is
    here: only a kernelspec is written), "pull" (from the recorded registry; with
    ``build_if_pull_fails`` the Dockerfile is the fallback) or "build"."""

    notebook: str
    recorded_image: str
    source: str
    image: str  # what the kernel will run ("pull": the recorded image; "build": the restored tag)
    build_tag: str | None = None  # where a build (or the fallback) goes
    build_if_pull_fails: bool = False
    dockerfile: str | None = None  # relative to the notebook's folder
    dockerfile_text: str | None = None
    context_files: list[str] = field(default_factory=list)
    context_bytes: int = 0
    context_sha256: str = ""  # labels the built image; names it (the digest of what a build sends)
    wanted_kernelspec: str | None = None  # the record's kernelspec name (untrusted)
    kernelspec: str = ""
    kernelspec_note: str = ""  # set when the recorded name is taken and another is used
    kernel_options: dict[str, Any] = field(default_factory=dict)  # the restored kernelspec's (recorded, fitted)
    checks: list[dict[str, Any]] = field(default_factory=list)  # host_checks.HostCheck's, holds/warning/blocks
    checked: bool = True  # False: nothing about this host could be checked (an older record)
    blocked: bool = False  # a check blocks: nothing is built, pulled or written
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    _context: BuildContext | None = field(default=None, repr=False)
    _packed: PackedContext | None = field(default=None, repr=False)  # what a confirmed build sends

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_context")
        data.pop("_packed")
        return data

    def describe(self) -> str:
        """The plan in words (the CLI prints it; the panel shows the same facts)."""
        how = {
            "present": f"use the image {self.image}, which is here",
            "pull": f"pull {self.recorded_image}"
            + (f" (if that fails, build {self.build_tag} from {self.dockerfile})" if self.build_if_pull_fails else ""),
            "build": f"build {self.build_tag} from {self.dockerfile}",
        }[self.source]
        lines = [f"Restore {self.notebook}:", f"  image: {how}", f"  kernelspec: {self.kernelspec}"
                 + (f" ({', '.join(f'{k}={v}' for k, v in self.kernel_options.items())})" if self.kernel_options else "")]
        if self.checks:
            lines.append("  this host:")
            for check in self.checks:
                lines.append(f"    [{check['verdict']}] {check['reason']}")
                if check["fix"] and check["verdict"] != "holds":
                    lines.append(f"      what to do: {check['fix']}")
        if self.blocked:
            lines.append("  BLOCKED: a check above fails on this host; nothing will be built, pulled or written "
                         "(--ignore-checks restores it as a CPU kernel).")
        if self.dockerfile_text is not None and self.source != "present":
            lines.append(f"  the build sends {len(self.context_files) + 1} item(s), {self.context_bytes} bytes: "
                         + ", ".join([self.dockerfile or "Dockerfile", *self.context_files]))
            lines.append(f"  --- {self.dockerfile} (its RUN lines run on this machine) ---")
            # Lines as Docker reads them: split at newlines only (a lone carriage return is part
            # of its line; the CLI shows it as an escape), one trailing CR of CRLF dropped.
            lines.extend("  | " + line.removesuffix("\r") for line in self.dockerfile_text.rstrip("\n").split("\n"))
            lines.append("  ---")
        lines.extend(f"  note: {note}" for note in [*self.notes, self.kernelspec_note] if note)
        return "\n".join(lines)


def has_registry(image: str) -> bool:
    """True when ``image`` names a registry host (``host.domain/…``, ``host:port/…``,
    ``localhost/…``): only then is there somewhere a colleague could have pushed it."""
    first, _, rest = image.partition("/")
    return bool(rest) and ("." in first or ":" in first or first == "localhost")


def restored_tag(engine: ContainerBackend, notebook: str, digest: str) -> tuple[str, bool]:
    """(tag, already built) for an image built from a context with sha256 ``digest``: an image
    carrying that tag and label is the same build and is reused; a tag held by any other image
    is left alone and the next free ``-N`` suffix is used."""
    stem = slug(os.path.splitext(os.path.basename(notebook))[0])[:40]
    base = f"{RESTORED_REPOSITORY}/{stem}:{digest[:12]}"
    tag, n = base, 1
    while True:
        try:
            attrs = engine.inspect_image_sync(tag)
        except EngineError:
            return tag, False
        if ((attrs.get("Config") or {}).get("Labels") or {}).get(CONTEXT_LABEL) == digest:
            return tag, True
        n += 1
        tag = f"{base}-{n}"


def kernelspec_name_for(image: str, wanted: str | None) -> tuple[str, bool, str]:
    """(name, reuse, note) for the kernelspec of a restored ``image``. The name comes from an
    untrusted record: an existing kernelspec in any case is never replaced; a container
    kernelspec of that name for the same image is reused as it is; else a free name is taken."""
    wanted = (wanted or default_kernel_name(image)).strip().lower()
    if not wanted or any(not (ch.isalnum() or ch in "._-") for ch in wanted):
        wanted = default_kernel_name(image)
    existing = installed_kernelspecs()
    if wanted not in existing:
        return wanted, False, ""
    if existing[wanted] == image:
        return wanted, True, ""
    base, n = f"{wanted}-restored", 1
    name = base
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name, False, f"a kernelspec named {wanted!r} exists already and is left as it is; the notebook's kernel is {name!r}"


def write_kernelspec(engine: ContainerBackend, image: str, wanted: str | None,
                     options: dict[str, Any] | None = None) -> tuple[str, str]:
    """Write (or reuse) the kernelspec the restored notebook runs on, with ``options`` (how the
    notebook's kernel ran, fitted to this host); return (name, note)."""
    name, reuse, note = kernelspec_name_for(image, wanted)
    if not reuse:
        add_kernelspec(engine, image, name=name, options=options or None)
    return name, note


def dockerfile_of(notebook_path: str, record: dict[str, Any]) -> str:
    """The Dockerfile a notebook's record names, resolved (symlinks too) inside the notebook's
    folder: the record is untrusted, so an absolute path, ``../`` or a link out is refused."""
    return resolve_under(
        os.path.dirname(os.path.abspath(notebook_path)), record.get("dockerfile") or "Dockerfile",
        "The notebook's Dockerfile", allow_absolute=False,
    )


def plan_restore(
    engine: ContainerBackend, notebook_path: str, *, pull: bool = True, wheelhouse: str | None = None,
    context_limit_mb: int | None = None, pack: bool = False,
) -> RestorePlan:
    """Look at the notebook, its folder and the engine; change nothing. Blocking.

    ``pack``: also pack the build context (``plan._packed``; the caller closes it), the digest
    being that of the packed bytes, so that a build sends exactly what the plan's fingerprint
    covers. Raises RestoreError (no record, nothing to restore from), PathRefused (a Dockerfile
    or a COPY source outside the notebook's folder), ContextTooLarge, ContextChanged."""
    record = read_record(notebook_path)
    recorded = str(record["image"]).strip()
    check_reference(recorded)
    plan = RestorePlan(notebook=notebook_path, recorded_image=recorded, source="present", image=recorded)
    present = _image_exists(engine, recorded)
    if not present:
        dockerfile = dockerfile_of(notebook_path, record)
        if os.path.isfile(dockerfile):
            limit = {} if context_limit_mb is None else {"limit_mb": context_limit_mb}
            context = collect_context(dockerfile, wheelhouse, **limit)
            if pack:
                plan._packed = context.pack()
                plan.context_sha256 = plan._packed.digest
            else:
                plan.context_sha256 = context.digest()
            folder = os.path.dirname(os.path.realpath(notebook_path))
            plan._context = context
            plan.dockerfile = os.path.relpath(dockerfile, folder)
            with open(dockerfile, errors="replace", newline="") as f:
                plan.dockerfile_text = f.read()
            plan.context_files, plan.context_bytes = list(context.sources), context.size
            plan.build_tag, built = restored_tag(engine, notebook_path, plan.context_sha256)
            if built:
                plan.source, plan.image = "present", plan.build_tag
                plan.notes.append(f"{plan.build_tag} was built here earlier from the same Dockerfile and files")
            elif pull and has_registry(recorded):
                plan.source, plan.build_if_pull_fails = "pull", True
            else:
                plan.source, plan.image = "build", plan.build_tag
            if plan.source == "build" and plan.build_tag != recorded:
                plan.notes.append(f"the image is built as {plan.build_tag} (named after its Dockerfile), "
                                  f"not as the recorded {recorded}")
        elif pull and has_registry(recorded):
            plan.source = "pull"
        else:
            raise RestoreError(f"Image {recorded} is not here and the notebook's Dockerfile "
                               f"{record.get('dockerfile') or 'Dockerfile'} is not in its folder either")
    plan.wanted_kernelspec = record.get("kernelspec")
    plan.kernelspec, _, plan.kernelspec_note = kernelspec_name_for(plan.image, plan.wanted_kernelspec)
    fit = host_fit(engine, notebook_path, record)
    plan.checks, plan.checked, plan.blocked = [c.to_dict() for c in fit.checks], fit.checked, bool(fit.blocked)
    plan.kernel_options = fit.kernel_options
    plan.notes += fit.notes
    plan.fingerprint = hashlib.sha256(json.dumps(
        [record, plan.source, plan.image, plan.build_tag, plan.dockerfile_text, plan.context_sha256, plan.kernelspec,
         plan.kernel_options, plan.checks],
        sort_keys=True, default=str,
    ).encode()).hexdigest()
    return plan


def start_restore(
    engine: ContainerBackend, jobs: JobRegistry, notebook_path: str, fingerprint: str, *, pull: bool = True,
    wheelhouse: str | None = None, build_args: dict[str, str] | None = None, ignore_checks: bool = False,
) -> dict[str, Any]:
    """Do what the plan with ``fingerprint`` said. Blocking for the plan and a kernelspec;
    a pull or build runs as a job. Returns {"kernelspec", "image", "how", "notes"} at once when
    the image is here, else {"job"} whose result gets those keys when it succeeds. A plan with a
    check that blocks raises HostCheckFailed before anything is done, unless ``ignore_checks``
    (the user read the checks and goes on: a driver they will update): then the kernelspec is a
    CPU one, since a GPU start of it would be refused for the same reason."""
    # Packed now, once: the bytes whose digest the fingerprint covers are the ones a build sends.
    # Files swapped afterwards (while a pull of the recorded image is tried first, say) are never
    # read again.
    plan = plan_restore(engine, notebook_path, pull=pull, wheelhouse=wheelhouse, context_limit_mb=jobs.context_limit_mb,
                        pack=True)
    packed = plan._packed
    refused = not fingerprint or fingerprint != plan.fingerprint or (plan.blocked and not ignore_checks)
    if (refused or plan.source == "present") and packed is not None:
        packed.close()
        packed = None
    if not fingerprint or fingerprint != plan.fingerprint:
        raise RestorePlanChanged(
            f"{notebook_path}: its record, Dockerfile or files, or the images here, changed since the "
            "restore was shown (or no plan was confirmed): look at the restore again before confirming"
        )
    if plan.blocked and not ignore_checks:
        raise HostCheckFailed(
            f"{notebook_path} cannot run here as frozen; nothing was built, pulled or written: "
            + " ".join(f"{c['reason']} {c['fix']}".strip() for c in plan.checks if c["verdict"] == "blocks")
            + " (To restore it anyway, as a CPU kernel, confirm with the checks ignored.)"
        )
    if plan.blocked:  # and ignored: a kernel this host's GPUs cannot serve runs on the CPU
        plan.kernel_options = {**plan.kernel_options, "gpus": "none"}
        plan.notes.append("restored despite a check that blocks: the kernel runs on the CPU (its GPU cells fail "
                          "or run there); give it GPUs (kernel add --gpus) once this host can run them")
    if plan.source == "present":
        kernelspec, note = write_kernelspec(engine, plan.image, plan.wanted_kernelspec, plan.kernel_options)
        return {"kernelspec": kernelspec, "image": plan.image, "how": "present", "notes": _notes(plan, note)}
    job = Job(kind=plan.source, target=plan.image)

    def events() -> Iterable[dict[str, Any]]:
        try:
            if plan.source == "pull":
                try:
                    for event in jobs.pull_events(job, plan.recorded_image):
                        raise_for_error(event)
                        yield event
                    return
                except EngineError as exc:
                    if not plan.build_if_pull_fails or job.state == "cancelled":
                        raise
                    job.add_log(f"Pull of {plan.recorded_image} failed ({exc}); building {plan.build_tag} from {plan.dockerfile}")
                    job.kind, job.target, job.layers = "build", plan.build_tag, {}
            assert packed is not None and plan.build_tag
            yield from jobs.build_events(job, packed, plan.build_tag, build_args=build_args,
                                         labels={CONTEXT_LABEL: plan.context_sha256})
        finally:
            if packed is not None:
                packed.close()

    def done() -> None:
        image = job.target
        jobs.record_image(job, image)
        kernelspec, note = write_kernelspec(engine, image, plan.wanted_kernelspec, plan.kernel_options)
        job.result.update(kernelspec=kernelspec, how="pulled" if job.kind == "pull" else "built", notes=_notes(plan, note))

    return {"job": jobs.run(job, events, on_done=done)}


def restore(
    engine: ContainerBackend, notebook_path: str, *, confirm: Callable[[RestorePlan], bool], jobs: JobRegistry | None = None,
    pull: bool = True, wheelhouse: str | None = None, build_args: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None, ignore_checks: bool = False,
) -> dict[str, Any]:
    """Plan, ask ``confirm(plan)``, then restore and wait (the CLI's path). Returns
    {"image", "kernelspec", "how", "notes"}, or {"declined": True, "plan"} when not confirmed."""
    jobs = jobs or JobRegistry(engine)
    plan = plan_restore(engine, notebook_path, pull=pull, wheelhouse=wheelhouse, context_limit_mb=jobs.context_limit_mb)
    if not confirm(plan):
        return {"declined": True, "plan": plan}
    outcome = start_restore(engine, jobs, notebook_path, plan.fingerprint, pull=pull, wheelhouse=wheelhouse,
                            build_args=build_args, ignore_checks=ignore_checks)
    if "job" not in outcome:
        return outcome
    job = follow(outcome["job"], on_line)
    if job.state != "done":
        raise RestoreError(f"Restoring {notebook_path} failed ({job.kind} of {job.target}): {job.error}")
    return {"image": job.result["image"], "kernelspec": job.result["kernelspec"], "how": job.result["how"],
            "notes": job.result["notes"]}


def _image_exists(engine: ContainerBackend, image: str) -> bool:
    try:
        engine.inspect_image_sync(image)
    except EngineUnavailable:
        raise
    except EngineError:
        return False
    return True


def _notes(plan: RestorePlan, kernelspec_note: str) -> list[str]:
    return [*plan.notes, *([kernelspec_note] if kernelspec_note else [])]
