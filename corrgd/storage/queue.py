"""The run queue: enqueue a sweep's runs, claim them exactly once, record progress.

Runs of one sweep that differ only in per-member settings (learning rates, seeds, noise
variance ...) can train together as one batched model in one worker. The caller gives
such runs equal ``group_key`` values when it enqueues them (NULL: the run always trains
alone). Workers claim and write runs in groups; a single run is a group of one
(``claim_group`` with ``max_members=1``, or a NULL key). Life of a group::

    queued --claim_group--> members m1..mk running, one shared group_id, equal last_epoch
      every epoch:  log_epochs([EpochEntry(m1, ...), ...])  (heartbeat_runs in between)
                    -> a member of a pruning sweep may end pruned there
      as they end:  finish_runs([RunOutcome(m1, "done"), RunOutcome(m2, "diverged"), ...])
                    -> done | failed | diverged
      shrunk:       refill_group(group, n) -> queued runs of its key join, same group_id
      on SIGTERM:   release_runs([m1, ..., mk])  -> queued again, group_id cleared
      worker died:  once the heartbeats are older than the lease, claim_group
                    reclaims the members (as a new group, attempts += 1)

``claim_group`` takes the oldest stale run (its worker's heartbeat is older than the
lease), else the oldest queued run, then up to ``max_members - 1`` more runs of its
sweep with its group key, in the same claimable state (all stale or all queued) and with
the same ``last_epoch``, so that every member resumes from the same epoch.

A worker owns a run while ``status == "running"`` and ``worker`` is its id. Ownership
is per run: each group write (``heartbeat_runs``, ``log_epochs``, ``release_runs``,
``finish_runs``, ``give_back_dead``) is one transaction that acts on the listed runs
``worker`` still owns and returns the ids of those it does not, so a worker whose lease
expired (a "zombie") cannot overwrite the work of the worker that took a run over: it
drops just those members and trains the rest on.

``group_id`` is ``"<first member's run id>.<its attempt>"`` (e.g. ``"17.2"``), unique
per claim. It is set on every member at claim time and kept when a run finishes (reports
can show which runs trained together); like ``worker`` it is cleared whenever the run
goes back to the queue (release, ``reset_stale``, ``requeue_failed``).
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

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from corrgd.spec.config import AXIS_COLUMNS, canonical_json, config_hash
from corrgd.spec.pruning import Pruning, decide
from corrgd.storage.errors import SweepBusy, UnknownSweep
from corrgd.storage.models import (
    FINAL_STATUSES,
    SPLITS,
    EpochMetric,
    Run,
    RungResult,
    RunStatus,
    Sweep,
)
from corrgd.storage.rows import EpochEntry, MetricRow, RunOutcome
from corrgd.storage.runspec import RunSpec

if TYPE_CHECKING:
    from datetime import datetime

    from corrgd.storage.db import ResultsDB


def _as_bool(value: Any) -> bool:
    value = value.item() if hasattr(value, "item") else value
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return value


def _as_int(value: Any) -> int:
    return int(value) if isinstance(value, str) else operator.index(value)


_CONVERTERS: dict[type, Callable[[Any], Any]] = {bool: _as_bool, int: _as_int, float: float,
                                                 str: str}
#: The swept settings stored as typed columns of ``runs`` (`corrgd.spec.config.AXIS_COLUMNS`;
#: every axis is also in ``runs.axes``), each with the conversion its column's type needs.
AXIS_TYPES: dict[str, Callable[[Any], Any]] = {
    name: _CONVERTERS[Run.__table__.c[name].type.python_type] for name in AXIS_COLUMNS}

_METRIC_FIELDS = ("loss", "accuracy", "top5")


@dataclass(frozen=True)
class ClaimedRun:
    """One member of a group :func:`claim_group` handed to a worker.

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
    #: the claim's group, shared by the runs claim_group took together
    group_id: str
    #: set where the run's sweep prunes (`corrgd.spec.pruning`): it may stop at a rung
    prune_key: str | None = None


#: claim_group's group size: a number, or a function of the first run's config giving one.
MaxMembers = int | Callable[[dict[str, Any]], int]


def default_worker_id() -> str:
    """``host:pid`` of this process, the conventional ``worker`` argument."""
    return f"{socket.gethostname()}:{os.getpid()}"


