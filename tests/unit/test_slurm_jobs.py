"""Reading Slurm jobs from real ``squeue --json`` output of the test cluster (data/, captured
from scripts/setup-slurm-cluster.sh: Slurm 24.11.5), and what a user is told about each."""

from __future__ import annotations

import json
import os

import pytest

from jupyter_mlcontainer.core.errors import EngineError
from jupyter_mlcontainer.engines.slurm_jobs import jobs_from_squeue

DATA = os.path.join(os.path.dirname(__file__), "data", "slurm-squeue-states.json")


@pytest.fixture(scope="module")
def jobs():
    with open(DATA) as f:
        return jobs_from_squeue(f.read())


def test_a_pending_job_says_why_it_waits_and_when_it_may_start(jobs):
    job = jobs["9"]
    assert job.waiting and not job.running and not job.ended
    assert job.nodes == "" and job.time_limit == 5 and job.user == "mlctest" and job.uid == 1001
    text = job.why_waiting(now=job.start_time - 9 * 60 - 30)
    assert "the nodes it needs are busy (Resources)" in text
    assert "estimated start" in text and "(in 9 min)" in text
    assert "estimated start" not in job.why_waiting(now=job.start_time + 1)  # an estimate passed says nothing


def test_a_running_job_has_its_node_and_time_left(jobs):
    job = jobs["7"]
    assert job.running and job.nodes == "mlc-slurm-n1" and job.time_limit == 10
    assert job.time_left(now=job.start_time + 60) == 9 * 60
    assert job.time_left(now=job.start_time + 3600) == 0
    assert jobs["1"].time_left() is None  # ended; and no limit


@pytest.mark.parametrize("job_id, state, words", [
    ("4", "TIMEOUT", "reached its time limit (0:01:00)"),
    ("5", "NODE_FAIL", "failed (mlc-slurm-n1): the kernel was lost with it"),
    ("6", "OUT_OF_MEMORY", "ran out of memory on mlc-slurm-n1"),
    ("1", "CANCELLED", "was cancelled on mlc-slurm-n1 (TERM)"),
    ("2", "CANCELLED", "was cancelled"),
])
def test_an_ended_job_is_named_from_its_state(jobs, job_id, state, words):
    job = jobs[job_id]
    assert job.ended and job.state == state
    assert words in job.why_ended()


def test_a_job_that_has_not_ended_has_no_reason_of_death(jobs):
    assert jobs["8"].why_ended() == "" and jobs["9"].why_ended() == ""


def test_squeues_own_errors_and_non_json_are_engine_errors():
    with pytest.raises(EngineError, match="Invalid job id"):
        jobs_from_squeue(json.dumps({"jobs": [], "errors": [{"description": "Invalid job id specified"}]}))
    with pytest.raises(EngineError, match="23.11 or later"):
        jobs_from_squeue("JOBID PARTITION NAME\n")
    assert jobs_from_squeue(json.dumps({"jobs": []})) == {}


def test_the_kernel_lists_line_says_where_it_waits_runs_or_ended(jobs):
    assert jobs["9"].summary(now=jobs["9"].start_time - 600).startswith("Job 9 is waiting in the queue of partition")
    running = jobs["7"]
    assert running.summary(now=running.start_time + 60) == "Job 7 running on mlc-slurm-n1, 9 min left of 0:10:00"
    assert "reached its time limit" in jobs["4"].summary()
