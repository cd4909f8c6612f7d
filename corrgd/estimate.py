"""What a sweep costs, before running it: `corrgd sweep SPEC --dry-run`.

Counts multiply-accumulates (MACs) of every run: the network's forward pass per
sample (decorrelation included), times the passes its learning rule makes per
training sample, times samples and epochs, plus one evaluation pass per split
and epoch. Turned into hours at stated, round throughputs — an order of
magnitude, not a promise.
"""

from __future__ import annotations

import math
from collections import Counter

from rich.console import Console
from rich.table import Table

from corrgd.config import RunConfig
from corrgd.models import build_network, takes_flat_input
from corrgd.nn import DecorConv2d, DecorLinear, DecorSettings
from corrgd.sweeps import Sweep

# (training samples, test samples, input shape, classes) of the official splits
DATASET_SIZES: dict[str, tuple[int, int, tuple[int, ...], int]] = {
    "digits": (1437, 360, (64,), 10),
    "synthetic-correlated": (10000, 2000, (64,), 10),
    "mnist": (60000, 10000, (1, 28, 28), 10),
    "fashion-mnist": (60000, 10000, (1, 28, 28), 10),
    "cifar10": (50000, 10000, (3, 32, 32), 10),
    "cifar100": (50000, 10000, (3, 32, 32), 100),
    "tiny-imagenet": (100000, 10000, (3, 56, 56), 200),
}
THROUGHPUTS = {"GPU at 10 TMAC/s": 10e12, "CPU at 50 GMAC/s": 50e9}


def forward_macs(config: RunConfig) -> tuple[int, int]:
    """(MACs of one forward pass per sample, number of weight layers)."""
    _, _, shape, classes = DATASET_SIZES[config.dataset]
    if config.dataset == "synthetic-correlated":
        shape = (int(config.data.get("dim", 64)),)
    decor = DecorSettings(lr=config.decor_lr, rule=config.decor_rule) if config.decor else None
    arch = {k: v for k in ("width", "depth", "hidden") if (v := getattr(config, k)) is not None}
    if takes_flat_input(config.network):
        shape = (math.prod(shape),)
    net = build_network(config.network, shape, classes, decor, padding=config.padding, **arch)
    macs, size = 0, list(shape)
    for block in net.blocks:
        layer = block.layer
        if isinstance(layer, DecorLinear):
            d_in = layer.in_features
            macs += d_in * layer.out_features + (d_in * d_in if layer.decor else 0)
            size = [layer.out_features]
        elif isinstance(layer, DecorConv2d):
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            h, w = ((size[1] + 2 * p - k) // s + 1, (size[2] + 2 * p - k) // s + 1)
            macs += h * w * layer.out_channels * layer.in_channels * k * k
            size = [layer.out_channels, h // (block.pool or 1), w // (block.pool or 1)]
    return macs, len(net.blocks)


def passes_per_sample(config: RunConfig, layers: int) -> float:
    """Forward-pass equivalents per training sample (a backward pass counts as two)."""
    k = config.np_samples
    return {"np": 3 + k, "anp": 3 + k, "inp": 3 + k * layers}.get(config.algorithm, 3)


def run_macs(config: RunConfig) -> float:
    n_train, n_test, _, _ = DATASET_SIZES[config.dataset]
    macs, layers = forward_macs(config)
    train = (n_train - config.val_size) * passes_per_sample(config, layers)
    evaluation = n_train + n_test  # train + val (held out of train) + test, forward only
    return macs * (config.epochs * train + (config.epochs + 1) * evaluation)


def print_estimate(console: Console, sweep: Sweep, runs: list[RunConfig]) -> None:
    table = Table(title=f"sweep {sweep.name}: {len(runs)} runs (dry run, nothing written)")
    for col in ("dataset / network", "algorithm", "runs", "epochs", "TMAC"):
        table.add_column(col, justify="left" if col[0].isalpha() and col != "runs" else "right")
    groups: Counter = Counter()
    epochs: Counter = Counter()
    cost: Counter = Counter()
    for r in runs:
        key = (f"{r.dataset} / {r.network}", r.label)
        groups[key] += 1
        epochs[key] += r.epochs
        cost[key] += run_macs(r)
    for key in sorted(groups):
        table.add_row(*key, str(groups[key]), str(epochs[key]), f"{cost[key] / 1e12:,.1f}")
    console.print(table)
    total = sum(cost.values())
    hours = ", ".join(f"{name}: {total / rate / 3600:,.1f} h" for name, rate in THROUGHPUTS.items())
    console.print(f"{len(runs)} runs, {sum(epochs.values())} epochs, "
                  f"{total / 1e12:,.1f} TMAC in all ≈ {hours}")
