"""Constrained parameter inference (COPI paper) for the forward weights.

The target of layer l is `z_l = a_l + δ_l` with `δ_l = −∂ℓ/∂a_l` from BP or from
FA; the update is Hebbian plus a decay on the squared (decorrelated) input:

    ΔW_l = ⟨z_l x̂_{l-1}ᵀ⟩ − W_l diag(⟨x̂_{l-1}²⟩)        (W ← W + η ΔW)

A bias is a weight on a constant input 1: Δb = ⟨z_l⟩ − b. The update is handed to
the optimizer as the gradient `−ΔW`, so plain SGD takes the paper's steps. The
decorrelating matrices should use the "copi" decorrelation rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrgd.losses import LossFn
from corrgd.nn.layers import DecorLinear
from corrgd.nn.network import Net
from corrgd.rules.backprop import FA
from corrgd.rules.base import LearningRule, Step


class COPI(LearningRule):
    name = "copi"

    def __init__(self, feedback: str = "bp", seed: int = 0) -> None:
        super().__init__(seed)
        if feedback not in ("bp", "fa"):
            raise ValueError(f"COPI feedback must be 'bp' or 'fa', got {feedback!r}")
        self.feedback = feedback

    def setup(self, net: Net, example: Tensor) -> None:
        for layer in net.layers:
            if not isinstance(layer, DecorLinear):
                raise ValueError("COPI is implemented for dense layers only")
        if self.feedback == "fa":
            FA(self.seed).setup(net, example)

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        trace = net.trace(x)
        mean_loss = loss(trace.output, y).mean()
        grads = torch.autograd.grad(mean_loss, trace.preacts)
        n = x.shape[0]
        with torch.no_grad():
            for layer, inp, a, g in zip(net.layers, trace.inputs, trace.preacts, grads,
                                        strict=True):
                xh = inp if layer.decor is None else layer.decor.decorrelate(
                    inp, layer.decor.center(inp.mean(0)) if layer.decor.settings.demeans
                    else None)
                z = a - n * g  # a + δ, δ = −∂ℓ_n/∂a_n per sample
                dW = z.T @ xh / n - layer.weight * xh.pow(2).mean(0)
                layer.weight.grad = -dW
                if layer.bias is not None:
                    layer.bias.grad = -(z.mean(0) - layer.bias)
        return Step(mean_loss.detach(), trace)
