"""Pruning hopeless learning rates (`corrgd.spec.pruning`): the spec's `prune:`, its rungs,
the asynchronous successive-halving decision against an example worked out by hand, and
the epochs it saves."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text as sql
from test_faults import wait_until

from corrgd.spec.config import RunConfig
from corrgd.spec.pruning import Pruning, decide, expected_epochs, prune_key
from corrgd.spec.sweeps import SpecError, parse_spec
from corrgd.storage import EpochEntry, MetricRow, ResultsDB, RunOutcome, RunSpec, open_db

BASE = "dataset: digits\nnetwork: mlp\nalgorithm: bp\nepochs: 27\nval_size: 100\n"


def test_prune_defaults_and_rungs() -> None:
    assert parse_spec(BASE).prune is None
    for text in ("prune: {}\n", "prune:\n"):
        assert parse_spec(BASE + text).prune == Pruning("val_acc", 1, 3)
    regression = ("dataset: diabetes\nnetwork: mlp\nalgorithm: bp\nloss: mse\nval_size: 50\n"
                  "prune: {}\n")
    assert parse_spec(regression).prune == Pruning("val_loss", 1, 3)
    assert Pruning().rungs(27) == [1, 3, 9]  # the 27th epoch is the end, not a rung
    assert Pruning(min_epochs=2, reduction=2).rungs(20) == [2, 4, 8, 16]
    assert Pruning(min_epochs=5).rungs(5) == []


@pytest.mark.parametrize("text,field,needle", [
    ("prune: {reduction: 1}", "prune.reduction", "integer >= 2"),
    ("prune: {min_epochs: 0}", "prune.min_epochs", "integer >= 1"),
    ("prune: {min_epochs: true}", "prune.min_epochs", "integer >= 1"),
    ("prune: {metric: val_ac}", "prune.metric", "val_acc, val_loss"),
    ("prune: {eta: 3}", "prune.eta", "allowed: metric, min_epochs, reduction"),
    ("prune: 3", "prune", "a mapping"),
])
def test_bad_prune_settings_are_refused(text: str, field: str, needle: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(BASE + text + "\n")
    assert error.value.field == field and needle in error.value.message


def test_an_accuracy_cannot_prune_regression_runs() -> None:
    with pytest.raises(SpecError, match="logs no accuracy: use val_loss"):
        parse_spec("dataset: diabetes\nnetwork: mlp\nalgorithm: bp\nloss: mse\n"
                   "prune: {metric: val_acc}\n")


def test_the_decision_of_a_worked_example() -> None:
    """η = 3. Rung 1: runs 1 (0.90) and 2 (0.50) arrived before; 3 (0.70) and 4 (0.95)
    arrive together. Of the 4 scores, ⌈4/3⌉ = 2 go on: 4 (0.95) and 1 (0.90); 3 stops.
    Later 5 (0.92) arrives alone: 5 scores, ⌈5/3⌉ = 2 go on: 4 and 5 would, so 5 does.
    Then 6 (0.60): 6 scores, 2 go on (4, 5): 6 stops. The first to arrive always goes on;
    a loss ranks the other way round; a tie goes to the earlier run."""
    eta3 = Pruning(reduction=3)
    assert decide(eta3, [(1, 0.90), (2, 0.50)], [(3, 0.70), (4, 0.95)]) == {3: False, 4: True}
    earlier = [(1, 0.90), (2, 0.50), (3, 0.70), (4, 0.95)]
    assert decide(eta3, earlier, [(5, 0.92)]) == {5: True}
    assert decide(eta3, [*earlier, (5, 0.92)], [(6, 0.60)]) == {6: False}
    assert decide(eta3, [], [(7, 0.01)]) == {7: True}
    loss = Pruning(metric="val_loss", reduction=2)
    assert decide(loss, [(1, 0.3)], [(2, 0.2), (3, 0.4)]) == {2: True, 3: False}
    assert decide(Pruning(reduction=2), [(1, 0.5)], [(2, 0.5)]) == {2: False}


def test_a_rung_group_is_the_runs_that_differ_only_in_learning_rates() -> None:
    base = dict(dataset="digits", network="mlp", algorithm="bp", decor=True)
    one = RunConfig(**base, lr=1e-3, decor_lr=1e-4, seed=0)
    assert prune_key(one) == prune_key(one.model_copy(update={"lr": 1e-2, "decor_lr": 1e-3}))
    assert prune_key(one) != prune_key(one.model_copy(update={"seed": 1}))
    assert prune_key(one) != prune_key(one.model_copy(update={"algorithm": "fa"}))


def test_expected_epochs_of_a_crgd_style_grid() -> None:
    """18 runs (6 forward x 3 decor LRs), 27 epochs, η = 3: 18 x 1 + 6 x 2 + 2 x 6 + 1 x 18
    = 60 epochs of the full grid's 486."""
    assert expected_epochs(Pruning(), 18, 27) == 18 + 6 * 2 + 2 * 6 + 1 * 18 == 60
    assert expected_epochs(Pruning(), 6, 27) == 6 + 2 * 2 + 1 * 6 + 1 * 18
    assert expected_epochs(Pruning(min_epochs=30), 5, 27) == 5 * 27


