"""One definition of "the worker is gone" (`corrgd.run.liveness`), used by `corrgd sweep` to
give runs back and by `corrgd status` / `runs` / `show` to show them orphaned: the two
always agree, SLURM's PREEMPTED and REVOKED included."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from corrgd.results.listings import runs_table
from corrgd.run import launch
from corrgd.run.executors import slurm
from corrgd.run.executors.base import job_ended
from corrgd.run.liveness import SlurmJobs, pid_alive, worker_gone
from corrgd.storage import ResultsDB, RunSpec


@pytest.mark.parametrize("state,ended", [
    ("PREEMPTED", True), ("REVOKED", True), ("TIMEOUT", True), ("CANCELLED by 0", True),
    ("FAILED,TIMEOUT", True), ("RUNNING", False), ("PENDING", False), ("REQUEUED", False),
    ("COMPLETED,RUNNING", False), ("UNKNOWN", False), ("", False)])
def test_a_job_has_ended_when_every_task_is_in_an_ended_state(state: str, ended: bool) -> None:
    assert job_ended(state) is ended


def _running_run(db: ResultsDB, worker: str, job: str) -> int:
    db.add_sweep("s", "name: s", [RunSpec(config={"seed": 0, "epochs": 3}, group_key="k")])
    (claimed,) = db.claim_group(worker, "cpu", sweep="s", lease_seconds=600, max_members=1,
                                slurm_job_id=job)
    return claimed.run_id


@pytest.mark.parametrize("state", ["PREEMPTED", "REVOKED", "NODE_FAIL", "RUNNING"])
@pytest.mark.parametrize("queued", [False, True], ids=["left the queue", "requeued"])
def test_sweep_and_status_agree_whether_a_slurm_worker_is_gone(
        db: ResultsDB, monkeypatch: pytest.MonkeyPatch, state: str, queued: bool) -> None:
    run_id = _running_run(db, "node7:4242", "77_0")  # another host: only SLURM can tell
    monkeypatch.setattr(slurm, "slurm_job_states", lambda ids: {i: state for i in ids})
    monkeypatch.setattr(slurm, "slurm_jobs_in_queue", lambda ids: set(ids) if queued else set())
    gone = state != "RUNNING" and not queued
    shown = runs_table(db, "s").set_index("run_id").loc[run_id, "status"]
    assert shown == ("orphaned" if gone else "running")
    assert launch.reclaim_orphans(db, "s") == ((1, 0) if gone else (0, 0))
    assert db.runs_frame("s")["status"].iloc[0] == ("queued" if gone else "running")


def test_without_a_slurm_client_a_slurm_worker_is_not_judged(db: ResultsDB,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    _running_run(db, "node7:4242", "77_0")

    def no_client(ids: object) -> dict[str, str]:
        raise FileNotFoundError("sacct")

    monkeypatch.setattr(slurm, "slurm_job_states", no_client)
    assert runs_table(db, "s")["status"].tolist() == ["running"]
    assert launch.reclaim_orphans(db, "s") == (0, 0)


def test_a_local_worker_is_gone_when_its_process_is() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    host = socket.gethostname()
    assert pid_alive(os.getpid()) and not pid_alive(dead)
    assert worker_gone(f"{host}:{dead}", None, SlurmJobs())
    assert not worker_gone(f"{host}:{os.getpid()}", None, SlurmJobs())
    assert not worker_gone(f"elsewhere:{dead}", None, SlurmJobs())  # not ours to judge
    assert worker_gone(f"elsewhere:{dead}", "9_1", SlurmJobs({"9_1": "PREEMPTED"}))
    assert not worker_gone(f"elsewhere:{dead}", "9_1",
                           SlurmJobs({"9_1": "PREEMPTED"}, frozenset({"9_1"})))
