"""Results storage: the sweep/run queue and every epoch's metrics, in SQL.

The only package of corrgd that knows SQLAlchemy. Typical use::

    from corrgd.storage import RunSpec, open_db

    db = open_db()  # $CORRGD_DB, else sqlite:///results/corrgd.sqlite
    db.add_sweep("mnist-copi", spec_yaml, [RunSpec(config=c, axes=a) for c, a in runs])

    # in each worker process: a group of runs of one group key, trained together as one
    # batched model (max_members=1: a run alone)
    group = db.claim_group(worker, device, sweep="mnist-copi", lease_seconds=600, max_members=8)
    rows = {r.run_id: [MetricRow("val", loss=..., accuracy=..., seconds=...)] for r in group}
    lost = db.log_epochs([EpochEntry(r.run_id, epoch, rows[r.run_id]) for r in group], worker)
    lost = db.finish_runs([RunOutcome(r.run_id, "done") for r in group], worker)

    # in reports
    db.epochs_frame("mnist-copi")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

ENV_VAR = "CORRGD_DB"
DEFAULT_URL = "sqlite:///results/corrgd.sqlite"

if TYPE_CHECKING:
    from corrgd.storage.db import ResultsDB, open_db
    from corrgd.storage.errors import (
        DamagedDatabase,
        ForeignDatabase,
        MissingDatabase,
        ReadOnlyDatabase,
        SchemaTooNew,
        SchemaTooOld,
        StorageError,
        SweepBusy,
        UnknownSweep,
    )
    from corrgd.storage.models import FINAL_STATUSES, SPLITS, RunStatus
    from corrgd.storage.queue import ClaimedRun, default_worker_id
    from corrgd.storage.retry import is_transient, retry_transient
    from corrgd.storage.rows import EpochEntry, MetricRow, RunOutcome
    from corrgd.storage.runspec import RunSpec

# Imported on first use, so that the CLI reads the two settings above without SQLAlchemy.
_HOMES = {
    "ResultsDB": "db", "open_db": "db",
    **dict.fromkeys(("DamagedDatabase", "ForeignDatabase", "MissingDatabase", "ReadOnlyDatabase",
                     "SchemaTooNew", "SchemaTooOld", "StorageError",
                     "SweepBusy", "UnknownSweep"), "errors"),
    "FINAL_STATUSES": "models", "SPLITS": "models", "RunStatus": "models",
    "ClaimedRun": "queue", "default_worker_id": "queue",
    **dict.fromkeys(("EpochEntry", "MetricRow", "RunOutcome"), "rows"),
    "is_transient": "retry", "retry_transient": "retry",
    "RunSpec": "runspec",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"corrgd.storage.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "FINAL_STATUSES",
    "SPLITS",
    "ClaimedRun",
    "DamagedDatabase",
    "EpochEntry",
    "ForeignDatabase",
    "MetricRow",
    "MissingDatabase",
    "ReadOnlyDatabase",
    "ResultsDB",
    "RunOutcome",
    "RunSpec",
    "RunStatus",
    "SchemaTooNew",
    "SchemaTooOld",
    "StorageError",
    "SweepBusy",
    "UnknownSweep",
    "default_worker_id",
    "is_transient",
    "open_db",
    "retry_transient",
]
