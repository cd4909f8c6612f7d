"""Regression as a task: runs on continuous targets log a loss and no accuracy, and every
report works on the loss (lower is better) where it works on accuracy for classification.
End to end through the CLI on offline data (synthetic-correlated with 21 inputs and 7
targets, like SARCOS)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from cli_helper import cli

from corrgd.spec.sweeps import load_spec, parse_spec
from corrgd.storage import open_db

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

SEARCH = """\
name: reg-search
dataset: synthetic-correlated
data: {task: regression, dim: 21, num_outputs: 7, n_train: 800, n_test: 200, noise: 0.1}
network: mlp
hidden: [16, 16]
loss: mse
val_size: 200
algorithm: [bp, np]
decor: [false, true]
decor_rule: copi
decor_lr: 1.0e-3
lr: [1.0e-3, 1.0e-2]
seed: 0
epochs: 3
batch_size: 100
"""
CURVES = """\
name: reg
select: {from: reg-search, metric: val_loss, params: [lr]}
dataset: synthetic-correlated
data: {task: regression, dim: 21, num_outputs: 7, n_train: 800, n_test: 200, noise: 0.1}
network: mlp
hidden: [16, 16]
loss: mse
algorithm: [bp, np]
decor: [false, true]
decor_rule: copi
decor_lr: 1.0e-3
seed: [0, 1]
epochs: 3
batch_size: 100
"""


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("regression")
    (folder / "search.yaml").write_text(SEARCH)
    (folder / "curves.yaml").write_text(CURVES)
    url = f"sqlite:///{folder / 'r.sqlite'}"
    for spec in ("search.yaml", "curves.yaml"):
        result = cli("sweep", spec, "--db", url, "--workers", "1", cwd=folder)
        assert result.exit_code == 0, result.output
    return folder, url


def test_regression_runs_log_a_loss_and_no_accuracy(done: tuple[Path, str]) -> None:
    _, url = done
    db = open_db(url)
    epochs = db.epochs_frame("reg-search", diagnostics=False)
    assert set(db.runs_frame("reg-search")["status"]) == {"done"}
    assert epochs["accuracy"].isna().all() and epochs["loss"].notna().all()
    assert set(epochs["split"]) == {"train", "val", "test"}
    first, last = (epochs[(epochs["split"] == "train") & (epochs["epoch"] == e)]["loss"].mean()
                   for e in (0, 3))
    assert last < first  # they learn


def test_best_params_picks_the_lowest_validation_loss(done: tuple[Path, str]) -> None:
    folder, url = done
    result = cli("best-params", "--sweep", "reg-search", "--db", url, "--out",
                 str(folder / "out"), cwd=folder)
    assert result.exit_code == 0, result.output
    csv = folder / "out" / "tables" / "best-params-reg-search-detail.csv"
    chosen = pd.read_csv(csv)
    db = open_db(url)
    runs = db.runs_frame("reg-search")
    epochs = db.epochs_frame("reg-search", diagnostics=False)
    val = epochs[epochs["split"] == "val"].groupby("run_id")["loss"].min()
    for row in chosen.itertuples():
        same = runs[(runs["algorithm"] == row.algorithm) & (runs["decor"] == row.decor)]
        lowest = same.loc[same["run_id"].map(val).idxmin()]
        assert row.lr == pytest.approx(lowest["lr"])
    # the curves sweep took those LRs
    curves = db.runs_frame("reg")
    for row in chosen.itertuples():
        lrs = set(curves[(curves["algorithm"] == row.algorithm)
                         & (curves["decor"] == row.decor)]["lr"])
        assert len(lrs) == 1 and lrs.pop() == pytest.approx(row.lr)


def test_figures_and_tables_show_the_loss(done: tuple[Path, str]) -> None:
    folder, url = done
    out = folder / "report"
    figure = cli("report", "--figure", "reg", "--db", url, "--out", str(out), cwd=folder)
    assert figure.exit_code == 0, figure.output
    (csv,) = (out / "figures").glob("reg.csv")
    frame = pd.read_csv(csv)
    assert set(frame["metric"]) == {"test_loss"} and frame["mean"].notna().all()
    table = cli("report", "--table", "peak", "--sweep", "reg", "--db", url, "--out",
                str(out), cwd=folder)
    assert table.exit_code == 0 and "Lowest loss" in table.output
    train_loss = cli("report", "--figure", "reg", "--metric", "train_loss", "--db", url,
                     "--out", str(out), cwd=folder)
    assert train_loss.exit_code == 0


def test_asking_a_regression_sweep_for_accuracy_is_one_line(done: tuple[Path, str]) -> None:
    folder, url = done
    for args in (["report", "--figure", "reg", "--metric", "test_acc"],
                 ["best-params", "--sweep", "reg-search", "--metric", "val_acc"]):
        result = cli(*args, "--db", url, "--out", str(folder / "x"), cwd=folder)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "regression" in lines[0] and "_loss" in lines[0]


@pytest.mark.parametrize("data", ["dataset: diabetes",
                                  "dataset: synthetic-correlated\ndata: {task: regression}"])
def test_a_spec_selecting_regression_runs_by_accuracy_is_one_line(tmp_path: Path,
                                                                  data: str) -> None:
    spec = tmp_path / "regacc.yaml"
    spec.write_text(f"name: regacc\nselect: {{from: other, metric: val_acc}}\n{data}\n"
                    "algorithm: bp\nnetwork: mlp\nhidden: [8]\nloss: mse\nseed: [0, 1]\n")
    result = cli("sweep", str(spec), "--db", f"sqlite:///{tmp_path / 'r.sqlite'}",
                 cwd=tmp_path)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "regacc.yaml" in line and "select.metric" in line and "val_loss" in line
    assert not (tmp_path / "r.sqlite").exists()


def test_select_ranks_regression_runs_by_their_loss_unless_told() -> None:
    """As `prune:` does: a regression spec's `select:` without a metric takes val_loss (it
    took val_acc, then refused it as an accuracy on regression data)."""
    spec = ("name: reg\ndataset: diabetes\nalgorithm: bp\nnetwork: mlp\nloss: mse\n"
            "val_size: 50\nselect: {from: other}\n")
    assert parse_spec(spec).select == {"from": "other", "metric": "val_loss"}
    assert parse_spec(spec.replace("{from: other}", "{from: other, metric: test_loss}")
                      ).select == {"from": "other", "metric": "test_loss"}
    classification = ("name: c\ndataset: digits\nnetwork: mlp\nalgorithm: bp\n"
                      "select: {from: other}\n")
    assert parse_spec(classification).select == {"from": "other", "metric": "val_acc"}


def test_the_sarcos_specs_expand() -> None:
    sweeps = Path(__file__).resolve().parents[1] / "sweeps"
    from corrgd.spec.sweeps import expand

    search = expand(load_spec(sweeps / "npd-sarcos-search.yaml"))
    assert len(search) == 6 * 21
    assert {(r.algorithm, r.decor, r.decor_lr) for r in search} == {
        ("np", False, 0.0), ("anp", False, 0.0), ("bp", False, 0.0),
        ("np", True, 1e-4), ("anp", True, 1e-4), ("bp", True, 1e-3)}
    assert all(r.loss == "mse" and r.hidden == [32, 32] and r.epochs == 500 for r in search)
