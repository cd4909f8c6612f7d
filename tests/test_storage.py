"""Tests of corrgd.storage on SQLite, and on PostgreSQL when CORRGD_TEST_PG_URL is set.

Start a server with ``eval "$(tests/services/postgres.sh start)"``.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from queue_helper import claim_one
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from corrgd.spec.config import canonical_json, config_hash
from corrgd.storage import (
    EpochEntry,
    MetricRow,
    ResultsDB,
    RunOutcome,
    RunSpec,
    SchemaTooNew,
    UnknownSweep,
    open_db,
)
from corrgd.storage.engine import WRITE_OPTIONS, make_engine
from corrgd.storage.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade
from corrgd.storage.models import Base

LEASE = 60.0


def make_runs(n: int, start: int = 0, **fixed: object) -> list[RunSpec]:
    specs = []
    for i in range(start, start + n):
        axes = {"algorithm": "copi", "decor": i % 2 == 0, "lr": 10.0**-i, "seed": i, "width": 8}
        axes.update(fixed)
        config = {"dataset": "mnist", "network": "mlp", "epochs": 3, **axes}
        specs.append(RunSpec(config=config, axes=axes))
    return specs


def epoch_rows(epoch: int, loss: float = 1.0) -> list[MetricRow]:
    return [
        MetricRow("train", loss, 0.5, seconds=0.1 * epoch),
        MetricRow("val", loss + 0.1, 0.4, seconds=0.1 * epoch, top5=0.9,
                  diagnostics={"layer0": {"offdiag": 0.01 * epoch, "angle_bp": 12.5}}),
    ]


def log(db: ResultsDB, run_id: int, worker: str, epochs: range, loss: float = 1.0,
        checkpoint_path: str | None = None) -> None:
    """Log `epochs` of a run `worker` owns, in one transaction."""
    entries = [EpochEntry(run_id, e, epoch_rows(e, loss), checkpoint_path) for e in epochs]
    assert db.log_epochs(entries, worker) == []


def count(db: ResultsDB, table: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


# -- schema and migrations ----------------------------------------------------------


def test_open_db_creates_schema_at_head(db: ResultsDB) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {"sweeps", "runs", "epoch_metrics", "alembic_version"} <= tables
    with db.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        if db.backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0


def test_migrations_match_models(db: ResultsDB) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_reopen_is_a_noop_and_keeps_data(db_url: str) -> None:
    with open_db(db_url) as first:
        first.add_sweep("s", "spec", make_runs(3))
    with open_db(db_url) as second:
        with second.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert len(second.runs_frame("s")) == 3


def test_the_pruning_migration_keeps_every_epoch_row(db_url: str) -> None:
    """0004 rewrites the runs table's status check: SQLite rebuilds the table, which must
    not cascade into epoch_metrics."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO sweeps (id, name, spec_text, created_at) "
                              "VALUES (1, 's', 'spec', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO runs (id, sweep_id, config, config_hash, axes, "
                              "status, attempts, last_epoch) VALUES (1, 1, '{}', 'h', '{}', "
                              "'done', 1, 1)"))
            conn.execute(text("INSERT INTO epoch_metrics (run_id, epoch, split, loss, "
                              "seconds) VALUES (1, 0, 'train', 1.0, 0), (1, 1, 'train', 0.5, 1)"))
        upgrade(engine)
        with engine.begin() as conn:
            assert current_revision(conn) == head_revision() == "0004"
            assert conn.execute(text("SELECT count(*) FROM epoch_metrics")).scalar_one() == 2
            conn.execute(text("UPDATE runs SET status = 'pruned'"))  # the new status
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE runs SET status = 'bogus'"))  # the check still holds
        with engine.begin() as conn:  # and deleting a run still cascades
            conn.execute(text("DELETE FROM runs"))
            assert conn.execute(text("SELECT count(*) FROM epoch_metrics")).scalar_one() == 0
    finally:
        engine.dispose()


SECOND_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0002_test"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.execute("UPDATE runs SET note = 'migrated'")


