"""The figures computed on the spot (corrgd.experiments): the maths each one shows, on small
sizes, and that every figure's write function writes its PNG, PDF, SVG and CSV."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from corrgd.data import load_dataset
from corrgd.experiments.copi3 import (
    compute_copi3,
    inferred_map,
    layer_statistics,
    replaced_layer_accuracy,
    write_copi3,
)
from corrgd.experiments.crgd2 import compute_crgd2, quadratic_loss, write_crgd2
from corrgd.experiments.crgd3 import compute_crgd3, mean_abs_offdiag_correlation, write_crgd3
from corrgd.experiments.npd2 import (
    averaged_updates,
    compute_alignment,
    forward_passes,
    write_alignment,
)
from corrgd.learn.diagnostics import layer_updates
from corrgd.learn.losses import get_loss
from corrgd.learn.models import build_network
from corrgd.learn.rules import make_rule
from corrgd.results.reports import ReportError
from corrgd.run.worker import Worker
from corrgd.spec.sweeps import expand, parse_spec
from corrgd.storage import ResultsDB, RunSpec, open_db


def assert_written(paths: list[Path], out_dir: Path, stems: list[str]) -> None:
    expected = {out_dir / "figures" / f"{stem}.{ext}" for stem in stems
                for ext in ("png", "pdf", "svg", "csv")}
    assert set(paths) == expected
    for path in paths:
        assert path.stat().st_size > 0


def first_step_angle(path: np.ndarray, optimum: np.ndarray) -> float:
    """Degrees between the first GD step and the straight line to the minimum."""
    step, direct = path[1] - path[0], optimum - path[0]
    cos = step @ direct / (np.linalg.norm(step) * np.linalg.norm(direct))
    return math.degrees(math.acos(np.clip(cos, -1, 1)))


# -- CRGD Fig. 2 -------------------------------------------------------------------------


def test_decorrelated_gd_heads_straight_for_the_minimum_and_converges_sooner() -> None:
    r = compute_crgd2(rho=0.9, steps=40, decor_steps=300)
    m = r.matrices["crgd"]
    assert mean_abs_offdiag_correlation(m @ r.cov @ m.T) < 0.05  # the CRGD rule decorrelated
    w = r.matrices["whitened"]
    np.testing.assert_allclose(w @ r.cov @ w.T, np.eye(2), atol=1e-12)
    # on correlated inputs the gradient points off the line to the minimum (a detour) ...
    assert first_step_angle(r.paths_w["correlated"], r.optimum) > 30
    # ... and the same step heads (almost) straight at it on decorrelated inputs
    for method in ("crgd", "whitened"):
        assert first_step_angle(r.paths_own[method], r.optima[method]) < 10
    target = 1e-6 * r.losses["correlated"][0]
    assert r.steps_to("crgd", target) < r.steps_to("correlated", target)
    assert r.steps_to("whitened", target) < r.steps_to("correlated", target)
    # both parametrisations describe the same function: w = Mᵀ v has the same loss
    for method in ("crgd", "whitened"):
        np.testing.assert_allclose(quadratic_loss(r.cov, r.optimum, r.paths_w[method]),
                                   r.losses[method], rtol=1e-8, atol=1e-14)
    assert r.losses["correlated"][0] == pytest.approx(r.losses["crgd"][0])


def test_figure_crgd2_writes_its_files(tmp_path: Path) -> None:
    paths = write_crgd2(compute_crgd2(steps=20, decor_steps=200), tmp_path)
    assert_written(paths, tmp_path, ["crgd-fig2"])
    table = pd.read_csv(tmp_path / "figures" / "crgd-fig2.csv")
    assert set(table["method"]) == {"correlated", "crgd", "whitened"}
    assert len(table) == 3 * 21


# -- CRGD Fig. 3 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dynamics() -> Any:
    return compute_crgd3(dim=8, scales=(0.3, 1.0, 3.0), steps=300)


def test_crgd_rule_decorrelates_at_any_scale_and_keeps_the_activity_norm(dynamics: Any
                                                                          ) -> None:
    finals = []
    for scale in (0.3, 1.0, 3.0):
        corr, norm = dynamics.correlation[("crgd", scale)], dynamics.norm[("crgd", scale)]
        assert corr[0] == pytest.approx(dynamics.input_correlation)
        assert corr[-1] < 0.1 * corr[0]
        assert norm[0] == pytest.approx(scale)
        assert np.all((norm[1:] > 0.8) & (norm[1:] < 1.2))  # the gain restores ‖x̂‖ ≈ ‖x‖
        finals.append(corr[-1])
    assert max(finals) < 1.5 * min(finals)  # the same end point whatever the start


def test_antihebbian_rule_without_gain_depends_on_scale_and_shrinks_activity(dynamics: Any
                                                                              ) -> None:
    corr = {s: dynamics.correlation[("antihebbian", s)] for s in (0.3, 1.0, 3.0)}
    norm = {s: dynamics.norm[("antihebbian", s)] for s in (0.3, 1.0, 3.0)}
    assert corr[0.3][-1] > 5 * corr[3.0][-1]  # decorrelation speed set by the scale of M
    for scale in (0.3, 1.0, 3.0):
        assert norm[scale][-1] < 0.8 * scale  # activity shrinks towards zero
        assert np.all(np.diff(norm[scale]) <= 1e-12)
    assert norm[3.0][-1] < 0.2 * 3.0  # from a large scale it drifts furthest


def test_figure_crgd3_writes_its_files(tmp_path: Path) -> None:
    paths = write_crgd3(compute_crgd3(dim=6, scales=(0.5, 2.0), steps=50), tmp_path)
    assert_written(paths, tmp_path, ["crgd-fig3"])
    table = pd.read_csv(tmp_path / "figures" / "crgd-fig3.csv")
    assert set(table["rule"]) == {"crgd", "antihebbian"} and set(table["scale"]) == {0.5, 2.0}


# -- NPD Fig. 2 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset("digits", flatten=True)
    return data.train.x[:300], data.train.y[:300]


def test_k_sample_update_is_the_rules_own_samples_k_update(
        digits_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits_batch[0][:50], digits_batch[1][:50]
    loss = get_loss("ce")
    net = build_network("mlp", (64,), 10, hidden=[16, 16])
    for rule in ("np", "anp", "inp"):
        assembled = averaged_updates(net, rule, x, y, loss, samples=(1, 3), seed=5)[3]
        direct = layer_updates(net, make_rule(rule, samples=3, seed=5), x, y, loss)
        for a, b in zip(assembled, direct, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_alignment_improves_with_samples_and_inp_beats_anp_beats_np(
        digits_batch: tuple[torch.Tensor, torch.Tensor], tmp_path: Path) -> None:
    angles = compute_alignment(samples=(1, 10, 50), hidden=(64, 64, 64), batch=300)
    paths = write_alignment(angles, tmp_path)
    assert_written(paths, tmp_path, ["npd-fig2-alignment"])
    table = pd.read_csv(tmp_path / "figures" / "npd-fig2-alignment.csv")
    whole = table[table["layer"] == "all"].pivot(index="samples", columns="rule",
                                                 values="angle")
    for rule in ("np", "anp", "inp"):
        assert whole[rule].is_monotonic_decreasing
        assert whole[rule][50] < whole[rule][1] - 10
    assert (whole["inp"] < whole["anp"]).all() and (whole["inp"] < whole["np"]).all()
    assert (whole["anp"][[10, 50]] < whole["np"][[10, 50]]).all()
    passes = table.drop_duplicates(["rule", "samples"]).set_index(["rule", "samples"])
    assert passes.loc[("np", 10), "forward_passes"] == 11
    assert passes.loc[("inp", 10), "forward_passes"] == 1 + 10 * 4  # 3 hidden + output
    assert forward_passes("anp", 50, 4) == 51


def test_one_members_numbers_are_those_of_that_member_alone(
        digits_batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Updates, layer statistics and replaced-layer accuracies of member 1 of a network of two
    are those of a network of one member initialised as member 1."""
    x, y = digits_batch[0][:64], digits_batch[1][:64]
    loss = get_loss("ce")

    def generator(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    group = build_network("mlp", (64,), 10, hidden=[16, 16], bias=False, members=2,
                          generators=[generator(1), generator(2)])
    alone = build_network("mlp", (64,), 10, hidden=[16, 16], bias=False,
                          generators=[generator(2)])
    for rule in ("np", "inp"):
        ours = averaged_updates(group, rule, x, y, loss, samples=(1, 2), seed=5)[2]
        theirs = averaged_updates(alone, rule, x, y, loss, samples=(1, 2), seed=5)[2]
        for a, b in zip(ours, theirs, strict=True):
            assert a.shape[0] == 2 and b.shape[0] == 1
            torch.testing.assert_close(a[1], b[0], rtol=1e-4, atol=1e-6)
            assert not torch.allclose(a[0], b[0])
    ours, theirs = layer_statistics(group, x, member=1), layer_statistics(alone, x)
    for key in ours.input_cross:
        torch.testing.assert_close(ours.input_cross[key], theirs.input_cross[key])
    for key in ours.hidden_cross:
        torch.testing.assert_close(ours.hidden_cross[key], theirs.hidden_cross[key])
    torch.testing.assert_close(ours.input_power, theirs.input_power)
    torch.testing.assert_close(ours.hidden_power, theirs.hidden_power)
    for replaced in (0, 1, 2):
        assert replaced_layer_accuracy(group, ours, x, y, replaced, member=1) == \
            replaced_layer_accuracy(alone, theirs, x, y, replaced)


# -- COPI Fig. 3 -------------------------------------------------------------------------


def test_inferred_map_is_exact_for_decorrelated_inputs() -> None:
    """Z = A X with the rows of X uncorrelated (XᵀX diagonal): Z Xᵀ D recovers A."""
    generator = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(200, 6, generator=generator, dtype=torch.float64))
    x = q * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 0.1], dtype=torch.float64)  # samples × 6
    a = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    z = x @ a.T
    torch.testing.assert_close(inferred_map(z.T @ x, x.pow(2).sum(0)), a)
    # an input that is always zero gets weight 0 instead of 1/0
    x0 = torch.cat([x, torch.zeros(200, 1, dtype=torch.float64)], dim=1)
    w = inferred_map(z.T @ x0, x0.pow(2).sum(0))
    assert torch.isfinite(w).all() and (w[:, -1] == 0).all()