def test_a_dry_run_gives_the_full_and_the_expected_pruned_cost() -> None:
    from rich.console import Console

    from corrgd.console import estimate
    from corrgd.spec.sweeps import Plan, expand, plan

    text = ("name: p\ndataset: digits\nnetwork: mlp\nhidden: [64]\nval_size: 300\n"
            "algorithm: [bp, fa]\ndecor: [false, true]\ndecor_lr: [1.0e-2, 1.0e-3, 1.0e-4]\n"
            "lr: [1.0e-1, 1.0e-2, 1.0e-3, 1.0e-4, 1.0e-5, 1.0e-6]\nseed: [0, 1]\n"
            "epochs: 27\nbatch_size: 64\nprune: {}\n")
    sweep = parse_spec(text)
    for counted in (plan(sweep), Plan.of_runs(sweep, expand(sweep))):
        out = Console(record=True, width=250)
        estimate(out, sweep, counted, device="cpu", group_size=None, free=2**34)
        shown = out.export_text()
        # per rule and seed: decor off 6 runs (34 epochs), decor on 18 runs (60 epochs)
        assert "96 runs, 2592 epochs" in shown
        assert "expected 376 epochs (15 % of the full grid's)" in shown


# --- in the database: decisions made where the epochs are logged ---------------------------
PRUNE = {"metric": "val_acc", "min_epochs": 1, "reduction": 3}


def _pruned_sweep(db: ResultsDB, n: int, prune: dict | None = PRUNE, key: str = "k") -> None:
    runs = [RunSpec(config={"dataset": "digits", "network": "mlp", "epochs": 9, "lr": 10.0**-i,
                            "seed": 0}, axes={"lr": 10.0**-i}, group_key="g",
                    prune_key=key if prune else None) for i in range(n)]
    db.add_sweep("s", "spec", runs, prune)


def _rows(acc: float) -> list[MetricRow]:
    return [MetricRow("train", 1.0, acc, seconds=0.1), MetricRow("val", 1.0, acc, seconds=0.0)]


def _log(db: ResultsDB, scores: dict[int, float], epoch: int = 1) -> None:
    """Log one epoch of several runs together, as a group's members are."""
    assert db.log_epochs([EpochEntry(i, epoch, _rows(a)) for i, a in scores.items()], "w") == []


def _statuses(db: ResultsDB) -> dict[int, str]:
    return dict(zip(db.runs_frame("s")["run_id"], db.runs_frame("s")["status"], strict=True))


def test_runs_reaching_a_rung_are_ranked_against_those_that_reached_it_before(
        db: ResultsDB) -> None:
    _pruned_sweep(db, 6)
    claimed = db.claim_group("w", "cpu", lease_seconds=60, max_members=6)
    assert [c.prune_key for c in claimed] == ["k"] * 6
    ids = [c.run_id for c in claimed]
    # three arrive together: ⌈3/3⌉ = 1 goes on
    _log(db, {ids[0]: 0.5, ids[1]: 0.9, ids[2]: math.nan})
    assert db.pruned_runs(ids) == [ids[0], ids[2]]  # NaN ranks last
    # three more: of the 6 scores ⌈6/3⌉ = 2 go on (0.95 and the earlier 0.9)
    _log(db, {ids[3]: 0.95, ids[4]: 0.2, ids[5]: 0.3})
    assert db.pruned_runs(ids) == [ids[0], ids[2], ids[4], ids[5]]
    statuses = _statuses(db)
    assert [statuses[i] for i in ids] == ["pruned", "running", "pruned", "running", "pruned",
                                          "pruned"]
    # logging a rung again (a resumed run re-logs its checkpoint's epochs) decides nothing
    _log(db, {ids[1]: 0.0, ids[3]: 0.0})
    _log(db, {ids[1]: 0.6, ids[3]: 0.7}, epoch=2)  # not a rung
    assert db.pruned_runs(ids) == [ids[0], ids[2], ids[4], ids[5]]
    with db.engine.connect() as conn:
        results = conn.execute(sql("SELECT run_id, rung, score, promoted FROM rung_results "
                                    "ORDER BY run_id")).all()
    assert [(r.run_id, r.rung, r.score, bool(r.promoted)) for r in results] == [
        (ids[0], 1, 0.5, False), (ids[1], 1, 0.9, True), (ids[2], 1, None, False),
        (ids[3], 1, 0.95, True), (ids[4], 1, 0.2, False), (ids[5], 1, 0.3, False)]
    # at rung 3 the two survivors arrive one after the other: the first always goes on
    _log(db, {ids[1]: 0.7}, epoch=3)
    _log(db, {ids[3]: 0.6}, epoch=3)
    assert _statuses(db)[ids[1]] == "running" and _statuses(db)[ids[3]] == "pruned"
    # a pruned run has finished: it is not handed out again, nor can a worker finish it
    assert db.finish_runs([RunOutcome(ids[3], "done")], "w") == [ids[3]]
    assert db.claim_group("v", "cpu", lease_seconds=60, max_members=6) == []


