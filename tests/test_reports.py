"""Reports: envelopes, best parameters, figures, tables and the report commands.

The databases are filled by hand through the storage API (add_sweep, then each run
claimed, logged and finished as a group of one) with accuracies chosen here, so every
number a report shows can be checked against the numbers put in. One test trains a real
tiny run.
"""

from __future__ import annotations

import csv
import functools
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from queue_helper import claim_one, record
from typer.testing import CliRunner

from corrgd import api
from corrgd.cli import app
from corrgd.experiments import crgd2
from corrgd.experiments.registry import FIGURES
from corrgd.results import analysis
from corrgd.results.reports import ReportError
from corrgd.results.reports.envelopes import envelope
from corrgd.spec.config import RunConfig
from corrgd.storage import MetricRow, ResultsDB, RunSpec, open_db

EPOCHS = 4  # epochs 0 (before training) .. 3
AXES = ("dataset", "network", "algorithm", "decor", "decor_lr", "lr", "seed")

# accuracy(config, split, epoch) -> fraction; Plan: config -> (status, epochs logged)
Accuracy = Callable[[dict[str, Any], str, int], float]


def make_config(**settings: Any) -> dict[str, Any]:
    return RunConfig(epochs=EPOCHS - 1, **settings).model_dump(mode="json")


def fill(db: ResultsDB, sweep: str, configs: list[dict[str, Any]], accuracy: Accuracy,
         plan: Callable[[dict[str, Any]], tuple[str, int]] | None = None,
         axes: tuple[str, ...] = AXES) -> None:
    """Enqueue ``configs`` and play them: log ``accuracy`` per epoch, then set their status.

    ``plan(config)`` gives (status, epochs to log): "done", "failed", "diverged",
    "running" (left claimed) or "queued" (enqueued after the others, never claimed).
    """
    plan = plan or (lambda c: ("done", EPOCHS))
    spec = [RunSpec(config=c, axes={k: c[k] for k in axes}) for c in configs]
    later = [s for s in spec if plan(s.config)[0] == "queued"]
    db.add_sweep(sweep, "hand-made", [s for s in spec if s not in later])
    while (run := claim_one(db, "tests:1", sweep=sweep, lease_seconds=3600)) is not None:
        status, n_epochs = plan(run.config)
        epochs = [[MetricRow(split, 1.0 - accuracy(run.config, split, epoch),
                             accuracy(run.config, split, epoch), seconds=0.1)
                   for split in ("train", "val", "test")] for epoch in range(n_epochs)]
        record(db, run, epochs, None if status == "running" else status)
    if later:
        db.add_sweep(sweep, "hand-made", spec)


def curve_accuracy(config: dict[str, Any], split: str, epoch: int) -> float:
    """Distinct per curve, seed and epoch, with seeds crossing over (min/max swap)."""
    base = {"bp": 0.30, "fa": 0.20, "anp": 0.15, "np": 0.10}[config["algorithm"]]
    base += 0.05 * config["decor"]
    wiggle = 0.01 * (config["seed"] + 1) * (-1) ** (epoch + config["seed"])
    offset = {"train": 0.02, "val": 0.0, "test": -0.01}[split]
    return round(base + 0.1 * epoch + wiggle + offset, 6)


FIG4_CURVES = [("cifar10", "crgd-dense", alg) for alg in ("bp", "fa", "np")] + [
    ("cifar100", "crgd-conv", alg) for alg in ("bp", "fa")]


def figure4_configs(seeds: int = 3, fa_decor_seeds: int = 5) -> list[dict[str, Any]]:
    configs = []
    for (dataset, network, algorithm), decor in itertools.product(FIG4_CURVES, (False, True)):
        n = fa_decor_seeds if (algorithm, decor, dataset) == ("fa", True, "cifar10") else seeds
        for seed in range(n):
            configs.append(make_config(dataset=dataset, network=network, algorithm=algorithm,
                                       decor=decor, decor_lr=1e-5 if decor else 0.0, lr=1e-4,
                                       seed=seed))
    return configs


def figure4_plan(config: dict[str, Any]) -> tuple[str, int]:
    """CIFAR-10 FA+decor: seeds 0-2 done, 3 running after 2 epochs, 4 queued."""
    if (config["algorithm"], config["decor"], config["dataset"]) == ("fa", True, "cifar10"):
        return {3: ("running", 2), 4: ("queued", 0)}.get(config["seed"], ("done", EPOCHS))
    return ("done", EPOCHS)


