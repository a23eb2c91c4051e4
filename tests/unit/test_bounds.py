"""What a long-running server keeps is bounded: finished jobs, death records, container exits."""

from __future__ import annotations

from jupyter_mlcontainer.images import jobs
from jupyter_mlcontainer.kernels import deaths, watcher
from jupyter_mlcontainer.engines.docker import Engine


def test_finished_jobs_are_bounded_and_running_ones_kept():
    registry = jobs.JobRegistry(Engine("unix:///nonexistent.sock"))
    running = jobs.Job(kind="pull", target="keep:me")
    registry._jobs[running.id] = running
    for n in range(jobs.KEEP_FINISHED + 20):
        job = jobs.Job(kind="pull", target=f"x:{n}", started=float(n))
        job.finish("done")
        registry._jobs[job.id] = job
    with registry._lock:
        registry._prune()
    kept = registry.list()
    assert running in kept and len(kept) == jobs.KEEP_FINISHED + 1
    assert min(j.started for j in kept if j.state == "done") == 20.0  # the oldest went


def test_death_records_are_bounded():
    for n in range(deaths.KEEP + 10):
        deaths.record_death(deaths.DeathRecord(f"k{n}", "c", "i", 1, False, "", "", "", 0.0))
    assert deaths.last_death("k0") is None and deaths.last_death(f"k{deaths.KEEP + 9}") is not None


def test_container_exits_are_bounded():
    w = watcher.ContainerWatcher(Engine("unix:///nonexistent.sock"))
    for n in range(watcher.KEEP_EXITS + 5):
        w._handle({"Action": "die", "id": f"c{n}", "time": n, "Actor": {"Attributes": {"exitCode": "0"}}})
    assert len(w._exits) == watcher.KEEP_EXITS and w.exit_of("c0") is None and w.exit_of(f"c{watcher.KEEP_EXITS + 4}")
