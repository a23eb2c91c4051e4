"""Names: image references (the one parser, and the rule for what may be one), the file- and
kernelspec-safe form of an image's name, the key of a notebook's environment record. Pure."""

from __future__ import annotations

import re

from .errors import BadRequest

METADATA_KEY = "mlcontainer"  # a notebook's environment record: metadata.mlcontainer

_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")  # Docker's: lowercase
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _reference_ok(image: str) -> bool:
    if not _REFERENCE.match(image):
        return False
    repo, tag, digest = reference_parts(image)
    parts = repo.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # the registry host, e.g. registry.lab:5000
    return (all(_PATH_COMPONENT.match(p) for p in parts) and (tag is None or bool(_TAG.match(tag)))
            and (digest is None or bool(re.match(r"^[a-z0-9]+:[0-9a-f]{32,}$", digest))))


def check_reference(image: str) -> None:
    """Refuse what cannot be an image reference (BadRequest: the client's mistake, a 400 that
    names the rule) before the engine sees it."""
    if not isinstance(image, str) or not image or len(image) > 512 or not _reference_ok(image):
        shown = image if isinstance(image, str) and len(image) <= 80 else f"{str(image)[:80]}…"
        raise BadRequest(
            f"Not an image reference: {shown!r} (a lowercase repository path, optionally a registry host, a "
            ":tag and an @digest, at most 512 characters, like pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime)"
        )


def reference_parts(image: str) -> tuple[str, str | None, str | None]:
    """``host:5000/team/repo:tag@sha256:…`` -> (repository, tag or None, digest or None).
    A registry port is not a tag. The one parser of image references."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
        return repo, tag, digest or None
    return name, None, digest or None


def split_reference(image: str) -> tuple[str, str | None]:
    """``repo:tag`` -> (repo, tag), as the engine's pull takes it: a digest reference keeps its
    digest as the tag; no tag means ``latest``."""
    repo, tag, digest = reference_parts(image)
    return repo, digest or tag or "latest"


_SLUG_RE = re.compile(r"[^a-z0-9]+")


def slug(image: str) -> str:
    """A file- and kernelspec-name-safe form of an image reference."""
    repo, tag, _ = reference_parts(image)
    text = _SLUG_RE.sub("-", (repo + (f":{tag}" if tag else "")).lower()).strip("-")
    return text[:60] or "image"
