"""Grouped training in corrgd.storage: claim_group, the group writes, group_counts, migration 0002.

On SQLite, and on PostgreSQL when CORRGD_TEST_PG_URL is set (a fresh schema per test).
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import insert, inspect
from test_storage import LEASE, count, epoch_rows, make_runs

from corrgd.spec.config import canonical_json, config_hash
from corrgd.storage import (
    EpochEntry,
    MetricRow,
    ResultsDB,
    RunOutcome,
    RunSpec,
    UnknownSweep,
    open_db,
)
from corrgd.storage.engine import WRITE_OPTIONS, make_engine
from corrgd.storage.migrate import alembic_config, current_revision, head_revision, upgrade
from corrgd.storage.models import EpochMetric, Run, Sweep


def keyed_runs(keys: list[str | None], start: int = 0) -> list[RunSpec]:
    """One run per entry of ``keys`` (its group key), with distinct configs, ids in this order."""
    return [
        RunSpec(spec.config, spec.axes, group_key=key)
        for spec, key in zip(make_runs(len(keys), start), keys, strict=True)
    ]


def ids(group: list[Any]) -> list[int]:
    return [member.run_id for member in group]


def run_rows(db: ResultsDB, sweep: str | None = None) -> pd.DataFrame:
    return db.runs_frame(sweep).set_index("run_id")


def values(column: pd.Series) -> list[Any]:
    """A frame column as a list, missing values (NaN in pandas' string columns) as None."""
    return [None if pd.isna(v) else v for v in column]


def entries(run_ids: list[int], epoch: int, **kwargs: Any) -> list[EpochEntry]:
    return [EpochEntry(run_id, epoch, epoch_rows(epoch, **kwargs)) for run_id in run_ids]


# -- enqueueing ---------------------------------------------------------------------


def test_add_sweep_stores_and_refreshes_group_keys(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["a", "b", None]))
    assert values(db.runs_frame("s")["group_key"]) == ["a", "b", None]
    assert db.runs_frame("s")["group_id"].isna().all()
    # enqueued again (e.g. by a corrgd whose keys changed): existing runs take the new keys
    assert db.add_sweep("s", "spec", keyed_runs(["x", None, "x", "x"])) == (1, 1)
    assert values(db.runs_frame("s")["group_key"]) == ["x", None, "x", "x"]
    with pytest.raises(ValueError, match="group_key"):
        db.add_sweep("s", "spec", keyed_runs(["k" * 65]))
    with pytest.raises(ValueError, match="group_key"):
        db.add_sweep("s", "spec", keyed_runs([""]))
    assert count(db, "runs") == 4


# -- claim_group --------------------------------------------------------------------


def test_claim_group_takes_only_same_key_and_sweep(db: ResultsDB) -> None:
    db.add_sweep("a", "spec", keyed_runs(["k1", "k2", None] * 3))  # ids 1..9, keys interleaved
    db.add_sweep("b", "spec", keyed_runs(["k1"] * 3, start=10))  # the same key, another sweep
    groups = []
    while group := db.claim_group("w", "cuda:0", lease_seconds=LEASE, max_members=10):
        groups.append(group)
    assert [ids(g) for g in groups] == [[1, 4, 7], [2, 5, 8], [3], [6], [9], [10, 11, 12]]
    for group in groups:
        first = group[0]
        assert {m.group_id for m in group} == {f"{first.run_id}.1"}  # shared; set for one too
        assert {(m.sweep, m.worker, m.device, m.attempts, m.last_epoch) for m in group} == {
            (first.sweep, "w", "cuda:0", 1, -1)
        }
        assert [m.config_hash for m in group] == [config_hash(m.config) for m in group]
    rows = run_rows(db)
    assert set(rows["status"]) == {"running"} and rows["error"].isna().all()
    assert list(rows.loc[[1, 4, 7, 10], "group_id"]) == ["1.1", "1.1", "1.1", "10.1"]
    assert values(rows.loc[[1, 2, 3], "group_key"]) == ["k1", "k2", None]


