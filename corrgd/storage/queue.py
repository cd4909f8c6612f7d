"""The run queue: enqueue a sweep's runs, claim them exactly once, record progress.

Life of a run::

    queued --claim_run--> running --finish_run--> done | failed | diverged
      ^                     |  ^
      +----release_run------+  +-- claim_run by another worker once the
                                   heartbeat is older than the lease (attempts += 1)

A worker owns a run while ``status == "running"`` and ``worker`` is its id.
Every write a worker makes about its run (heartbeat, log_epoch, release,
finish) checks that ownership in the same transaction and raises
:class:`LostLease` otherwise, so a worker whose lease expired (a "zombie")
cannot overwrite the work of the worker that took the run over.
"""

from __future__ import annotations

import json
import math
import operator
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, case, select, update

from corrgd.storage.errors import LostLease, UnknownRun, UnknownSweep
from corrgd.storage.models import FINAL_STATUSES, SPLITS, EpochMetric, Run, RunStatus, Sweep
from corrgd.storage.runspec import RunSpec, canonical_json, config_hash

if TYPE_CHECKING:
    from corrgd.storage.db import ResultsDB


def _as_bool(value: Any) -> bool:
    value = value.item() if hasattr(value, "item") else value
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return value


def _as_int(value: Any) -> int:
    return int(value) if isinstance(value, str) else operator.index(value)


#: Axes stored as real, typed columns of ``runs`` (all axes are also in ``runs.axes``).
AXIS_COLUMNS: dict[str, Callable[[Any], Any]] = {
    "dataset": str,
    "network": str,
    "algorithm": str,
    "decor": _as_bool,
    "decor_lr": float,
    "lr": float,
    "seed": _as_int,
}

_METRIC_FIELDS = ("loss", "accuracy", "top5")
_ROW_KEYS = {"split", "seconds", "diagnostics", *_METRIC_FIELDS}
_REQUIRED_ROW_KEYS = {"split", "loss", "accuracy", "seconds"}


@dataclass(frozen=True)
class ClaimedRun:
    """A run handed to a worker by :func:`claim_run`.

    ``last_epoch`` (-1 if none) and ``checkpoint_path`` say where a previous
    attempt got to; ``attempts`` counts claims including this one.
    """

    run_id: int
    sweep: str
    config: dict[str, Any]
    config_hash: str
    axes: dict[str, Any]
    attempts: int
    last_epoch: int
    checkpoint_path: str | None
    worker: str
    device: str


def default_worker_id() -> str:
    """``host:pid`` of this process, the conventional ``worker`` argument."""
    return f"{socket.gethostname()}:{os.getpid()}"


# -- enqueueing -------------------------------------------------------------------


