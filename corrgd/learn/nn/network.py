"""A feed-forward network of decorrelated layers that learning rules can look inside.

Each `Block` is one weight layer (`DecorLinear` or `DecorConv2d`) with what
follows it: the activation `f` (leaky ReLU, slope 0.01, or none) and an optional
max-pool. A block whose layer is dense flattens its input first.

A `Net` holds G members (see `corrgd.learn.nn`): activations are (G, n, ...), and a
batch without the member axis is given to every member.

`Net.trace` runs the network and keeps what the learning rules need: each
layer's input `x_{l-1}` (before decorrelation), pre-activation `a_l` and the
mean μ it was demeaned by (`DecorLayer.mean`). It can add noise to every `a_l`
(node perturbation), demean by given means (those of a clean pass), and cut the
graph between blocks (`detach=True`), so that a backward pass from `a_l` reaches
only layer `l`'s weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrgd.learn.checks import check_flag, check_integer
from corrgd.learn.nn.layers import DecorConv2d, DecorLayer, DecorLinear

NEGATIVE_SLOPE = 0.01


def activation_derivative(a: Tensor) -> Tensor:
    """f'(a) of the leaky ReLU."""
    return torch.where(a > 0, 1.0, NEGATIVE_SLOPE).to(a.dtype)


@dataclass
class Trace:
    """One forward pass, layer by layer; every tensor is (G, n, ...)."""

    inputs: list[Tensor]          # x_{l-1}: what layer l received, before its decorrelation
    preacts: list[Tensor]         # a_l, with any injected noise
    output: Tensor                # the network's output (a_L, or f(a_L) with an output f)
    means: list[Tensor | None]    # the mean μ each layer subtracted (None: none)


class Block(nn.Module):
    def __init__(self, layer: DecorLayer, *, activation: bool = True, pool: int = 0) -> None:
        super().__init__()
        if not isinstance(layer, DecorLayer):
            raise TypeError(f"layer must be a DecorLinear or DecorConv2d, got {layer!r}")
        check_integer("pool", pool, 0)
        check_flag("activation", activation)
        if pool and not isinstance(layer, DecorConv2d):
            raise ValueError(f"pool: {pool}, after a dense layer; a pool follows a conv layer")
        self.layer = layer
        self.activation = activation
        self.pool = pool

    @property
    def flattens(self) -> bool:
        return isinstance(self.layer, DecorLinear)

    def prepare(self, x: Tensor) -> Tensor:
        return x.flatten(2) if self.flattens else x

    def derivative(self, a: Tensor) -> Tensor:
        """f'(a) of this block's activation (1 without one)."""
        return activation_derivative(a) if self.activation else torch.ones_like(a)

    def finish(self, a: Tensor) -> Tensor:
        x = F.leaky_relu(a, NEGATIVE_SLOPE) if self.activation else a
        if not self.pool:
            return x
        y = F.max_pool2d(x.flatten(0, 1), self.pool)
        return y.view(*x.shape[:2], *y.shape[1:])

    def extra_repr(self) -> str:
        return f"activation={'leaky_relu' if self.activation else 'none'}, pool={self.pool}"


class Net(nn.Module):
    def __init__(self, blocks: Sequence[Block], input_shape: tuple[int, ...]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a Net needs at least one block")
        for size in input_shape:
            check_integer(f"every size of input_shape {tuple(input_shape)}", size)
        self.blocks = nn.ModuleList(blocks)
        self.input_shape = tuple(input_shape)

    @property
    def layers(self) -> list[DecorLayer]:
        return [b.layer for b in self.blocks]

    @property
    def members(self) -> int:
        return self.layers[0].members

    def per_member(self, x: Tensor) -> Tensor:
        """x as (G, n, ...): a batch without the member axis goes to every member."""
        if x.dim() == len(self.input_shape) + 1:
            return x.unsqueeze(0).expand(self.members, *x.shape)
        return x

    def forward(self, x: Tensor) -> Tensor:
        x = self.per_member(x)
        for block in self.blocks:
            x = block.finish(block.layer(block.prepare(x)))
        return x

    def trace(self, x: Tensor, noise: Sequence[Tensor | None] | None = None,
              detach: bool = False, means: Sequence[Tensor | None] | None = None) -> Trace:
        """Forward pass recording every layer's input and pre-activation.

        noise:  a tensor (or None) per layer, added to that layer's pre-activation.
        detach: cut the graph between blocks, so ∂a_l reaches only layer l.
        means:  means to demean by while training instead of each layer's own batch mean
                (e.g. a clean pass's, so that noise added to one sample reaches no other
                through the mean).
        """
        x = self.per_member(x)
        inputs, preacts, used = [], [], []
        for i, block in enumerate(self.blocks):
            x = block.prepare(x)
            if detach:
                x = x.detach()
            inputs.append(x)
            mean = block.layer.mean(x, None if means is None else means[i])
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

    def set_decorrelation_lr(self, lr: Tensor | float, conv_lr: Tensor | float | None = None
                             ) -> None:
        """Set every decorrelation layer's learning rate, one value per member (or one for
        all); conv layers take `conv_lr` where given."""
        for layer in self.layers:
            if layer.decor is not None:
                rate = conv_lr if conv_lr is not None and isinstance(layer, DecorConv2d) else lr
                layer.decor.lr.copy_(torch.as_tensor(rate, dtype=layer.decor.lr.dtype))

    @property
    def decorrelated(self) -> bool:
        return any(layer.decor is not None for layer in self.layers)

    # --- members ------------------------------------------------------------------
    def member_state(self, g: int) -> dict[str, Tensor]:
        """Member g's slice of the state dict (weights, biases, M, μ): a copy."""
        return {name: t.detach()[g].clone()
                for name, t in self.state_dict(keep_vars=True).items()}

    @torch.no_grad()
    def load_member_state(self, g: int, state: dict[str, Tensor]) -> None:
        """Set member g from a `member_state`."""
        tensors = self.state_dict(keep_vars=True)
        if set(tensors) != set(state):
            raise KeyError(f"member state has {sorted(state)}, the net {sorted(tensors)}")
        for name, value in state.items():
            tensors[name][g].copy_(value)

    @torch.no_grad()
    def select_members(self, index: Tensor) -> None:
        """Keep only the members `index` (e.g. drop a diverged one), in that order."""
        for module in self.modules():
            for p in module.parameters(recurse=False):
                p.data = p.data[index]
                p.grad = None
            for name, b in module.named_buffers(recurse=False):
                if b is not None:
                    setattr(module, name, b[index])

    @torch.no_grad()
    def extend_members(self, other: Net) -> None:
        """Append the members of `other`, a net of the same architecture (e.g. of runs that
        join a group), after this one's."""
        for mine, theirs in zip(self.modules(), other.modules(), strict=True):
            if type(mine) is not type(theirs):
                raise ValueError(f"cannot join a {type(theirs).__name__} to a "
                                 f"{type(mine).__name__}")
            for p, q in zip(mine.parameters(recurse=False), theirs.parameters(recurse=False),
                            strict=True):
                p.data = torch.cat([p.data, q.data])
                p.grad = None
            for name, b in mine.named_buffers(recurse=False):
                if b is not None:
                    setattr(mine, name, torch.cat([b, getattr(theirs, name)]))


__all__ = ["Block", "DecorConv2d", "DecorLinear", "Net", "Trace", "activation_derivative"]
