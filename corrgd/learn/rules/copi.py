"""Constrained parameter inference (COPI paper) for the forward weights.

The target of layer l is `z_l = a_l + δ_l`, with `δ_l` the perturbation that
credit assignment sends down (COPI Algorithm 1, §2.5):

    BP:  δ_L = −∂ℓ/∂a_L,   δ_l = f'(a_l) ⊙ (W_{l+1} R_{l+1})ᵀ δ_{l+1}     (= −∂ℓ/∂a_l)
    FA:  δ_L = −∂ℓ/∂a_L,   δ_l = f'(a_l) ⊙ B_{l+1} δ_{l+1}

With FA signals the fixed random `B_{l+1}` stands in for the whole
`(W_{l+1} R_{l+1})ᵀ`: no decorrelating matrix is in the backward path. The
update is Hebbian plus a decay on the squared (decorrelated) input:

    ΔW_l = ⟨z_l x̂_{l-1}ᵀ⟩ − W_l diag(⟨x̂_{l-1}²⟩)        (W ← W + η ΔW)

A bias is a weight on a constant input 1: Δb = ⟨z_l⟩ − b. The update is handed to
the optimizer as the gradient `−ΔW`, so plain SGD takes the paper's steps. The
paper's network ends in `y_L = f(a_L)` with loss `‖y_L − y*‖²` (no ½): build it
with `output_activation=True` and the "sse" loss. The decorrelating matrices
should use the "copi" decorrelation rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrgd.learn.losses import LossFn
from corrgd.learn.nn.layers import DecorLinear
from corrgd.learn.nn.network import Net
from corrgd.learn.rules.backprop import feedback_matrices
from corrgd.learn.rules.base import LearningRule, Step, mean_losses


class COPI(LearningRule):
    name = "copi"

    def __init__(self, feedback: str = "bp", seed: int | list[int] = 0) -> None:
        super().__init__(seed)
        if feedback not in ("bp", "fa"):
            raise ValueError(f"COPI feedback must be 'bp' or 'fa', got {feedback!r}")
        self.feedback = feedback
        self.matrices: list[Tensor] = []  # B_l per layer (FA signals), (G, out, in)

    def setup(self, net: Net, example: Tensor) -> None:
        for layer in net.layers:
            if not isinstance(layer, DecorLinear):
                raise ValueError("COPI is implemented for dense layers only")
        if self.feedback == "fa":
            self.matrices = feedback_matrices(net, self)

    def perturbations(self, net: Net, preacts: list[Tensor], losses: Tensor) -> list[Tensor]:
        """δ_l per member, sample and layer: −∂ℓ_n/∂a_l (BP) or sent down through B (FA)."""
        n = preacts[0].shape[1]
        if self.feedback == "bp":
            grads = torch.autograd.grad(losses.sum(), preacts)
            return [-n * g for g in grads]
        (last,) = torch.autograd.grad(losses.sum(), preacts[-1])
        deltas = [-n * last]
        with torch.no_grad():
            for block, a, B in zip(reversed(net.blocks[:-1]), reversed(preacts[:-1]),
                                   reversed(self.matrices[1:]), strict=True):
                deltas.append(block.derivative(a) * torch.bmm(deltas[-1], B))
        return deltas[::-1]

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        trace = net.trace(x)
        losses = mean_losses(loss, trace.output, y)
        deltas = self.perturbations(net, trace.preacts, losses)
        with torch.no_grad():
            for layer, inp, a, d in zip(net.layers, trace.inputs, trace.preacts, deltas,
                                        strict=True):
                xh = layer.decorrelated_input(inp)
                n = xh.shape[1]
                z = a + d
                dW = torch.bmm(z.transpose(1, 2), xh) / n - layer.weight * xh.pow(2).mean(1)[
                    :, None, :]
                layer.weight.grad = -dW
                if layer.bias is not None:
                    layer.bias.grad = -(z.mean(1) - layer.bias)
        return Step(losses.detach(), trace)

    def select_members(self, index: Tensor) -> None:
        super().select_members(index)
        self.matrices = [B[index] for B in self.matrices]

    def extend_members(self, other: LearningRule) -> None:
        super().extend_members(other)
        assert isinstance(other, type(self))
        self.matrices = [torch.cat([B, C]) for B, C in
                         zip(self.matrices, other.matrices, strict=True)]