def _run_row(spec: RunSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "config": canonical_json(spec.config),
        "config_hash": config_hash(spec.config),
        "axes": spec.axes,
    }
    for column, convert in AXIS_COLUMNS.items():
        value = spec.axes.get(column, spec.config.get(column))
        try:
            row[column] = None if value is None else convert(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run axis {column}={value!r}: {exc}") from exc
    return row


def add_sweep(db: ResultsDB, name: str, spec_text: str, runs: Sequence[RunSpec]) -> tuple[int, int]:
    """Create or update sweep ``name`` and enqueue those of ``runs`` it lacks.

    Runs are identified within a sweep by ``config_hash(config)``: enqueueing
    the same sweep again adds only new configs (and replaces the stored spec
    text). All in one transaction: on any error nothing is written.
    Returns ``(sweep_id, number of runs added)``.

    The typed axis columns (``dataset``, ``lr``, ``seed``, ...) are taken from
    ``axes``, else from the config's top-level key of the same name, else NULL.
    """
    rows = {row["config_hash"]: row for row in map(_run_row, runs)}  # also dedupes

    def transaction(conn: Connection) -> tuple[int, int]:
        upsert = db.insert(Sweep).values(name=name, spec_text=spec_text, created_at=db.now())
        upsert = upsert.on_conflict_do_update(
            index_elements=[Sweep.name], set_={"spec_text": upsert.excluded.spec_text}
        )
        sweep_id: int = conn.execute(upsert.returning(Sweep.id)).scalar_one()
        if not rows:
            return sweep_id, 0
        insert_runs = (
            db.insert(Run)
            .on_conflict_do_nothing(index_elements=[Run.sweep_id, Run.config_hash])
            .returning(Run.id)
        )
        added = conn.execute(insert_runs, [{**r, "sweep_id": sweep_id} for r in rows.values()])
        return sweep_id, len(added.all())

    return db.write(transaction)


# -- claiming ---------------------------------------------------------------------


def claim_run(
    db: ResultsDB,
    worker: str,
    device: str,
    *,
    sweep: str | None = None,
    lease_seconds: float,
    slurm_job_id: str | None = None,
) -> ClaimedRun | None:
    """Atomically take one run to work on, or ``None`` when there is nothing to do.

    Takes the oldest ``running`` run whose heartbeat is older than
    ``lease_seconds`` (its worker died), else the oldest ``queued`` run; only
    from sweep ``sweep`` if given. The run is marked ``running`` by ``worker``
    on ``device`` with a fresh heartbeat, and its ``attempts`` is incremented.
    Each run is handed to exactly one caller, also across processes and hosts
    (PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite: the database
    write lock, taken by ``BEGIN IMMEDIATE``).
    """
    if lease_seconds < 0:
        raise ValueError("lease_seconds must be >= 0")

    def transaction(conn: Connection) -> ClaimedRun | None:
        sweep_filter = [] if sweep is None else [Run.sweep_id == _sweep_id(conn, sweep)]
        stale = (Run.status == RunStatus.RUNNING) & (
            Run.heartbeat_at < db.seconds_ago(lease_seconds)
        )
        for claimable in (stale, Run.status == RunStatus.QUEUED):
            candidate = conn.execute(
                select(Run.id, Run.worker, Sweep.name.label("sweep"))
                .join(Sweep, Sweep.id == Run.sweep_id)
                .where(claimable, *sweep_filter)
                .order_by(Run.id)
                .limit(1)
                .with_for_update(of=Run, skip_locked=True)
            ).first()
            if candidate is not None:
                break
        else:
            return None
        now = db.now()
        reclaimed = claimable is stale
        claimed = conn.execute(
            update(Run)
            .where(Run.id == candidate.id, claimable)
            .values(
                status=RunStatus.RUNNING,
                worker=worker,
                device=device,
                slurm_job_id=slurm_job_id,
                started_at=now,
                heartbeat_at=now,
                finished_at=None,
                attempts=Run.attempts + 1,
                error=f"lease of {candidate.worker} expired; reclaimed" if reclaimed else None,
            )
            .returning(
                Run.config,
                Run.config_hash,
                Run.axes,
                Run.attempts,
                Run.last_epoch,
                Run.checkpoint_path,
            )
        ).one()
        return ClaimedRun(
            run_id=candidate.id,
            sweep=candidate.sweep,
            config=json.loads(claimed.config),
            config_hash=claimed.config_hash,
            axes=claimed.axes,
            attempts=claimed.attempts,
            last_epoch=claimed.last_epoch,
            checkpoint_path=claimed.checkpoint_path,
            worker=worker,
            device=device,
        )

    return db.write(transaction)


# -- a worker's writes about the run it owns --------------------------------------


def _update_owned(conn: Connection, run_id: int, worker: str, values: dict[str, Any]) -> None:
    """UPDATE the run if ``worker`` owns it, else raise :class:`LostLease`."""
    result = conn.execute(
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == RunStatus.RUNNING)
        .values(**values)
    )
    if result.rowcount != 1:
        raise LostLease(_ownership_report(conn, run_id, worker))


