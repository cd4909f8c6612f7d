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

from corrgd import streams
from corrgd.losses import LossFn
from corrgd.nn.network import Net, activation_derivative
from corrgd.rules.base import LearningRule, Step


def kaiming_uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> Tensor:
    """Uniform(−√(6/fan_in), √(6/fan_in)): torch's `kaiming_uniform_` default, which the CRGD
    reference code uses for its feedback matrices."""
    bound = math.sqrt(6 / fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def feedback_matrices(net: Net, seed: int) -> list[Tensor]:
    """One fixed random matrix per layer, shaped like its weight, from the run's
    'feedback' stream (independent of the forward weights' 'init' stream)."""
    g = streams.generator(seed, "feedback")
    return [kaiming_uniform(tuple(layer.weight.shape), layer.fan_in, g)
            .to(layer.weight.device, layer.weight.dtype) for layer in net.layers]


class BP(LearningRule):
    name = "bp"

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        trace = net.trace(x)
        mean_loss = loss(trace.output, y).mean()
        mean_loss.backward()
        return Step(mean_loss.detach(), trace)


class FA(BP):
    """Feedback alignment: BP with each layer's backward weight a fixed random matrix."""

    name = "fa"

    def setup(self, net: Net, example: Tensor) -> None:
        for layer, B in zip(net.layers, feedback_matrices(net, self.seed), strict=True):
            layer.feedback = B


class DFA(LearningRule):
    """Direct feedback alignment: `δ_l = f'(a_l) ⊙ B_l δ_L` for every hidden layer."""

    name = "dfa"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.feedback: list[Tensor] = []

    def setup(self, net: Net, example: Tensor) -> None:
        with torch.no_grad():
            trace = net.trace(example[:1])
        classes = trace.output.shape[1]
        g = self.generator()
        self.feedback = [
            kaiming_uniform((a[0].numel(), classes), classes, g).to(a.device, a.dtype)
            for a in trace.preacts[:-1]
        ]

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        trace = net.trace(x, detach=True)
        mean_loss = loss(trace.output, y).mean()
        (error,) = torch.autograd.grad(mean_loss, trace.preacts[-1], retain_graph=True)
        deltas = [activation_derivative(a) * (error @ B.T).view_as(a)
                  for a, B in zip(trace.preacts[:-1], self.feedback, strict=True)]
        torch.autograd.backward(trace.preacts, [*deltas, error])
        return Step(mean_loss.detach(), trace)