def test_claim_group_sweep_filter_max_members_and_empty_queue(db: ResultsDB) -> None:
    db.add_sweep("a", "spec", keyed_runs(["k"] * 2))
    db.add_sweep("b", "spec", keyed_runs(["k"] * 7, start=10))
    with pytest.raises(ValueError, match="max_members"):
        db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=0)
    with pytest.raises(UnknownSweep):
        db.claim_group("w", "cpu", sweep="nope", lease_seconds=LEASE, max_members=3)
    sizes = []
    while group := db.claim_group("w", "cpu", sweep="b", lease_seconds=LEASE, max_members=3):
        assert {m.sweep for m in group} == {"b"}
        sizes.append(len(group))
    assert sizes == [3, 3, 1]
    [alone] = db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=1, slurm_job_id="7_1")
    assert alone.sweep == "a" and alone.group_id == f"{alone.run_id}.1"
    assert run_rows(db).loc[alone.run_id, "slurm_job_id"] == "7_1"
    assert len(db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=3)) == 1
    assert db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=3) == []


def test_claim_group_sizes_groups_by_the_first_runs_config(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs([None, "k", "k", "k", "k"]))
    asked: list[dict[str, Any]] = []

    def size(config: dict[str, Any]) -> int:
        asked.append(config)
        return 3

    [alone] = db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=size)
    assert alone.run_id == 1 and asked == []  # a NULL key: a group of one, nothing to ask
    group = db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=size)
    assert ids(group) == [2, 3, 4] and asked == [group[0].config]
    with pytest.raises(ValueError, match="max_members"):
        db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=lambda config: 0)
    assert run_rows(db).loc[5, "status"] == "queued"  # nothing claimed


def test_claim_group_takes_only_runs_at_the_same_epoch(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 4))
    [first] = db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=1)
    assert db.log_epochs(entries([first.run_id], 0), "w") == []
    assert db.log_epochs(entries([first.run_id], 1), "w") == []
    assert db.release_runs([first.run_id], "w") == []
    # the oldest queued run resumes from epoch 1: the others, never started, cannot join it
    [resumed] = db.claim_group("v", "cpu", lease_seconds=LEASE, max_members=4)
    assert (resumed.run_id, resumed.last_epoch, resumed.attempts) == (first.run_id, 1, 2)
    assert resumed.group_id == f"{first.run_id}.2"
    rest = db.claim_group("v", "cpu", lease_seconds=LEASE, max_members=4)
    assert ids(rest) == [2, 3, 4] and {m.last_epoch for m in rest} == {-1}


def test_refill_group_takes_queued_runs_of_the_groups_key_and_sweep(db: ResultsDB) -> None:
    """A group in flight that has shrunk takes on the oldest queued runs of its sweep and
    group key, whatever their epoch, as members of its claim: never runs of another key,
    of another sweep, running ones, or those of a cancelled sweep."""
    db.add_sweep("a", "spec", keyed_runs(["k", "k", "j", "k", "k", None, "k"]))  # ids 1..7
    db.add_sweep("b", "spec", keyed_runs(["k"] * 2, start=10))  # ids 8, 9: same key
    group = db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=2, slurm_job_id="3_1")
    assert ids(group) == [1, 2]
    [other] = db.claim_group("v", "cpu", lease_seconds=LEASE, max_members=1)  # run 3 ("j")
    [five] = db.claim_group("v", "cpu", sweep="a", lease_seconds=LEASE, max_members=1)
    assert (other.run_id, five.run_id) == (3, 4)
    db.log_epochs(entries([4], 0) + entries([4], 1), "v")
    db.release_runs([4], "v")  # run 4: queued again, resumes after epoch 1
    assert db.refill_group(group, 0) == []
    joined = db.refill_group(group, 2, slurm_job_id="3_1")
    assert ids(joined) == [4, 5]  # oldest first; run 4 at another epoch than the group
    assert [(m.last_epoch, m.attempts, m.group_id, m.worker, m.device, m.sweep)
            for m in joined] == [(1, 2, "1.1", "w", "cpu", "a"), (-1, 1, "1.1", "w", "cpu", "a")]
    rows = run_rows(db)
    assert list(rows.loc[[4, 5], "status"]) == ["running"] * 2
    assert list(rows.loc[[4, 5], "slurm_job_id"]) == ["3_1"] * 2
    assert ids(db.refill_group(group, 5)) == [7]  # not 6 (no key), not 8, 9 (sweep b)
    assert db.refill_group(group, 5) == []
    b = db.claim_group("w", "cpu", sweep="b", lease_seconds=LEASE, max_members=1)
    db.cancel_sweep("b")
    assert db.refill_group(b, 5) == []
    assert run_rows(db, "b")["status"].tolist() == ["running", "cancelled"]


