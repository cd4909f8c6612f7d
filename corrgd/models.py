"""The papers' networks, and generic ones, as plain layer lists.

An architecture is a list of layer specs; `build_network` turns it into a `Net`
for a given input shape, class count and decorrelation setting:

    ("dense", width)            fully connected
    ("conv", channels, k, s)    k × k convolution, stride s
    ("pool", 2)                 2 × 2 max-pool after the previous layer's activation

Every weight layer but the last is followed by a leaky ReLU; the last gives logits
(or, with `output_activation`, passes them through the leaky ReLU too, as COPI's
`y_L = f(a_L)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from corrgd.nn.decorrelation import DecorSettings
from corrgd.nn.layers import DecorConv2d, DecorLayer, DecorLinear
from corrgd.nn.network import Block, Net

Spec = tuple[Any, ...]

CRGD_CONV = [("conv", 32, 3, 1), ("conv", 32, 3, 1), ("pool", 2),
             ("conv", 64, 3, 1), ("conv", 64, 3, 1), ("pool", 2), ("dense", 1000)]


@dataclass(frozen=True)
class Architecture:
    """A named network: hidden layer specs (the output layer is added) and its defaults."""

    description: str
    hidden: Callable[..., list[Spec]]
    padding: int = 0
    bias: bool = True


def _dense(width: int, depth: int) -> list[Spec]:
    return [("dense", width)] * depth


ARCHITECTURES: dict[str, Architecture] = {
    "crgd-dense": Architecture(
        "CRGD Fig. 4 dense: input-1000-1000-1000-1000-classes",
        lambda width=1000, depth=4: _dense(width, depth)),
    "crgd-conv": Architecture(
        "CRGD Table 1 conv (CIFAR, Tiny ImageNet 56x56): 2x(conv3x3x32), pool, "
        "2x(conv3x3x64), pool, FC1000", lambda: list(CRGD_CONV)),
    "npd-fc": Architecture(
        "NPD FC net: `depth` hidden layers of 1024 (depth 0 is the 1-layer net)",
        lambda width=1024, depth=3: _dense(width, depth)),
    "npd-conv": Architecture(
        "NPD ConvNet (CIFAR-10): conv3x3x16 s2, conv3x3x32 s2, conv3x3x64 s1, FC1024",
        lambda: [("conv", 16, 3, 2), ("conv", 32, 3, 2), ("conv", 64, 3, 1), ("dense", 1024)]),
    "npd-tiny-conv": Architecture(
        "NPD Tiny ImageNet ConvNet: conv5x5x32 s2, conv3x3x64 s2, conv5x5x128 s1, FC512, FC512",
        lambda: [("conv", 32, 5, 2), ("conv", 64, 3, 2), ("conv", 128, 5, 1),
                 ("dense", 512), ("dense", 512)]),
    "copi-mnist": Architecture(
        "COPI MNIST: 784-500-500-500-10, no biases", lambda: _dense(500, 3), bias=False),
    "copi-cifar": Architecture(
        "COPI CIFAR-10: 3072-1000-1000-10, no biases", lambda: _dense(1000, 2), bias=False),
    "mlp": Architecture(
        "generic dense net: `hidden` widths, e.g. hidden=[256, 256]",
        lambda hidden=(256, 256): [("dense", int(w)) for w in hidden]),
    "convnet": Architecture(
        "generic conv net: `channels` 3x3 convs, each followed by a 2x2 pool, then FC `width`",
        lambda channels=(16, 32), width=128: [s for c in channels for s in
                                               (("conv", int(c), 3, 1), ("pool", 2))]
        + [("dense", int(width))]),
}


def network_names() -> list[str]:
    return sorted(ARCHITECTURES)


def takes_flat_input(name: str) -> bool:
    """Whether architecture `name` starts with a dense layer (inputs flattened)."""
    first = ARCHITECTURES[name].hidden()[:1] or [("dense",)]
    return first[0][0] == "dense"


def build_network(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    decor: DecorSettings | None = None,
    *,
    conv_decor: DecorSettings | None = None,
    padding: int | None = None,
    bias: bool | None = None,
    last_hidden_activation: bool = True,
    output_activation: bool = False,
    generator: torch.Generator | None = None,
    **arch_options: Any,
) -> Net:
    """Build architecture `name` for inputs of `input_shape` (without the batch axis).

    decor:                  decorrelation of every layer (None or lr 0: none)
    conv_decor:             a different setting for the conv layers (default: `decor`)
    padding:                conv padding (paper: 0; the CRGD reference code uses 1)
    last_hidden_activation: False drops the activation after the last hidden layer
                            (the CRGD reference dense net)
    output_activation:      the leaky ReLU after the output layer too (COPI)
    generator:              draws the initial weights, layer by layer (default: torch's
                            global generator)
    arch_options:           the architecture's own knobs (width, depth, hidden, ...)
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown network {name!r}; choose from {', '.join(network_names())}")
    arch = ARCHITECTURES[name]
    specs = arch.hidden(**arch_options) + [("dense", num_classes)]
    padding = arch.padding if padding is None else padding
    bias = arch.bias if bias is None else bias

    layers: list[tuple[DecorLayer, int]] = []  # (layer, pool after it)
    shape = tuple(input_shape)
    for spec in specs:
        kind = spec[0]
        if kind == "pool":
            if not layers or len(shape) != 3:
                raise ValueError(f"{name}: a pool must follow a conv layer")
            layer, _ = layers[-1]
            layers[-1] = (layer, spec[1])
            shape = (shape[0], shape[1] // spec[1], shape[2] // spec[1])
        elif kind == "conv":
            _, channels, k, stride = spec
            if len(shape) != 3:
                raise ValueError(f"{name}: conv layers need image inputs (C, H, W), got {shape}")
            layer = DecorConv2d(shape[0], channels, k, stride, padding,
                                conv_decor if conv_decor is not None else decor, bias,
                                generator=generator)
            size = [(s + 2 * padding - k) // stride + 1 for s in shape[1:]]
            if min(size) < 1:
                raise ValueError(f"{name}: input {input_shape} too small for its convolutions")
            layers.append((layer, 0))
            shape = (channels, *size)
        elif kind == "dense":
            in_features = 1
            for s in shape:
                in_features *= s
            layers.append((DecorLinear(in_features, spec[1], decor, bias, generator=generator),
                           0))
            shape = (spec[1],)
        else:
            raise ValueError(f"{name}: unknown layer kind {kind!r}")

    last = len(layers) - 1
    blocks = []
    for i, (layer, pool) in enumerate(layers):
        activation = output_activation if i == last else \
            (last_hidden_activation or i < last - 1)
        blocks.append(Block(layer, activation=activation, pool=pool))
    return Net(blocks)
