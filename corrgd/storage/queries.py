"""Read-only queries returning pandas DataFrames, for reports and notebooks.

Column conventions: ``run_id``, ``sweep`` (the sweep's name), the typed axis
columns (``dataset``, ``network``, ``algorithm``, ``decor``, ``decor_lr``,
``lr``, ``seed``), then one column per other swept axis (named after the axis;
``axis.NAME`` if that would clash with a column of this table).
Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, Select, func, select

from corrgd.spec.config import AXIS_COLUMNS
from corrgd.storage.errors import DamagedDatabase
from corrgd.storage.models import EpochMetric, Run, RunStatus, Sweep
from corrgd.storage.queue import sweep_id_of

if TYPE_CHECKING:
    from corrgd.storage.db import ResultsDB

_RUN_COLUMNS = [
    Run.status,
    Run.attempts,
    Run.last_epoch,
    Run.device,
    Run.worker,
    Run.slurm_job_id,
    Run.group_key,
    Run.group_id,
    Run.started_at,
    Run.finished_at,
    Run.heartbeat_at,
    Run.error,
    Run.checkpoint_path,
    Run.config_hash,
]
_AXIS_ATTRS = [getattr(Run, name) for name in AXIS_COLUMNS]
_METRIC_COLUMNS = [
    EpochMetric.epoch,
    EpochMetric.split,
    EpochMetric.loss,
    EpochMetric.accuracy,
    EpochMetric.top5,
    EpochMetric.seconds,
]
_ID_CHUNK = 500  # run ids per IN (...) list
# pandas dtypes of the typed axis columns, nullable so that a missing axis is <NA>
_AXIS_DTYPES = {name: {bool: "boolean", int: "Int64", float: "float64", str: "object"}[
    Run.__table__.c[name].type.python_type] for name in AXIS_COLUMNS}
_METRIC_DTYPES = {
    "epoch": "int64",
    "loss": "float64",
    "accuracy": "float64",
    "top5": "float64",
    "seconds": "float64",
}


def _frame(conn: Connection, stmt: Select[Any]) -> pd.DataFrame:
    result = conn.execute(stmt)
    return pd.DataFrame.from_records(result.all(), columns=list(result.keys()))


def _expand_axes(frame: pd.DataFrame) -> pd.DataFrame:
    """Type the axis columns; add one per other axis found in the ``axes`` dicts."""
    frame = frame.astype(_AXIS_DTYPES)
    extra: dict[str, None] = {}  # ordered set
    for axes in frame["axes"]:
        extra.update(dict.fromkeys(k for k in axes if k not in AXIS_COLUMNS))
    for name in extra:
        column = f"axis.{name}" if name in frame.columns else name
        frame[column] = [axes.get(name) for axes in frame["axes"]]
    return frame


def list_sweeps(db: ResultsDB) -> pd.DataFrame:
    """One row per sweep: ``sweep_id, sweep, created_at, n_runs, spec_text``."""
    stmt = (
        select(
            Sweep.id.label("sweep_id"),
            Sweep.name.label("sweep"),
            Sweep.created_at,
            func.count(Run.id).label("n_runs"),
            Sweep.spec_text,
        )
        .outerjoin(Run, Run.sweep_id == Sweep.id)
        .group_by(Sweep.id)
        .order_by(Sweep.id)
    )
    return db.read(lambda conn: _frame(conn, stmt))


def sweep_counts(db: ResultsDB) -> pd.DataFrame:
    """One row per sweep: ``sweep``, the number of runs in each status (queued runs of a
    cancelled sweep count as ``cancelled``), ``total``."""
    stmt = (
        select(Sweep.name.label("sweep"), Sweep.cancelled_at, Run.status,
               func.count(Run.id).label("n"))
        .outerjoin(Run, Run.sweep_id == Sweep.id)
        .group_by(Sweep.id, Sweep.name, Sweep.cancelled_at, Run.status)
        .order_by(Sweep.id)
    )
    long = db.read(lambda conn: _frame(conn, stmt))
    statuses = [str(s) for s in RunStatus] + [CANCELLED]
    counts = pd.DataFrame(0, index=pd.Index(long["sweep"].unique(), name="sweep"), columns=statuses)
    for row in long.itertuples(index=False):
        if isinstance(row.status, str):  # a sweep without runs has none
            status = CANCELLED if row.status == RunStatus.QUEUED and not pd.isna(
                row.cancelled_at) else row.status
            counts.loc[row.sweep, status] += row.n
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def _config(run_id: int, text: str) -> dict:
    """A run's stored config; DamagedDatabase where it is not JSON (changed outside corrgd)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise DamagedDatabase(f"run {run_id}: its stored config is not valid JSON (changed "
                              "outside corrgd?); restore the database from a copy") from None


def run_counts(db: ResultsDB, sweep: str) -> dict[str, int]:
    """One sweep's runs per status (`RunStatus`), cancelled and in all (total); zeros for a
    sweep that is not there."""
    counts = sweep_counts(db)
    row = counts[counts["sweep"] == sweep]
    return {k: int(row[k].iloc[0]) if not row.empty else 0
            for k in (*(str(s) for s in RunStatus), CANCELLED, "total")}


def _runs_stmt(conn: Connection, sweep: str | None, *extra: Any) -> Select[Any]:
    stmt = (
        select(Run.id.label("run_id"), Sweep.name.label("sweep"), *_AXIS_ATTRS, *extra)
        .join(Sweep, Sweep.id == Run.sweep_id)
        .order_by(Run.id)
    )
    if sweep is not None:
        stmt = stmt.where(Run.sweep_id == sweep_id_of(conn, sweep))
    return stmt


