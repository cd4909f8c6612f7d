"""The shipped sweep specs under sweeps/: each parses and expands to the runs its paper implies.

Run counts, with their arithmetic, are in `EXPECTED_RUNS`. figure4 takes its learning rates
from the finished runs of table2, so it is expanded against a temporary SQLite database
filled with table2-like results whose best LRs are CRGD Table 2's.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
from queue_helper import claim_one, record
from typer.testing import CliRunner

from corrgd.results import analysis
from corrgd.spec.config import CURVE_KEYS, RunConfig
from corrgd.spec.sweeps import Sweep, expand, load_spec
from corrgd.storage import MetricRow, ResultsDB, RunSpec, open_db

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
LRS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]

# Runs per paper spec (figure4: expanded against a database, see below). Any other spec
# (quickstart) must expand to the count its header states ("... = N runs").
EXPECTED_RUNS = {
    # 9 algorithm-panels (CIFAR-10 dense BP/FA/NP; CIFAR-10, CIFAR-100, Tiny ImageNet conv
    # BP/FA) x (6 forward LRs without decor + 6 forward x 6 decor LRs with decor)
    "table2": 9 * (6 + 6 * 6),  # = 378
    # 18 curves (9 algorithm-panels x decor off/on) x 5 seeds
    "figure4": 18 * 5,  # = 90
    # NPD Table 3 cells: 1 layer BP, DBP, NP, DNP (4); 3 hidden (D)BP, (D)NP, (D)ANP, (D)INP
    # (8); 6 and 9 hidden DNP, DANP, DINP (3 + 3); ConvNet as 3 hidden (8) -- x 3 seeds
    "npd-table3": (4 + 8 + 3 + 3 + 8) * 3,  # = 78
    # NPD Table 4: DANP and DINP x 4 sample counts, DNP x100, BP -- x 3 seeds
    "npd-table4": (2 * 4 + 1 + 1) * 3,  # = 30
    # NPD Fig. 4: DNP and DANP with a noisy baseline x 3 seeds
    "npd-noisy-baseline": 2 * 3,  # = 6
    # COPI Fig. 2: COPI-BP, COPI-FA, BP + COPI decorrelation, BP + Adam x 5 seeds
    "copi-mnist": 4 * 5,  # = 20
    "copi-cifar10": 4 * 5,  # = 20
}

# CRGD Table 2: the (forward LR, decor LR) selected per curve (dataset, network, algorithm,
# decor); decor LR 0 without decorrelation.
CRGD_TABLE2: dict[tuple, tuple[float, float]] = {
    ("cifar10", "crgd-dense", "bp", False): (1e-4, 0.0),
    ("cifar10", "crgd-dense", "bp", True): (1e-4, 1e-5),
    ("cifar10", "crgd-dense", "fa", False): (1e-4, 0.0),
    ("cifar10", "crgd-dense", "fa", True): (1e-4, 1e-6),
    ("cifar10", "crgd-dense", "np", False): (1e-5, 0.0),
    ("cifar10", "crgd-dense", "np", True): (1e-4, 1e-6),
    **{(dataset, "crgd-conv", algorithm, decor): lrs
       for dataset, fa_lr in (("cifar10", 1e-4), ("cifar100", 1e-4), ("tiny-imagenet", 1e-5))
       for algorithm, decor, lrs in (("bp", False, (1e-3, 0.0)), ("bp", True, (1e-3, 1e-5)),
                                     ("fa", False, (fa_lr, 0.0)), ("fa", True, (fa_lr, 1e-5)))},
}

# NPD Table 2 as encoded in npd-table3.yaml: (network, depth, algorithm, decor) -> LR.
NPD_TABLE3_LRS: dict[tuple, float] = {
    **{("npd-fc", 0, a, d): 1e-3 for a in ("bp", "np") for d in (False, True)},
    **{("npd-fc", 3, a, False): 1e-4 for a in ("bp", "np", "anp", "inp")},
    **{("npd-fc", 3, a, True): 1e-3 for a in ("bp", "np", "anp", "inp")},
    **{("npd-fc", depth, a, True): 5e-3 for depth in (6, 9) for a in ("np", "anp", "inp")},
    ("npd-conv", None, "bp", False): 1e-3,
    ("npd-conv", None, "bp", True): 1e-3,
    ("npd-conv", None, "np", True): 1e-3,
    **{("npd-conv", None, a, False): 1e-4 for a in ("np", "anp", "inp")},
    **{("npd-conv", None, a, True): 1e-4 for a in ("anp", "inp")},
}


def spec_paths() -> list[Path]:
    return sorted(SWEEPS.glob("*.yaml"))


def runs_of(name: str) -> list[RunConfig]:
    return expand(load_spec(SWEEPS / f"{name}.yaml"))


def curve(run: RunConfig) -> tuple:
    return tuple(getattr(run, k) for k in CURVE_KEYS)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


# -- every spec ------------------------------------------------------------------------


def stated_runs(path: Path) -> int:
    """The run count a spec's comment header states: "... = N runs"."""
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    counts = re.findall(r"= (\d[\d ]*) runs", header)
    assert len(counts) == 1, f"{path.name}: the header should state '= N runs' once"
    return int(counts[0].replace(" ", ""))


