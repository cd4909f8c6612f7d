"""What a sweep costs, before running it: the numbers of `corrgd sweep SPEC --dry-run`
(`corrgd.console` prints them).

Counts multiply-accumulates (MACs) of every run: the network's forward pass per
sample (decorrelation included), times the passes its learning rule makes per
training sample, times samples and epochs, plus one evaluation pass per split
and epoch. Turned into hours at stated, round throughputs — an order of
magnitude, not a promise. Also shows how the runs form groups (runs that train
together as one batched model) and how many members a group gets on the device.

Works from a `corrgd.spec.sweeps.Plan` (counted, not expanded: a grid of a million runs
answers in seconds): every cost here depends only on settings that runs of one group
share, so one representative run per group and the group's run count suffice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from corrgd.spec.config import RunConfig
from corrgd.spec.pruning import Pruning, expected_epochs
from corrgd.spec.sizing import (
    auto_group_size,
    dataset_shape,
    forward_macs,
    member_bytes,
    passes_per_sample,
)
from corrgd.spec.sweeps import GroupCount, Plan

THROUGHPUTS = {"GPU at 10 TMAC/s": 10e12, "CPU at 50 GMAC/s": 50e9}


def run_macs(config: RunConfig, forward: tuple[int, int] | None = None) -> float:
    data = dataset_shape(config)
    macs, layers = forward or forward_macs(config)
    train = (data.train - config.val_size) * passes_per_sample(config, layers)
    evaluation = data.train + data.test  # train + val (held out of train) + test, forward only
    return macs * (config.epochs * train + (config.epochs + 1) * evaluation)


def queue_order(runs: Sequence[RunConfig]) -> list[RunConfig]:
    """The runs in the order to enqueue them: the runs alike (one group key) with the most
    work in all (MACs × runs) first, grid order among equals.

    Workers claim the oldest queued run first, so the longest groups start first and no
    worker is left training one long group while the others idle (longest job first)."""
    keys = [r.group_key() for r in runs]
    per_run: dict[str, float] = {}
    work: Counter = Counter()
    for r, key in zip(runs, keys, strict=True):
        if key not in per_run:  # the same for every run of a key
            per_run[key] = run_macs(r)
        work[key] += per_run[key]
    order = sorted(range(len(runs)), key=lambda i: -work[keys[i]])
    return [runs[i] for i in order]


def curve_costs(plan: Plan) -> dict[tuple[str, str], tuple[int, int, float]]:
    """(runs, epochs, MACs) per (data set / network, curve label), sorted."""
    costs: dict[tuple[str, str], tuple[int, int, float]] = {}
    for group in plan.groups.values():
        r = group.config  # MACs depend only on settings the group's runs share
        key = (f"{r.dataset} / {r.network}", r.label)
        runs, epochs, macs = costs.get(key, (0, 0, 0.0))
        costs[key] = (runs + group.runs, epochs + group.epochs, macs + group.runs * run_macs(r))
    return dict(sorted(costs.items()))


def pruned_cost(plan: Plan, pruning: Pruning) -> tuple[float, float]:
    """(epochs, MACs) the sweep is expected to train with `pruning`: each rung group's runs
    as `spec.pruning.expected_epochs` stops them, a run's MACs in proportion to its epochs."""
    epochs = macs = 0.0
    for group in plan.groups.values():
        c = group.config
        trained = group.runs / group.lr_combos * expected_epochs(pruning, group.lr_combos,
                                                                  c.epochs)
        epochs += trained
        macs += run_macs(c) * trained / max(1, c.epochs)
    return epochs, macs


@dataclass
class GroupPlan:
    """The runs of one group key: how many, and members per group on a device."""

    label: str
    runs: int
    member_mb: float
    members: int

    @property
    def groups(self) -> int:
        return -(-self.runs // self.members)


def plan_groups(groups: Iterable[GroupCount], device: str, group_size: int | None,
                free: int) -> list[GroupPlan]:
    """Each group key's runs, with the group size a worker on `device` with `free` bytes of
    memory free would use (`group_size`: the size it was told)."""
    plans = []
    for group in groups:
        first = group.config
        size = group_size or auto_group_size(first, device, free)
        plans.append(GroupPlan(f"{first.dataset} / {first.network} / {first.label}",
                               group.runs, member_bytes(first) / 2**20,
                               min(size, group.runs)))
    return plans