def test_runs_of_other_keys_or_of_a_sweep_that_does_not_prune_are_left_alone(
        db: ResultsDB) -> None:
    _pruned_sweep(db, 3, prune=None)
    ids = [c.run_id for c in db.claim_group("w", "cpu", lease_seconds=60, max_members=3)]
    _log(db, {ids[0]: 0.9, ids[1]: 0.1, ids[2]: 0.2})
    assert db.pruned_runs(ids) == [] and set(_statuses(db).values()) == {"running"}


# --- end to end: a pruned grid beside the full one ------------------------------------------
GRID = """\
name: {name}
dataset: digits
network: mlp
hidden: [16]
val_size: 200
algorithm: bp
lr: [1.0e-1, 3.0e-2, 1.0e-2, 1.0e-3, 1.0e-4, 1.0e-5]
seed: [0]
epochs: 9
batch_size: 64
diagnostics: false
"""


def _sweep(folder: Path, name: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "corrgd", "sweep", f"{name}.yaml", "--db",
                           "r.sqlite", *args], cwd=folder, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_pruned_grid_stops_members_inside_their_group_and_the_rest_train_on_bitwise(
        tmp_path: Path) -> None:
    (tmp_path / "full.yaml").write_text(GRID.format(name="full"))
    (tmp_path / "pruned.yaml").write_text(GRID.format(name="pruned")
                                          + "prune: {metric: val_acc, reduction: 3}\n")
    # one worker, one thread: bitwise comparisons (tests/conftest.py: single_thread)
    _sweep(tmp_path, "full", "--workers", "1", "--threads", "1")
    _sweep(tmp_path, "pruned", "--workers", "1", "--threads", "1")  # all six in one group
    db = open_db(f"sqlite:///{tmp_path / 'r.sqlite'}")
    full, pruned = db.runs_frame("full"), db.runs_frame("pruned")
    assert set(full["status"]) == {"done"}
    assert sorted(pruned["status"]) == ["done"] + ["pruned"] * 5  # 6 -> 2 -> 1 at rungs 1, 3
    stopped = pruned[pruned["status"] == "pruned"]
    assert sorted(stopped["last_epoch"]) == [1, 1, 1, 1, 3]  # stopped at the rung
    epochs = {s: db.epochs_frame(s, diagnostics=False) for s in ("full", "pruned")}
    trained = int(pruned["last_epoch"].sum())
    assert trained == 9 + 3 + 4 * 1  # against 6 x 9 in the full grid
    # every member, pruned or not, has the rows of the same run in the full grid, bit for
    # bit, up to where it stopped: leaving the group changes nothing for the others
    by_lr = dict(zip(full["lr"], full["run_id"], strict=True))
    for run in pruned.itertuples():
        mine = epochs["pruned"][epochs["pruned"]["run_id"] == run.run_id]
        theirs = epochs["full"][(epochs["full"]["run_id"] == by_lr[run.lr])
                                & (epochs["full"]["epoch"] <= run.last_epoch)]
        assert len(mine) == 3 * (run.last_epoch + 1)
        columns = ["epoch", "split", "loss", "accuracy"]
        assert mine[columns].sort_values(columns[:2]).values.tolist() == \
            theirs[columns].sort_values(columns[:2]).values.tolist()
    # best-params chooses among runs that went the distance; a rerun changes nothing
    db.close()
    result = subprocess.run([sys.executable, "-m", "corrgd", "best-params", "--sweep",
                             "pruned", "--db", "r.sqlite", "--out", "out"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    survivor = float(pruned.loc[pruned["status"] == "done", "lr"].iloc[0])
    table = (tmp_path / "out" / "tables" / "best-params-pruned-detail.csv").read_text()
    assert f"{survivor:g}" in table or f"{survivor}" in table, table
    _sweep(tmp_path, "pruned", "--workers", "1", "--threads", "1")
    after = open_db(f"sqlite:///{tmp_path / 'r.sqlite'}").runs_frame("pruned")
    assert after["status"].tolist() == pruned["status"].tolist()
    assert after["attempts"].tolist() == [1] * 6  # nothing claimed or trained again


@pytest.mark.slow
def test_a_shrunk_group_is_refilled_from_the_queue_and_every_run_keeps_its_numbers(
        tmp_path: Path) -> None:
    """Two seeds of the grid (12 runs, one group key) in groups of at most 4, one worker:
    with refill (the default) the first group takes on queued runs whenever pruning shrinks
    it, so all 12 train in that one claim, members at different epochs side by side; with
    --no-refill the worker claims group after group. Either way every run has the rows of
    the same run in the full grid, bit for bit, up to where it stopped, once each."""
    grid = GRID.replace("seed: [0]", "seed: [0, 1]")
    prune = "prune: {metric: val_acc, reduction: 3}\n"
    for name, text in (("full", grid), ("refilled", grid + prune), ("claimed", grid + prune)):
        (tmp_path / f"{name}.yaml").write_text(text.replace("name: {name}", f"name: {name}"))
    one = ("--workers", "1", "--threads", "1", "--group-size", "4")  # bitwise: one thread
    _sweep(tmp_path, "full", *one)
    _sweep(tmp_path, "refilled", *one)
    _sweep(tmp_path, "claimed", *one, "--no-refill")
    db = open_db(f"sqlite:///{tmp_path / 'r.sqlite'}")
    runs = {name: db.runs_frame(name) for name in ("full", "refilled", "claimed")}
    assert runs["refilled"]["group_id"].nunique() == 1  # one claim, refilled 8 times over
    assert runs["claimed"]["group_id"].nunique() >= 3
    full = {(r.lr, r.seed): r.run_id for r in runs["full"].itertuples()}
    rows = db.epochs_frame(diagnostics=False)
    columns = ["epoch", "split", "loss", "accuracy"]
    for name in ("refilled", "claimed"):
        frame = runs[name]
        assert set(frame["status"]) == {"done", "pruned"} and set(frame["attempts"]) == {1}
        assert (frame["status"] == "done").sum() == 2  # one per seed: 6 -> 2 -> 1
        for run in frame.itertuples():
            mine = rows[rows["run_id"] == run.run_id]
            theirs = rows[(rows["run_id"] == full[run.lr, run.seed])
                          & (rows["epoch"] <= run.last_epoch)]
            assert len(mine) == 3 * (run.last_epoch + 1)  # every epoch once
            assert mine[columns].sort_values(columns[:2]).values.tolist() == \
                theirs[columns].sort_values(columns[:2]).values.tolist()
    db.close()


@pytest.mark.slow
def test_two_workers_one_killed_decide_every_rung_once(db_url: str, tmp_path: Path) -> None:
    """Two local workers train a pruned grid in groups of two; one is killed with SIGKILL
    while it trains. The sweep gives its runs back and ends; every run ends done or
    pruned, each rung is judged once per run that reached it, a pruned run stopped at a
    rung it lost, a done run won every rung, and every epoch row is there once."""
    (tmp_path / "pair.yaml").write_text(
        GRID.format(name="pair").replace("epochs: 9", "epochs: 9\nbatch_size: 16")
        .replace("batch_size: 64\n", "") + "prune: {metric: val_acc, reduction: 3}\n")
    log = tmp_path / "sweep.log"
    sweep = subprocess.Popen([sys.executable, "-m", "corrgd", "sweep", "pair.yaml", "--db",
                              db_url, "--workers", "2", "--group-size", "2"], cwd=tmp_path,
                             stdout=log.open("w"), stderr=subprocess.STDOUT)
    db = open_db(db_url)
    try:
        def training() -> bool:
            runs = db.runs_frame() if "pair" in set(db.list_sweeps()["sweep"]) else None
            return runs is not None and bool(
                ((runs["status"] == "running") & (runs["last_epoch"] >= 0)).any())

        wait_until(training, 120, "a run to train")
        runs = db.runs_frame("pair")
        victim = runs.loc[runs["status"] == "running", "worker"].iloc[0]
        os.kill(int(victim.rpartition(":")[2]), signal.SIGKILL)
        assert sweep.wait(timeout=400) == 0, log.read_text()
        assert "runs of dead workers back in the queue" in log.read_text()
        runs = db.runs_frame("pair").set_index("run_id")
        assert runs["attempts"].max() == 2  # the killed worker's runs, claimed again
        assert set(runs["status"]) <= {"done", "pruned"} and (runs["status"] == "done").any()
        with db.engine.connect() as conn:
            results = conn.execute(sql("SELECT run_id, rung, promoted FROM rung_results")).all()
        decided = [(r.run_id, r.rung) for r in results]
        assert len(decided) == len(set(decided))  # once per run and rung
        won = {(r.run_id, r.rung): bool(r.promoted) for r in results}
        for run_id, run in runs.iterrows():
            reached = [rung for rung in (1, 3) if rung <= run["last_epoch"]]
            assert all((run_id, rung) in won for rung in reached), run_id
            if run["status"] == "pruned":
                assert won[run_id, run["last_epoch"]] is False
                assert all(won[run_id, rung] for rung in reached[:-1])
            else:
                assert run["last_epoch"] == 9 and all(won[run_id, rung] for rung in reached)
        rows = db.epochs_frame("pair", diagnostics=False)
        keys = list(zip(rows["run_id"], rows["epoch"], rows["split"], strict=True))
        assert len(keys) == len(set(keys)) == int(3 * (runs["last_epoch"] + 1).sum())
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        db.close()


def test_a_rung_the_database_missed_is_judged_when_the_checkpoint_is_replayed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A worker dies after saving the checkpoints of a rung's epoch but before logging it.
    The next worker replays the checkpoints: the rung is judged then, and the members it
    prunes leave the group at once, not after an epoch trained for nothing (whose rows
    the database would refuse: "handed to another worker")."""
    from corrgd.run import worker as worker_module

    spec = GRID.format(name="replay").replace("epochs: 9", "epochs: 3").replace(
        "lr: [1.0e-1, 3.0e-2, 1.0e-2, 1.0e-3, 1.0e-4, 1.0e-5]", "lr: [1.0e-2, 1.0e-4, 1.0e-5]")
    (tmp_path / "replay.yaml").write_text(spec + "prune: {metric: val_acc, reduction: 3}\n")
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    done = subprocess.run([sys.executable, "-m", "corrgd", "sweep", "replay.yaml", "--db", url,
                           "--enqueue-only"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    logs = worker_module._DBReporter.epoch_end

    def dies_before_logging_epoch_1(self: Any, members: list[Any]) -> list[int]:
        if any(m.epoch == 1 for m in members):
            raise worker_module.Interrupted  # as if killed: checkpoints saved, rows not
        return logs(self, members)

    with monkeypatch.context() as patch:
        patch.setattr(worker_module._DBReporter, "epoch_end", dies_before_logging_epoch_1)
        worker_module.Worker(url, checkpoint_dir=tmp_path / "ck").run()
    db = open_db(url)
    runs = db.runs_frame("replay")
    assert set(runs["status"]) == {"queued"} and set(runs["last_epoch"]) == {0}

    ended: dict[int, str] = {}

    class Events:
        def epoch(self, run: Any, epoch: int, rows: list[MetricRow]) -> None:
            pass

        def ended(self, run: Any, status: str, error: str | None = None) -> None:
            ended[run.run_id] = status

    with caplog.at_level("WARNING", logger="corrgd.run.worker"):
        worker_module.Worker(url, checkpoint_dir=tmp_path / "ck", events=Events()).run()
    assert "handed to another worker" not in caplog.text
    runs = db.runs_frame("replay").set_index("run_id")
    assert sorted(runs["status"]) == ["done", "pruned", "pruned"]
    assert ended == runs["status"].to_dict()
    epochs = db.epochs_frame("replay", diagnostics=False)
    for run_id, run in runs.iterrows():
        logged = sorted(set(epochs.loc[epochs["run_id"] == run_id, "epoch"]))
        assert logged == list(range(run["last_epoch"] + 1))
        assert run["last_epoch"] == (3 if run["status"] == "done" else 1)
    db.close()
