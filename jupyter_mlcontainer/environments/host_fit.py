"""Whether a frozen notebook's record fits this host, and the kernelspec options its restored
kernel gets: what restore's plan and ``doctor --notebook`` show (the checks themselves are
machine/host_checks.py; this puts a record, its notebook and the engine's host together)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import nbformat

from ..engines.base import ContainerBackend
from ..machine.facts import kernel_options, machine_from_record
from ..machine.gpu import GpuState, get_monitor
from ..machine.host_checks import HostCheck, blocking, check_host, gpu_count_wanted

# Code that runs on a GPU by name: the cells that fail (or run elsewhere) without one.
_CUDA_USE = re.compile(r"\.cuda\(|[\"']cuda(:\d+)?[\"']|torch\.cuda\.|\bcupy\b|jax\.devices\(\s*[\"']gpu|tf\.device\(\s*[\"']/?GPU",
                       re.IGNORECASE)


@dataclass
class HostFit:
    """The checks of a record on this host, the options of its restored kernelspec and notes."""

    checks: list[HostCheck] = field(default_factory=list)
    kernel_options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checked: bool = True  # False: an older record, or an engine on another host

    @property
    def blocked(self) -> list[HostCheck]:
        return blocking(self.checks)

    def public(self) -> dict[str, Any]:
        return {"checks": [check.to_dict() for check in self.checks], "kernel_options": self.kernel_options,
                "notes": self.notes, "checked": self.checked, "blocked": bool(self.blocked)}


def cuda_cells(notebook_path: str) -> list[int]:
    """The numbers (1-based, among all cells, as JupyterLab counts them) of the code cells that
    name CUDA or a GPU device."""
    try:
        notebook = nbformat.read(notebook_path, as_version=4)
    except (OSError, ValueError):
        return []
    return [number for number, cell in enumerate(notebook.cells, 1)
            if cell.get("cell_type") == "code" and _CUDA_USE.search(str(cell.get("source") or ""))]


def host_fit(engine: ContainerBackend, notebook_path: str, record: dict[str, Any],
             state: GpuState | None = None) -> HostFit:
    """The fit of ``record`` (a notebook's environment record: untrusted) on the host of
    ``engine``. ``state``: this host's GPUs (default: NVML now)."""
    facts = machine_from_record(record.get("machine"))
    recorded = kernel_options(record.get("kernel_options"))
    options = {key: recorded[key] for key in ("memory", "cpus", "shm_size") if key in recorded}
    fit = HostFit(kernel_options=options)
    if recorded.get("env"):
        fit.notes.append("the notebook's kernel had these variables set (their values are not recorded): "
                         + ", ".join(recorded["env"]))
    if facts is None:
        fit.checked = False
        fit.notes.append("the record is older than this version's checks (no GPU, driver or CUDA facts in it): "
                         "nothing about this host could be checked")
        if "gpus" in recorded:
            options["gpus"] = recorded["gpus"]
        return fit
    if not engine.location.local:
        fit.checked = False
        fit.notes.append(f"the engine runs on another host ({engine.location.address}): its GPUs and driver "
                         "are checked when a kernel starts there, not here")
        return fit
    state = state or get_monitor().snapshot(with_processes=False)
    wanted = gpu_count_wanted(recorded.get("gpus"), facts)
    fit.checks = check_host(facts, state, gpus=wanted, cuda_cells=cuda_cells(notebook_path))
    here = len(state.gpus)
    if not here or wanted == 0:
        options["gpus"] = "none"
    elif wanted is not None and wanted > 0:
        options["gpus"] = str(min(wanted, here))
    elif wanted == -1:
        options["gpus"] = "all"
    return fit
