"""Results you can trust: no truncated histories, no pooled non-seeds, failed runs
retried, and bad input refused before anything is written.

Every bad input is one line on stderr, exit code 2, and leaves the database and the
results folder as they were.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import cli_helper
import pytest
import torch
from queue_helper import claim_one

from corrgd.run.runner import NullReporter, run
from corrgd.run.worker import Worker
from corrgd.spec.config import RunConfig
from corrgd.storage import MetricRow, RunOutcome, open_db

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = """\
name: tiny
dataset: digits
network: mlp
hidden: [8]
val_size: 100
algorithm: bp
decor: [false, true]
decor_lr: 1.0e-3
lr: 1.0e-3
seed: [0, 1]
epochs: 2
batch_size: 256
diagnostics: false
"""
EPOCH_ROWS = 3 * 3  # epochs 0, 1, 2 x splits train, val, test
cli = partial(cli_helper.cli, columns=200)  # the tables below are asserted at this width


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its content; an SQLite database by what it
    holds (its -wal and -shm files change when it is only read)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.endswith(("-wal", "-shm")):
            continue
        if p.suffix == ".sqlite":
            with sqlite3.connect(f"file:{p}?mode=ro", uri=True) as conn:
                content = "\n".join(conn.iterdump()).encode()
        else:
            content = p.read_bytes()
        out[str(p.relative_to(folder))] = hashlib.sha256(content).hexdigest()
    return out


def assert_refused(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def db_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'results' / 'corrgd.sqlite'}"


def drain(url: str, checkpoints: Path, **options: Any) -> int:
    return Worker(url, sweep="tiny", checkpoint_dir=checkpoints, **options).run()


def enqueue(folder: Path, url: str | None = None) -> None:
    result = cli("sweep", "tiny.yaml", "--db", url or db_url(folder), "--enqueue-only",
                 cwd=folder)
    assert result.exit_code == 0, result.output


def epoch_rows(url: str) -> list[tuple]:
    db = open_db(url)
    frame = db.epochs_frame("tiny", diagnostics=False)
    db.close()
    return sorted((int(r.run_id), int(r.epoch), r.split, float(r.loss), float(r.accuracy))
                  for r in frame.itertuples())


# --- 0. a worker that is made to exit gives its group back ----------------------------------
def test_a_worker_exiting_mid_group_gives_its_runs_back(folder: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`sys.exit` inside a worker (how submitit's preemption handler ends a SLURM job, and
    what a local worker's SIGTERM raises) hands the group back to the queue as the worker
    unwinds, even when the handler itself could not (the worker held a database lock)."""
    import corrgd.run.worker

    url = db_url(folder)
    enqueue(folder, url)

    def exit_in_epoch_one(self: Any, epoch: int, step: int, steps: int, losses: Any) -> None:
        if epoch == 1:
            raise SystemExit(-1)

    with monkeypatch.context() as patch:
        patch.setattr(corrgd.run.worker._DBReporter, "progress", exit_in_epoch_one)
        with pytest.raises(SystemExit):
            drain(url, folder / "checkpoints")
    runs = open_db(url).runs_frame("tiny")
    assert set(runs["status"]) == {"queued"} and runs["worker"].isna().all()
    assert sorted(runs["attempts"]) == [0, 0, 1, 1]  # one group of two was claimed
    assert drain(url, folder / "checkpoints") == 4
    assert len(epoch_rows(url)) == 4 * EPOCH_ROWS


# --- 1. checkpoints never stand in for history the database lacks ------------------------------
def test_a_new_database_gets_every_epoch_from_finished_checkpoints(folder: Path) -> None:
    first = db_url(folder)
    enqueue(folder, first)
    drain(first, folder / "checkpoints")
    rows = epoch_rows(first)
    assert len(rows) == 4 * EPOCH_ROWS
    second = f"sqlite:///{folder / 'other.sqlite'}"
    enqueue(folder, second)
    drain(second, folder / "checkpoints")  # every run "resumes" from a finished checkpoint
    assert epoch_rows(second) == rows  # the whole history, not only the last epoch