def _ownership_report(conn: Connection, run_id: int, worker: str) -> str:
    found = conn.execute(select(Run.status, Run.worker).where(Run.id == run_id)).first()
    if found is None:
        return f"run {run_id} does not exist"
    owner = f" by {found.worker}" if found.worker else ""
    return f"run {run_id} is not owned by {worker}: it is {found.status}{owner}"


def _update_run(conn: Connection, run_id: int, values: dict[str, Any]) -> None:
    if conn.execute(update(Run).where(Run.id == run_id).values(**values)).rowcount != 1:
        raise UnknownRun(f"run {run_id} does not exist")


def _write_run(
    db: ResultsDB, run_id: int, worker: str | None, values: Callable[[], dict[str, Any]]
) -> None:
    """UPDATE one run with ``values()`` (evaluated in the transaction, for fresh timestamps).

    With a ``worker``, only if that worker owns the run (else :class:`LostLease`).
    """

    def transaction(conn: Connection) -> None:
        if worker is None:
            _update_run(conn, run_id, values())
        else:
            _update_owned(conn, run_id, worker, values())

    db.write(transaction)


def heartbeat(db: ResultsDB, run_id: int, worker: str) -> None:
    """Tell the queue ``worker`` is still alive and working on the run."""
    _write_run(db, run_id, worker, lambda: {"heartbeat_at": db.now()})


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_rows(run_id: int, epoch: int, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    epoch = operator.index(epoch)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not rows:
        raise ValueError("log_epoch needs at least one row")
    out = []
    for row in rows:
        if unknown := set(row) - _ROW_KEYS:
            raise ValueError(f"unknown metric keys {sorted(unknown)}; allowed: {sorted(_ROW_KEYS)}")
        if missing := _REQUIRED_ROW_KEYS - set(row):
            raise ValueError(f"metric row lacks {sorted(missing)}")
        if row["split"] not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {row['split']!r}")
        out.append(
            {
                "run_id": run_id,
                "epoch": epoch,
                "split": row["split"],
                **{f: _finite_or_none(row.get(f)) for f in _METRIC_FIELDS},
                "seconds": float(row["seconds"]),
                "diagnostics": row.get("diagnostics"),
            }
        )
    splits = [r["split"] for r in out]
    if len(set(splits)) != len(splits):
        raise ValueError(f"duplicate splits in one epoch: {splits}")
    return out


def log_epoch(
    db: ResultsDB,
    run_id: int,
    epoch: int,
    rows: Sequence[dict[str, Any]],
    worker: str,
    checkpoint_path: str | None = None,
) -> None:
    """Record one epoch of a run owned by ``worker``, in one transaction.

    ``rows`` holds one dict per split: ``split`` ("train"/"val"/"test"),
    ``loss``, ``accuracy``, ``seconds`` (training time of this epoch; 0 for
    epoch 0, which is evaluated before training), optional ``top5`` and
    ``diagnostics`` (JSON-able dict; NaN there becomes null). A NaN loss is
    stored as NULL. Also refreshes the heartbeat, raises ``last_epoch`` to
    ``epoch`` and, if given, sets ``checkpoint_path``.

    Idempotent: logging an epoch again replaces its rows (a run resumed from
    an older checkpoint re-logs the epochs after it). Raises
    :class:`LostLease`, writing nothing, if the run is not ``worker``'s.
    """
    metric_rows = _metric_rows(run_id, epoch, rows)

    def transaction(conn: Connection) -> None:
        values: dict[str, Any] = {
            "heartbeat_at": db.now(),
            "last_epoch": case((Run.last_epoch < epoch, epoch), else_=Run.last_epoch),
        }
        if checkpoint_path is not None:
            values["checkpoint_path"] = checkpoint_path
        _update_owned(conn, run_id, worker, values)
        upsert = db.insert(EpochMetric)
        upsert = upsert.on_conflict_do_update(
            index_elements=[EpochMetric.run_id, EpochMetric.epoch, EpochMetric.split],
            set_={
                name: upsert.excluded[name] for name in (*_METRIC_FIELDS, "seconds", "diagnostics")
            },
        )
        conn.execute(upsert, metric_rows)

    db.write(transaction)


def set_checkpoint(
    db: ResultsDB, run_id: int, path: str | None, *, worker: str | None = None
) -> None:
    """Record the run's latest checkpoint; checks ownership when ``worker`` is given."""
    if worker is None:
        _write_run(db, run_id, None, lambda: {"checkpoint_path": path})
    else:
        _write_run(db, run_id, worker, lambda: {"checkpoint_path": path, "heartbeat_at": db.now()})


def release_run(db: ResultsDB, run_id: int, worker: str) -> None:
    """Give an owned run back to the queue (e.g. on SIGTERM/preemption).

    It becomes ``queued`` again, keeping ``last_epoch``, ``checkpoint_path``
    and its metrics so that the next worker resumes it.
    """
    _write_run(
        db,
        run_id,
        worker,
        lambda: {"status": RunStatus.QUEUED, "worker": None, "heartbeat_at": None},
    )


def finish_run(
    db: ResultsDB,
    run_id: int,
    status: str,
    error: str | None = None,
    *,
    worker: str | None = None,
) -> None:
    """Mark a run ``done``, ``failed`` or ``diverged`` (with an optional error text).

    With ``worker`` given, raises :class:`LostLease` unless the run is still
    that worker's; workers should always pass it.
    """
    if status not in FINAL_STATUSES:
        raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, got {status!r}")

    def values() -> dict[str, Any]:
        now = db.now()
        return {"status": status, "error": error, "finished_at": now, "heartbeat_at": now}

    _write_run(db, run_id, worker, values)


# -- maintenance ------------------------------------------------------------------


def _sweep_id(conn: Connection, name: str) -> int:
    sweep_id = conn.execute(select(Sweep.id).where(Sweep.name == name)).scalar_one_or_none()
    if sweep_id is None:
        raise UnknownSweep(f"no sweep named {name!r}")
    return sweep_id


def requeue_failed(db: ResultsDB, sweep: str, *, statuses: Iterable[str] = ("failed",)) -> int:
    """Put a sweep's runs with one of ``statuses`` back in the queue; returns how many.

    Their checkpoint, ``last_epoch`` and metrics are kept (epochs logged again
    replace the old rows).
    """
    wanted = sorted(set(statuses))
    if not set(wanted) <= FINAL_STATUSES:
        raise ValueError(f"can only requeue runs in {sorted(FINAL_STATUSES)}, got {wanted}")

    def transaction(conn: Connection) -> int:
        result = conn.execute(
            update(Run)
            .where(Run.sweep_id == _sweep_id(conn, sweep), Run.status.in_(wanted))
            .values(status=RunStatus.QUEUED, worker=None, error=None, finished_at=None)
        )
        return result.rowcount

    return db.write(transaction)


def reset_stale(db: ResultsDB, lease_seconds: float, *, sweep: str | None = None) -> int:
    """Requeue running runs whose heartbeat is older than ``lease_seconds``.

    ``claim_run`` reclaims such runs by itself; this makes them show as queued
    (e.g. before a status report) and returns how many there were.
    """

    def transaction(conn: Connection) -> int:
        where: list[ColumnElement[bool]] = [
            Run.status == RunStatus.RUNNING,
            Run.heartbeat_at < db.seconds_ago(lease_seconds),
        ]
        if sweep is not None:
            where.append(Run.sweep_id == _sweep_id(conn, sweep))
        result = conn.execute(
            update(Run)
            .where(*where)
            .values(
                status=RunStatus.QUEUED,
                worker=None,
                heartbeat_at=None,
                error="lease expired; requeued",
            )
        )
        return result.rowcount

    return db.write(transaction)
