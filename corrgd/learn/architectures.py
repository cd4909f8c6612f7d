"""The papers' networks, and generic ones, as plain layer lists: what a network is,
without building it (no torch here, so configs, sweeps and cost estimates stay light).

An architecture is a list of layer specs; `layer_shapes` resolves them for an input
shape and output count, `corrgd.learn.models.build_network` builds them:

    ("dense", width)            fully connected
    ("conv", channels, k, s)    k × k convolution, stride s
    ("pool", 2)                 2 × 2 max-pool after the previous layer's activation
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Spec = tuple[Any, ...]

CRGD_CONV = [("conv", 32, 3, 1), ("conv", 32, 3, 1), ("pool", 2),
             ("conv", 64, 3, 1), ("conv", 64, 3, 1), ("pool", 2), ("dense", 1000)]


@dataclass(frozen=True)
class Architecture:
    """A named network: hidden layer specs (the output layer is added), its defaults, and
    the run settings (`width`, `depth`, `hidden`) that shape it."""

    description: str
    hidden: Callable[..., list[Spec]]
    options: tuple[str, ...] = ()
    padding: int = 0
    bias: bool = True


def _dense(width: int, depth: int) -> list[Spec]:
    return [("dense", width)] * depth


ARCHITECTURES: dict[str, Architecture] = {
    "crgd-dense": Architecture(
        "CRGD Fig. 4 dense: input-1000-1000-1000-1000-classes",
        lambda width=1000, depth=4: _dense(width, depth), ("width", "depth")),
    "crgd-conv": Architecture(
        "CRGD Table 1 conv (CIFAR, Tiny ImageNet 56x56): 2x(conv3x3x32), pool, "
        "2x(conv3x3x64), pool, FC1000", lambda: list(CRGD_CONV)),
    "npd-fc": Architecture(
        "NPD FC net: `depth` hidden layers of 1024 (depth 0 is the 1-layer net)",
        lambda width=1024, depth=3: _dense(width, depth), ("width", "depth")),
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
        lambda hidden=(256, 256): [("dense", int(w)) for w in hidden], ("hidden",)),
    "convnet": Architecture(
        "generic conv net: 3x3 convs of 16 and 32 channels, each followed by a 2x2 pool, "
        "then FC `width`",
        lambda channels=(16, 32), width=128: [s for c in channels for s in
                                               (("conv", int(c), 3, 1), ("pool", 2))]
        + [("dense", int(width))], ("width",)),
}


def network_names() -> list[str]:
    return sorted(ARCHITECTURES)


def takes_flat_input(name: str) -> bool:
    """Whether architecture `name` starts with a dense layer (inputs flattened)."""
    first = ARCHITECTURES[name].hidden()[:1] or [("dense",)]
    return first[0][0] == "dense"


def network_input(name: str, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape architecture `name` gets for samples of `input_shape`: flattened when
    it starts with a dense layer (as `corrgd.data.load_dataset(flatten=True)` gives them)."""
    return (math.prod(input_shape),) if takes_flat_input(name) else tuple(input_shape)


@dataclass(frozen=True)
class LayerShape:
    """One weight layer of a network for a given input."""

    kind: str               # "dense" or "conv"
    fan_in: int             # inputs of one unit: in_features, or C_in k² (the decor dim)
    out: int                # units, or output channels
    in_channels: int = 0    # conv only
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    positions: int = 1      # output positions per sample (conv: H' W')
    pool: int = 0           # max-pool after the activation
    output_shape: tuple[int, ...] = ()  # after the pool


def layer_shapes(name: str, input_shape: tuple[int, ...], outputs: int, *,
                 padding: int | None = None, **options: Any) -> list[LayerShape]:
    """Every weight layer of architecture `name` (output layer of `outputs` units included)
    for inputs of `input_shape` (without the batch axis). ValueError for an unknown name
    or option, or an input the layers do not fit."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown network {name!r}; choose from {', '.join(network_names())}")
    arch = ARCHITECTURES[name]
    specs = arch.hidden(**options) + [("dense", outputs)]
    padding = arch.padding if padding is None else padding
    layers: list[LayerShape] = []
    shape = tuple(input_shape)
    for spec in specs:
        kind = spec[0]
        if kind == "pool":
            if not layers or len(shape) != 3:
                raise ValueError(f"{name}: a pool must follow a conv layer")
            size = spec[1]
            if min(shape[1:]) < size:
                raise ValueError(f"{name}: input {input_shape} too small for its pooling "
                                 f"({size}x{size} pooling of a {shape[1]}x{shape[2]} feature "
                                 "map leaves nothing)")
            shape = (shape[0], shape[1] // size, shape[2] // size)
            layers[-1] = LayerShape(**{**layers[-1].__dict__, "pool": size,
                                       "output_shape": shape})
        elif kind == "conv":
            _, channels, k, stride = spec
            if len(shape) != 3:
                raise ValueError(f"{name}: conv layers need image inputs (C, H, W), got {shape}")
            size = [(s + 2 * padding - k) // stride + 1 for s in shape[1:]]
            if min(size) < 1:
                raise ValueError(f"{name}: input {input_shape} too small for its convolutions")
            layers.append(LayerShape("conv", shape[0] * k * k, channels, shape[0], k, stride,
                                     padding, size[0] * size[1], 0, (channels, *size)))
            shape = (channels, *size)
        elif kind == "dense":
            if int(spec[1]) < 1:
                raise ValueError(f"{name}: layer widths must be >= 1, got {spec[1]}")
            layers.append(LayerShape("dense", math.prod(shape), int(spec[1]),
                                     output_shape=(int(spec[1]),)))
            shape = (int(spec[1]),)
        else:
            raise ValueError(f"{name}: unknown layer kind {kind!r}")
    return layers