@pytest.fixture(scope="module")
def fig4_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fig4') / 'r.sqlite'}"
    with open_db(url) as db:
        fill(db, "figure4", figure4_configs(), curve_accuracy, figure4_plan)
    return url


# -- best parameters: a grid with known winners and ties -----------------------------

def grid_configs() -> list[dict[str, Any]]:
    configs = []
    for algorithm, lr in itertools.product(("bp", "fa"), (1e-3, 1e-4, 1e-5)):
        configs.append(make_config(dataset="cifar10", network="crgd-dense",
                                   algorithm=algorithm, lr=lr))
        for decor_lr in (1e-5, 1e-6):
            configs.append(make_config(dataset="cifar10", network="crgd-dense",
                                       algorithm=algorithm, decor=True, decor_lr=decor_lr, lr=lr))
    for lr in (1e-3, 1e-4):
        configs.append(make_config(dataset="cifar10", network="crgd-conv", algorithm="bp", lr=lr))
    return configs


# Peak validation accuracy per (network, algorithm, decor, lr, decor_lr); reached at
# epoch 2, not the last epoch, so that "peak over epochs" matters. Unlisted: 0.40.
GRID_PEAKS = {
    ("crgd-dense", "bp", False, 1e-4, 0.0): 0.60,
    ("crgd-dense", "bp", False, 1e-3, 0.0): 0.58,
    # tie across LRs: the smaller lr wins
    ("crgd-dense", "bp", True, 1e-3, 1e-6): 0.70,
    ("crgd-dense", "bp", True, 1e-4, 1e-5): 0.70,
    # tie at one lr: the smaller decor_lr wins
    ("crgd-dense", "fa", True, 1e-4, 1e-5): 0.65,
    ("crgd-dense", "fa", True, 1e-4, 1e-6): 0.65,
    ("crgd-dense", "fa", False, 1e-5, 0.0): 0.50,
    ("crgd-conv", "bp", False, 1e-3, 0.0): 0.66,
}


def grid_peak(c: dict[str, Any]) -> float:
    return GRID_PEAKS.get((c["network"], c["algorithm"], c["decor"], c["lr"], c["decor_lr"]),
                          0.40)


def grid_accuracy(config: dict[str, Any], split: str, epoch: int) -> float:
    peak = grid_peak(config)
    if split != "val":
        return 0.9 - peak  # test/train must not drive the selection
    return {0: 0.1, 1: peak - 0.1, 2: peak, 3: peak - 0.05}[epoch]


@pytest.fixture(scope="module")
def grid_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('grid') / 'r.sqlite'}"
    with open_db(url) as db:
        fill(db, "table2", grid_configs(), grid_accuracy)
    return url


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


# -- envelopes --------------------------------------------------------------------------

def test_envelope_is_per_epoch_min_max_mean_over_seeds() -> None:
    values = pd.DataFrame({"curve": ["a"] * 6 + ["b"] * 2,
                           "epoch": [0, 0, 0, 1, 1, 1, 0, 1],
                           "value": [1.0, 5.0, 3.0, 2.0, 2.0, 8.0, 4.0, 6.0]})
    env = envelope(values, ["curve"]).set_index(["curve", "epoch"])
    assert env.loc[("a", 0), ["min", "max", "mean", "n_seeds"]].tolist() == [1.0, 5.0, 3.0, 3]
    assert env.loc[("a", 1), ["min", "max", "mean", "n_seeds"]].tolist() == [2.0, 8.0, 4.0, 3]
    assert env.loc[("b", 1), ["min", "max", "n_seeds"]].tolist() == [6.0, 6.0, 1]


def test_panel_envelopes_match_the_numbers_put_in(fig4_db: str) -> None:
    curves = api.curves("figure4", "test_acc", db=fig4_db)
    for (dataset, network, algorithm), decor in itertools.product(FIG4_CURVES, (False, True)):
        label = algorithm.upper() + ("+decor" if decor else "")
        panel = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset] + (
            " (Dense)" if network == "crgd-dense" else " (Conv)")
        rows = curves[(curves["panel"] == panel) & (curves["curve"] == label)]
        assert sorted(rows["epoch"]) == list(range(EPOCHS)), (panel, label)
        partial = (algorithm, decor, dataset) == ("fa", True, "cifar10")
        for row in rows.itertuples():
            seeds = [s for s in range(4 if partial else 3) if s < 3 or row.epoch < 2]
            put_in = [100 * curve_accuracy({"algorithm": algorithm, "decor": decor,
                                            "seed": s}, "test", row.epoch) for s in seeds]
            assert row.n_seeds == len(put_in)
            assert row.min == pytest.approx(min(put_in))
            assert row.max == pytest.approx(max(put_in))
            assert row.mean == pytest.approx(sum(put_in) / len(put_in))


