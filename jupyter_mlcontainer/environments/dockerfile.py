"""Writing generated Dockerfiles and requirements files so that they say exactly what was meant.

What freeze writes comes from a running kernel: environment variable names and values, file
paths, package metadata (``direct_url.json``), apt and conda records. Any of it may hold a
newline, a quote, ``$`` or ``\\`` (by accident, or planted by a notebook someone sent), and the
file is built later by someone else. So nothing is pasted in raw: every value goes through one
of the functions here, which either escape it so that Docker (or pip) reads back the same
value, or refuse it with :class:`Unrepresentable`. A refused value is left out and named in a
warning comment, which :func:`comment` escapes in turn.
"""

from __future__ import annotations

import re

# Docker reads an ENV/LABEL value in double quotes with backslash escapes and $-substitution;
# a newline or another control character cannot be written inside one instruction at all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+-]*$")
USER_SPEC = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# Requirement parts (PEP 508 names, PEP 440-ish versions) and URLs pip reads from a file.
DIST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
DIST_VERSION = re.compile(r"^[A-Za-z0-9._+!-]+$")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'\\<>^`{|}]+$")
COMMIT = re.compile(r"^[0-9A-Za-z._/-]+$")
# Debian package names and versions (Policy 5.6.1, 5.6.12); conda name=version=build specs.
APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$")
APT_VERSION = re.compile(r"^[A-Za-z0-9.+~:-]+$")
CONDA_SPEC = re.compile(r"^[A-Za-z0-9_.+-]+(=[A-Za-z0-9_.+!*-]+){0,2}$")


class Unrepresentable(ValueError):
    """A value the generated file cannot carry exactly: it is left out, with a warning."""


def visible(text: str) -> str:
    """``text`` on one line with control characters shown as escapes (for messages)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def comment(text: str) -> str:
    """A ``#`` comment line saying ``text``; a newline in it cannot start an instruction."""
    return "# " + visible(text)


def quoted(value: str, what: str = "value") -> str:
    """``value`` in double quotes as Docker's ENV and LABEL read it back: ``\\``, ``"`` and
    ``$`` escaped. Control characters (a newline above all) cannot be carried: refused."""
    value = str(value)
    if _CONTROL.search(value):
        raise Unrepresentable(f"{what} {visible(value)!s} holds a newline or control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    """``value`` when it matches ``pattern`` exactly, else Unrepresentable naming ``what``."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Unrepresentable(f"{what} {visible(value)!r} is not one the generated file can carry")
    return value


def env_instruction(name: str, value: str) -> str:
    """``ENV NAME="value"``; Unrepresentable for a name Docker cannot take or a value with a
    newline."""
    checked(name, ENV_NAME, "Environment variable name")
    return f"ENV {name}={quoted(value, f'The value of {name}')}"


def label_instruction(labels: dict[str, str]) -> str:
    """One LABEL instruction; values are escaped, control characters shown as escapes."""
    parts = [f"{checked(key, LABEL_KEY, 'Label')}={quoted(visible(value))}" for key, value in labels.items()]
    return "LABEL " + " \\\n      ".join(parts)


def requirement_line(name: str, version: str = "", *, url: str = "", vcs: str = "", commit: str = "") -> str:
    """One line of a pip requirements file: ``name==version``, ``name @ url`` or
    ``name @ vcs+url@commit``. Anything that pip would read as a second line, an option or a
    comment is refused."""
    checked(name, DIST_NAME, "Package name")
    if vcs:
        checked(vcs, re.compile(r"^[a-z]+$"), "Version control system")
        checked(url, URL, f"The URL of {name}")
        checked(commit, COMMIT, f"The commit of {name}")
        return f"{name} @ {vcs}+{url}@{commit}"
    if url:
        return f"{name} @ {checked(url, URL, f'The URL of {name}')}"
    return f"{name}=={checked(version, DIST_VERSION, f'The version of {name}')}"


def apt_pin(name: str, version: str) -> str:
    """``name=version`` for apt-get install, both checked against Debian's rules."""
    return f"{checked(name, APT_NAME, 'Debian package')}={checked(version, APT_VERSION, f'The version of {name}')}"


def conda_spec(spec: str) -> str:
    return checked(spec, CONDA_SPEC, "conda package")
