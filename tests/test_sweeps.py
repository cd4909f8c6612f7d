"""Sweep specs: expansion, validation errors (one line, file + field + allowed)."""

from __future__ import annotations

import pytest

from corrgd.spec.config import RunConfig
from corrgd.spec.sweeps import SpecError, expand, parse_spec

BASE = "dataset: digits\nnetwork: mlp\nepochs: 1\n"


def runs(text: str) -> list[RunConfig]:
    return expand(parse_spec(BASE + text, source="s.yaml"))


def error(text: str, best=None) -> SpecError:
    with pytest.raises(SpecError) as e:
        expand(parse_spec(text, source="s.yaml"), best)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("s.yaml: ")
    return e.value


def test_lists_are_axes_scalars_fixed_and_decor_off_collapses_decor_lr() -> None:
    out = runs("algorithm: [bp, fa]\ndecor: [false, true]\ndecor_lr: [1.0e-3, 1.0e-4]\n"
               "lr: [1.0e-2, 1.0e-3]\nseed: [0, 1, 2]\n")
    # per algorithm: (1 plain + 2 decor LRs) x 2 LRs x 3 seeds
    assert len(out) == 2 * 3 * 2 * 3
    plain = [r for r in out if not r.decor]
    assert {r.decor_lr for r in plain} == {0.0}
    assert {r.epochs for r in out} == {1}
    assert len({r.hash() for r in out}) == len(out)


def test_list_valued_setting_is_fixed_unless_list_of_lists() -> None:
    assert len(runs("algorithm: bp\nhidden: [64, 32]\n")) == 1
    assert [r.hidden for r in runs("algorithm: bp\nhidden: [[64], [64, 32]]\n")] == [
        [64], [64, 32]]


def test_grids_union_and_hash_is_stable() -> None:
    text = ("lr: 1.0e-3\ngrids:\n  - {algorithm: [bp, fa]}\n  - {algorithm: np, "
            "np_samples: [1, 10]}\n  - {algorithm: bp}\n")
    out = runs(text)
    assert [(r.algorithm, r.np_samples) for r in out] == [("bp", 1), ("fa", 1), ("np", 1),
                                                          ("np", 10)]
    assert [r.hash() for r in out] == [r.hash() for r in runs(text)]


@pytest.mark.parametrize(("text", "field", "allowed"), [
    ("dataset: digits\nnetwork: mlp\nalgorithm: bp\nfoo: 1\n", "foo", "allowed: "),
    ("dataset: digits\nnetwork: mlp\nalgorithm: xyz\n", "algorithm", "bp, fa, dfa"),
    ("dataset: nope\nnetwork: mlp\nalgorithm: bp\n", "dataset", "digits"),
    ("dataset: digits\nnetwork: nope\nalgorithm: bp\n", "network", "crgd-dense"),
    ("dataset: digits\nnetwork: mlp\nalgorithm: bp\nlr: -1\n", "lr", "greater than 0"),
    ("dataset: digits\nnetwork: mlp\nalgorithm: bp\nlr: fast\n", "lr", "not the text 'fast'"),
    ("dataset: digits\nnetwork: mlp\nalgorithm: bp\nseed: []\n", "seed", "empty grid"),
    ("dataset: digits\nnetwork: mlp\nalgorithm: bp\ndecor: true\n", "decor_lr", "> 0 when decor"),
    ("dataset: digits\nnetwork: mlp\nalgorithm: [bp\n", "line", "invalid YAML"),
    ("network: mlp\nalgorithm: bp\n", "dataset", "required"),
    ("dataset: digits\nnetwork: mlp\nalgorithm: bp\nselect: {from: g, metric: acc}\n",
     "select.metric", "val_acc"),
])
def test_invalid_specs_name_file_field_and_allowed(text: str, field: str, allowed: str) -> None:
    e = error(text)
    assert e.field.startswith(field)
    assert allowed in str(e)


