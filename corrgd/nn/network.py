"""A feed-forward network of decorrelated layers that learning rules can look inside.

Each `Block` is one weight layer (`DecorLinear` or `DecorConv2d`) with what
follows it: the activation `f` (leaky ReLU, slope 0.01, or none) and an optional
max-pool. A block whose layer is dense flattens its input first.

`Net.trace` runs the network and keeps what the learning rules need: each
layer's input `x_{l-1}` (before decorrelation) and pre-activation `a_l`. It can
add noise to every `a_l` (node perturbation) and cut the graph between blocks
(`detach=True`), so that a backward pass from `a_l` reaches only layer `l`'s
weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrgd.nn.layers import DecorConv2d, DecorLayer, DecorLinear

NEGATIVE_SLOPE = 0.01


def activation_derivative(a: Tensor) -> Tensor:
    """f'(a) of the leaky ReLU."""
    return torch.where(a > 0, 1.0, NEGATIVE_SLOPE).to(a.dtype)


@dataclass
class Trace:
    """One forward pass, layer by layer."""

    inputs: list[Tensor]          # x_{l-1}: what layer l received, before its decorrelation
    preacts: list[Tensor]         # a_l, with any injected noise
    output: Tensor                # the network's output (a_L, or f(a_L) with an output f)
    means: list[Tensor | None]    # the batch mean each layer subtracted (None: none)


class Block(nn.Module):
    def __init__(self, layer: DecorLayer, *, activation: bool = True, pool: int = 0) -> None:
        super().__init__()
        self.layer = layer
        self.activation = activation
        self.pool = pool

    @property
    def flattens(self) -> bool:
        return isinstance(self.layer, DecorLinear)

    def prepare(self, x: Tensor) -> Tensor:
        return x.flatten(1) if self.flattens else x

    def derivative(self, a: Tensor) -> Tensor:
        """f'(a) of this block's activation (1 without one)."""
        return activation_derivative(a) if self.activation else torch.ones_like(a)

    def finish(self, a: Tensor) -> Tensor:
        x = F.leaky_relu(a, NEGATIVE_SLOPE) if self.activation else a
        return F.max_pool2d(x, self.pool) if self.pool else x

    def extra_repr(self) -> str:
        return f"activation={'leaky_relu' if self.activation else 'none'}, pool={self.pool}"


class Net(nn.Module):
    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    @property
    def layers(self) -> list[DecorLayer]:
        return [b.layer for b in self.blocks]

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block.finish(block.layer(block.prepare(x)))
        return x

    def trace(self, x: Tensor, noise: Sequence[Tensor | None] | None = None,
              detach: bool = False, means: Sequence[Tensor | None] | None = None) -> Trace:
        """Forward pass recording every layer's input and pre-activation.

        noise:  a tensor (or None) per layer, added to that layer's pre-activation.
        detach: cut the graph between blocks, so ∂a_l reaches only layer l.
        means:  batch means to demean by instead of each layer's own (e.g. a clean pass's,
                so that noise added to one sample reaches no other through the mean).
        """
        inputs, preacts, used = [], [], []
        for i, block in enumerate(self.blocks):
            x = block.prepare(x)
            if detach:
                x = x.detach()
            inputs.append(x)
            mean = means[i] if means is not None else \
                (block.layer.batch_mean(x) if self.training else None)
            used.append(mean)
            a = block.layer(x, mean)
            if noise is not None and noise[i] is not None:
                a = a + noise[i]
            preacts.append(a)
            x = block.finish(a)
        return Trace(inputs, preacts, x, used)

    @torch.no_grad()
    def update_decorrelation(self, inputs: Sequence[Tensor]) -> None:
        """One step of every layer's decorrelation rule, from a trace's inputs."""
        for layer, x in zip(self.layers, inputs, strict=True):
            layer.update_decorrelation(x)

    def set_decorrelation_lr(self, lr: float, conv_lr: float | None = None) -> None:
        """Change every decorrelation layer's learning rate (e.g. a schedule); conv layers
        take `conv_lr` where given."""
        for layer in self.layers:
            if layer.decor is not None:
                rate = conv_lr if conv_lr is not None and isinstance(layer, DecorConv2d) else lr
                layer.decor.settings = replace(layer.decor.settings, lr=rate)

    @property
    def decorrelated(self) -> bool:
        return any(layer.decor is not None for layer in self.layers)


__all__ = ["Block", "DecorConv2d", "DecorLinear", "Net", "Trace", "activation_derivative"]
