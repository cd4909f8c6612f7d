"""What the runner logs besides loss and accuracy, per member of a network (`corrgd.learn.nn`).

- per decorrelated layer: residual |off-diagonal correlation| of its output x̂,
  the CRGD gain, and the norm ratio ‖x̂‖ / ‖x‖;
- for any rule: the angle between its update and the true BP gradient, per layer;
- with feedback matrices (FA): the angle between each layer's forward weights W_l and
  its feedback matrix B_l, as BioTorch logs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from corrgd.learn.losses import LossFn
from corrgd.learn.nn.network import Net
from corrgd.learn.rules import BP, LearningRule


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
    return angles(u[None], v[None])[0]


def angles(u: Tensor, v: Tensor) -> list[float]:
    """Angle in degrees between each pair of rows of u and v (G, P): (G,) as floats, 90
    where either row is zero."""
    u, v = u.flatten(1).double(), v.flatten(1).double()  # float32 norms would put identical
    uu, vv = (u * u).sum(1), (v * v).sum(1)                 # vectors ~0.04° apart
    cos = ((u * v).sum(1) / (uu * vv).sqrt()).clamp(-1.0, 1.0)
    degrees = torch.where((uu == 0) | (vv == 0), 90.0, torch.rad2deg(torch.arccos(cos)))
    return degrees.tolist()


def update_angles(net: Net, rule: LearningRule, x: Tensor, y: Tensor, loss: LossFn
                  ) -> list[list[float]]:
    """Per layer and member, the angle (degrees) between `rule`'s update and the BP
    gradient."""
    true = bp_gradients(net, x, y, loss)
    ours = layer_updates(net, rule, x, y, loss)
    return [angles(u, v) for u, v in zip(ours, true, strict=True)]


@torch.no_grad()
def decorrelation_stats(net: Net, x: Tensor) -> list[list[dict[str, float]] | None]:
    """Per layer (None where undecorrelated) and member: offdiag_corr, gain, norm_ratio on
    batch x."""
    inputs = net.trace(x).inputs
    return [layer.decorrelation_stats(inp) for layer, inp in zip(net.layers, inputs, strict=True)]


@torch.no_grad()
def feedback_angles(net: Net) -> list[list[float] | None]:
    """Per layer (None where it has no feedback matrix) and member: the angle (degrees)
    between the forward weights W_l and the feedback matrix B_l, both flattened (a conv
    layer's kernels too)."""
    return [None if layer.feedback is None else angles(layer.weight, layer.feedback)
            for layer in net.layers]
