"""Every random quantity of a run has its own stream: no two coincide.

The defect these tests guard against: the forward weights and FA's feedback
matrices were drawn from two generators seeded with the same number, so every
B was a copy of a W (shifted by a row), and feedback alignment diverged on real
data where the reference code learns.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from corrgd.learn import streams
from corrgd.run.runner import build, load_data
from corrgd.spec.config import RunConfig


def test_stream_seeds_are_distinct_across_seeds_streams_and_counters() -> None:
    keys = [(seed, stream, *counters) for seed in range(10) for stream in streams.STREAMS
            for counters in [(), *[(e,) for e in range(10)]]]
    values = [streams.stream_seed(*key) for key in keys]
    assert len(set(values)) == len(values)
    assert all(0 <= v < 2**63 for v in values)
    with pytest.raises(ValueError, match="unknown random stream"):
        streams.stream_seed(0, "weights")


def test_no_two_streams_of_a_run_draw_the_same_numbers() -> None:
    for seed in (0, 1, 7):
        draws = {s: torch.rand(2000, generator=streams.generator(seed, s), dtype=torch.float64)
                 for s in streams.STREAMS}
        for a, b in itertools.combinations(streams.STREAMS, 2):
            assert not torch.isin(draws[a], draws[b]).any(), (seed, a, b)
        # and each stream is reproducible on its own
        again = torch.rand(2000, generator=streams.generator(seed, "noise"), dtype=torch.float64)
        assert torch.equal(again, draws["noise"])


def max_lagged_correlation(a: np.ndarray, b: np.ndarray, min_overlap: int) -> float:
    """Largest |Pearson r| between a and b shifted against each other by any lag, over
    overlaps of at least `min_overlap` values."""
    best = 0.0
    for lag in range(-(len(b) - min_overlap), len(a) - min_overlap + 1):
        x = a[max(lag, 0):]
        y = b[max(-lag, 0):]
        m = min(len(x), len(y))
        x, y = x[:m], y[:m]
        r = np.corrcoef(x, y)[0, 1]
        best = max(best, abs(r))
    return best


@pytest.mark.parametrize("algorithm", ["fa", "dfa"])
def test_feedback_matrices_are_independent_of_the_forward_weights(algorithm: str) -> None:
    """No row shift or reshape of any layer's W correlates with any B above chance:
    all weights (as the uniform draws they came from) against all feedback values,
    at every lag."""
    config = RunConfig(dataset="digits", network="mlp", hidden=[24, 16], algorithm=algorithm,
                       seed=3, epochs=1)
    data = load_data(config)
    net, rule, _ = build([config], data, "cpu")
    forward = np.concatenate([np.sign(layer.weight.detach().flatten().numpy())
                              for layer in net.layers])
    feedback = [layer.feedback for layer in net.layers] if algorithm == "fa" else rule.feedback
    assert all(B is not None for B in feedback)
    backward = np.concatenate([np.sign(B.flatten().numpy()) for B in feedback])
    overlap = 400
    r = max_lagged_correlation(forward, backward, overlap)
    # chance: |r| of independent signs over ≥ 400 values, maximised over ~4000 lags
    assert r < 6 / np.sqrt(overlap), r
    for layer, B in zip(net.layers, feedback, strict=False):
        if B.shape == layer.weight.shape:
            W = layer.weight.detach().flatten()
            cos = torch.nn.functional.cosine_similarity(B.flatten(), W, 0)
            assert abs(float(cos)) < 0.1


def test_runs_of_different_seeds_differ_and_equal_seeds_agree() -> None:
    config = RunConfig(dataset="digits", network="mlp", hidden=[8], algorithm="fa", seed=0)
    data = load_data(config)
    a, _, _ = build([config], data, "cpu")
    b, _, _ = build([config], data, "cpu")
    c, _, _ = build([config.model_copy(update={"seed": 1})], data, "cpu")
    for la, lb, lc in zip(a.layers, b.layers, c.layers, strict=True):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.feedback, lb.feedback)
        assert not torch.equal(la.weight, lc.weight)


@pytest.mark.parametrize("algorithm", ["fa", "dfa", "np"])
def test_a_member_draws_the_numbers_of_its_run_in_any_group(algorithm: str) -> None:
    """Built in a group (seeds 5, 1, 9), member g has the initial weights, feedback
    matrices and noise of its seed's run built alone; members of other seeds differ."""
    config = RunConfig(dataset="digits", network="mlp", hidden=[8], algorithm=algorithm,
                       seed=0)
    data = load_data(config)
    seeds = [5, 1, 9]
    group, group_rule, _ = build([config.model_copy(update={"seed": s}) for s in seeds],
                                 data, "cpu")
    for g, seed in enumerate(seeds):
        alone, alone_rule, _ = build([config.model_copy(update={"seed": seed})], data, "cpu")
        for lg, la in zip(group.layers, alone.layers, strict=True):
            assert torch.equal(lg.weight[g], la.weight[0])
            assert torch.equal(lg.bias[g], la.bias[0])
            assert not torch.equal(lg.weight[g], lg.weight[(g + 1) % len(seeds)])
            if algorithm == "fa":
                assert torch.equal(lg.feedback[g], la.feedback[0])
        if algorithm == "dfa":
            for bg, ba in zip(group_rule.feedback, alone_rule.feedback, strict=True):
                assert torch.equal(bg[g], ba[0])
        if algorithm == "np":
            group_rule.reseed(4)
            alone_rule.reseed(4)
            like = torch.zeros(len(seeds), 6, 3)
            assert torch.equal(group_rule.noise(like)[g], alone_rule.noise(like[:1])[0])