def test_a_second_cancel_keeps_the_first_ones_time_and_enqueueing_lifts_it(
        db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 2))
    first = db.cancel_sweep("s")
    assert first.earlier is None and first.counts == {"queued": 2}
    second = db.cancel_sweep("s")
    assert second.earlier is not None and second.counts == {"queued": 2}
    time.sleep(0.01)
    assert db.cancel_sweep("s").earlier == second.earlier  # not moved by the third
    db.add_sweep("s", "spec", keyed_runs(["k"] * 2))  # the sweep again: resumed
    assert db.cancel_sweep("s").earlier is None


def test_stale_group_is_reclaimed_as_a_new_group(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 4))
    dead = db.claim_group("dead:1", "cpu", lease_seconds=LEASE, max_members=2)
    assert db.log_epochs(entries(ids(dead), 0), "dead:1") == []
    time.sleep(0.05)
    # stale runs first, and only stale ones: the queued runs 3 and 4 are in another state
    group = db.claim_group("new:2", "cpu", lease_seconds=0.01, max_members=4)
    assert ids(group) == ids(dead) == [1, 2]
    assert {(m.attempts, m.last_epoch, m.group_id) for m in group} == {(2, 0, "1.2")}
    rows = run_rows(db)
    assert list(rows.loc[[1, 2], "error"]) == ["lease of dead:1 expired; reclaimed"] * 2
    assert list(rows.loc[[1, 2], "worker"]) == ["new:2"] * 2
    # the dead worker's writes are refused, all of them, and write nothing
    assert db.heartbeat_runs([1, 2], "dead:1") == [1, 2]
    assert db.log_epochs(entries([1, 2], 1, loss=99.0), "dead:1") == [1, 2]
    assert db.release_runs([2, 1], "dead:1") == [2, 1]
    assert db.finish_runs([RunOutcome(1, "failed", "zombie")], "dead:1") == [1]
    assert len(db.epochs_frame("s")) == 2 * 2 and set(run_rows(db)["last_epoch"]) == {0, -1}
    queued = db.claim_group("new:2", "cpu", lease_seconds=LEASE, max_members=4)
    assert ids(queued) == [3, 4] and run_rows(db).loc[[3, 4], "error"].isna().all()
    # a stale grouped run reclaimed alone is a group of one
    time.sleep(0.05)
    [single] = db.claim_group("other:3", "cpu", lease_seconds=0.01, max_members=1)
    assert (single.run_id, single.group_id) == (1, "1.3")
    assert list(run_rows(db).loc[[1, 2], "group_id"]) == ["1.3", "1.2"]


# -- the group writes ---------------------------------------------------------------


