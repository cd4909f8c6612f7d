"""Where workers run: local processes or a SLURM job array, behind one small interface.

executor = make_executor("local", devices=["cuda:0", "cuda:1"])
executor = make_executor("slurm", partition="gpu", gpus_per_job=1, time="04:00:00")
handles = executor.launch(WorkerTask(), [{"db_url": url, "sweep": "mnist"}] * 2)
results = executor.wait(handles)           # or slurm_job_states([h.job_id for h in handles])
"""

from __future__ import annotations

from typing import Any, Literal

from corrgd.run.executors.base import Executor, JobHandle, WorkerFn, WorkerResult
from corrgd.run.executors.local import LocalExecutor, LocalJob
from corrgd.run.executors.slurm import (
    SlurmExecutor,
    SlurmJob,
    WorkerJob,
    parse_time_minutes,
    slurm_job_states,
    slurm_jobs_in_queue,
)

__all__ = [
    "Executor",
    "JobHandle",
    "LocalExecutor",
    "LocalJob",
    "SlurmExecutor",
    "SlurmJob",
    "WorkerFn",
    "WorkerJob",
    "WorkerResult",
    "make_executor",
    "parse_time_minutes",
    "slurm_job_states",
    "slurm_jobs_in_queue",
]


def make_executor(name: Literal["local", "slurm"], **options: Any) -> Executor[Any]:
    """An executor by name; `options` go to :class:`LocalExecutor` or :class:`SlurmExecutor`."""
    if name == "local":
        return LocalExecutor(**options)
    if name == "slurm":
        return SlurmExecutor(**options)
    raise ValueError(f"unknown executor {name!r}: expected 'local' or 'slurm'")