def runs_frame(db: ResultsDB, sweep: str | None = None) -> pd.DataFrame:
    """One row per run (of ``sweep``, or all): axes, status and bookkeeping.

    Columns: ``run_id, sweep``, the axis columns, ``status, attempts,
    last_epoch, device, worker, slurm_job_id, group_key, group_id, started_at,
    finished_at, heartbeat_at, error, checkpoint_path, config_hash``, then
    ``config`` and ``axes`` (dicts). A queued run of a cancelled sweep has status
    ``cancelled``.
    """

    def query(conn: Connection) -> pd.DataFrame:
        stmt = _runs_stmt(conn, sweep, *_RUN_COLUMNS, Sweep.cancelled_at, Run.config,
                          Run.axes)
        frame = _frame(conn, stmt)
        frame["config"] = [_config(run, text) for run, text in zip(frame["run_id"],
                                                                    frame["config"], strict=True)]
        return frame

    frame = db.read(query)
    cancelled = frame.pop("cancelled_at").notna() & (frame["status"] == RunStatus.QUEUED)
    frame.loc[cancelled, "status"] = CANCELLED
    axes = frame.pop("axes")
    frame = _expand_axes(frame.assign(axes=axes))
    # keep the dict columns last
    return frame[[c for c in frame.columns if c not in ("config", "axes")] + ["config", "axes"]]


CANCELLED = "cancelled"  # shown for queued runs of a cancelled sweep

_GROUP_COLUMNS = [
    "sweep",
    "group_id",
    "group_key",
    "worker",
    "device",
    "slurm_job_id",
    "members",
    "run_ids",
    "last_epoch",
    "started_at",
    "heartbeat_at",
]


def group_counts(db: ResultsDB, sweep: str | None = None) -> pd.DataFrame:
    """One row per group running now (of ``sweep``, or all): by sweep, oldest claim first.

    Columns: ``sweep, group_id, group_key, worker, device, slurm_job_id``,
    ``members`` (how many of its runs are running), ``run_ids`` (their ids, a
    list), ``last_epoch`` (the lowest of theirs), ``started_at`` and
    ``heartbeat_at`` (the latest heartbeat of its runs; an old one means the
    worker may be dead). Groups running per sweep:
    ``group_counts().groupby("sweep").size()``. A run claimed alone is a group of
    one; runs an older corrgd claimed alone have no group and are not listed.
    """

    def query(conn: Connection) -> pd.DataFrame:
        stmt = (
            select(
                Run.id.label("run_id"),
                Sweep.name.label("sweep"),
                Run.group_id,
                Run.group_key,
                Run.worker,
                Run.device,
                Run.slurm_job_id,
                Run.last_epoch,
                Run.started_at,
                Run.heartbeat_at,
            )
            .join(Sweep, Sweep.id == Run.sweep_id)
            .where(Run.status == RunStatus.RUNNING, Run.group_id.is_not(None))
            # a group's runs share started_at: groups come out oldest claim first
            .order_by(Run.sweep_id, Run.started_at, Run.id)
        )
        if sweep is not None:
            stmt = stmt.where(Run.sweep_id == sweep_id_of(conn, sweep))
        return _frame(conn, stmt)

    runs = db.read(query)
    if runs.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in _GROUP_COLUMNS})
    groups = runs.groupby(["sweep", "group_id"], sort=False).agg(
        group_key=("group_key", "first"),
        worker=("worker", "first"),
        device=("device", "first"),
        slurm_job_id=("slurm_job_id", "first"),
        members=("run_id", "size"),
        run_ids=("run_id", list),
        last_epoch=("last_epoch", "min"),
        started_at=("started_at", "min"),
        heartbeat_at=("heartbeat_at", "max"),
    )
    return groups.reset_index()[_GROUP_COLUMNS]


def epochs_frame(
    db: ResultsDB,
    sweep: str | None = None,
    run_ids: Iterable[int] | None = None,
    *,
    diagnostics: bool = True,
) -> pd.DataFrame:
    """One row per (run, epoch, split), with the run's axes and status.

    Columns: ``run_id, epoch, split, loss, accuracy, top5, seconds``,
    ``diagnostics`` (dict or None; left out with ``diagnostics=False``, which
    is much faster on big sweeps), then ``sweep``, the axis columns and
    ``status``. Restricted to ``sweep`` and/or ``run_ids`` if given.
    """
    ids = None if run_ids is None else sorted({int(i) for i in run_ids})
    metric_columns = [*_METRIC_COLUMNS, *([EpochMetric.diagnostics] if diagnostics else [])]

    def query(conn: Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
        runs_stmt = _runs_stmt(conn, sweep, Run.status, Run.axes)
        metrics_stmt = (
            select(EpochMetric.run_id, *metric_columns)
            .join(Run, Run.id == EpochMetric.run_id)
            .order_by(EpochMetric.run_id, EpochMetric.epoch, EpochMetric.split)
        )
        if sweep is not None:
            metrics_stmt = metrics_stmt.where(Run.sweep_id == sweep_id_of(conn, sweep))
        if ids is None:
            return _frame(conn, runs_stmt), _frame(conn, metrics_stmt)
        chunks = [ids[i : i + _ID_CHUNK] for i in range(0, len(ids), _ID_CHUNK)] or [[]]
        runs = [_frame(conn, runs_stmt.where(Run.id.in_(c))) for c in chunks]
        metrics = [_frame(conn, metrics_stmt.where(EpochMetric.run_id.in_(c))) for c in chunks]
        return pd.concat(runs, ignore_index=True), pd.concat(metrics, ignore_index=True)

    runs, metrics = db.read(query)
    metrics = metrics.astype(_METRIC_DTYPES)
    runs = _expand_axes(runs).drop(columns="axes")
    return metrics.merge(runs, on="run_id", how="left", validate="many_to_one")
