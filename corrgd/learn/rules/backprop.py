"""Backpropagation and its feedback-alignment approximations.

BP:  exact gradient by autograd, through every decorrelating matrix (a constant).
FA:  the backward pass uses fixed random `B_l` instead of `W_l`:
     δ_{l-1} = f'(a_{l-1}) ⊙ M_{l-1}ᵀ B_lᵀ δ_l,   ΔW_l = δ_l x̂_{l-1}ᵀ
DFA: the output error goes straight to every hidden layer:
     δ_l = f'(a_l) ⊙ B_l δ_L
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from corrgd.learn.losses import LossFn
from corrgd.learn.nn.network import Net
from corrgd.learn.rules.base import LearningRule, Step, mean_losses


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> Tensor:
    """Uniform(−√(6/fan_in), √(6/fan_in)): torch's `kaiming_uniform_` default, which the CRGD
    reference code uses for its feedback matrices."""
    bound = math.sqrt(6 / fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def feedback_matrices(net: Net, rule: LearningRule) -> list[Tensor]:
    """One fixed random matrix per layer, shaped like its weight (G, out, in, ...); member
    g's from its run's 'feedback' stream, independent of the forward weights' 'init'."""
    gens = rule.generators("feedback")
    per_member = [[kaiming_uniform(tuple(layer.weight.shape[1:]), layer.fan_in, g)
                   for layer in net.layers] for g in gens]
    return [torch.stack(bs).to(layer.weight.device, layer.weight.dtype)
            for layer, bs in zip(net.layers, zip(*per_member, strict=True), strict=True)]


class BP(LearningRule):
    name = "bp"

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        trace = net.trace(x)
        losses = mean_losses(loss, trace.output, y)
        losses.sum().backward()  # members are independent: each gets its own gradient
        return Step(losses.detach(), trace)


class FA(BP):
    """Feedback alignment: BP with each layer's backward weight a fixed random matrix."""

    name = "fa"

    def setup(self, net: Net, example: Tensor) -> None:
        for layer, B in zip(net.layers, feedback_matrices(net, self), strict=True):
            layer.feedback = B


class DFA(LearningRule):
    """Direct feedback alignment: `δ_l = f'(a_l) ⊙ B_l δ_L` for every hidden layer."""

    name = "dfa"

    def __init__(self, seed: int | list[int] = 0) -> None:
        super().__init__(seed)
        self.feedback: list[Tensor] = []  # B_l: (G, units_l, outputs)

    def setup(self, net: Net, example: Tensor) -> None:
        with torch.no_grad():
            preacts = net.trace(example).preacts
        outputs = preacts[-1].shape[-1]
        shapes = [(a[0, 0].numel(), outputs) for a in preacts[:-1]]
        per_member = [[kaiming_uniform(shape, outputs, g) for shape in shapes]
                      for g in self.generators("feedback")]
        like = preacts[-1]
        self.feedback = [torch.stack(bs).to(like.device, like.dtype)
                         for bs in zip(*per_member, strict=True)]

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        trace = net.trace(x, detach=True)
        losses = mean_losses(loss, trace.output, y)
        (error,) = torch.autograd.grad(losses.sum(), trace.preacts[-1], retain_graph=True)
        deltas = [block.derivative(a) * torch.bmm(error, B.transpose(1, 2)).view_as(a)
                  for block, a, B in zip(net.blocks, trace.preacts[:-1], self.feedback,
                                         strict=False)]
        torch.autograd.backward(trace.preacts, [*deltas, error])
        return Step(losses.detach(), trace)

    def select_members(self, index: Tensor) -> None:
        super().select_members(index)
        self.feedback = [B[index] for B in self.feedback]

    def extend_members(self, other: LearningRule) -> None:
        super().extend_members(other)
        assert isinstance(other, type(self))
        self.feedback = [torch.cat([B, C]) for B, C in
                         zip(self.feedback, other.feedback, strict=True)]
