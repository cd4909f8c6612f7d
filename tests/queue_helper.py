"""Runs played by hand through the queue, as a worker plays them, for tests that fill a
results database with numbers of their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corrgd.storage import ClaimedRun, EpochEntry, MetricRow, ResultsDB, RunOutcome


def claim_one(db: ResultsDB, worker: str, *, lease_seconds: float = 60.0,
              **options: Any) -> ClaimedRun | None:
    """The next run on the CPU, claimed alone (a group of one); None when there is none.
    `options`: claim_group's `sweep`, `max_attempts`, ..."""
    group = db.claim_group(worker, "cpu", lease_seconds=lease_seconds, max_members=1,
                           **options)
    return group[0] if group else None


def record(db: ResultsDB, run: ClaimedRun, epochs: Sequence[Sequence[MetricRow]],
           status: str | None = None, error: str | None = None) -> None:
    """Log the rows of epochs 0, 1, ... of a claimed run, then end it with `status` (None:
    it stays running)."""
    entries = [EpochEntry(run.run_id, epoch, rows) for epoch, rows in enumerate(epochs)]
    assert db.log_epochs(entries, run.worker) == []
    if status is not None:
        assert db.finish_runs([RunOutcome(run.run_id, status, error)], run.worker) == []