def sweep_id_of(conn: Connection, name: str) -> int:
    """The id of sweep ``name`` (:class:`UnknownSweep` if there is none)."""
    sweep_id = conn.execute(select(Sweep.id).where(Sweep.name == name)).scalar_one_or_none()
    if sweep_id is None:
        raise UnknownSweep(f"no sweep named {name!r}")
    return sweep_id


# -- enqueueing -------------------------------------------------------------------


_GROUP_KEY_LENGTH = Run.group_key.type.length


def _run_row(spec: RunSpec) -> dict[str, Any]:
    for name, key in (("group_key", spec.group_key), ("prune_key", spec.prune_key)):
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= _GROUP_KEY_LENGTH):
            raise ValueError(f"{name} must be None or 1 to {_GROUP_KEY_LENGTH} characters: "
                             f"{key!r}")
    row: dict[str, Any] = {
        "config": canonical_json(spec.config),
        "config_hash": config_hash(spec.config),
        "axes": spec.axes,
        "group_key": spec.group_key,
        "prune_key": spec.prune_key,
    }
    for column, convert in AXIS_TYPES.items():
        value = spec.axes.get(column, spec.config.get(column))
        try:
            row[column] = None if value is None else convert(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run axis {column}={value!r}: {exc}") from exc
    return row


def add_sweep(db: ResultsDB, name: str, spec_text: str, runs: Sequence[RunSpec],
              prune: dict[str, Any] | None = None) -> tuple[int, int]:
    """Create or update sweep ``name`` and enqueue those of ``runs`` it lacks.

    ``prune``: the sweep's successive halving (`corrgd.spec.pruning.Pruning.as_dict`),
    None for none. Runs are identified within a sweep by ``config_hash(config)``:
    enqueueing the same sweep again adds only new configs, replaces the stored spec text
    and ``prune``, and sets the ``group_key`` and ``prune_key`` of the listed runs the
    sweep already has to the ones given now (so that runs enqueued before the keys
    existed, or under an older definition of them, group as the caller now says). All in
    one transaction: on any error nothing is written.
    Returns ``(sweep_id, number of runs added)``.

    The typed axis columns (``dataset``, ``lr``, ``seed``, ...) are taken from
    ``axes``, else from the config's top-level key of the same name, else NULL.
    """
    rows = {row["config_hash"]: row for row in map(_run_row, runs)}  # also dedupes

    def transaction(conn: Connection) -> tuple[int, int]:
        upsert = db.insert(Sweep).values(name=name, spec_text=spec_text, created_at=db.now(),
                                         prune=prune)
        upsert = upsert.on_conflict_do_update(
            index_elements=[Sweep.name],
            # enqueueing a sweep again also lifts a `cancel_sweep`
            set_={"spec_text": upsert.excluded.spec_text, "cancelled_at": None,
                  "prune": upsert.excluded.prune},
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
        n_added = len(added.all())
        if n_added < len(rows):  # some were there already: refresh their keys
            refresh = (
                update(Run)
                .where(
                    Run.sweep_id == sweep_id,
                    Run.config_hash == bindparam("hash"),
                    Run.group_key.is_distinct_from(bindparam("key"))
                    | Run.prune_key.is_distinct_from(bindparam("pkey")),
                )
                .values(group_key=bindparam("key"), prune_key=bindparam("pkey"))
            )
            conn.execute(refresh, [{"hash": h, "key": r["group_key"], "pkey": r["prune_key"]}
                                   for h, r in rows.items()])
        return sweep_id, n_added

    return db.write(transaction)


# -- claiming ---------------------------------------------------------------------


def claim_group(
    db: ResultsDB,
    worker: str,
    device: str,
    *,
    sweep: str | None = None,
    lease_seconds: float,
    max_members: MaxMembers,
    slurm_job_id: str | None = None,
    max_attempts: int | None = None,
) -> list[ClaimedRun]:
    """Atomically take a group of runs to train together; ``[]`` when there is nothing to do.

    In one transaction: takes the oldest ``running`` run whose heartbeat is older
    than ``lease_seconds`` (its worker died), else the oldest ``queued`` run; only
    from sweep ``sweep`` if given, never from a cancelled sweep. If its ``group_key``
    is not NULL, also takes up to ``max_members - 1`` more runs of the same sweep with
    the same ``group_key``, in the same state (all stale, or all queued) and with the
    same ``last_epoch`` (so that every member resumes from the same epoch), oldest
    first. A NULL key, or ``max_members=1``, gives a group of one.

    Every member is marked ``running`` by ``worker`` on ``device`` with a fresh
    heartbeat, ``attempts + 1`` (and the "lease of ... expired; reclaimed" error for
    stale runs), and gets one shared ``group_id``, ``"<first run id>.<its attempt>"``;
    the list starts with the first run, the others follow by id. Each run is handed to
    exactly one caller, also across processes and hosts: every member row is locked
    (PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``; SQLite the database write lock,
    taken by ``BEGIN IMMEDIATE``), so no run is in two groups; runs another worker is
    claiming at that moment are skipped, so a group may come out smaller than it could be.

    ``max_members`` is a number, or a function of the first run's config (a
    dict) that gives it, e.g. how many such networks fit the device's memory.
    The function is called only for a non-NULL key, inside the transaction
    (on SQLite while holding the database's write lock), and again if the
    transaction is retried: it must be quick, pure and not use the database.

    With ``max_attempts``, a stale run that was already claimed that many times is not
    handed out again: it is marked ``failed`` with the reason, in the same transaction
    (a run that keeps killing its workers must not kill them all).
    """
    if not callable(max_members):
        _check_max_members(max_members)
    if lease_seconds < 0:
        raise ValueError("lease_seconds must be >= 0")
    if max_attempts is not None and max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")

    def transaction(conn: Connection) -> list[ClaimedRun]:
        sweep_filter = [] if sweep is None else [Run.sweep_id == sweep_id_of(conn, sweep)]
        # built once: the same cutoff for every statement of the transaction
        stale = (Run.status == RunStatus.RUNNING) & (
            Run.heartbeat_at < db.seconds_ago(lease_seconds)
        )
        if max_attempts is not None:
            _give_up(db, conn, stale & (Run.attempts >= max_attempts), sweep_filter)
        for claimable in (stale, Run.status == RunStatus.QUEUED):
            first = conn.execute(
                select(Run.id, Run.sweep_id, Run.group_key, Run.last_epoch, Run.attempts)
                .add_columns(Sweep.name.label("sweep"))
                .join(Sweep, Sweep.id == Run.sweep_id)
                .where(claimable, Sweep.cancelled_at.is_(None), *sweep_filter)
                .order_by(Run.id)
                .limit(1)
                .with_for_update(of=Run, skip_locked=True)
            ).first()
            if first is not None:
                break
        else:
            return []
        member_ids = [first.id]
        limit = 1 if first.group_key is None else max_members
        if callable(limit):
            config = conn.scalars(select(Run.config).where(Run.id == first.id)).one()
            limit = _check_max_members(limit(json.loads(config)))
        if limit > 1:
            member_ids += conn.scalars(
                select(Run.id)
                .where(
                    claimable,
                    Run.sweep_id == first.sweep_id,
                    Run.group_key == first.group_key,
                    Run.last_epoch == first.last_epoch,
                    Run.id != first.id,
                )
                .order_by(Run.id)
                .limit(limit - 1)
                .with_for_update(skip_locked=True)
            ).all()
        reclaimed = claimable is stale
        by_id = _mark_claimed(
            db, conn, member_ids, claimable, worker=worker, device=device,
            slurm_job_id=slurm_job_id, group_id=f"{first.id}.{first.attempts + 1}",
            # evaluated on the row before the update: the previous owner
            error="lease of " + Run.worker + " expired; reclaimed" if reclaimed else None)
        return [_claimed_run(by_id[i], first.sweep, worker, device) for i in member_ids]

    return db.write(transaction)


def refill_group(db: ResultsDB, group: Sequence[ClaimedRun], count: int, *,
                 slurm_job_id: str | None = None) -> list[ClaimedRun]:
    """Atomically take up to ``count`` more ``queued`` runs for a group in flight that has
    shrunk (members done, diverged or pruned): runs of the sweep and ``group_key`` of the
    group's first run, oldest first, never of a cancelled sweep; ``[]`` if there are none.

    They are claimed as ``claim_group`` claims them (``running`` by the group's worker on
    its device, a fresh heartbeat, ``attempts + 1``), with the group's ``group_id``. Their
    ``last_epoch`` may differ from the members': each member of a group keeps its own
    epoch (`corrgd.run.runner`). Rows are locked as in ``claim_group``: a run is handed to
    one worker only.
    """
    if count < 1 or not group:
        return []
    head = group[0]

    def transaction(conn: Connection) -> list[ClaimedRun]:
        like = conn.execute(select(Run.sweep_id, Run.group_key)
                            .where(Run.id == head.run_id)).one()
        if like.group_key is None:
            return []
        ids = conn.scalars(
            select(Run.id)
            .join(Sweep, Sweep.id == Run.sweep_id)
            .where(Run.status == RunStatus.QUEUED, Run.sweep_id == like.sweep_id,
                   Run.group_key == like.group_key, Sweep.cancelled_at.is_(None))
            .order_by(Run.id)
            .limit(count)
            .with_for_update(of=Run, skip_locked=True)
        ).all()
        if not ids:
            return []
        by_id = _mark_claimed(db, conn, ids, Run.status == RunStatus.QUEUED,
                              worker=head.worker, device=head.device,
                              slurm_job_id=slurm_job_id, group_id=head.group_id, error=None)
        return [_claimed_run(by_id[i], head.sweep, head.worker, head.device) for i in ids]

    return db.write(transaction)


def _mark_claimed(db: ResultsDB, conn: Connection, ids: Sequence[int], claimable: Any, *,
                  worker: str, device: str, slurm_job_id: str | None, group_id: str,
                  error: Any) -> dict[int, Row[Any]]:
    """Mark the locked, claimable runs ``ids`` as ``worker``'s (running on ``device``, a
    fresh heartbeat, ``attempts + 1``, ``group_id``); their rows by id."""
    now = db.now()
    claimed = conn.execute(
        update(Run)
        .where(Run.id.in_(ids), claimable)
        .values(status=RunStatus.RUNNING, worker=worker, device=device,
                slurm_job_id=slurm_job_id, started_at=now, heartbeat_at=now,
                finished_at=None, attempts=Run.attempts + 1, error=error, group_id=group_id)
        .returning(Run.id, Run.config, Run.config_hash, Run.axes, Run.attempts,
                   Run.last_epoch, Run.checkpoint_path, Run.group_id, Run.prune_key)
    ).all()
    by_id = {row.id: row for row in claimed}
    assert len(by_id) == len(ids), "claimed rows changed under their locks"
    return by_id


def _check_max_members(max_members: int) -> int:
    if operator.index(max_members) < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    return max_members


def _claimed_run(row: Row[Any], sweep: str, worker: str, device: str) -> ClaimedRun:
    return ClaimedRun(
        run_id=row.id,
        sweep=sweep,
        config=json.loads(row.config),
        config_hash=row.config_hash,
        axes=row.axes,
        attempts=row.attempts,
        last_epoch=row.last_epoch,
        checkpoint_path=row.checkpoint_path,
        worker=worker,
        device=device,
        group_id=row.group_id,
        prune_key=row.prune_key,
    )


def gave_up_error(attempts: int) -> str:
    return (f"gave up after {attempts} attempts: its worker died each time (killed, out of "
            "memory, or lost); corrgd sweep SPEC --retry-failed tries again")


def _give_up(db: ResultsDB, conn: Connection, where: ColumnElement[bool],
             sweep_filter: list[Any]) -> None:
    """Mark the runs matching ``where`` failed: they used up their attempts."""
    ids = conn.scalars(select(Run.id).where(where, *sweep_filter)
                       .with_for_update(skip_locked=True)).all()
    for run_id, attempts in conn.execute(select(Run.id, Run.attempts).where(Run.id.in_(ids))):
        now = db.now()
        conn.execute(update(Run).where(Run.id == run_id).values(
            status=RunStatus.FAILED, error=gave_up_error(attempts), finished_at=now,
            heartbeat_at=now))


# -- a worker's writes about the group of runs it owns ----------------------------
#
# One transaction each. They lock the listed runs the worker owns (PostgreSQL: row
# locks, taken in id order, so that a worker's heartbeat thread and training thread
# never deadlock on each other; SQLite: the write lock) and act on those only; the
# ids of the others are returned, in the order given, for the worker to drop.


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_rows(run_id: int, epoch: int, rows: Sequence[MetricRow]) -> list[dict[str, Any]]:
    """The ``epoch_metrics`` rows of one epoch of a run; ``ValueError`` if ``rows`` is
    empty, names a split twice or one that is not in ``SPLITS``, or ``epoch`` < 0."""
    epoch = operator.index(epoch)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not rows:
        raise ValueError(f"run {run_id}, epoch {epoch}: no metric rows")
    out = []
    for row in rows:
        if row.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {row.split!r}")
        out.append(
            {
                "run_id": run_id,
                "epoch": epoch,
                "split": row.split,
                **{f: _finite_or_none(getattr(row, f)) for f in _METRIC_FIELDS},
                "seconds": float(row.seconds),
                "diagnostics": row.diagnostics,
            }
        )
    splits = [r["split"] for r in out]
    if len(set(splits)) != len(splits):
        raise ValueError(f"duplicate splits in one epoch: {splits}")
    return out


def _progress(db: ResultsDB, epoch: int, checkpoint_path: str | None) -> dict[str, Any]:
    """What logging ``epoch`` sets on its run: heartbeat, ``last_epoch``, checkpoint."""
    epoch = operator.index(epoch)
    values: dict[str, Any] = {
        "heartbeat_at": db.now(),
        "last_epoch": case((Run.last_epoch < epoch, epoch), else_=Run.last_epoch),
    }
    if checkpoint_path is not None:
        values["checkpoint_path"] = checkpoint_path
    return values


def _upsert_metrics(db: ResultsDB, conn: Connection, metric_rows: list[dict[str, Any]]) -> None:
    """Insert metric rows, replacing any logged before for the same (run, epoch, split)."""
    upsert = db.insert(EpochMetric)
    upsert = upsert.on_conflict_do_update(
        index_elements=[EpochMetric.run_id, EpochMetric.epoch, EpochMetric.split],
        set_={name: upsert.excluded[name] for name in (*_METRIC_FIELDS, "seconds", "diagnostics")},
    )
    conn.execute(upsert, metric_rows)


#: What giving a run back to the queue sets (release_runs, give_back_dead).
_RELEASED: dict[str, Any] = {
    "status": RunStatus.QUEUED,
    "worker": None,
    "heartbeat_at": None,
    "group_id": None,
}


def _check_final(status: str) -> None:
    if status not in FINAL_STATUSES:
        raise ValueError(f"status must be one of {sorted(FINAL_STATUSES)}, got {status!r}")


def _finished(db: ResultsDB, status: str, error: str | None) -> dict[str, Any]:
    """What finishing a run sets; ``group_id`` is kept."""
    now = db.now()
    return {"status": status, "error": error, "finished_at": now, "heartbeat_at": now}


def _unique_ids(run_ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(operator.index(run_id) for run_id in run_ids))


def _lock_owned(conn: Connection, run_ids: Sequence[int], worker: str) -> set[int]:
    """Of ``run_ids``, those ``worker`` owns, locked (on PostgreSQL) in id order."""
    return set(
        conn.scalars(
            select(Run.id)
            .where(Run.id.in_(run_ids), Run.worker == worker, Run.status == RunStatus.RUNNING)
            .order_by(Run.id)
            .with_for_update()
        )
    )


def _write_owned_runs(
    db: ResultsDB,
    run_ids: Iterable[int],
    worker: str,
    write: Callable[[Connection, set[int]], None],
) -> list[int]:
    """In one transaction, ``write(conn, owned ids)``; returns the listed ids not owned."""
    ids = _unique_ids(run_ids)
    if not ids:
        return []

    def transaction(conn: Connection) -> list[int]:
        owned = _lock_owned(conn, ids, worker)
        if owned:
            write(conn, owned)
        return [run_id for run_id in ids if run_id not in owned]

    return db.write(transaction)


def heartbeat_runs(db: ResultsDB, run_ids: Iterable[int], worker: str) -> list[int]:
    """Refresh the heartbeat of every listed run ``worker`` still owns, in one transaction.

    Returns the ids of the listed runs it no longer owns (reclaimed after its
    lease expired, finished, released, or never its): the worker drops those
    members.
    """

    def write(conn: Connection, owned: set[int]) -> None:
        conn.execute(update(Run).where(Run.id.in_(sorted(owned))).values(heartbeat_at=db.now()))

    return _write_owned_runs(db, run_ids, worker, write)


def log_epochs(db: ResultsDB, entries: Sequence[EpochEntry], worker: str) -> list[int]:
    """Record one epoch of each of several runs (a group's members), in one transaction.

    Per entry: its rows (one :class:`~corrgd.storage.rows.MetricRow` per split), a fresh
    heartbeat, ``last_epoch`` raised to its epoch and, if given, its ``checkpoint_path``;
    all entries together or not at all. Idempotent: logging an epoch again replaces its
    rows (a run resumed from an older checkpoint logs the epochs after it again); one
    call may hold several epochs of a run. Every entry is checked before anything is
    written: a row of an unknown split, a split twice in one epoch, an entry without
    rows or the same (run, epoch) twice raises ``ValueError`` and nothing is written.
    Entries of runs ``worker`` no longer owns are skipped (nothing of theirs is
    written) and their ids returned, in the order given.
    """
    progress: dict[tuple[int, int], str | None] = {}  # (run id, epoch) -> checkpoint path
    metric_rows: dict[int, list[dict[str, Any]]] = {}  # run id -> its rows, all epochs
    for entry in entries:
        run_id, epoch = operator.index(entry.run_id), operator.index(entry.epoch)
        if (run_id, epoch) in progress:
            raise ValueError(f"run {run_id}, epoch {epoch} is listed twice")
        progress[run_id, epoch] = entry.checkpoint_path
        metric_rows.setdefault(run_id, []).extend(_metric_rows(run_id, epoch, entry.rows))

    def write(conn: Connection, owned: set[int]) -> None:
        for (run_id, epoch), checkpoint_path in progress.items():
            if run_id in owned:
                values = _progress(db, epoch, checkpoint_path)
                conn.execute(update(Run).where(Run.id == run_id).values(**values))
        _upsert_metrics(db, conn, [row for i in sorted(owned) for row in metric_rows[i]])
        _judge_rungs(db, conn, [e for e in entries if e.run_id in owned])

    return _write_owned_runs(db, list(metric_rows), worker, write)


def _judge_rungs(db: ResultsDB, conn: Connection, entries: Sequence[EpochEntry]) -> None:
    """Successive halving (`corrgd.spec.pruning`), in the transaction that logs the
    epochs: each run of a pruning sweep whose entry is a rung's epoch is ranked against
    the runs of its prune key that reached that rung before (entries of one call, the
    members of a group, are ranked together); the losers become ``pruned``. A run's
    decision at a rung is made once: logging the epoch again changes nothing."""
    ids = sorted({e.run_id for e in entries})
    runs = conn.execute(
        select(Run.id, Run.sweep_id, Run.prune_key, Run.config, Sweep.prune)
        .join(Sweep, Sweep.id == Run.sweep_id)
        .where(Run.id.in_(ids), Run.prune_key.is_not(None), Sweep.prune.is_not(None))
    ).all() if ids else []
    if not runs:
        return
    by_id = {r.id: r for r in runs}
    if db.backend == "postgresql":  # one decision at a time per sweep (SQLite: the lock)
        conn.execute(select(Sweep.id).where(Sweep.id.in_({r.sweep_id for r in runs}))
                     .order_by(Sweep.id).with_for_update())
    arriving: dict[tuple[int, str, int], list[tuple[int, float | None]]] = {}
    for entry in entries:
        run = by_id.get(entry.run_id)
        if run is None:
            continue
        pruning = Pruning(**run.prune)
        if entry.epoch in pruning.rungs(json.loads(run.config)["epochs"]):
            arriving.setdefault((run.sweep_id, run.prune_key, entry.epoch), []).append(
                (entry.run_id, _score(pruning, entry.rows)))
    for (sweep_id, key, rung), scores in arriving.items():
        pruning = Pruning(**by_id[scores[0][0]].prune)
        judged = dict(conn.execute(
            select(RungResult.run_id, RungResult.score)
            .join(Run, Run.id == RungResult.run_id)
            .where(Run.sweep_id == sweep_id, Run.prune_key == key, RungResult.rung == rung)
        ).all())
        new = [(i, score) for i, score in scores if i not in judged]
        if not new:
            continue
        worst = -math.inf if pruning.larger_is_better else math.inf
        ranked = decide(pruning, [(i, worst if v is None else v) for i, v in judged.items()],
                        [(i, worst if v is None else v) for i, v in new])
        conn.execute(insert(RungResult), [
            {"run_id": i, "rung": rung, "score": v, "promoted": ranked[i]} for i, v in new])
        losers = sorted(i for i, _ in new if not ranked[i])
        if losers:
            conn.execute(update(Run).where(Run.id.in_(losers)).values(
                status=RunStatus.PRUNED, finished_at=db.now(), heartbeat_at=db.now()))


def _score(pruning: Pruning, rows: Sequence[MetricRow]) -> float | None:
    """A run's score for `pruning.metric` (e.g. val_acc) from its rows of one epoch."""
    split, kind = pruning.metric.split("_")
    for row in rows:
        if row.split == split:
            value = row.accuracy if kind == "acc" else row.loss
            return value if value is not None and math.isfinite(value) else None
    raise ValueError(f"prune metric {pruning.metric}: no {split} rows were logged")


def pruned_runs(db: ResultsDB, run_ids: Iterable[int]) -> list[int]:
    """Those of ``run_ids`` that successive halving stopped (``pruned``)."""
    ids = sorted(set(run_ids))

    def query(conn: Connection) -> list[int]:
        return list(conn.scalars(select(Run.id).where(Run.id.in_(ids),
                                                      Run.status == RunStatus.PRUNED)))

    return db.read(query) if ids else []


def release_runs(db: ResultsDB, run_ids: Iterable[int], worker: str) -> list[int]:
    """Give every listed run ``worker`` owns back to the queue, in one transaction.

    Each becomes ``queued`` again (on SIGTERM or preemption), keeping ``last_epoch``,
    ``checkpoint_path`` and its metrics so that the next worker resumes it;
    ``group_id`` is cleared. Returns the ids of the listed runs ``worker`` does not
    own, which are left alone.
    """

    def write(conn: Connection, owned: set[int]) -> None:
        conn.execute(update(Run).where(Run.id.in_(sorted(owned))).values(**_RELEASED))

    return _write_owned_runs(db, run_ids, worker, write)


def give_back_dead(db: ResultsDB, run_ids: Iterable[int], worker: str,
                   max_attempts: int | None = None) -> list[int]:
    """Runs of ``worker``, known to be dead: back to the queue, or — those claimed
    ``max_attempts`` times already — ``failed`` with the reason. One transaction; returns
    the ids of those that failed (runs ``worker`` no longer owns are left alone)."""
    failed: list[int] = []

    def write(conn: Connection, owned: set[int]) -> None:
        rows = conn.execute(select(Run.id, Run.attempts).where(Run.id.in_(sorted(owned))))
        now = db.now()
        for run_id, attempts in rows.all():
            if max_attempts is not None and attempts >= max_attempts:
                conn.execute(update(Run).where(Run.id == run_id).values(
                    status=RunStatus.FAILED, error=gave_up_error(attempts), finished_at=now,
                    heartbeat_at=now))
                failed.append(run_id)
            else:
                conn.execute(update(Run).where(Run.id == run_id).values(**_RELEASED))

    _write_owned_runs(db, run_ids, worker, write)
    return failed


def finish_runs(db: ResultsDB, outcomes: Sequence[RunOutcome], worker: str) -> list[int]:
    """Mark each listed run ``worker`` owns with its outcome, in one transaction.

    Each becomes ``done``, ``failed`` or ``diverged``, with an optional error
    text; ``group_id`` is kept. All statuses
    are checked first (``ValueError``, nothing written), as is each run listed
    once. Returns the ids of the listed runs ``worker`` does not own, which are
    left alone.
    """
    by_id: dict[int, RunOutcome] = {}
    for outcome in outcomes:
        _check_final(outcome.status)
        run_id = operator.index(outcome.run_id)
        if run_id in by_id:
            raise ValueError(f"run {run_id} is listed twice")
        by_id[run_id] = outcome

    def write(conn: Connection, owned: set[int]) -> None:
        for run_id in sorted(owned):
            values = _finished(db, by_id[run_id].status, by_id[run_id].error)
            conn.execute(update(Run).where(Run.id == run_id).values(**values))

    return _write_owned_runs(db, list(by_id), worker, write)


# -- cancelling and deleting sweeps ------------------------------------------------


@dataclass(frozen=True)
class Cancellation:
    """What `cancel_sweep` found: the sweep's runs per status, and when it was cancelled
    before (None: this call cancelled it)."""

    counts: dict[str, int]
    earlier: datetime | None


def cancel_sweep(db: ResultsDB, name: str) -> Cancellation:
    """Cancel sweep ``name``: its queued runs are no longer handed out and its running
    runs stop at their next epoch end (their workers see :func:`cancelled_runs`), keeping
    what they wrote. Enqueueing the sweep again (:func:`add_sweep`) lifts it. A sweep
    cancelled already keeps the time of its first cancel."""

    def transaction(conn: Connection) -> Cancellation:
        sweep_id = sweep_id_of(conn, name)
        earlier = conn.scalar(select(Sweep.cancelled_at).where(Sweep.id == sweep_id))
        if earlier is None:
            conn.execute(update(Sweep).where(Sweep.id == sweep_id).values(
                cancelled_at=db.now()))
        rows = conn.execute(select(Run.status, func.count(Run.id)).where(
            Run.sweep_id == sweep_id).group_by(Run.status)).all()
        return Cancellation({str(status): int(n) for status, n in rows}, earlier)

    return db.write(transaction)


def cancelled_runs(db: ResultsDB, run_ids: Iterable[int]) -> list[int]:
    """Those of ``run_ids`` whose sweep is cancelled."""
    ids = sorted(set(run_ids))

    def query(conn: Connection) -> list[int]:
        return list(conn.scalars(select(Run.id).join(Sweep, Sweep.id == Run.sweep_id).where(
            Run.id.in_(ids), Sweep.cancelled_at.is_not(None))))

    return db.read(query) if ids else []


def delete_sweep(db: ResultsDB, name: str) -> int:
    """Delete sweep ``name`` with its runs and their metrics; returns the number of runs.

    Refuses (:class:`SweepBusy`) while runs of it are running: cancel it first.
    """

    def transaction(conn: Connection) -> int:
        sweep_id = sweep_id_of(conn, name)
        running = conn.scalar(select(func.count(Run.id)).where(
            Run.sweep_id == sweep_id, Run.status == RunStatus.RUNNING))
        if running:
            raise SweepBusy(f"{running} runs of sweep {name!r} are running: `corrgd cancel "
                            f"{name}` stops them at their next epoch end")
        run_ids = select(Run.id).where(Run.sweep_id == sweep_id).scalar_subquery()
        conn.execute(delete(EpochMetric).where(EpochMetric.run_id.in_(run_ids)))
        n = conn.execute(delete(Run).where(Run.sweep_id == sweep_id)).rowcount
        conn.execute(delete(Sweep).where(Sweep.id == sweep_id))
        return int(n)

    return db.write(transaction)


# -- maintenance ------------------------------------------------------------------


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
            .where(Run.sweep_id == sweep_id_of(conn, sweep), Run.status.in_(wanted))
            .values(
                status=RunStatus.QUEUED, worker=None, group_id=None, error=None, finished_at=None
            )
        )
        return result.rowcount

    return db.write(transaction)


def reset_stale(db: ResultsDB, lease_seconds: float, *, sweep: str | None = None) -> int:
    """Requeue running runs whose heartbeat is older than ``lease_seconds``.

    ``claim_group`` reclaims such runs by itself; this makes them show as queued
    (e.g. before a status report) and returns how many there were.
    """

    def transaction(conn: Connection) -> int:
        where: list[ColumnElement[bool]] = [
            Run.status == RunStatus.RUNNING,
            Run.heartbeat_at < db.seconds_ago(lease_seconds),
        ]
        if sweep is not None:
            where.append(Run.sweep_id == sweep_id_of(conn, sweep))
        result = conn.execute(
            update(Run)
            .where(*where)
            .values(
                status=RunStatus.QUEUED,
                worker=None,
                group_id=None,
                heartbeat_at=None,
                error="lease expired; requeued",
            )
        )
        return result.rowcount

    return db.write(transaction)