def test_log_epochs_writes_all_members_atomically(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 3))
    group = ids(db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=3))
    logged = [EpochEntry(r, 0, epoch_rows(0), checkpoint_path=f"/ck/{r}.pt") for r in group]
    assert db.log_epochs(logged, "w") == []
    rows = run_rows(db)
    assert list(rows["last_epoch"]) == [0] * 3
    assert list(rows["checkpoint_path"]) == [f"/ck/{r}.pt" for r in group]
    assert len(db.epochs_frame("s")) == 3 * 2
    # one bad row anywhere: ValueError, and nothing of any member is written
    bad_rows: list[list[MetricRow]] = [
        [MetricRow("dev", 1.0, 0.1, seconds=1.0)],
        [*epoch_rows(1), MetricRow("dev", 1.0, 0.1, seconds=1.0)],
        epoch_rows(1)[:1] * 2,
        [],
    ]
    for bad in bad_rows:
        with pytest.raises(ValueError):
            db.log_epochs([*entries(group[:2], 1), EpochEntry(group[2], 1, bad)], "w")
    with pytest.raises(ValueError, match="twice"):
        db.log_epochs([*entries(group, 1), *entries(group[:1], 1)], "w")
    assert len(db.epochs_frame("s")) == 3 * 2 and set(run_rows(db)["last_epoch"]) == {0}
    # idempotent: logging an epoch again replaces its rows; several epochs of a run at once
    assert db.log_epochs(entries(group, 0, loss=0.25), "w") == []
    assert db.log_epochs([*entries(group, 1), *entries(group, 2)], "w") == []
    epochs = db.epochs_frame("s")
    assert len(epochs) == 3 * 3 * 2 and not epochs.duplicated(["run_id", "epoch", "split"]).any()
    assert set(epochs.loc[(epochs["epoch"] == 0) & (epochs["split"] == "train"), "loss"]) == {0.25}
    assert set(run_rows(db)["last_epoch"]) == {2}
    assert db.log_epochs([], "w") == []


def test_log_epochs_skips_runs_no_longer_owned(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 3))
    a, b, c = ids(db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=3))
    assert db.finish_runs([RunOutcome(b, "diverged", "loss is nan")], "w") == []
    lost = db.log_epochs([*entries([a, b, c], 0), *entries([404], 0)], "w")
    assert lost == [b, 404]
    epochs = db.epochs_frame("s")
    assert sorted(set(epochs["run_id"])) == [a, c]
    assert list(run_rows(db)["last_epoch"]) == [0, -1, 0]


def test_heartbeat_release_and_finish_report_runs_not_owned(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 3))
    a, b, c = ids(db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=3))
    before = run_rows(db)["heartbeat_at"]
    time.sleep(0.02)
    assert db.heartbeat_runs([a, b, c, 404, a], "w") == [404]
    assert (run_rows(db)["heartbeat_at"] > before).all()
    assert db.heartbeat_runs([c, a], "intruder") == [c, a]
    assert db.heartbeat_runs([], "w") == []

    with pytest.raises(ValueError, match="status"):
        db.finish_runs([RunOutcome(a, "done"), RunOutcome(b, "queued")], "w")
    with pytest.raises(ValueError, match="twice"):
        db.finish_runs([RunOutcome(a, "done"), RunOutcome(a, "failed")], "w")
    assert set(run_rows(db)["status"]) == {"running"}  # nothing written
    outcomes = [RunOutcome(a, "done"), RunOutcome(b, "failed", "Traceback: boom")]
    assert db.finish_runs(outcomes, "w") == []
    assert db.finish_runs(outcomes, "w") == [a, b]  # finished runs are nobody's
    assert db.release_runs([a, b, c], "w") == [a, b]
    rows = run_rows(db)
    assert list(rows["status"]) == ["done", "failed", "queued"]
    assert values(rows["error"]) == [None, "Traceback: boom", None]
    # finished runs keep their group id (who trained together); a released run loses it
    assert values(rows["group_id"]) == [f"{a}.1", f"{a}.1", None]
    assert values(rows["worker"]) == ["w", "w", None]
    assert values(rows.loc[[a, c], "finished_at"].isna()) == [False, True]
    assert pd.isna(rows.loc[c, "heartbeat_at"])