TINY_COPI = """
# a tiny COPI sweep on the digits: COPI with BP and FA perturbations, 2 epochs
dataset: digits
data: {normalize: false}
network: mlp
hidden: [32, 32, 32]
bias: false
algorithm: copi
copi_feedback: [bp, fa]
decor: true
decor_rule: copi
decor_lr: 0.1
decor_sample_frac: 1.0
optimizer: sgd
first_epoch_lr: 0.01
first_epoch_decor_lr: 0.01
lr: 0.1
loss: sse
output_activation: true
decor_update_order: MC
batch_size: 50
epochs: 2
diagnostics: false
"""


@pytest.fixture(scope="module")
def copi_db(tmp_path_factory: pytest.TempPathFactory) -> ResultsDB:
    folder = tmp_path_factory.mktemp("copi")
    db = open_db(f"sqlite:///{folder}/results.sqlite")
    sweep = parse_spec(TINY_COPI, default_name="copi-tiny")
    specs = [RunSpec(config=r.model_dump(mode="json"),
                     axes={k: getattr(r, k) for k in sweep.axes}) for r in expand(sweep)]
    db.add_sweep(sweep.name, sweep.text, specs)
    Worker(db, sweep=sweep.name, checkpoint_dir=folder / "checkpoints", group_size=1).run()
    return db


