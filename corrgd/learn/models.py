"""The papers' networks, and generic ones, built as `Net`s (`corrgd.learn.architectures` lists
them as plain layer specs).

Every weight layer but the last is followed by a leaky ReLU; the last gives logits
(or, with `output_activation`, passes them through the leaky ReLU too, as COPI's
`y_L = f(a_L)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from corrgd.learn.architectures import ARCHITECTURES, layer_shapes, network_names, takes_flat_input
from corrgd.learn.nn.decorrelation import DecorSettings
from corrgd.learn.nn.layers import DecorConv2d, DecorLayer, DecorLinear
from corrgd.learn.nn.network import Block, Net

__all__ = ["ARCHITECTURES", "build_network", "network_names", "takes_flat_input"]


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
    members: int = 1,
    generators: Sequence[torch.Generator | None] | None = None,
    **arch_options: Any,
) -> Net:
    """Build architecture `name` for inputs of `input_shape` (without the batch axis).

    decor:                  decorrelation of every layer (None or lr 0: none)
    conv_decor:             a different setting for the conv layers (default: `decor`)
    padding:                conv padding (paper: 0; the CRGD reference code uses 1)
    last_hidden_activation: False drops the activation after the last hidden layer
                            (the CRGD reference dense net)
    output_activation:      the leaky ReLU after the output layer too (COPI)
    members:                G, the networks held side by side (`corrgd.learn.nn`)
    generators:             one per member: draws that member's initial weights, layer by
                            layer, as a network of one member would (default: torch's
                            global generator)
    arch_options:           the architecture's own knobs (width, depth, hidden, ...)
    """
    shapes = layer_shapes(name, input_shape, num_classes, padding=padding, **arch_options)
    bias = ARCHITECTURES[name].bias if bias is None else bias
    layers: list[tuple[DecorLayer, int]] = []  # (layer, pool after it)
    for shape in shapes:
        if shape.kind == "conv":
            layer: DecorLayer = DecorConv2d(
                shape.in_channels, shape.out, shape.kernel, shape.stride, shape.padding,
                conv_decor if conv_decor is not None else decor, bias, members, generators)
        else:
            layer = DecorLinear(shape.fan_in, shape.out, decor, bias, members, generators)
        layers.append((layer, shape.pool))

    last = len(layers) - 1
    blocks = []
    for i, (layer, pool) in enumerate(layers):
        activation = output_activation if i == last else \
            (last_hidden_activation or i < last - 1)
        blocks.append(Block(layer, activation=activation, pool=pool))
    return Net(blocks, input_shape)
