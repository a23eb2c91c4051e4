"""Where the Slurm backend runs Slurm's tools: the cluster's login node, as the user.

Debian's Slurm (and many sites') has no ``auth/jwt``, so slurmrestd cannot act for several users;
the tools on a login node can, and munge there signs each request with the user's own uid: Slurm
itself then refuses one user's ``scancel`` of another's job. The Jupyter server reaches them
through the login command the admin sets (``c.DockerKernelProvisioner.slurm_login``): empty when
the server runs on the login node (the tools on its PATH), ``ssh login1`` where it runs elsewhere
(in the tests ``docker exec -i -u UID:GID mlc-slurm-ctl``). Everything runs as an argv; through
``ssh``, which hands the remote shell one line, each argument is quoted for it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import IO

from ..core.errors import EngineError, EngineUnavailable


class LoginNode:
    """Runs commands on the login node as the user ``login`` (the login command, split as argv)
    names. Blocking: the backend calls it from its thread pool."""

    def __init__(self, login: str) -> None:
        self.login = login.strip()
        self.prefix = shlex.split(self.login)
        # ssh (also behind sshpass, autossh, tsh ssh...) runs its arguments as one line of the
        # remote user's shell: quote each.
        self._quote = any(os.path.basename(word) in ("ssh", "autossh") for word in self.prefix)

    def argv(self, command: list[str]) -> list[str]:
        """The local argv that runs ``command`` on the login node."""
        if self._quote:
            # POSIX quoting (sh, bash, zsh login shells: docs/slurm.md); the kernel's bootstrap text
            # with its newlines and backslashes goes through it too.
            return [*self.prefix, "--", " ".join(shlex.quote(part) for part in command)]
        return [*self.prefix, *command]

    def run(self, command: list[str], *, data: bytes | None = None, timeout: float = 60, check: bool = True) -> str:
        """``command``'s standard output; :class:`EngineError` with its error output when it fails
        (``check``), :class:`EngineUnavailable` when the login node cannot be reached."""
        try:
            done = subprocess.run(self.argv(command), input=data, capture_output=True, timeout=timeout,
                                  stdin=None if data is not None else subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise EngineUnavailable(f"The Slurm login command {self.describe()} cannot run: {exc}") from None
        except subprocess.TimeoutExpired:
            raise EngineUnavailable(f"{command[0]} on the Slurm login node ({self.describe()}) did not answer "
                                    f"within {timeout:.0f} s") from None
        if check and done.returncode:
            error = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise EngineError(f"{command[0]} on the Slurm login node failed (exit code {done.returncode}): "
                              f"{error[-1500:] or 'no message'}")
        return done.stdout.decode(errors="replace")

    def test(self, path: str, flag: str = "-e") -> bool:
        """``test FLAG PATH`` on the login node (``-d``: a folder). A login node that cannot be
        asked raises :class:`EngineUnavailable`, never reads as "not there"."""
        try:
            self.run(["test", flag, path])
            return True
        except EngineUnavailable:
            raise
        except EngineError:
            return False

    def start(self, command: list[str], output: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen:
        """``command`` started on the login node and left running (a kernel's ``srun``)."""
        try:
            return subprocess.Popen(self.argv(command), stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError as exc:
            raise EngineUnavailable(f"The Slurm login command {self.describe()} cannot run: {exc}") from None

    def describe(self) -> str:
        return repr(self.login) if self.login else "(the tools on this host's PATH)"
