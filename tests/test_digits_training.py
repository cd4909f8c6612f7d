"""A short real training run: decorrelated BP against BP on scikit-learn's digits.

Setup: the 1797 8 × 8 digits, standardised per pixel; crgd-dense with width 128
(64-128-128-128-128-10, leaky ReLU), Adam lr 1e-3, batch 64, the same seed, the same
initial weights and the same batch order for both; training loss = mean cross-entropy
over the whole training set in eval mode after TRAIN_EPOCHS epochs.

Measured training loss (seeds 0-9; BP: 1.107 / 0.278 / 0.126 / 0.071 / 0.048 after
epochs 1-5), decorrelated BP as a multiple of BP's, mean (worst) over the seeds:

    decor lr*  epoch 1      epoch 2      epoch 3      epoch 4      epoch 5
    1e-3       1.29 (1.38)  0.92 (1.15)  0.65 (0.78)  0.85 (1.18)  0.82 (1.45)   <- used
    5e-4       1.28 (1.35)  0.98 (1.22)  0.75 (0.93)  0.81 (1.11)  0.65 (0.99)
    2e-3       1.33 (1.43)  0.86 (1.11)  0.64 (0.85)  1.37 (2.31)  2.35 (5.6)
    1e-2       1.55 (1.68)  1.08 (1.46)  2.32 (4.09)  7.5  (11.4)  12.6 (22.7)
    1e-3, reference sample_frac 0.1 (7 of 64 rows):
               1.29 (1.37)  0.96 (1.49)  0.82 (2.18)  1.96 (4.38)  1.02 (2.49)

Decorrelated BP is behind after epoch 1 (the batch-mean subtraction alone costs
≈ 1.26 ×), ahead at epoch 3 for every seed, and noisy or unstable later at these decor
LRs; hence 3 epochs, statistics on the whole batch, and decor lr 1e-3.
(* statistics on the whole batch, sample_frac 1.0, unless noted.)
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from corrgd.learn.diagnostics import decorrelation_stats
from corrgd.learn.losses import cross_entropy
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings, Net
from corrgd.learn.optim import MemberAdam
from corrgd.learn.rules import make_rule
from corrgd.learn.training import evaluate, train_step

pytestmark = pytest.mark.usefixtures("single_thread")

TRAIN_EPOCHS = 3
BATCH = 64
DECOR = DecorSettings(rule="crgd", lr=1e-3, sample_frac=1.0)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32)
    X = (X - X.mean(0)) / X.std(0).clamp_min(1e-6)
    return X, torch.tensor(y)


def train(X: torch.Tensor, y: torch.Tensor, decor: DecorSettings | None, seed: int
          ) -> tuple[Net, list[float]]:
    torch.manual_seed(seed)
    net = build_network("crgd-dense", (64,), 10, decor, width=128, depth=4)
    rule = make_rule("bp")
    rule.setup(net, X[:BATCH])
    opt = MemberAdam(net.parameters(), net.members, lr=1e-3)
    order = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(TRAIN_EPOCHS):
        perm = torch.randperm(len(X), generator=order)
        for i in range(0, len(X), BATCH):
            idx = perm[i:i + BATCH]
            train_step(net, rule, opt, X[idx], y[idx], cross_entropy)
        (result,) = evaluate(net, [(X, y)], cross_entropy)  # one member
        losses.append(result["loss"])
    return net, losses


@pytest.mark.parametrize("seed", [0, 1])
def test_decorrelated_bp_reaches_lower_training_loss(digits, seed):
    X, y = digits
    torch.manual_seed(seed)
    plain_init = build_network("crgd-dense", (64,), 10, None, width=128, depth=4)
    torch.manual_seed(seed)
    decor_init = build_network("crgd-dense", (64,), 10, DECOR, width=128, depth=4)
    for a, b in zip(plain_init.layers, decor_init.layers, strict=True):
        assert torch.equal(a.weight, b.weight)  # the same start

    _, bp = train(X, y, None, seed)
    net, dbp = train(X, y, DECOR, seed)
    assert bp[-1] < 0.5 * bp[0]  # BP itself learns
    assert dbp[-1] < 0.9 * bp[-1], (bp, dbp)

    # The decorrelation did happen: every layer's x̂ is less correlated than its input.
    stats = [member for (member,) in decorrelation_stats(net, X)]  # one member per layer
    assert all(s["offdiag_corr"] < s["input_offdiag_corr"] for s in stats)
    assert stats[0]["offdiag_corr"] < 0.8 * stats[0]["input_offdiag_corr"]
