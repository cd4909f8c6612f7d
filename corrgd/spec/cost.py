"""What a sweep costs, before running it: `corrgd sweep SPEC --dry-run`.

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

from rich.console import Console
from rich.table import Table

from corrgd.spec.config import RunConfig
from corrgd.spec.sizing import (
    auto_group_size,
    dataset_shape,
    forward_macs,
    free_bytes,
    member_bytes,
    passes_per_sample,
)
from corrgd.spec.sweeps import GroupCount, Plan, Sweep

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


def plan_groups(groups: Iterable[GroupCount], device: str, group_size: int | None
                ) -> list[GroupPlan]:
    """Each group key's runs, with the group size a worker on `device` would use."""
    free = None if group_size else free_bytes(device)
    plans = []
    for group in groups:
        first = group.config
        size = group_size or auto_group_size(first, device, free)
        plans.append(GroupPlan(f"{first.dataset} / {first.network} / {first.label}",
                               group.runs, member_bytes(first) / 2**20,
                               min(size, group.runs)))
    return plans


def print_estimate(console: Console, sweep: Sweep, plan: Plan | list[RunConfig], *,
                   device: str = "cpu", group_size: int | None = None) -> None:
    """The dry run's tables: runs, epochs and MACs per (data set / network, curve), and the
    groups on `device`. `plan`: `corrgd.spec.sweeps.plan(sweep)`, or runs already expanded."""
    if not isinstance(plan, Plan):
        plan = Plan.of_runs(sweep, plan)
    runs = f"{plan.runs}" if plan.exact else f"at most {plan.runs}"
    table = Table(title=f"sweep {sweep.name}: {runs} runs (dry run, nothing written)")
    for col in ("dataset / network", "algorithm", "runs", "epochs", "TMAC"):
        table.add_column(col, justify="left" if col[0].isalpha() and col != "runs" else "right")
    counts: Counter = Counter()
    epochs: Counter = Counter()
    cost: Counter = Counter()
    for group in plan.groups.values():
        r = group.config  # MACs depend only on settings the group's runs share
        key = (f"{r.dataset} / {r.network}", r.label)
        counts[key] += group.runs
        epochs[key] += group.epochs
        cost[key] += group.runs * run_macs(r)
    for key in sorted(counts):
        table.add_row(*key, str(counts[key]), str(epochs[key]), f"{cost[key] / 1e12:,.1f}")
    console.print(table)
    total = sum(cost.values())
    hours = ", ".join(f"{name}: {total / rate / 3600:,.1f} h" for name, rate in THROUGHPUTS.items())
    console.print(f"{runs} runs, {plan.epochs} epochs, "
                  f"{total / 1e12:,.1f} TMAC in all ≈ {hours}")
    if not plan.exact:
        console.print("grids of the union overlap too intricately to count exactly: "
                      "the numbers above are upper bounds")

    plans = plan_groups(plan.groups.values(), device, group_size)
    groups = Table(title=f"groups on {device} "
                   + (f"(--group-size {group_size})" if group_size else "(automatic size)"))
    for col in ("runs alike", "runs", "MB per member", "members per group", "groups"):
        groups.add_column(col, justify="left" if col == "runs alike" else "right")
    for p in plans:
        groups.add_row(p.label, str(p.runs), f"{p.member_mb:,.0f}", str(p.members),
                       str(p.groups))
    console.print(groups)
    console.print(f"{sum(p.groups for p in plans)} groups of runs that train together")