def test_group_id_is_cleared_when_runs_go_back_to_the_queue(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", keyed_runs(["k"] * 4))
    a, b, c, d = ids(db.claim_group("w", "cpu", lease_seconds=LEASE, max_members=4))
    assert db.release_runs([a], "w") == []
    assert db.finish_runs([RunOutcome(b, "failed", "boom")], "w") == []
    assert db.requeue_failed("s") == 1
    time.sleep(0.05)
    assert db.reset_stale(0.01) == 2
    rows = run_rows(db)
    assert set(rows["status"]) == {"queued"} and rows["group_id"].isna().all()
    assert rows["worker"].isna().all()


# -- queries ------------------------------------------------------------------------


def test_group_counts_lists_running_groups(db: ResultsDB) -> None:
    assert list(db.group_counts().columns) == [
        "sweep", "group_id", "group_key", "worker", "device", "slurm_job_id", "members",
        "run_ids", "last_epoch", "started_at", "heartbeat_at",
    ]  # fmt: skip
    assert db.group_counts().empty
    db.add_sweep("a", "spec", keyed_runs(["k1", "k2"] * 3))
    db.add_sweep("b", "spec", keyed_runs(["k1"] * 2 + [None], start=10))
    g1 = db.claim_group("w1", "cuda:0", sweep="a", lease_seconds=LEASE, max_members=8)
    g2 = db.claim_group("w2", "cuda:1", sweep="a", lease_seconds=LEASE, max_members=2)
    g3 = db.claim_group("w3", "cpu", sweep="b", lease_seconds=LEASE, max_members=8)
    g4 = db.claim_group("w4", "cpu", sweep="b", lease_seconds=LEASE, max_members=8)  # NULL key
    db.log_epochs(entries(ids(g1), 0), "w1")
    db.finish_runs([RunOutcome(g1[0].run_id, "done")], "w1")

    groups = db.group_counts()
    assert list(groups["group_id"]) == [g[0].group_id for g in (g1, g2, g3, g4)]
    assert list(groups["sweep"]) == ["a", "a", "b", "b"]
    assert list(groups["members"]) == [2, 2, 2, 1]  # g1's finished run no longer counts
    assert list(groups["run_ids"]) == [ids(g1)[1:], ids(g2), ids(g3), ids(g4)]
    assert list(groups["worker"]) == ["w1", "w2", "w3", "w4"]
    assert list(groups["device"]) == ["cuda:0", "cuda:1", "cpu", "cpu"]
    assert values(groups["group_key"]) == ["k1", "k2", "k1", None]
    assert list(groups["last_epoch"]) == [0, -1, -1, -1]
    assert groups["heartbeat_at"].notna().all()
    assert dict(groups.groupby("sweep").size()) == {"a": 2, "b": 2}
    assert list(db.group_counts("b")["group_id"]) == [g3[0].group_id, g4[0].group_id]
    with pytest.raises(UnknownSweep):
        db.group_counts("nope")
    assert db.release_runs(ids(g3), "w3") == []
    assert list(db.group_counts("b")["group_id"]) == [g4[0].group_id]


# -- many processes, one queue ------------------------------------------------------


def _group_worker(url: str, barrier: Any, results: Any, name: str) -> None:
    barrier.wait()  # all processes open the fresh database at the same moment
    db = open_db(url)
    barrier.wait()  # the parent has enqueued the sweep
    groups: list[tuple[str | None, list[int]]] = []
    while group := db.claim_group(name, "cpu", lease_seconds=LEASE, max_members=4):
        run_ids = ids(group)
        groups.append((group[0].group_id, run_ids))
        for epoch in range(2):
            assert db.heartbeat_runs(run_ids, name) == []
            assert db.log_epochs(entries(run_ids, epoch), name) == []
        assert db.finish_runs([RunOutcome(r, "done") for r in run_ids], name) == []
    db.close()
    results.put((name, groups))


def test_claim_group_exactly_once_across_processes(db_url: str) -> None:
    """4 processes migrate a fresh database at once, then drain 60 runs in 5 keys (one NULL)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(5, timeout=60), ctx.Queue()
    procs = [
        ctx.Process(target=_group_worker, args=(db_url, barrier, results, f"host:{i}"))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    keys = [None if i % 5 == 4 else f"key{i % 5}" for i in range(60)]
    try:
        barrier.wait()
        with open_db(db_url) as db:
            db.add_sweep("s", "spec", keyed_runs(keys))
        barrier.wait()
    except BaseException:
        barrier.abort()
        raise
    claims: dict[str, list[tuple[str | None, list[int]]]] = {}
    deadline = time.monotonic() + 120
    while len(claims) < len(procs):
        try:
            name, groups = results.get(timeout=0.5)
        except queue.Empty:
            crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not crashed, f"a worker process failed (exit codes {crashed})"
            assert time.monotonic() < deadline, "workers did not finish in time"
            continue
        claims[name] = groups
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    with open_db(db_url) as db:
        runs = run_rows(db, "s")
        epochs = db.epochs_frame("s")
    claimed = [r for groups in claims.values() for _, run_ids in groups for r in run_ids]
    assert sorted(claimed) == sorted(runs.index)  # every run claimed, none twice
    group_ids = [gid for groups in claims.values() for gid, _ in groups]
    assert len(set(group_ids)) == len(group_ids)
    for worker, groups in claims.items():
        for group_id, run_ids in groups:
            members = runs.loc[run_ids]
            assert 1 <= len(run_ids) <= 4
            assert members["group_key"].nunique(dropna=False) == 1, "a group mixes keys"
            if members["group_key"].isna().all():
                assert len(run_ids) == 1
            assert set(members["group_id"]) == {group_id} and set(members["worker"]) == {worker}
    assert len(claimed) > len(group_ids), "no group had more than one member"
    assert set(runs["status"]) == {"done"} and set(runs["attempts"]) == {1}
    assert set(runs["last_epoch"]) == {1}
    assert len(epochs) == 60 * 2 * 2
    assert not epochs.duplicated(["run_id", "epoch", "split"]).any()


# -- migration 0002 -----------------------------------------------------------------


def test_upgrade_from_0001_keeps_runs_and_downgrade_keeps_them_too(db_url: str) -> None:
    config = {"dataset": "digits", "lr": 0.1, "seed": 0}
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0001")  # a database written by corrgd before grouped training
        with engine.begin() as conn:
            sweep_id = conn.execute(
                insert(Sweep)
                .values(name="old", spec_text="spec", created_at=datetime.now(UTC))
                .returning(Sweep.id)
            ).scalar_one()
            run_id = conn.execute(
                insert(Run)
                .values(
                    sweep_id=sweep_id,
                    config=canonical_json(config),
                    config_hash=config_hash(config),
                    axes={"lr": 0.1},
                    lr=0.1,
                    status="running",
                    worker="old:1",
                    heartbeat_at=datetime(2020, 1, 1, tzinfo=UTC),
                    attempts=1,
                    last_epoch=0,
                )
                .returning(Run.id)
            ).scalar_one()
            conn.execute(
                insert(EpochMetric).values(
                    run_id=run_id, epoch=0, split="val", loss=1.0, accuracy=0.5, seconds=0.0
                )
            )
    finally:
        engine.dispose()

    with open_db(db_url) as db:  # upgrades in place
        with db.engine.connect() as conn:
            assert current_revision(conn) == head_revision() == "0004"
        indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("runs")}
        assert "ix_runs_sweep_id_group_key_status_id" in indexes
        row = run_rows(db, "old").loc[run_id]
        assert (row["status"], row["worker"], row["last_epoch"], row["lr"]) == (
            "running", "old:1", 0, 0.1
        )  # fmt: skip
        assert pd.isna(row["group_key"]) and pd.isna(row["group_id"])
        assert len(db.epochs_frame("old")) == 1
        # the old run is claimable as before: alone, its key being NULL
        [reclaimed] = db.claim_group("new:1", "cpu", lease_seconds=LEASE, max_members=4)
        assert (reclaimed.run_id, reclaimed.attempts, reclaimed.group_id) == (
            run_id, 2, f"{run_id}.2"
        )  # fmt: skip
        assert run_rows(db, "old").loc[run_id, "error"] == "lease of old:1 expired; reclaimed"
        # enqueueing the sweep again with keys gives the old run its key
        assert db.add_sweep("old", "spec", [RunSpec(config, group_key="k")]) == (sweep_id, 0)
        assert run_rows(db, "old").loc[run_id, "group_key"] == "k"

        alembic_cfg = alembic_config()
        with db.engine.connect().execution_options(**WRITE_OPTIONS) as conn, conn.begin():
            alembic_cfg.attributes["connection"] = conn
            command.downgrade(alembic_cfg, "0001")
        columns = {c["name"] for c in inspect(db.engine).get_columns("runs")}
        assert not {"group_key", "group_id"} & columns
        assert count(db, "runs") == 1 and count(db, "epoch_metrics") == 1