def downgrade():
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("note")
"""


def test_upgrade_from_older_revision_keeps_data(db_url: str, tmp_path: Path) -> None:
    with open_db(db_url) as old:  # a database written by "this" corrgd
        old.add_sweep("s", "spec", make_runs(4))
        run = claim_one(old, "w")
        assert run is not None
        log(old, run.run_id, "w", range(1))
    # a "newer corrgd" ships one more migration
    newer = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / "0002_test.py").write_text(SECOND_REVISION.format(head=head_revision()))
    engine = make_engine(db_url)
    try:
        upgrade(engine, script_location=newer)
        with engine.connect() as conn:
            assert current_revision(conn) == "0002_test"
            notes = conn.execute(text("SELECT note FROM runs")).scalars().all()
        assert notes == ["migrated"] * 4
    finally:
        engine.dispose()
    # the data written before the upgrade is intact
    with _open_without_migrating(db_url) as db:
        assert len(db.runs_frame("s")) == 4
        assert len(db.epochs_frame("s")) == 2
    # and this (older) corrgd refuses, clearly, to open the newer database
    with pytest.raises(SchemaTooNew):
        open_db(db_url)


def _open_without_migrating(url: str) -> ResultsDB:
    """A ResultsDB on ``url`` without migrating (the schema is newer than the package's)."""
    engine = make_engine(url)
    return ResultsDB(engine, url)


def test_default_url_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORRGD_DB", raising=False)
    with open_db() as db:
        assert db.backend == "sqlite"
    assert (tmp_path / "results" / "corrgd.sqlite").is_file()
    monkeypatch.setenv("CORRGD_DB", f"sqlite:///{tmp_path}/other/x.sqlite")
    with open_db():
        pass
    assert (tmp_path / "other" / "x.sqlite").is_file()
    with pytest.raises(ValueError, match="unsupported"):
        open_db("mysql://localhost/x")


def test_pickled_db_reopens(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", make_runs(2))
    clone = pickle.loads(pickle.dumps(db))
    try:
        assert len(clone.runs_frame()) == 2
    finally:
        clone.close()


def test_a_read_only_handle_writes_nothing_and_reopens_read_only(db: ResultsDB) -> None:
    """SQLite opens the file with query_only; PostgreSQL makes every transaction read-only.
    A pickled read-only handle comes back read-only (it reopened read-write before)."""
    db.add_sweep("s", "spec", make_runs(2))
    readonly = open_db(db.url, readonly=True)
    clone = pickle.loads(pickle.dumps(readonly))
    try:
        for handle in (readonly, clone):
            assert handle.readonly and len(handle.runs_frame()) == 2
            with pytest.raises(DBAPIError, match="read-?only"):
                handle.add_sweep("t", "spec", make_runs(1))
        assert db.list_sweeps()["sweep"].tolist() == ["s"]
    finally:
        readonly.close()
        clone.close()


# -- enqueueing ---------------------------------------------------------------------


def test_config_hash_is_canonical() -> None:
    a = {"lr": 0.1, "net": {"width": 8, "depth": 2}, "decor": True}
    b = {"decor": True, "net": {"depth": 2, "width": 8}, "lr": 0.1}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 64 and int(config_hash(a), 16) >= 0
    assert canonical_json(a) == '{"decor":true,"lr":0.1,"net":{"depth":2,"width":8}}'
    assert config_hash(a) != config_hash({**a, "lr": 0.2})
    np = pytest.importorskip("numpy")
    assert config_hash({"lr": np.float64(0.1), "seed": np.int64(3)}) == config_hash(
        {"lr": 0.1, "seed": 3}
    )
    with pytest.raises(ValueError):
        canonical_json({"lr": float("nan")})


def test_add_sweep_dedupes(db: ResultsDB) -> None:
    sweep_id, added = db.add_sweep("s", "spec v1", make_runs(5))
    assert added == 5
    assert db.add_sweep("s", "spec v1", make_runs(5)) == (sweep_id, 0)
    assert db.add_sweep("s", "spec v2", make_runs(6)) == (sweep_id, 1)
    # duplicates within one call count once
    assert db.add_sweep("s", "spec v2", make_runs(2, start=6) * 2) == (sweep_id, 2)
    other_id, n = db.add_sweep("t", "other", make_runs(3))  # same configs, other sweep
    assert other_id != sweep_id and n == 3
    sweeps = db.list_sweeps().set_index("sweep")
    assert sweeps.loc["s", "n_runs"] == 8 and sweeps.loc["s", "spec_text"] == "spec v2"
    runs = db.runs_frame("s")
    assert runs["config_hash"].is_unique
    assert set(runs["status"]) == {"queued"} and set(runs["last_epoch"]) == {-1}


def test_add_sweep_is_all_or_nothing(db: ResultsDB) -> None:
    db.add_sweep("s", "spec v1", make_runs(2))
    # fails inside the transaction, after the sweep row and other runs were sent
    bad = [*make_runs(3, start=2), RunSpec(config={"seed": 2**70}, axes={"seed": 2**70})]
    with pytest.raises(Exception):  # noqa: B017 - overflow error type differs by driver
        db.add_sweep("s", "spec v2", bad)
    with pytest.raises(Exception):  # noqa: B017
        db.add_sweep("new", "spec", bad)
    assert count(db, "runs") == 2
    assert list(db.list_sweeps()["spec_text"]) == ["spec v1"]
    # invalid axis values are rejected before anything is sent
    with pytest.raises(ValueError, match="lr"):
        db.add_sweep("s", "spec v3", [*make_runs(3, start=2), RunSpec({"lr": "fast"})])
    assert count(db, "runs") == 2


def test_axis_columns_come_from_axes_then_config(db: ResultsDB) -> None:
    spec = RunSpec(
        config={"dataset": "cifar10", "lr": 0.5, "seed": 1, "decor_lr": "1e-3", "depth": 4},
        axes={"lr": 0.01, "decor": True, "depth": 4},
    )
    db.add_sweep("s", "spec", [spec])
    row = db.runs_frame("s").iloc[0]
    assert row["dataset"] == "cifar10" and row["lr"] == 0.01 and row["seed"] == 1
    assert row["decor_lr"] == 1e-3 and bool(row["decor"]) is True and row["depth"] == 4
    assert row["network"] is None
    assert row["config"] == spec.config and row["axes"] == spec.axes


# -- claiming, leases and logging ---------------------------------------------------


def _open_fresh(path: str, barrier: Any, results: Any) -> None:
    engine = make_engine(f"sqlite:///{path}")  # connects on first use
    barrier.wait()  # every process opens the new file at the same moment
    try:
        with engine.connect() as connection:
            results.put(connection.exec_driver_sql("PRAGMA journal_mode").scalar())
        engine.dispose()
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="fork")
def test_processes_opening_a_new_sqlite_file_at_once_all_get_it_in_wal_mode(
        tmp_path: Path) -> None:
    """Two connections switching a fresh file to WAL at once: SQLite fails one of them at
    once, without its busy wait (about 1 in 25 processes here); the engine retries."""
    ctx = multiprocessing.get_context("fork")  # only sqlite3 in the children
    for trial in range(20):
        barrier, results = ctx.Barrier(6, timeout=30), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh, args=(str(tmp_path / f"{trial}.sqlite"),
                                                       barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["wal"] * 6, outcomes


def test_claim_order_and_what_a_claim_hands_out(db: ResultsDB) -> None:
    """The oldest claimable run first, of any sweep unless one is named; it comes with its
    config, axes and hash, and is marked running on the device with a fresh heartbeat."""
    db.add_sweep("a", "spec", make_runs(2))
    db.add_sweep("b", "spec", make_runs(2, start=10))
    [run] = db.claim_group("w", "cuda:0", sweep="b", lease_seconds=LEASE, max_members=1,
                           slurm_job_id="123")
    assert run.sweep == "b" and run.axes["seed"] == 10 and run.config["seed"] == 10
    assert (run.attempts, run.last_epoch, run.checkpoint_path) == (1, -1, None)
    assert run.config_hash == config_hash(run.config)
    first = claim_one(db, "w")
    assert first is not None and first.sweep == "a" and first.axes["seed"] == 0
    assert claim_one(db, "w", sweep="b") is not None
    assert claim_one(db, "w", sweep="b") is None
    row = db.runs_frame("b").set_index("run_id").loc[run.run_id]
    assert row["status"] == "running" and row["device"] == "cuda:0"
    assert row["slurm_job_id"] == "123" and row["heartbeat_at"] is not None


def test_a_runs_progress_passes_to_whoever_takes_it_over(db: ResultsDB) -> None:
    """Reclaimed once its lease expired, or released: the next worker resumes the run from
    its last epoch and checkpoint."""
    db.add_sweep("s", "spec", make_runs(1))
    run = claim_one(db, "host:1")
    assert run is not None
    log(db, run.run_id, "host:1", range(1), checkpoint_path="/ck/0.pt")
    assert claim_one(db, "host:2") is None  # the lease is still valid
    time.sleep(0.05)
    again = claim_one(db, "host:2", lease_seconds=0.01)  # host:1 looks dead
    assert again is not None and again.run_id == run.run_id
    assert (again.attempts, again.last_epoch, again.checkpoint_path) == (2, 0, "/ck/0.pt")
    assert db.runs_frame("s").iloc[0]["error"] == "lease of host:1 expired; reclaimed"
    log(db, run.run_id, "host:2", range(1, 3))
    assert db.release_runs([run.run_id], "host:2") == []
    assert db.runs_frame("s").iloc[0]["status"] == "queued"
    resumed = claim_one(db, "host:3")
    assert resumed is not None and resumed.run_id == run.run_id
    assert (resumed.attempts, resumed.last_epoch, resumed.checkpoint_path) == (3, 2, "/ck/0.pt")
    assert db.finish_runs([RunOutcome(run.run_id, "done")], "host:3") == []
    row = db.runs_frame("s").iloc[0]
    assert (row["status"], row["worker"], row["last_epoch"]) == ("done", "host:3", 2)
    assert row["error"] is None


def test_logging_an_epoch_again_replaces_its_rows(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", make_runs(1))
    run = claim_one(db, "w")
    assert run is not None
    log(db, run.run_id, "w", range(1), loss=2.0)
    log(db, run.run_id, "w", range(1, 2), loss=1.0)
    log(db, run.run_id, "w", range(1, 2), loss=0.5)  # e.g. resumed from epoch 0
    log(db, run.run_id, "w", range(1), loss=float("nan"))
    epochs = db.epochs_frame("s")
    assert len(epochs) == 4
    train = epochs[epochs["split"] == "train"].set_index("epoch")["loss"]
    assert train[1] == 0.5 and train.isna()[0]  # replaced; NaN loss stored as missing
    assert db.runs_frame("s").iloc[0]["last_epoch"] == 1  # highest epoch logged


def test_finish_requeue_and_reset_stale(db: ResultsDB) -> None:
    db.add_sweep("s", "spec", make_runs(4))
    runs = [claim_one(db, "w") for _ in range(4)]
    ids = [r.run_id for r in runs if r is not None]
    outcomes = [RunOutcome(ids[0], "done"), RunOutcome(ids[1], "failed", "Traceback: boom"),
                RunOutcome(ids[2], "diverged", "loss is nan")]
    assert db.finish_runs(outcomes, "w") == []
    counts = db.sweep_counts().set_index("sweep").loc["s"]
    assert (counts["done"], counts["failed"], counts["diverged"], counts["running"]) == (1, 1, 1, 1)
    assert db.requeue_failed("s") == 1
    assert db.requeue_failed("s", statuses=["diverged"]) == 1
    frame = db.runs_frame("s").set_index("run_id")
    assert frame.loc[ids[1], "status"] == "queued" and frame.loc[ids[1], "error"] is None
    assert db.reset_stale(LEASE) == 0
    time.sleep(0.05)
    assert db.reset_stale(0.01, sweep="s") == 1
    assert db.runs_frame("s").set_index("run_id").loc[ids[3], "status"] == "queued"
    with pytest.raises(UnknownSweep):
        db.requeue_failed("nope")


# -- queries ------------------------------------------------------------------------


def test_frames(db: ResultsDB) -> None:
    db.add_sweep("a", "spec a", make_runs(3))
    db.add_sweep("b", "spec b", make_runs(2, start=5, optimizer="adam"))
    db.add_sweep("empty", "spec", [])
    logged = []
    while (run := claim_one(db, "w", sweep="a")) is not None:
        log(db, run.run_id, "w", range(2))
        logged.append(run.run_id)

    runs = db.runs_frame()
    assert len(runs) == 5 and runs["run_id"].is_unique
    assert {"run_id", "sweep", "dataset", "network", "algorithm", "decor", "decor_lr", "lr"} <= set(
        runs.columns
    )
    assert {"seed", "width", "optimizer", "status", "attempts", "config", "axes"} <= set(
        runs.columns
    )
    assert isinstance(runs["config"].iloc[0], dict)
    assert list(runs.columns[-2:]) == ["config", "axes"]
    assert len(db.runs_frame("b")) == 2 and set(db.runs_frame("b")["optimizer"]) == {"adam"}
    assert str(runs["seed"].dtype) == "Int64" and str(runs["started_at"].dtype).endswith("UTC]")

    epochs = db.epochs_frame("a")
    assert len(epochs) == 3 * 2 * 2
    assert list(epochs.columns[:8]) == [
        "run_id", "epoch", "split", "loss", "accuracy", "top5", "seconds", "diagnostics"
    ]  # fmt: skip
    assert {"sweep", "algorithm", "lr", "seed", "width", "status"} <= set(epochs.columns)
    val = epochs[(epochs["split"] == "val") & (epochs["epoch"] == 1)].iloc[0]
    assert val["diagnostics"]["layer0"]["angle_bp"] == 12.5 and val["top5"] == 0.9
    assert len(db.epochs_frame(run_ids=logged[:1])) == 4
    assert len(db.epochs_frame("b")) == 0 and "lr" in db.epochs_frame("b").columns
    assert "diagnostics" not in db.epochs_frame(diagnostics=False).columns

    counts = db.sweep_counts().set_index("sweep")
    assert list(counts.index) == ["a", "b", "empty"]
    assert counts.loc["a", "running"] == 3 and counts.loc["b", "queued"] == 2
    assert counts.loc["empty", "total"] == 0
    assert list(db.list_sweeps()["n_runs"]) == [3, 2, 0]
    with pytest.raises(UnknownSweep):
        db.runs_frame("nope")


# -- transient failures against a real database -------------------------------------


def test_waits_for_a_held_write_lock(db: ResultsDB) -> None:
    """A writer holding the lock (or row locks) for a while delays, but does not fail, others."""
    db.add_sweep("s", "spec", make_runs(1))
    run = claim_one(db, "w")
    assert run is not None
    blocker = db.engine.connect().execution_options(**WRITE_OPTIONS)
    blocker.begin()
    blocker.execute(text("UPDATE runs SET device = 'blocked'"))  # locks SQLite / the PG row
    release = threading.Timer(0.3, lambda: (blocker.commit(), blocker.close()))
    release.start()
    start = time.monotonic()
    log(db, run.run_id, "w", range(1))
    assert time.monotonic() - start >= 0.2
    release.join()
    assert len(db.epochs_frame("s")) == 2


def test_dropped_postgres_connection_is_retried(
    db: ResultsDB, caplog: pytest.LogCaptureFixture
) -> None:
    if db.backend != "postgresql":
        pytest.skip("PostgreSQL only")
    db.add_sweep("s", "spec", make_runs(2))
    with db.engine.connect() as conn:  # the pooled connection the next call will reuse
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    killer = create_engine(db.url)
    with killer.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    killer.dispose()
    with caplog.at_level(logging.WARNING, logger="corrgd.storage.retry"):
        run = claim_one(db, "w")  # fails once, retried
    assert run is not None
    assert "transient database error" in caplog.text


def test_the_known_revisions_are_the_migration_scripts() -> None:
    """Commands that only read compare a database's revision with `REVISIONS` without
    loading Alembic: it must list the scripts, oldest first."""
    from alembic.script import ScriptDirectory

    from corrgd.storage.migrate import REVISIONS, alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    chain = [r.revision for r in script.walk_revisions()][::-1]
    assert tuple(chain) == REVISIONS
