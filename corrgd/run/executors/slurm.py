"""Workers as a SLURM job array (through submitit), requeued when preempted or timed out."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import subprocess
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import submitit
from submitit.core.utils import FailedJobError

from corrgd.run.executors.base import (
    SubmissionFailed,
    WorkerFn,
    WorkerResult,
    job_ended,
    with_defaults,
)

log = logging.getLogger(__name__)

PreemptHook = Callable[[], None]


class WorkerJob(submitit.helpers.Checkpointable):
    """A worker function as a submitit job that SLURM requeues when it is signalled.

    submitit calls :meth:`checkpoint` when the job gets its preemption / time-limit signal
    (USR2). We first call the `on_preempt` hook -- the worker gives its current run back to
    the queue there -- then hand submitit this same job to requeue. The requeued job starts
    the worker afresh; the run it gave back resumes from its last epoch checkpoint.

    The hook is `on_preempt` if given, else ``fn.release`` if the function has one. It runs
    inside a signal handler in the worker's main thread: keep it short and self-contained.
    `fn` and the hook must be picklable (module-level functions, functools.partial, ...).
    A WorkerJob always pickles `fn` as it was when submitted, never its live state (a
    stateful callable's database connection, its run in flight), so requeueing works for
    callables holding unpicklable things.
    """

    def __init__(self, fn: WorkerFn, on_preempt: PreemptHook | None = None) -> None:
        self.fn = fn
        self.on_preempt = on_preempt
        self._fn_as_submitted = cloudpickle.dumps(fn)

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self._fn_as_submitted, "on_preempt": self.on_preempt}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fn = cloudpickle.loads(state["fn"])
        self.on_preempt = state["on_preempt"]
        self._fn_as_submitted = state["fn"]

    def __call__(self, kwargs: Mapping[str, Any]) -> int:
        return self.fn(**kwargs)

    def preempt_hook(self) -> PreemptHook | None:
        return self.on_preempt or getattr(self.fn, "release", None)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        hook = self.preempt_hook()
        if hook is not None:
            try:
                hook()
            except Exception:  # requeue anyway: the run's lease expires and it is picked up
                log.exception("on_preempt hook failed")
        return super().checkpoint(*args, **kwargs)


_TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?")
MOST_MINUTES = 366 * 24 * 60  # a year: longer is a typo, not a time limit


def parse_time_minutes(time: int | float | str) -> int:
    """A SLURM time limit as whole minutes (rounded up), at most `MOST_MINUTES`.

    Numbers are minutes; strings use sbatch's formats: "MM", "MM:SS", "HH:MM:SS",
    "D-HH", "D-HH:MM", "D-HH:MM:SS" (whole numbers; seconds and minutes after a colon
    below 60, hours after a day below 24). ValueError for anything else.
    """
    if isinstance(time, bool):
        raise ValueError(f"not a SLURM time limit: {time!r}")
    if isinstance(time, int | float):
        if not math.isfinite(time):
            raise ValueError(f"time limit must be finite, got {time!r}")
        seconds = float(time) * 60
    else:
        match = _TIME.fullmatch(time.strip())
        if match is None:
            raise ValueError(f"not a SLURM time limit: {time!r}")
        days, a, b, c = (int(v) if v is not None else None for v in match.group(
            "days", "a", "b", "c"))
        if days is not None:  # D-HH[:MM[:SS]]
            units, bounds = [a, b or 0, c or 0], [24, 60, 60]
            seconds = days * 86400 + units[0] * 3600 + units[1] * 60 + units[2]
        else:  # MM, MM:SS or HH:MM:SS: the first unit takes any size
            units = [u for u in (a, b, c) if u is not None]
            bounds = [0] + [60] * (len(units) - 1)
            scale = {1: [60], 2: [60, 1], 3: [3600, 60, 1]}[len(units)]
            seconds = sum(u * s for u, s in zip(units, scale, strict=True))
        if any(bound and unit >= bound for unit, bound in zip(units, bounds, strict=True)):
            raise ValueError(f"not a SLURM time limit: {time!r} (minutes and seconds "
                             "after a colon are below 60, hours after a day below 24)")
    if seconds <= 0:
        raise ValueError(f"time limit must be positive, got {time!r}")
    if seconds > MOST_MINUTES * 60:
        raise ValueError(f"time limit of more than a year: {time!r}")
    return math.ceil(seconds / 60)


class SlurmJob:
    """One task of the worker job array."""

    def __init__(self, job: submitit.Job, poll_seconds: float = 2.0) -> None:
        self.job = job
        self.poll_seconds = poll_seconds
        self._result: WorkerResult | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)  # "<array id>_<task id>"

    def state(self) -> str:
        if self._result is not None:
            return self._result.state
        return slurm_job_states([self.job_id])[self.job_id]

    def done(self) -> bool:
        """Finished: it wrote its result, or it has ended and left SLURM's queue (a
        preempted task that SLURM requeues is not done)."""
        if self._result is not None or self.job.paths.result_pickle.exists():
            return True
        return job_ended(self.state()) and not slurm_jobs_in_queue([self.job_id])

    def wait(self, timeout: float | None = None) -> WorkerResult:
        deadline = None if timeout is None else _time.monotonic() + timeout
        while not self.done():
            if deadline is not None and _time.monotonic() > deadline:
                raise TimeoutError(f"SLURM job {self.job_id} not finished after {timeout} s")
            _time.sleep(self.poll_seconds)
        return self._finish()

    def cancel(self) -> None:
        self.job.cancel(check=False)

    def _finish(self) -> WorkerResult:
        if self._result is None:
            if self.job.paths.result_pickle.exists():
                try:
                    value = self.job.result()
                    result = WorkerResult(self.job_id, "COMPLETED", value=value, exit_code=0)
                except FailedJobError as error:  # the worker function raised
                    result = WorkerResult(self.job_id, "FAILED", exit_code=1, error=str(error))
            else:  # killed, cancelled, timed out for good: SLURM knows, the job wrote nothing
                state = slurm_job_states([self.job_id])[self.job_id]
                message = f"SLURM job {self.job_id} ended {state}; log: {self.job.paths.stderr}"
                result = WorkerResult(self.job_id, state, error=message)
            self._result = result
        return self._result


class SlurmExecutor:
    """Run workers as one SLURM job array through submitit.

    Each worker is one array task with `cpus_per_task` CPUs, `gpus_per_job` GPUs, `mem`
    (sbatch's syntax, e.g. "8G", or a number of GB) and a `time` limit (minutes or sbatch's
    "HH:MM:SS"). At most `array_parallelism` tasks run at once. Before the time limit
    (`signal_delay_s`, by default 90 s or half the limit if shorter) or on preemption the
    worker is signalled, `on_preempt` runs and the task is requeued; after `max_timeouts`
    time-outs it is not requeued any more. A worker function that accepts `device` gets
    "cuda" when it has GPUs, else "cpu". Logs and pickles go to `folder` (shared filesystem).
    """

    def __init__(
        self,
        folder: str | Path = "slurm_logs",
        *,
        partition: str | None = None,
        gpus_per_job: int = 0,
        cpus_per_task: int = 1,
        time: int | float | str = 60,
        array_parallelism: int | None = None,
        mem: str | float | None = None,
        on_preempt: PreemptHook | None = None,
        signal_delay_s: int | None = None,
        max_timeouts: int = 10,
        setup: Sequence[str] = (),
        job_name: str = "corrgd-worker",
    ) -> None:
        self.folder = Path(folder)
        self.partition = partition
        self.gpus_per_job = gpus_per_job
        self.cpus_per_task = cpus_per_task
        self.time_minutes = parse_time_minutes(time)
        self.array_parallelism = array_parallelism
        self.mem = mem
        self.on_preempt = on_preempt
        if signal_delay_s is None:
            signal_delay_s = min(90, self.time_minutes * 30)
        self.signal_delay_s = signal_delay_s
        self.max_timeouts = max_timeouts
        self.setup = list(setup)
        self.job_name = job_name

    def _submitit_executor(self, n_workers: int) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(
            folder=self.folder, cluster="slurm", slurm_max_num_timeout=self.max_timeouts
        )
        params: dict[str, Any] = {
            "name": self.job_name,
            "timeout_min": self.time_minutes,
            "cpus_per_task": self.cpus_per_task,
            "slurm_array_parallelism": self.array_parallelism or n_workers,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        if self.gpus_per_job:  # no --gpus-per-node=0: clusters without GPUs reject it
            params["gpus_per_node"] = self.gpus_per_job
        if self.partition:
            params["slurm_partition"] = self.partition
        if isinstance(self.mem, str):
            params["slurm_mem"] = self.mem
        elif self.mem is not None:
            params["mem_gb"] = self.mem
        if self.setup:
            params["slurm_setup"] = self.setup
        executor.update_parameters(**params)
        return executor

    def launch(
        self, fn: WorkerFn, kwargs_per_worker: Sequence[Mapping[str, Any]]
    ) -> list[SlurmJob]:
        if not kwargs_per_worker:
            return []
        device = "cuda" if self.gpus_per_job else "cpu"
        task_kwargs = [with_defaults(fn, kwargs, device=device) for kwargs in kwargs_per_worker]
        executor = self._submitit_executor(len(task_kwargs))
        try:  # submitit prints sbatch's stderr when it fails: it goes in the error instead
            with contextlib.redirect_stderr(io.StringIO()):
                jobs = executor.map_array(WorkerJob(fn, self.on_preempt), task_kwargs)
        except FailedJobError as e:  # sbatch said no: its last line says why
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            raise SubmissionFailed(lines[-1] if lines else "sbatch failed") from e
        log.info("submitted SLURM job array %s", jobs[0].job_id.split("_")[0])
        return [SlurmJob(job) for job in jobs]

    def wait(self, handles: Sequence[SlurmJob]) -> list[WorkerResult]:
        """Wait for all tasks. Ctrl-C only stops waiting: the jobs keep running."""
        return [handle.wait() for handle in handles]


# --- job states ----------------------------------------------------------------------

_ARRAY_RANGE = re.compile(r"^(?P<base>\d+)_\[(?P<ranges>[^\]]+)\]$")


def _expand_job_id(job_id: str) -> list[str]:
    """ "12_[0-2,5%4]" -> ["12_0", "12_1", "12_2", "12_5"]; other ids unchanged."""
    match = _ARRAY_RANGE.match(job_id)
    if not match:
        return [job_id]
    ranges = match["ranges"].split("%")[0]  # "%4" is the array's parallelism limit
    tasks: list[str] = []
    for part in ranges.split(","):
        first, _, last = part.partition("-")
        tasks += [f"{match['base']}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


def _parse_states(text: str) -> dict[str, str]:
    """Lines "JOBID|STATE" -> {job id: state}; later lines win (a requeued job's last run)."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        job_id, sep, state = line.strip().partition("|")
        if not sep:
            continue
        state = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0"
        for one in _expand_job_id(job_id):
            states[one] = state
    return states


def _query(command: list[str]) -> dict[str, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return _parse_states(done.stdout)


def slurm_jobs_in_queue(job_ids: Iterable[str]) -> set[str]:
    """The ids among `job_ids` that the controller still lists as pending, running or
    completing: a cancelled job's processes may run on until SLURM's KillWait is over."""
    ids = {str(job_id) for job_id in job_ids}
    if not ids:
        return set()
    queued = _query(["squeue", "-h", "-o", "%i|%T"])
    return {job_id for job_id in ids
            if job_id in queued or any(task.startswith(f"{job_id}_") for task in queued)}


def slurm_job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM state of each job id, e.g. {"12_0": "RUNNING", "12_1": "PENDING"}.

    Asks `sacct` (needs accounting; sees finished jobs too), else `squeue` (jobs still
    known to the controller only). A bare array id ("12") gets its tasks' states, comma
    joined when they differ. Ids SLURM does not know get "UNKNOWN".
    """
    ids = list(dict.fromkeys(str(job_id) for job_id in job_ids))
    if not ids:
        return {}
    sacct = ["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", ",".join(ids)]
    try:
        known = _query(sacct)
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("sacct failed (%s); asking squeue", error)
        known = _query(["squeue", "-h", "-t", "all", "-o", "%i|%T"])
    states = {}
    for job_id in ids:
        if job_id in known:
            states[job_id] = known[job_id]
            continue
        tasks = {state for task, state in known.items() if task.startswith(f"{job_id}_")}
        states[job_id] = ",".join(sorted(tasks)) or "UNKNOWN"
    return states