def test_a_database_ahead_of_its_checkpoints_is_completed_with_the_same_numbers(
        folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    configs = [RunConfig(**c) for c in open_db(url).runs_frame("tiny")["config"]]
    drain(url, folder / "checkpoints")
    final = epoch_rows(url)
    # an older checkpoint folder: every run stopped after epoch 1
    older = folder / "older"
    for config in configs:
        with pytest.raises(KeyboardInterrupt):
            run(config, checkpoint=older / "tiny" / f"{config.hash()}.pt",
                reporter=StopAfter(1))
    db = open_db(url)
    db.requeue_failed("tiny", statuses=("done",))
    db.close()
    drain(url, older)  # resumes from epoch 1, logs epoch 2 again
    assert epoch_rows(url) == final


class StopAfter(NullReporter):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_end(self, epoch: int, rows: list[MetricRow], checkpoint: str | None) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_checkpoints_deleted_runs_requeued_retrain_without_duplicates(folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    drain(url, folder / "checkpoints")
    final = epoch_rows(url)
    shutil.rmtree(folder / "checkpoints")
    db = open_db(url)
    db.requeue_failed("tiny", statuses=("done",))
    db.close()
    drain(url, folder / "checkpoints")
    assert epoch_rows(url) == final


@pytest.mark.parametrize("damage", ["truncated", "another config"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_retrained(folder: Path,
                                                                 damage: str) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    drain(url, folder / "checkpoints")
    final = epoch_rows(url)
    paths = sorted((folder / "checkpoints" / "tiny").glob("*.pt"))
    if damage == "truncated":
        paths[0].write_bytes(paths[0].read_bytes()[:200])
    else:
        paths[1].write_bytes(paths[0].read_bytes())  # run 1's file holds run 0's state
    db = open_db(url)
    db.requeue_failed("tiny", statuses=("done",))
    db.close()
    drain(url, folder / "checkpoints")
    runs = open_db(url).runs_frame("tiny")
    assert set(runs["status"]) == {"done"}
    assert epoch_rows(url) == final
    assert len(list((folder / "checkpoints" / "tiny").glob("*.pt.*"))) == 1  # set aside


# --- 2. only seeds are pooled --------------------------------------------------------------
def test_settings_that_vary_between_grids_separate_curves(folder: Path) -> None:
    (folder / "corr.yaml").write_text("""\
name: corr
dataset: synthetic-correlated
network: mlp
hidden: [8]
algorithm: bp
lr: 1.0e-2
seed: 0
epochs: 1
val_size: 100
diagnostics: false
grids:
  - {data: {correlation: 0.0, n_train: 600, n_test: 100}}
  - {data: {correlation: 0.5, n_train: 600, n_test: 100}}
  - {data: {correlation: 0.9, n_train: 600, n_test: 100}}
""")
    url = db_url(folder)
    assert cli("sweep", "corr.yaml", "--db", url, "--workers", "1", cwd=folder).exit_code == 0
    from corrgd import api

    peaks = api.peaks("corr", db=url)
    assert peaks["panel"].nunique() == 3 and set(peaks["n_seeds"]) == {1}
    result = cli("report", "--table", "peak", "--sweep", "corr", "--db", url, cwd=folder)
    assert result.exit_code == 0
    for value in ("0.0", "0.5", "0.9"):
        assert f'"correlation": {value}' in result.output, result.output


# --- 3. a sweep name reused with other settings ------------------------------------------
def test_a_reused_sweep_name_with_other_settings_is_refused_unless_extended(
        folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    before = snapshot(folder)
    (folder / "tiny.yaml").write_text(TINY.replace("seed: [0, 1]", "seed: [0, 1, 2]"))
    result = cli("sweep", "tiny.yaml", "--db", url, "--enqueue-only", cwd=folder)
    assert_refused(result, "tiny.yaml", "'tiny'", "seed", "--extend")
    assert snapshot(folder) == before | {"tiny.yaml": snapshot(folder)["tiny.yaml"]}
    result = cli("sweep", "tiny.yaml", "--db", url, "--enqueue-only", "--extend", cwd=folder)
    assert result.exit_code == 0 and "2 new" in result.output
    # a comment is not a change
    (folder / "tiny.yaml").write_text("# notes\n" + TINY.replace("seed: [0, 1]",
                                                                  "seed: [0, 1, 2]"))
    assert cli("sweep", "tiny.yaml", "--db", url, "--enqueue-only", cwd=folder).exit_code == 0


def test_a_spec_that_adds_nothing_to_its_sweep_is_accepted_and_keeps_the_stored_spec(
        folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)  # seeds 0, 1
    (folder / "more.yaml").write_text(TINY.replace("seed: [0, 1]", "seed: [2]"))
    result = cli("sweep", "more.yaml", "--db", url, "--enqueue-only", "--extend", cwd=folder)
    assert result.exit_code == 0 and "2 new" in result.output
    stored = open_db(url).list_sweeps()["spec_text"].tolist()
    for spec in ("tiny.yaml", "more.yaml"):  # the first spec again: adds nothing
        result = cli("sweep", spec, "--db", url, "--enqueue-only", cwd=folder)
        assert result.exit_code == 0 and "0 new" in result.output, result.output
    assert open_db(url).list_sweeps()["spec_text"].tolist() == stored
    # runs it has, pruned otherwise: a change (pruning decides which runs go on)
    (folder / "pruned.yaml").write_text(TINY + "prune: {metric: val_loss}\n")
    assert_refused(bad(folder, "sweep", "pruned.yaml", "--db", url, "--enqueue-only"),
                   "'tiny'", "prune (unset -> {'metric': 'val_loss'})")


# --- 5. failed runs are retried; runs that keep killing their workers stop ---------------
def test_failed_runs_are_listed_with_their_error_and_retried(folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    db = open_db(url)
    claimed = claim_one(db, "w", sweep="tiny")
    assert claimed is not None
    db.finish_runs([RunOutcome(claimed.run_id, "failed",
                               "RuntimeError: out of memory\nTraceback ...")], "w")
    status = cli("status", "--sweep", "tiny", "--db", url, cwd=folder)
    assert status.exit_code == 0
    assert "RuntimeError: out of memory" in status.output and "--retry-failed" in status.output
    report = cli("report", "--figure", "tiny", "--db", url, "--out", str(folder / "r"),
                 cwd=folder)
    assert "--retry-failed" in report.output
    result = cli("sweep", "tiny.yaml", "--db", url, "--retry-failed", "--workers", "1",
                 "--checkpoint-dir", str(folder / "checkpoints"), cwd=folder)
    assert result.exit_code == 0, result.output
    assert "1 failed runs back in the queue" in result.output
    assert set(open_db(url).runs_frame("tiny")["status"]) == {"done"}


def test_worker_retry_failed_puts_failed_runs_back(folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    db = open_db(url)
    claimed = claim_one(db, "w", sweep="tiny")
    assert claimed is not None
    db.finish_runs([RunOutcome(claimed.run_id, "failed", "boom")], "w")
    result = cli("worker", "--db", url, "--retry-failed", "--checkpoint-dir",
                 str(folder / "checkpoints"), cwd=folder)
    assert result.exit_code == 0 and "1 failed runs back in the queue" in result.output
    assert set(open_db(url).runs_frame("tiny")["status"]) == {"done"}


def test_a_run_whose_workers_keep_dying_is_failed_after_max_attempts(folder: Path) -> None:
    url = db_url(folder)
    enqueue(folder, url)
    db = open_db(url)
    first = claim_one(db, "w1", sweep="tiny", max_attempts=3)
    assert first is not None
    for worker in ("w2", "w3"):  # its worker dies; the lease expires; another claims it
        again = claim_one(db, worker, sweep="tiny", lease_seconds=0, max_attempts=3)
        assert again is not None and again.run_id == first.run_id
    # third death: not reclaimed again, failed with the reason
    nxt = claim_one(db, "w4", sweep="tiny", lease_seconds=0, max_attempts=3)
    runs = db.runs_frame("tiny").set_index("run_id")
    assert runs.loc[first.run_id, "status"] == "failed"
    assert "gave up after 3 attempts" in runs.loc[first.run_id, "error"]
    assert nxt is None or nxt.run_id != first.run_id
    # the same for runs given back because their worker process is known dead
    orphan = claim_one(db, "host:1", sweep="tiny")
    assert orphan is not None
    assert db.give_back_dead([orphan.run_id], "host:1", max_attempts=1) == [orphan.run_id]
    assert db.runs_frame("tiny").set_index("run_id").loc[orphan.run_id, "status"] == "failed"


# --- 6-9. bad input refused at the edge, nothing written -------------------------------------
def bad(folder: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    before = snapshot(folder)
    result = cli(*args, cwd=folder, env=env)
    assert snapshot(folder) == before, "something was written"
    return result


@pytest.fixture
def enqueued(folder: Path) -> Path:
    enqueue(folder)
    return folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("args,needles", [
    (["sweep", "tiny.yaml", "--devices", "cuda:0"], ["--devices", "cuda:0", "GPU"]),
    (["worker", "--device", "cuda"], ["--device", "cuda", "GPU"]),
    (["sweep", "tiny.yaml", "--devices", "tpu"], ["--devices", "tpu", "cpu, cuda"]),
])
def test_a_gpu_that_is_not_there(enqueued: Path, args: list[str], needles: list[str]) -> None:
    assert_refused(bad(enqueued, *args, "--db", db_url(enqueued)), *needles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_train_on_a_gpu_that_is_not_there(folder: Path) -> None:
    assert_refused(bad(folder, "train", "--device", "cuda"), "--device", "cuda", "GPU")


@pytest.mark.parametrize("args,needles", [
    (["sweep", "tiny.yaml", "--workers", "0"], ["--workers", ">= 1"]),
    (["sweep", "tiny.yaml", "--lease", "0"], ["--lease", "> 0"]),
    (["sweep", "tiny.yaml", "--lease", "-5"], ["--lease", "> 0"]),
    (["worker", "--lease", "0"], ["--lease", "> 0"]),
    (["sweep", "tiny.yaml", "--group-size", "0"], ["--group-size", ">= 1"]),
    (["sweep", "tiny.yaml", "--max-attempts", "0"], ["--max-attempts", ">= 1"]),
    (["sweep", "tiny.yaml", "--dry-run", "--enqueue-only"], ["--dry-run", "--enqueue-only"]),
    (["sweep", "tiny.yaml", "--executor", "batch"], ["--executor", "local, slurm"]),
    (["worker", "--sweep", "nope"], ["--sweep nope", "tiny"]),
])
def test_bad_flags_are_one_line_and_write_nothing(enqueued: Path, args: list[str],
                                                  needles: list[str]) -> None:
    assert_refused(bad(enqueued, *args, "--db", db_url(enqueued)), *needles)


@pytest.mark.parametrize("args,needles", [
    (["train", "--set", "hidden=[1, 2"], ["--set", "not YAML"]),
    (["train", "--set", "hidden"], ["--set", "KEY=VALUE"]),
])
def test_bad_train_flags(folder: Path, args: list[str], needles: list[str]) -> None:
    assert_refused(bad(folder, *args), *needles)


def test_slurm_without_a_slurm_client(enqueued: Path) -> None:
    result = bad(enqueued, "sweep", "tiny.yaml", "--db", db_url(enqueued), "--executor",
                 "slurm", env={"PATH": "/nonexistent"})
    assert_refused(result, "--executor slurm", "sbatch")


@pytest.mark.parametrize("body,needles", [
    (TINY.replace("hidden: [8]", "hidden: [-5]"), ["hidden"]),
    (TINY.replace("hidden: [8]", "hidden: [8]\nwidth: 10"), ["width"]),
    (TINY + "data: {corelation: 0.5}\n", ["corelation"]),
    (TINY.replace("val_size: 100", "val_size: 100000"), ["val_size"]),
    (TINY.replace("name: tiny", 'name: "../../x"'), ["name"]),
    (TINY + "lr: 1.0e-2\n", ["lr"]),  # a duplicate key
    (TINY + "decor_lrr: 1.0e-3\n", ["decor_lrr", "decor_lr"]),
])
def test_bad_specs_are_one_line_and_write_nothing(folder: Path, body: str,
                                                  needles: list[str]) -> None:
    (folder / "bad.yaml").write_text(body)
    result = bad(folder, "sweep", "bad.yaml", "--db", db_url(folder))
    assert_refused(result, "bad.yaml", *needles)
    assert not (folder / "results").exists()


def test_a_grid_of_more_than_ten_thousand_runs_asks_for_yes(folder: Path) -> None:
    (folder / "big.yaml").write_text(TINY.replace("name: tiny", "name: big").replace(
        "seed: [0, 1]", f"seed: {list(range(5100))}"))
    result = bad(folder, "sweep", "big.yaml", "--db", db_url(folder))
    assert_refused(result, "big.yaml", "10,200 runs", "--yes")
    assert not (folder / "results").exists()


# --- 8. read-only commands create nothing ----------------------------------------------------
@pytest.mark.parametrize("args", [["status"],
                                  ["report", "--table", "peak", "--sweep", "tiny"],
                                  ["report", "--figure", "tiny"], ["best-params"]])
def test_read_only_commands_on_a_missing_database(folder: Path, args: list[str]) -> None:
    result = bad(folder, *args, "--db", db_url(folder))
    assert_refused(result, "no results database", str(folder / "results"))
    assert not (folder / "results").exists()


def test_report_list_before_any_sweep_lists_every_figure_and_creates_nothing(
        folder: Path) -> None:
    result = cli("report", "--list", "--db", db_url(folder), cwd=folder)
    assert result.exit_code == 0, result.output
    assert "npd8" in result.output and "figure4 (not in database)" in result.output
    assert not (folder / "results").exists()


def test_a_bad_database_from_the_environment_is_named_as_such(folder: Path) -> None:
    result = bad(folder, "status", env={"CORRGD_DB": "mysql://nope"})
    assert_refused(result, "CORRGD_DB=mysql://nope", "sqlite")


def test_status_of_an_unknown_sweep(enqueued: Path) -> None:
    assert_refused(bad(enqueued, "status", "--sweep", "nope", "--db", db_url(enqueued)),
                   "--sweep nope", "tiny")


def test_a_read_only_database_file_is_read_and_never_written(enqueued: Path) -> None:
    path = enqueued / "results" / "corrgd.sqlite"
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    before = snapshot(enqueued)
    os.chmod(path, 0o444)
    try:
        result = cli("status", "--db", db_url(enqueued), cwd=enqueued)
        assert result.exit_code == 0 and "tiny" in result.output
        write = cli("sweep", "tiny.yaml", "--db", db_url(enqueued), "--enqueue-only",
                    cwd=enqueued)
        if os.geteuid() != 0:  # root writes to a read-only file anyway
            assert_refused(write, "readonly")
        else:
            assert write.exit_code == 0
    finally:
        os.chmod(path, 0o644)
    if os.geteuid() != 0:
        assert snapshot(enqueued) == before


def test_spec_runs_enqueue_with_their_group_key(enqueued: Path) -> None:
    runs = open_db(db_url(enqueued)).runs_frame("tiny")
    assert runs["group_key"].nunique() == 2  # plain and decorrelated