# -- best parameters ----------------------------------------------------------------

def test_best_params_are_the_argmax_of_the_peak_validation_score(grid_db: str) -> None:
    best = api.best_params("table2", "val_acc", db=grid_db).set_index(["panel", "curve"])
    expected = {}
    for c in grid_configs():
        panel = "CIFAR-10 (Dense)" if c["network"] == "crgd-dense" else "CIFAR-10 (Conv)"
        key = (panel, c["algorithm"].upper() + ("+decor" if c["decor"] else ""))
        expected.setdefault(key, []).append((grid_peak(c), c["lr"], c["decor_lr"]))
    assert set(best.index) == set(expected)
    for key, candidates in expected.items():
        # argmax of the peak; ties: smaller lr, then smaller decor_lr (analysis.TIE_BREAK)
        score, lr, decor_lr = sorted(candidates, key=lambda t: (-t[0], t[1], t[2]))[0]
        row = best.loc[key]
        assert (row["lr"], row["decor_lr"]) == (lr, decor_lr), key
        assert row["score"] == pytest.approx(score)
        assert row["peak_epoch"] == 2
        assert row["tied"] == sum(s == score for s, _, _ in candidates) - 1
    assert best.loc[("CIFAR-10 (Dense)", "BP+decor"), "tied"] == 1
    assert best.loc[("CIFAR-10 (Dense)", "FA+decor"), ["lr", "decor_lr"]].tolist() == [1e-4,
                                                                                        1e-6]


def test_best_params_command_lays_out_table2_and_says_ties(grid_db: str,
                                                          tmp_path: Path) -> None:
    result = invoke("best-params", "--db", grid_db, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert analysis.TIE_BREAK in " ".join(result.output.split())
    assert "CIFAR-10 (Dense) BP+decor: 1 other run(s) reached the same val_acc" in result.output
    assert "CIFAR-10 (Dense) FA+decor" in result.output
    table = pd.read_csv(tmp_path / "tables" / "best-params-table2.csv")
    assert {"panel", "curve", "lr", "decor_lr", "score", "tied"} <= set(table.columns)
    md = (tmp_path / "tables" / "best-params-table2.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| algorithm"))
    assert header == "| algorithm | setting | CIFAR-10 (Dense) | CIFAR-10 (Conv) |"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith(("| algorithm", "| :--"))]
    assert rows[:3] == [["BP", "Adam LR", "1e-4", "1e-3"],
                        ["BP+decor", "Adam LR", "1e-4†", "–"],
                        ["", "decor LR", "1e-5†", "–"]]
    assert rows[3][:3] == ["FA", "Adam LR", "1e-5"]
    tex = (tmp_path / "tables" / "best-params-table2.tex").read_text()
    assert r"\begin{tabular}{llrr}" in tex and r"1e-4$^\dagger$" in tex
    for ext in ("md", "csv", "tex"):
        assert (tmp_path / "tables" / f"best-params-table2-detail.{ext}").stat().st_size > 0


# -- figures and tables -------------------------------------------------------------

