"""What the runner logs besides loss and accuracy, per member of a network (`corrgd.nn`).

- per decorrelated layer: residual |off-diagonal correlation| of its output x̂,
  the CRGD gain, and the norm ratio ‖x̂‖ / ‖x‖;
- for any rule: the angle between its update and the true BP gradient, per layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from corrgd.losses import LossFn
from corrgd.nn.network import Net
from corrgd.rules import BP, LearningRule


@contextmanager
def without_feedback(net: Net) -> Iterator[None]:
    """Temporarily remove feedback matrices so the backward pass is exact BP."""
    saved = [layer.feedback for layer in net.layers]
    for layer in net.layers:
        layer.feedback = None
    try:
        yield
    finally:
        for layer, fb in zip(net.layers, saved, strict=True):
            layer.feedback = fb


def layer_updates(net: Net, rule: LearningRule, x: Tensor, y: Tensor, loss: LossFn
                  ) -> list[Tensor]:
    """Each layer's update from `rule` on one batch: (G, weights + biases) per layer.

    Leaves the parameters' `.grad` as they were and nothing else changes.
    """
    params = list(net.parameters())
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        rule.gradients(net, x, y, loss)
        updates = []
        for layer in net.layers:
            parts = [layer.weight.grad.flatten(1)]
            if layer.bias is not None:
                parts.append(layer.bias.grad.flatten(1))
            updates.append(torch.cat(parts, 1).detach().clone())
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
    return updates


def bp_gradients(net: Net, x: Tensor, y: Tensor, loss: LossFn) -> list[Tensor]:
    with without_feedback(net):
        return layer_updates(net, BP(), x, y, loss)


def angle(u: Tensor, v: Tensor) -> float:
    """Angle in degrees between two vectors (90 if either is zero)."""
    u, v = u.double(), v.double()  # float32 norms would put identical vectors ~0.04° apart
    nu, nv = u.norm(), v.norm()
    if nu == 0 or nv == 0:
        return 90.0
    cos = float(torch.dot(u, v) / (nu * nv))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def update_angles(net: Net, rule: LearningRule, x: Tensor, y: Tensor, loss: LossFn
                  ) -> list[list[float]]:
    """Per layer and member, the angle (degrees) between `rule`'s update and the BP
    gradient."""
    true = bp_gradients(net, x, y, loss)
    ours = layer_updates(net, rule, x, y, loss)
    return [[angle(u[g], v[g]) for g in range(u.shape[0])]
            for u, v in zip(ours, true, strict=True)]


@torch.no_grad()
def decorrelation_stats(net: Net, x: Tensor) -> list[list[dict[str, float]] | None]:
    """Per layer (None where undecorrelated) and member: offdiag_corr, gain, norm_ratio on
    batch x."""
    inputs = net.trace(x).inputs
    return [layer.decorrelation_stats(inp) for layer, inp in zip(net.layers, inputs, strict=True)]
