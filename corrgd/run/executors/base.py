"""What every executor offers: launch worker functions somewhere, wait for them, cancel them.

A *worker function* is something like a :class:`corrgd.run.worker.WorkerTask`: it is called
with keyword arguments, drains the shared run queue and returns how many runs it finished.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

WorkerFn = Callable[..., int]

# Job states use SLURM's vocabulary for local workers too. In these a job no longer runs;
# PREEMPTED and REVOKED included: a preempted job SLURM requeues is queued again (it is
# not gone until it has left the queue: `corrgd.run.liveness`).
ENDED_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED",
                          "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT"})


def job_ended(state: str) -> bool:
    """Whether a job in `state` no longer runs ("FAILED,TIMEOUT": every task of an array)."""
    parts = [part.split()[0] for part in state.split(",") if part.strip()]
    return bool(parts) and all(part in ENDED_STATES for part in parts)


class SubmissionFailed(RuntimeError):
    """The cluster refused the workers' job (e.g. sbatch: an unknown partition); the message
    is the scheduler's own line."""


class WorkerStopped(Exception):
    """A worker stopped for a reason its message tells in full (a full disk, say): an
    executor passes it on without printing a traceback."""


@dataclass(frozen=True)
class WorkerResult:
    """How one worker ended."""

    job_id: str
    state: str  # COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    value: Any = None  # what the worker function returned (runs finished), if it returned
    exit_code: int | None = None  # process exit code, where known
    error: str | None = None  # traceback or scheduler message when it did not complete
    exception: BaseException | None = None  # what the worker function raised, where known


@runtime_checkable
class JobHandle(Protocol):
    """One launched worker: a local process or a SLURM (array) job."""

    @property
    def job_id(self) -> str: ...

    def state(self) -> str:
        """Current state, e.g. PENDING, RUNNING, COMPLETED, FAILED, CANCELLED."""
        ...

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> WorkerResult:
        """Block until the worker has ended; TimeoutError after `timeout` seconds."""
        ...

    def cancel(self) -> None: ...


H = TypeVar("H", bound=JobHandle)


@runtime_checkable
class Executor(Protocol[H]):
    """Where workers run. ``Executor[LocalJob]``, ``Executor[SlurmJob]``."""

    def launch(self, fn: WorkerFn, kwargs_per_worker: Sequence[Mapping[str, Any]]) -> list[H]:
        """Start one worker per entry of `kwargs_per_worker`; return at once."""
        ...

    def wait(self, handles: Sequence[H]) -> list[WorkerResult]:
        """Block until all `handles` have ended."""
        ...


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether `fn` can be called with the keyword argument `name`."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def with_defaults(fn: Callable[..., Any], kwargs: Mapping[str, Any], **defaults: Any) -> dict:
    """`kwargs` plus those `defaults` that `fn` accepts and `kwargs` does not set.

    This is how executors hand `device=` (and, locally, `stop=`) to workers that take them.
    """
    out = dict(kwargs)
    for name, value in defaults.items():
        if name not in out and accepts(fn, name):
            out[name] = value
    return out
