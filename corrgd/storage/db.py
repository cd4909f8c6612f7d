"""``ResultsDB``: one results database, and the transactions run against it.

The queue operations live in :mod:`corrgd.storage.queue` and the report queries
in :mod:`corrgd.storage.queries`; ``ResultsDB`` exposes both as methods so that
callers need only ``db = open_db(); db.claim_group(...)``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import URL, ColumnElement, Connection, Engine, func
from sqlalchemy.dialects import postgresql, sqlite

from corrgd.storage import queue
from corrgd.storage.engine import WRITE_OPTIONS, make_engine, resolve_url
from corrgd.storage.migrate import check_current, upgrade
from corrgd.storage.retry import retry_transient

if TYPE_CHECKING:
    import pandas as pd

    from corrgd.storage.queue import ClaimedRun, MaxMembers
    from corrgd.storage.rows import EpochEntry, RunOutcome
    from corrgd.storage.runspec import RunSpec

R = TypeVar("R")


def open_db(url: str | URL | None = None, *, readonly: bool = False) -> ResultsDB:
    """Open (creating or upgrading its schema as needed) the results database.

    ``url`` defaults to ``$CORRGD_DB``, else ``sqlite:///results/corrgd.sqlite``
    (the folder is created). Use ``postgresql+psycopg://USER:PW@HOST:PORT/DB``
    for a shared server. Each process must open its own ``ResultsDB`` (pickling
    one re-opens it from its URL in the receiving process, read-only if it was).

    ``readonly`` (status, reports): create and change nothing; a missing SQLite file is
    :class:`MissingDatabase`, a schema older than this corrgd's :class:`SchemaTooOld`.
    """
    resolved = resolve_url(url)
    engine = make_engine(resolved, readonly=readonly)
    try:
        if readonly:
            check_current(engine)
        else:
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return ResultsDB(engine, resolved.render_as_string(hide_password=False), readonly=readonly)


@retry_transient()
def _in_transaction(engine: Engine, fn: Callable[[Connection], R]) -> R:
    with engine.begin() as connection:
        return fn(connection)


class ResultsDB:
    """A handle on the results database. Thread-safe; not to be shared across processes."""

    def __init__(self, engine: Engine, url: str, *, readonly: bool = False) -> None:
        self.engine = engine
        self.url = url
        self.readonly = readonly
        self.backend = engine.dialect.name  # "sqlite" or "postgresql"
        self._write_engine = engine.execution_options(**WRITE_OPTIONS)
        # Reads that span several queries (e.g. epochs_frame) see one snapshot.
        self._read_engine = (
            engine.execution_options(isolation_level="REPEATABLE READ")
            if self.backend == "postgresql"
            else engine
        )
        _dispose_pool_in_forked_children(engine)

    # -- plumbing used by queue.py and queries.py ---------------------------------
    def write(self, fn: Callable[[Connection], R]) -> R:
        """Run ``fn(connection)`` in one write transaction, retried if it fails transiently."""
        return _in_transaction(self._write_engine, fn)

    def read(self, fn: Callable[[Connection], R]) -> R:
        """Run ``fn(connection)`` in one read-only snapshot, retried if it fails transiently."""
        return _in_transaction(self._read_engine, fn)

    def now(self) -> datetime | ColumnElement[datetime]:
        """The current time for timestamps: the server's clock on PostgreSQL.

        Workers on different hosts then agree on when a heartbeat went stale.
        """
        if self.backend == "postgresql":
            return func.now()
        return datetime.now(UTC)

    def seconds_ago(self, seconds: float) -> datetime | ColumnElement[datetime]:
        return self.now() - timedelta(seconds=seconds)

    def insert(self, table: Any) -> Any:
        """A dialect-specific INSERT supporting ``on_conflict_do_*``."""
        return (postgresql.insert if self.backend == "postgresql" else sqlite.insert)(table)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (partial(open_db, readonly=self.readonly), (self.url,))

    def __repr__(self) -> str:
        return f"ResultsDB({self.engine.url!r})"

    # -- queue: enqueueing and running (documented in corrgd.storage.queue) ---------
    def add_sweep(self, name: str, spec_text: str, runs: Sequence[RunSpec],
                  prune: dict[str, Any] | None = None) -> tuple[int, int]:
        """Create/update a sweep and enqueue its new runs -> ``(sweep_id, n_added)``."""
        return queue.add_sweep(self, name, spec_text, runs, prune)

    def claim_group(
        self,
        worker: str,
        device: str,
        *,
        sweep: str | None = None,
        lease_seconds: float,
        max_members: MaxMembers,
        slurm_job_id: str | None = None,
        max_attempts: int | None = None,
    ) -> list[ClaimedRun]:
        """Atomically take the next stale or queued run and up to ``max_members - 1`` more
        of its sweep with its group key, state and ``last_epoch``, as one group sharing a
        ``group_id`` (first run first); ``[]`` if there is none. One transaction.
        ``max_members`` may be a function of the first run's config (see
        :func:`corrgd.storage.queue.claim_group`)."""
        return queue.claim_group(
            self,
            worker,
            device,
            sweep=sweep,
            lease_seconds=lease_seconds,
            max_members=max_members,
            slurm_job_id=slurm_job_id,
            max_attempts=max_attempts,
        )

    def refill_group(self, group: Sequence[ClaimedRun], count: int, *,
                     slurm_job_id: str | None = None) -> list[ClaimedRun]:
        """Up to ``count`` more queued runs of the sweep and group key of a group in flight,
        claimed for its worker with its ``group_id`` (see
        :func:`corrgd.storage.queue.refill_group`)."""
        return queue.refill_group(self, group, count, slurm_job_id=slurm_job_id)

    # -- a worker's writes about its group: one transaction each; they skip the listed
    # -- runs ``worker`` does not own (any more) and return their ids
    def heartbeat_runs(self, run_ids: Iterable[int], worker: str) -> list[int]:
        """Refresh the heartbeat of the listed runs ``worker`` owns -> the ids it does not."""
        return queue.heartbeat_runs(self, run_ids, worker)

    def log_epochs(self, entries: Sequence[EpochEntry], worker: str) -> list[int]:
        """Write several runs' epochs (rows, progress, heartbeat; idempotent), all or nothing
        (bad rows: ``ValueError``, nothing written), skipping runs ``worker`` does not own
        -> their ids."""
        return queue.log_epochs(self, entries, worker)

    def release_runs(self, run_ids: Iterable[int], worker: str) -> list[int]:
        """Give the listed runs ``worker`` owns back to the queue -> the ids it does not own."""
        return queue.release_runs(self, run_ids, worker)

    def give_back_dead(self, run_ids: Iterable[int], worker: str,
                       max_attempts: int | None = None) -> list[int]:
        """Runs of a dead ``worker``: back to the queue, or failed once claimed
        ``max_attempts`` times -> the ids that failed."""
        return queue.give_back_dead(self, run_ids, worker, max_attempts)

    def finish_runs(self, outcomes: Sequence[RunOutcome], worker: str) -> list[int]:
        """Mark the listed runs ``worker`` owns done / failed / diverged -> the ids it does
        not own."""
        return queue.finish_runs(self, outcomes, worker)

    def cancel_sweep(self, name: str) -> queue.Cancellation:
        """Stop handing out the sweep's runs; running ones stop at their next epoch end
        -> its runs per status, and when it was cancelled before (if it was)."""
        return queue.cancel_sweep(self, name)

    def cancelled_runs(self, run_ids: Iterable[int]) -> list[int]:
        """Those of the runs whose sweep is cancelled."""
        return queue.cancelled_runs(self, run_ids)

    def pruned_runs(self, run_ids: Iterable[int]) -> list[int]:
        """Those of ``run_ids`` that successive halving stopped."""
        return queue.pruned_runs(self, run_ids)

    def delete_sweep(self, name: str) -> int:
        """Delete the sweep, its runs and their metrics (none may be running) -> runs."""
        return queue.delete_sweep(self, name)

    def requeue_failed(self, sweep: str, *, statuses: Iterable[str] = ("failed",)) -> int:
        """Queue a sweep's failed (or other finished) runs again -> how many."""
        return queue.requeue_failed(self, sweep, statuses=statuses)

    def reset_stale(self, lease_seconds: float, *, sweep: str | None = None) -> int:
        """Requeue running runs whose heartbeat is older than the lease -> how many."""
        return queue.reset_stale(self, lease_seconds, sweep=sweep)

    # -- queries for reports and notebooks (see corrgd.storage.queries) -------------
    # (imported when called: they need pandas, which workers never do)
    def list_sweeps(self) -> pd.DataFrame:
        """``sweep_id, sweep, created_at, n_runs, spec_text`` per sweep."""
        from corrgd.storage import queries

        return queries.list_sweeps(self)

    def sweep_counts(self) -> pd.DataFrame:
        """``sweep``, one count column per status, ``total``, per sweep."""
        from corrgd.storage import queries

        return queries.sweep_counts(self)

    def run_counts(self, sweep: str) -> dict[str, int]:
        """One sweep's runs per status (`RunStatus`), cancelled and in all (total)."""
        from corrgd.storage import queries

        return queries.run_counts(self, sweep)

    def runs_frame(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per run: axes, status, bookkeeping, ``config`` and ``axes`` dicts."""
        from corrgd.storage import queries

        return queries.runs_frame(self, sweep)

    def group_counts(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per group running now: ``sweep, group_id, group_key, worker, device,
        slurm_job_id, members, run_ids, last_epoch, started_at, heartbeat_at``."""
        from corrgd.storage import queries

        return queries.group_counts(self, sweep)

    def epochs_frame(
        self,
        sweep: str | None = None,
        run_ids: Iterable[int] | None = None,
        *,
        diagnostics: bool = True,
    ) -> pd.DataFrame:
        """One row per (run, epoch, split), with the run's axes and status."""
        from corrgd.storage import queries

        return queries.epochs_frame(self, sweep, run_ids, diagnostics=diagnostics)


def _dispose_pool_in_forked_children(engine: Engine) -> None:
    """A forked child must not reuse the parent's pooled connections."""
    ref = weakref.ref(engine)

    def after_fork() -> None:
        if (alive := ref()) is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=after_fork)
