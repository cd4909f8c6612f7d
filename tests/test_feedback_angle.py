"""The angle between a layer's forward weights and its feedback matrix (FA), as BioTorch
logs it: checked against arccos of the normalised dot product computed here by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from corrgd.learn.diagnostics import feedback_angles
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings
from corrgd.learn.rules import make_rule
from corrgd.results.reports.envelopes import check_metric, metric_values

G = 3


def by_hand(W: np.ndarray, B: np.ndarray) -> float:
    w, b = W.ravel(), B.ravel()
    return float(np.degrees(np.arccos(w @ b / (np.linalg.norm(w) * np.linalg.norm(b)))))


@pytest.mark.parametrize("network,shape", [("mlp", (12,)), ("convnet", (3, 12, 12))])
def test_feedback_angle_is_the_angle_between_w_and_b(network: str, shape: tuple) -> None:
    net = build_network(network, shape, 4, DecorSettings(lr=1e-3), members=G).double()
    rule = make_rule("fa", seed=list(range(G)))
    rule.setup(net, torch.randn(G, 8, *shape, dtype=torch.float64))
    measured = feedback_angles(net)
    assert len(measured) == len(net.layers)
    for layer, per_member in zip(net.layers, measured, strict=True):
        assert per_member is not None and len(per_member) == G
        for g, angle in enumerate(per_member):
            expected = by_hand(layer.weight[g].detach().numpy(), layer.feedback[g].numpy())
            assert angle == pytest.approx(expected, abs=1e-9)
            assert 60 < angle < 120  # independent random matrices: about 90°


def test_feedback_angle_is_zero_for_b_equal_to_w_and_none_without_feedback() -> None:
    net = build_network("convnet", (3, 12, 12), 4, members=G).double()
    assert feedback_angles(net) == [None] * len(net.layers)  # BP: no feedback matrices
    for layer in net.layers:
        layer.feedback = layer.weight.detach().clone()
    for per_member in feedback_angles(net):
        assert per_member == pytest.approx([0.0] * G, abs=1e-6)


def test_reports_read_the_logged_feedback_angle() -> None:
    """The runner logs it as `feedback_angle` in each layer's diagnostics dict; reports
    take it as a metric, per layer (NAME@L) or averaged over layers."""
    layers = [{"angle_to_bp": 40.0, "feedback_angle": 88.0},
              {"angle_to_bp": 20.0, "feedback_angle": 70.0}]
    epochs = pd.DataFrame({"run_id": [1, 1], "epoch": [0, 0], "split": ["train", "test"],
                           "diagnostics": [{"layers": layers}, None]})
    check_metric("feedback_angle@2")
    assert metric_values(epochs, "feedback_angle@2")["value"].tolist() == [70.0]
    assert metric_values(epochs, "feedback_angle")["value"].tolist() == [79.0]