def test_figure_copi3_replaces_layers_by_inferred_maps(copi_db: ResultsDB,
                                                       tmp_path: Path) -> None:
    runs = copi_db.runs_frame("copi-tiny")
    assert list(runs["status"]) == ["done", "done"]
    paths = write_copi3(compute_copi3(copi_db, "copi-tiny"), tmp_path)
    assert_written(paths, tmp_path, ["copi-fig3ab-copi-tiny", "copi-fig3c-copi-tiny"])
    table = pd.read_csv(tmp_path / "figures" / "copi-fig3c-copi-tiny.csv")
    # 2 runs x (intact + 1, 2 or 3 of the layers after the first replaced)
    assert len(table) == 2 * 4
    assert set(table["feedback"]) == {"bp", "fa"}
    assert sorted(set(table["replaced_layers"])) == [0, 1, 2, 3]
    assert table["test_accuracy"].between(0, 1).all()
    assert np.isfinite(table["test_accuracy"]).all()
    features = pd.read_csv(tmp_path / "figures" / "copi-fig3ab-copi-tiny.csv")
    assert set(features["layer"]) == {1, 2, 3, 4}
    assert np.isfinite(features.filter(like="x").to_numpy()).all()


def test_figure_copi3_needs_finished_copi_runs(copi_db: ResultsDB) -> None:
    with pytest.raises(ReportError, match="not in the database"):
        compute_copi3(copi_db, "no-such-sweep")
    copi_db.add_sweep("empty", "", [])
    with pytest.raises(ReportError, match="no finished COPI run"):
        compute_copi3(copi_db, "empty")