def test_figure4_is_written_with_its_numbers_and_says_what_is_missing(
        fig4_db: str, tmp_path: Path) -> None:
    result = invoke("report", "--figure", "4", "--db", fig4_db, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert ("CIFAR-10 (Dense) FA+decor: 3 of 5 seeds finished (1 running, 1 queued)"
            in result.output)
    assert "sweep figure4: 30 of 32 runs finished (1 running, 1 queued)" in result.output
    figures = tmp_path / "figures"
    for ext in ("png", "pdf", "svg", "csv"):
        assert (figures / f"crgd-fig4.{ext}").stat().st_size > 1000 or ext == "csv"
    with open(figures / "crgd-fig4.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:8] == ["panel", "metric", "curve", "algorithm", "decor", "lr",
                                 "decor_lr", "epoch"]
    assert {"mean", "min", "max", "n_seeds"} <= set(rows[0])
    assert {r["panel"] for r in rows} == {"CIFAR-10 (Dense)", "CIFAR-100 (Conv)"}
    assert len(rows) == len(FIG4_CURVES) * 2 * EPOCHS


def test_sweep_as_figure_id_and_lrs_all(grid_db: str, tmp_path: Path) -> None:
    result = invoke("report", "--figure", "table2", "--lrs", "all", "--db", grid_db,
                    "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "figures" / "table2.csv")
    assert "BP+decor (lr 1e-4, decor lr 1e-5)" in set(frame["curve"])
    result = invoke("report", "--figure", "table2", "--db", grid_db, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    best = pd.read_csv(tmp_path / "figures" / "table2.csv")
    assert set(best["curve"]) == {"BP", "BP+decor", "FA", "FA+decor"}
    picked = best[best["curve"] == "BP+decor"][["lr", "decor_lr"]].drop_duplicates()
    assert picked.values.tolist() == [[1e-4, 1e-5]]  # the tie, broken by the smaller lr


def test_peak_table(fig4_db: str, tmp_path: Path) -> None:
    result = invoke("report", "--table", "peak", "--db", fig4_db, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = pd.read_csv(tmp_path / "tables" / "peak-figure4.csv")
    row = data[(data["panel"] == "CIFAR-10 (Dense)") & (data["curve"] == "BP")
               & (data["split"] == "test")].iloc[0]
    peaks = [100 * max(curve_accuracy({"algorithm": "bp", "decor": False, "seed": s}, "test", e)
                       for e in range(EPOCHS)) for s in range(3)]
    assert row["mean"] == pytest.approx(sum(peaks) / 3)
    assert row["std"] == pytest.approx(pd.Series(peaks).std())
    assert row["n_seeds"] == 3
    fa = data[(data["curve"] == "FA+decor") & (data["panel"] == "CIFAR-10 (Dense)")]
    assert set(fa["n_seeds"]) == {3}  # finished runs only
    md = (tmp_path / "tables" / "peak-figure4.md").read_text()
    assert "| method | CIFAR-10 (Dense) train | CIFAR-10 (Dense) test |" in md
    assert "**" in md and "± sample standard deviation" in md
    assert "Incomplete: CIFAR-10 (Dense) FA+decor: 3 of 5 seeds finished" in md
    assert r"\toprule" in (tmp_path / "tables" / "peak-figure4.tex").read_text()


def test_extra_axes_split_panels_and_lines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    configs = [make_config(dataset="cifar10", network="npd-fc", depth=depth, algorithm=alg,
                           decor=True, decor_lr=1e-3, lr=1e-4, np_samples=samples, seed=seed)
               for depth, alg, samples, seed in itertools.product(
                   (0, 3), ("np", "anp"), (1, 10), (0, 1))]
    with open_db(url) as db:
        fill(db, "npd-table3", configs, curve_accuracy,
             axes=(*AXES, "depth", "np_samples"))
    result = invoke("report", "--figure", "npd3", "--db", url, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "figures" / "npd-fig3.csv")
    assert set(frame["panel"]) == {"CIFAR-10 (FC, 1 layer)", "CIFAR-10 (FC, 3 hidden layers)"}
    assert set(frame["metric"]) == {"train_acc", "test_acc"}
    assert "ANP+decor (10 samples)" in set(frame["curve"])
    assert set(frame["n_seeds"]) == {2}
    # a setting swept at one value other than its default still labels the line / panel
    noisy = [make_config(dataset="cifar10", network="npd-fc", depth=3, algorithm=alg,
                         noisy_baseline=True, decor=True, decor_lr=1e-3, seed=0)
             for alg in ("np", "anp")]
    with open_db(url) as db:
        fill(db, "npd-noisy-baseline", noisy, curve_accuracy,
             axes=(*AXES, "depth", "noisy_baseline"))
    curves = api.curves("npd-noisy-baseline", db=url)
    assert set(curves["panel"]) == {"CIFAR-10 (FC, 3 hidden layers)"}
    assert set(curves["curve"]) == {"NP+decor (noisy baseline)", "ANP+decor (noisy baseline)"}


def test_list_shows_ids_and_sweep_status(fig4_db: str) -> None:
    result = invoke("report", "--list", "--db", fig4_db)
    assert result.exit_code == 0, result.output
    for spec in FIGURES.values():
        assert spec.id in result.output and spec.paper in result.output
    assert "figure4 (30/32 finished)" in result.output
    assert "npd-table3 (not in database)" in result.output
    assert "peak" in result.output


# -- errors ---------------------------------------------------------------------------

def test_cli_errors_are_one_line_exit_2(fig4_db: str, grid_db: str, tmp_path: Path) -> None:
    out = str(tmp_path)
    line = one_line_error(invoke("best-params", "--sweep", "nope", "--db", fig4_db))
    assert "no sweep 'nope'" in line and "figure4" in line
    line = one_line_error(invoke("report", "--figure", "99", "--db", fig4_db, "--out", out))
    assert "unknown figure '99'" in line and "figure4" in line
    line = one_line_error(invoke("report", "--figure", "npd5", "--db", fig4_db, "--out", out))
    assert "npd-table4" in line and "sweeps/npd-table4.yaml" in line
    line = one_line_error(invoke("report", "--table", "7", "--db", fig4_db))
    assert "peak" in line
    line = one_line_error(invoke("best-params", "--metric", "acc", "--db", grid_db))
    assert "val_acc" in line
    one_line_error(invoke("report", "--db", fig4_db))
    one_line_error(invoke("report", "--list", "--table", "peak", "--db", fig4_db))
    # two sweeps, no --sweep, no sweep called table2: an error listing them
    url = f"sqlite:///{tmp_path / 'two.sqlite'}"
    with open_db(url) as db:
        for name in ("a", "b"):
            fill(db, name, [make_config(dataset="digits", network="mlp", algorithm="bp")],
                 curve_accuracy)
    line = one_line_error(invoke("best-params", "--db", url))
    assert "choose one with --sweep: a, b" in line
    line = one_line_error(invoke("report", "--table", "peak", "--db", url))
    assert "a, b" in line
    assert not list(tmp_path.glob("tables/*"))


def test_a_computed_figure_id_makes_its_experiment(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    small = functools.partial(crgd2.compute_crgd2, steps=5, decor_steps=20)
    monkeypatch.setattr(crgd2, "compute_crgd2", small)
    result = invoke("report", "--figure", "2", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    for ext in ("png", "pdf", "svg", "csv"):
        path = tmp_path / "figures" / f"crgd-fig2.{ext}"
        assert path.stat().st_size > 0 and f"wrote {path}" in result.output
    assert len(pd.read_csv(tmp_path / "figures" / "crgd-fig2.csv")) == 3 * 6


def test_api_errors(fig4_db: str) -> None:
    with pytest.raises(ReportError, match="no sweep 'x'"):
        api.curves("x", db=fig4_db)
    with pytest.raises(ValueError, match="unknown metric"):
        api.curves("figure4", "accuracy", db=fig4_db)


# -- one real run ------------------------------------------------------------------------

def test_a_real_tiny_run_reports(tmp_path: Path) -> None:
    from corrgd.run.worker import Worker

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    config = make_config(dataset="digits", network="mlp", hidden=[16], algorithm="bp",
                         decor=True, decor_lr=1e-3, lr=1e-3, val_size=100, batch_size=128)
    with open_db(url) as db:
        db.add_sweep("tiny", "hand-made", [RunSpec(config=config, axes={"seed": 0})])
        assert Worker(db, checkpoint_dir=tmp_path / "ckpt").run() == 1
    result = invoke("report", "--figure", "tiny", "--db", url, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "figures" / "tiny.csv")
    assert frame["epoch"].tolist() == list(range(EPOCHS))
    assert frame["mean"].iloc[-1] > frame["mean"].iloc[0]  # it learned something
    assert (frame["min"] == frame["max"]).all()  # one seed
    diagnostics = api.diagnostics("tiny", db=url)
    assert {"layer", "offdiag_corr"} <= set(diagnostics.columns)


# -- runs that diverged are not eligible ------------------------------------------------

# lr -> (status, epochs logged, val accuracy per epoch): BP's best peak (lr 1e-3) belongs to
# a run that diverged after it; FA's runs all diverged.
UNSTABLE_RUNS = {
    "bp": {1e-3: ("diverged", 3, (0.1, 0.8, 0.1)), 1e-4: ("done", EPOCHS, (0.1, 0.5, 0.6, 0.6)),
           1e-5: ("done", EPOCHS, (0.1, 0.3, 0.4, 0.5))},
    "fa": {1e-3: ("diverged", 2, (0.1, 0.7)), 1e-4: ("diverged", 3, (0.1, 0.5, 0.1))},
}


def unstable_accuracy(config: dict[str, Any], split: str, epoch: int) -> float:
    return UNSTABLE_RUNS[config["algorithm"]][config["lr"]][2][epoch]


@pytest.fixture(scope="module")
def unstable_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('unstable') / 'r.sqlite'}"
    configs = [make_config(dataset="cifar10", network="crgd-dense", algorithm=algorithm, lr=lr)
               for algorithm, runs in UNSTABLE_RUNS.items() for lr in runs]
    with open_db(url) as db:
        fill(db, "unstable", configs, unstable_accuracy,
             lambda c: UNSTABLE_RUNS[c["algorithm"]][c["lr"]][:2])
    return url


def test_a_run_that_diverged_is_not_selected(unstable_db: str, tmp_path: Path) -> None:
    best = api.best_params("unstable", "val_acc", db=unstable_db).set_index("curve")
    assert list(best.index) == ["BP"]  # FA: every run diverged
    assert (best.loc["BP", "lr"], best.loc["BP", "score"]) == (1e-4, pytest.approx(0.6))
    assert best.loc["BP", "candidates"] == 2  # the run that diverged is not compared
    with open_db(unstable_db) as db:
        chosen = analysis.selection_lookup(db)("unstable", "val_acc")
    assert [(c["algorithm"], p["lr"]) for c, p in chosen] == [("bp", 1e-4)]
    # a figure with several LRs per curve shows the stable one too
    result = invoke("report", "--figure", "unstable", "--db", unstable_db, "--out",
                    str(tmp_path))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "figures" / "unstable.csv")
    assert set(frame.loc[frame["curve"] == "BP", "lr"]) == {1e-4}
    assert "CIFAR-10 (Dense) FA: every setting has a run that diverged; showing all" in \
        " ".join(result.output.split())


def test_best_params_says_a_curve_whose_runs_all_diverged(unstable_db: str,
                                                          tmp_path: Path) -> None:
    result = invoke("best-params", "--sweep", "unstable", "--db", unstable_db, "--out",
                    str(tmp_path))
    assert result.exit_code == 0, result.output
    line = "CIFAR-10 (Dense) FA: every finished run diverged (2 of 2 runs); no LRs selected"
    assert line in result.output
    md = (tmp_path / "tables" / "best-params-unstable.md").read_text()
    rows = [[c.strip() for c in row.strip("|").split("|")] for row in md.splitlines()
            if row.startswith(("| BP", "| FA"))]
    assert rows == [["BP", "Adam LR", "1e-4"], ["FA", "Adam LR", "diverged"]]
    assert line in md
    data = pd.read_csv(tmp_path / "tables" / "best-params-unstable.csv").set_index("curve")
    assert data.loc["FA", ["finished", "diverged", "total"]].tolist() == [2, 2, 2]
    assert pd.isna(data.loc["FA", "lr"])


def test_select_from_a_curve_whose_runs_all_diverged_fails(unstable_db: str) -> None:
    from corrgd.spec.sweeps import SpecError, expand, parse_spec

    text = ("dataset: cifar10\nnetwork: crgd-dense\nalgorithm: [bp, fa]\nseed: [0, 1]\n"
            "select: {from: unstable, metric: val_acc}\n")
    with open_db(unstable_db) as db:
        lookup = analysis.selection_lookup(db)
        bp = expand(parse_spec(text.replace("[bp, fa]", "bp"), source="s.yaml"), lookup)
        assert {r.lr for r in bp} == {1e-4}
        with pytest.raises(SpecError) as caught:
            expand(parse_spec(text, source="s.yaml"), lookup)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert "'unstable' has no finished run for" in message and "algorithm=fa" in message
    assert "that did not diverge" in message


# -- CRGD Fig. 4 at the published learning rates ------------------------------------------

def test_figure4_published_is_a_figure_of_its_own_sweep(tmp_path: Path) -> None:
    spec = FIGURES["4-published"]
    assert spec.sweeps == ("figure4-published",) and FIGURES["4"].sweeps == ("figure4",)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    configs = [make_config(dataset="cifar10", network="crgd-dense", algorithm="bp", decor=decor,
                           lr=1e-4, decor_lr=1e-5 if decor else 0.0, seed=seed)
               for decor in (False, True) for seed in (0, 1)]
    with open_db(url) as db:
        fill(db, "figure4-published", configs, curve_accuracy)
    listing = invoke("report", "--list", "--db", url)
    assert listing.exit_code == 0, listing.output
    assert "4-published" in listing.output and "figure4-published (4/4 finished)" in \
        listing.output
    result = invoke("report", "--figure", "4-published", "--db", url, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "figures" / "crgd-fig4-published.csv")
    assert set(frame["curve"]) == {"BP", "BP+decor"} and set(frame["n_seeds"]) == {2}
    line = one_line_error(invoke("report", "--figure", "4", "--db", url, "--out",
                                 str(tmp_path)))
    assert "figure4" in line  # figure 4 stays the grid-search sweep's