def test_select_takes_lrs_per_curve_and_fails_without_finished_runs() -> None:
    text = ("dataset: digits\nnetwork: mlp\nalgorithm: [bp, fa]\ndecor: [false, true]\n"
            "seed: [0, 1]\nselect: {from: grid, metric: val_acc}\n")
    chosen = [({"dataset": "digits", "network": "mlp", "algorithm": a, "decor": d},
               {"lr": lr, "decor_lr": 1e-4 if d else 0.0})
              for a, lr in (("bp", 1e-2), ("fa", 1e-3)) for d in (False, True)]
    out = expand(parse_spec(text, source="s.yaml"), lambda sweep, metric: chosen)
    assert len(out) == 8
    assert {(r.algorithm, r.decor, r.lr, r.decor_lr) for r in out} == {
        ("bp", False, 1e-2, 0.0), ("bp", True, 1e-2, 1e-4),
        ("fa", False, 1e-3, 0.0), ("fa", True, 1e-3, 1e-4)}
    assert "no finished runs" in str(error(text, lambda sweep, metric: []))
    partial = [c for c in chosen if c[0]["algorithm"] == "bp"]
    assert "algorithm=fa" in str(error(text, lambda sweep, metric: partial))


def test_select_matches_other_swept_axes_too() -> None:
    text = "dataset: digits\nnetwork: npd-fc\nalgorithm: bp\ndepth: [1, 3]\nselect: {from: grid}\n"
    chosen = [({"dataset": "digits", "network": "npd-fc", "algorithm": "bp", "decor": False,
                "depth": depth}, {"lr": lr, "decor_lr": 0.0})
              for depth, lr in ((1, 1e-2), (3, 1e-4))]
    out = expand(parse_spec(text, source="s.yaml"), lambda sweep, metric: chosen)
    assert sorted((r.depth, r.lr) for r in out) == [(1, 1e-2), (3, 1e-4)]


def test_best_params_is_the_argmax_per_curve_and_per_other_swept_axis() -> None:
    import pandas as pd

    from corrgd.results import analysis

    rows = [(1, 1, 1e-2, 0.5), (2, 1, 1e-3, 0.7), (3, 3, 1e-2, 0.9), (4, 3, 1e-3, 0.6)]
    runs = pd.DataFrame({"run_id": [r[0] for r in rows], "dataset": "digits", "network": "npd-fc",
                         "algorithm": "bp", "decor": False, "lr": [r[2] for r in rows],
                         "decor_lr": 0.0, "seed": 0, "status": "done",
                         "depth": [r[1] for r in rows],
                         "axes": [{"depth": r[1], "lr": r[2]} for r in rows]})
    epochs = pd.DataFrame({"run_id": [r[0] for r in rows for _ in (0, 1)],
                           "epoch": [e for _ in rows for e in (0, 1)], "split": "val",
                           "loss": 1.0, "accuracy": [a for r in rows for a in (0.1, r[3])]})
    assert analysis.swept_axes(runs) == ["depth"]
    best = analysis.best_params(runs, epochs, "val_acc")
    assert best[["depth", "lr", "run_id", "peak_epoch"]].values.tolist() == [
        [1, 1e-3, 2, 1], [3, 1e-2, 3, 1]]


def test_a_number_with_an_exponent_and_no_dot_is_a_number_as_in_yaml_1_2() -> None:
    # PyYAML (YAML 1.1) reads 1e-3 as the text '1e-3'; a spec means the number, also in
    # data options, which take no text
    sweep = parse_spec("dataset: synthetic-correlated\n"
                       "data: {task: regression, num_outputs: 2, noise: 5e-2}\n"
                       "network: mlp\nalgorithm: bp\nloss: mse\nlr: [1e-3, 2E-2, .5e-1]\n")
    runs = expand(sweep)
    assert sorted(r.lr for r in runs) == [0.001, 0.02, 0.05]
    assert {r.data["noise"] for r in runs} == {0.05}
    assert isinstance(runs[0].data["noise"], float)


@pytest.mark.parametrize("text,value", [("1e-3", 0.001), ("-2.5E+2", -250.0), ("1_0e1", 100.0),
                                        ("'1e-3'", "1e-3"), (".e5", ".e5"), ("1e", "1e"),
                                        ("e5", "e5"), ("1.0e-3", 0.001), ("7", 7),
                                        ("+.5", 0.5), ("-.5", -0.5), ("1.2.3", "1.2.3")])
def test_load_value_reads_exponents_and_leaves_other_text(text: str, value: object) -> None:
    from corrgd.spec.sweeps import load_value

    assert load_value(text) == value
    assert type(load_value(text)) is type(value)
