"""Pruning hopeless learning rates (`corrgd.spec.pruning`): the spec's `prune:`, its rungs,
the asynchronous successive-halving decision against an example worked out by hand, and
the epochs it saves."""

from __future__ import annotations

import pytest

from corrgd.spec.config import RunConfig
from corrgd.spec.pruning import Pruning, decide, expected_epochs, prune_key
from corrgd.spec.sweeps import SpecError, parse_spec

BASE = "dataset: digits\nnetwork: mlp\nalgorithm: bp\nepochs: 27\n"


def test_prune_defaults_and_rungs() -> None:
    assert parse_spec(BASE).prune is None
    for text in ("prune: {}\n", "prune:\n"):
        assert parse_spec(BASE + text).prune == Pruning("val_acc", 1, 3)
    regression = "dataset: diabetes\nnetwork: mlp\nalgorithm: bp\nloss: mse\nprune: {}\n"
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