def test_every_paper_spec_is_shipped() -> None:
    assert set(EXPECTED_RUNS) <= {p.stem for p in spec_paths()}


@pytest.mark.parametrize("path", spec_paths(), ids=lambda p: p.stem)
def test_spec_parses_and_expands_to_the_stated_run_count(path: Path) -> None:
    sweep = load_spec(path)
    assert sweep.name == path.stem
    assert stated_runs(path) == EXPECTED_RUNS.get(path.stem, stated_runs(path))
    if sweep.select:
        pytest.skip("expanded against a database in test_figure4_*")
    runs = expand(sweep)
    assert len(runs) == stated_runs(path)
    assert len({r.hash() for r in runs}) == len(runs)


@pytest.mark.parametrize("path", spec_paths(), ids=lambda p: p.stem)
def test_spec_starts_with_a_comment_header(path: Path) -> None:
    header = path.read_text().splitlines()[:3]
    assert header and all(line.startswith("#") for line in header)


def test_tuple_valued_settings_are_values_not_axes() -> None:
    """`betas: [0.9, 0.99]` is one value of the tuple field, as `hidden: [64, 64]` is."""
    sweep = load_spec(SWEEPS / "copi-mnist.yaml")
    assert "betas" not in sweep.axes
    adam = [r for r in expand(sweep) if r.optimizer == "adam"]
    assert adam and {r.betas for r in adam} == {(0.9, 0.99)}


# -- CRGD ------------------------------------------------------------------------------


def test_table2_is_the_appendix_e_grid() -> None:
    runs = runs_of("table2")
    per_curve = Counter(curve(r) for r in runs)
    assert set(per_curve) == set(CRGD_TABLE2)
    for key, n in per_curve.items():
        assert n == (36 if key[3] else 6), key
    for r in runs:
        assert (r.seed, r.val_size, r.epochs, r.batch_size) == (0, 10_000, 100, 256)
        assert (r.optimizer, r.betas, r.eps, r.loss) == ("adam", (0.9, 0.999), 1e-8, "ce")
        assert r.decor_rule == "crgd"
        assert any(close(r.lr, lr) for lr in LRS)
        if r.decor:
            assert any(close(r.decor_lr, lr) for lr in LRS)
        else:
            assert r.decor_lr == 0
        if r.dataset == "tiny-imagenet":
            assert r.data == {"crop": 56}
    with_decor = [r for r in runs if r.decor and r.algorithm == "np"]
    assert {(r.lr, r.decor_lr) for r in with_decor} == {(a, b) for a in LRS for b in LRS}


def fill_table2(db: ResultsDB) -> None:
    """Enqueue table2 and finish every run, its val accuracy peaking at CRGD Table 2's LRs."""
    sweep = load_spec(SWEEPS / "table2.yaml")
    specs = [RunSpec(config=r.model_dump(mode="json"),
                     axes={k: v for k, v in r.model_dump(mode="json").items()
                           if k in sweep.axes})
             for r in expand(sweep)]
    _, added = db.add_sweep(sweep.name, sweep.text, specs)
    assert added == EXPECTED_RUNS["table2"]
    while (run := claim_one(db, "test-worker", sweep="table2")) is not None:
        config = RunConfig(**run.config)
        best_lr, best_decor_lr = CRGD_TABLE2[curve(config)]
        miss = abs(math.log10(config.lr / best_lr))
        if config.decor:
            miss += abs(math.log10(config.decor_lr / best_decor_lr))
        record(db, run, [[MetricRow("val", 1.0 - accuracy, accuracy, seconds=0.0)]
                         for accuracy in (0.1, 0.9 - 0.05 * miss, 0.85 - 0.05 * miss)], "done")


@pytest.fixture(scope="module")
def table2_db(tmp_path_factory: pytest.TempPathFactory) -> ResultsDB:
    url = f"sqlite:///{tmp_path_factory.mktemp('table2')}/results.sqlite"
    db = open_db(url)
    fill_table2(db)
    return db


