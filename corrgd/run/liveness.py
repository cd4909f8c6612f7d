"""Whether the worker that holds a run is gone: one answer for `corrgd sweep`, which gives
a gone worker's runs back to the queue, and for `corrgd status`, `runs` and `show`, which
show them as orphaned.

A worker is gone when

- it ran in a SLURM job that has ended for good: SLURM reports a state in which the job
  no longer runs (`ENDED_STATES`: PREEMPTED and REVOKED too) and no longer lists it in
  its queue (a preempted job that SLURM requeues is listed again, pending: not gone); or
- it is a process of this host that no longer exists.

A worker on another host outside SLURM is gone for the queue once its heartbeat is older
than the lease (`corrgd.storage` hands its runs out again).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from corrgd.run.executors.base import job_ended


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class SlurmJobs:
    """What SLURM says of some jobs: each one's state, and which it still lists in its queue
    (a requeued job, or a cancelled one whose processes have not stopped yet)."""

    states: dict[str, str] = field(default_factory=dict)
    queued: frozenset[str] = frozenset()

    def ended(self, job_id: str) -> bool:
        """Whether the job has ended for good."""
        state = self.states.get(job_id)
        return state is not None and job_id not in self.queued and job_ended(state)


def slurm_jobs(job_ids: Iterable[str | None]) -> SlurmJobs:
    """SLURM's view of the jobs `job_ids` (None and "" skipped); nothing where no SLURM
    client answers."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids:
        return SlurmJobs()
    from corrgd.run.executors import slurm  # submitit: loaded only when there are jobs

    try:
        return SlurmJobs(slurm.slurm_job_states(ids), frozenset(slurm.slurm_jobs_in_queue(ids)))
    except Exception:  # no SLURM client here, or its controller does not answer
        return SlurmJobs()


def worker_gone(worker: str | None, slurm_job_id: str | None, jobs: SlurmJobs) -> bool:
    """Whether the worker `worker` ("host:pid"), which ran in SLURM job `slurm_job_id` if
    any, is gone (`jobs`: `slurm_jobs` of that job)."""
    if slurm_job_id and jobs.ended(slurm_job_id):
        return True
    host, _, pid = (worker or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
