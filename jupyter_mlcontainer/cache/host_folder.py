"""A host folder shared as the cache by users with an engine each (rootless Docker, Podman).

No user's engine has root's rights, so the cache's trusted party is the admin's keeper on the
host (``sudo jupyter mlcontainer cache-keeper PATH``): it owns the layout, publishes verified
models, and sets aside a ``home/<user>`` that is not that user's. What a user's server does, on
this host, before each kernel start: check that the keeper has set the folder up, and make the
user's HOME (``home/`` is sticky, like /tmp: anyone adds a folder there, nobody removes another's).
A HOME that someone else made first is waited for, briefly, while the keeper sets it aside.
"""

from __future__ import annotations

import logging
import os
import stat
import time

from ..core.errors import EngineError
from ..core.identity import HostUser
from ..engines.base import engine_location
from .scripts.fsops import kind_of
from .scripts.layout import HOMES, HOMES_MODE, STAMP, STAMP_EVERY

log = logging.getLogger("jupyter_mlcontainer.cache")
SET_ASIDE_WAIT = 3.0  # the keeper sets a foreign HOME aside within milliseconds of its creation


def keeper_command(cache: str) -> str:
    """The command an admin runs for ``cache`` (doctor and our errors tell them)."""
    return f"sudo jupyter mlcontainer cache-keeper {cache}"


def keeper_age(cache: str) -> float | None:
    """Seconds since the keeper last touched its stamp in ``cache``; None if never."""
    try:
        st = os.lstat(os.path.join(cache, STAMP))
    except OSError:
        return None
    return time.time() - st.st_mtime if stat.S_ISREG(st.st_mode) and st.st_uid == 0 else None


def prepare_home(engine, cache: str, user: HostUser) -> list[str]:
    """Check that ``cache`` is set up by its keeper and make ``user``'s HOME there (on this host;
    an engine elsewhere leaves it to the kernel's bootstrap). Returns notes for the caller."""
    if not engine_location(engine.address).local:
        return []
    homes = os.path.join(cache, HOMES)
    try:
        st = os.lstat(homes)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise EngineError(f"The cache folder {cache} cannot be read: {exc}") from None
    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) != HOMES_MODE:
        if not os.path.isdir(cache):
            raise EngineError(f"The cache folder {cache} does not exist. An admin makes it once, for every user: "
                              f"sudo mkdir -p {cache} && {keeper_command(cache)}")
        raise EngineError(f"The cache folder {cache} is not set up for sharing: its {HOMES}/ must be root's with "
                          "mode 1777. An admin runs its keeper, which sets it up and keeps it: "
                          f"{keeper_command(cache)}")
    age = keeper_age(cache)
    if age is None or age > 3 * STAMP_EVERY:
        log.warning("The keeper of the cache %s does not run: models downloaded by one user are not shared with "
                    "the others, and a HOME someone else made first is not set aside (an admin runs: %s)",
                    cache, keeper_command(cache))
    home = os.path.join(homes, user.name)
    deadline = time.monotonic() + SET_ASIDE_WAIT
    foreign = None
    while True:
        try:
            st = os.lstat(home)
        except FileNotFoundError:
            try:
                os.mkdir(home, 0o700)
            except FileExistsError:
                continue
            break
        if stat.S_ISDIR(st.st_mode) and st.st_uid == user.uid and not st.st_mode & 0o022:
            break
        foreign = foreign or f"{kind_of(st.st_mode)} of uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}"
        if time.monotonic() > deadline:
            raise EngineError(
                f"Your HOME in the cache, {home}, is not yours ({foreign}): someone may have made it to plant code "
                f"your kernel would run. The cache's keeper sets such a folder aside, and it did not: an admin "
                f"starts it ({keeper_command(cache)}) or moves {home} away"
            )
        time.sleep(0.05)
    if foreign:
        note = f"{home} was not yours ({foreign}): the cache's keeper set it aside, and a new HOME was made"
        log.warning("%s", note)
        return [note]
    return []