def test_figure4_takes_the_lrs_selected_from_table2(table2_db: ResultsDB) -> None:
    sweep: Sweep = load_spec(SWEEPS / "figure4.yaml")
    assert sweep.select == {"from": "table2", "metric": "val_acc"}
    runs = expand(sweep, analysis.selection_lookup(table2_db))
    assert len(runs) == EXPECTED_RUNS["figure4"]
    per_curve = Counter(curve(r) for r in runs)
    assert set(per_curve) == set(CRGD_TABLE2) and set(per_curve.values()) == {5}
    for r in runs:
        assert (r.lr, r.decor_lr) == CRGD_TABLE2[curve(r)], curve(r)
        assert r.val_size == 0 and r.epochs == 100 and r.seed in range(5)


def test_figure4_dry_run_with_table2_results(table2_db: ResultsDB) -> None:
    from corrgd.cli import app

    result = CliRunner().invoke(app, ["sweep", str(SWEEPS / "figure4.yaml"), "--dry-run",
                                      "--db", table2_db.url])
    assert result.exit_code == 0, result.output
    assert "90 runs" in result.stdout


def test_figure4_dry_run_on_an_empty_database_fails_cleanly(tmp_path: Path) -> None:
    from corrgd.cli import app

    path = tmp_path / "empty.sqlite"
    result = CliRunner().invoke(app, ["sweep", str(SWEEPS / "figure4.yaml"), "--dry-run",
                                      "--db", f"sqlite:///{path}"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "select.from" in lines[0] and "table2" in lines[0]
    assert result.stdout == ""
    if path.exists():  # opened, perhaps, but nothing enqueued
        with open_db(f"sqlite:///{path}") as db:
            assert db.list_sweeps().empty


# -- NPD -------------------------------------------------------------------------------


def test_npd_table3_learning_rates_are_npd_table2() -> None:
    runs = runs_of("npd-table3")
    cells = Counter((r.network, r.depth, r.algorithm, r.decor) for r in runs)
    assert set(cells) == set(NPD_TABLE3_LRS) and set(cells.values()) == {3}
    for r in runs:
        assert close(r.lr, NPD_TABLE3_LRS[(r.network, r.depth, r.algorithm, r.decor)])
        assert (r.dataset, r.batch_size, r.eps, r.sigma2, r.loss) == (
            "cifar10", 1000, 1e-7, 1e-6, "ce")
        assert r.seed in (0, 1, 2) and r.val_size == 0 and r.np_samples == 1
        if r.decor:
            assert (r.decor_rule, r.decor_lr) == ("copi", 1e-3)
    assert "depth" in load_spec(SWEEPS / "npd-table3.yaml").axes


def test_npd_table4_noise_samples() -> None:
    runs = runs_of("npd-table4")
    cells = Counter((r.algorithm, r.decor, r.np_samples, r.lr) for r in runs)
    expected = {("anp", True, k, 1e-3) for k in (1, 10, 30, 100)}
    expected |= {("inp", True, k, 1e-3) for k in (1, 10, 30, 100)}
    expected |= {("np", True, 100, 1e-3), ("bp", False, 1, 1e-4)}
    assert set(cells) == expected and set(cells.values()) == {3}
    for r in runs:
        assert (r.dataset, r.network, r.data) == ("tiny-imagenet", "npd-tiny-conv",
                                                  {"crop": None})


def test_npd_noisy_baseline() -> None:
    runs = runs_of("npd-noisy-baseline")
    assert {(r.algorithm, r.noisy_baseline, r.decor, r.depth, r.lr) for r in runs} == {
        ("np", True, True, 3, 1e-3), ("anp", True, True, 3, 1e-3)}


# -- COPI ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "network", "first_lr", "lr"), [
    ("copi-mnist", "copi-mnist", 1e-2, 1e-1),
    ("copi-cifar10", "copi-cifar", 1e-3, 1e-2),
])
def test_copi_specs(name: str, network: str, first_lr: float, lr: float) -> None:
    runs = runs_of(name)
    curves = Counter((r.algorithm, r.copi_feedback, r.decor) for r in runs)
    assert curves == {("copi", "bp", True): 5, ("copi", "fa", True): 5, ("bp", "bp", True): 5,
                      ("bp", "bp", False): 5}
    for r in runs:
        # COPI Algorithm 1: y_L = f(a_L), loss ‖y_L − y*‖² without ½
        assert (r.network, r.loss, r.output_activation, r.batch_size, r.epochs) == \
            (network, "sse", True, 50, 100)
        if r.decor:  # SGD, boosted after epoch 1, lateral LR = forward LR, COPI's R (C − D)
            assert (r.optimizer, r.first_epoch_lr, r.lr) == ("sgd", first_lr, lr)
            assert (r.decor_rule, r.decor_lr, r.decor_update_order) == ("copi", lr, "MC")
        else:  # the BP + Adam baseline
            assert (r.optimizer, r.lr, r.betas, r.first_epoch_lr) == ("adam", 1e-4,
                                                                      (0.9, 0.99), None)

