"""Pruning hopeless learning rates: asynchronous successive halving (ASHA) inside a sweep.

    prune: {metric: val_acc, min_epochs: 1, reduction: 3}     # in a spec; every key optional

A sweep's runs that differ only in their learning rates (`LR_SETTINGS`: not in seed, not
in anything else) form a *rung group* (`prune_key`). Its runs are compared at the rungs
min_epochs · η^k (k = 0, 1, ...) below `epochs`: a run that reaches a rung continues only
if its score there (`metric` at that epoch, larger or smaller is better as the metric
says) is in the top 1/η, rounded up, of its group's runs that have reached the rung so
far, itself included; otherwise it stops there, `pruned`, its rows and checkpoint kept.
The first run to reach a rung always continues. Runs that reach a rung together (the
members of a group of runs) are ranked together. The results database keeps every score
and decision, so a decision is the same whatever worker holds the run and is never made
twice.

The full grid's runs are what a reproduction needs (the papers' tables are full grid
searches); pruning is for new experiments, where most of a grid's compute goes to
learning rates that are clearly lost after an epoch or two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from corrgd.spec.config import RunConfig, config_hash

LR_SETTINGS = ("lr", "decor_lr", "first_epoch_lr", "first_epoch_decor_lr", "decor_conv_lr")
METRICS = {"val_acc": True, "val_loss": False, "train_acc": True, "train_loss": False,
           "test_acc": True, "test_loss": False}  # name -> larger is better


@dataclass(frozen=True)
class Pruning:
    """A sweep's successive halving: by `metric`, from `min_epochs`, keeping 1/`reduction`."""

    metric: str = "val_acc"
    min_epochs: int = 1
    reduction: int = 3

    @property
    def larger_is_better(self) -> bool:
        return METRICS[self.metric]

    def rungs(self, epochs: int) -> list[int]:
        """The epochs a run of `epochs` is judged at: min_epochs · η^k below `epochs`."""
        out, rung = [], self.min_epochs
        while rung < epochs:
            out.append(rung)
            rung *= self.reduction
        return out

    def keeps(self, reached: int) -> int:
        """How many of the `reached` runs at a rung continue: the top 1/η, rounded up."""
        return math.ceil(reached / self.reduction)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune_key(config: RunConfig) -> str:
    """Runs with equal keys are compared at the rungs: their settings agree on all but the
    learning rates (`LR_SETTINGS`); a different seed is another group."""
    return config_hash({k: v for k, v in config.model_dump(mode="json").items()
                        if k not in LR_SETTINGS})


def decide(pruning: Pruning, before: Sequence[tuple[int, float]],
           arriving: Sequence[tuple[int, float]]) -> dict[int, bool]:
    """Which of the `arriving` runs (run id, score) continue past a rung that the `before`
    runs of their group reached earlier: each arriving run continues if it ranks within
    `pruning.keeps(n)` of all n = len(before) + len(arriving) scores (ties: the earlier
    run first). Those decided earlier are not decided again."""
    ranked = sorted([*before, *arriving],
                    key=lambda r: (-r[1] if pruning.larger_is_better else r[1], r[0]))
    top = {run_id for run_id, _ in ranked[:pruning.keeps(len(ranked))]}
    return {run_id: run_id in top for run_id, _ in arriving}


def expected_epochs(pruning: Pruning, runs: int, epochs: int) -> float:
    """Epochs a rung group of `runs` runs of `epochs` epochs trains when its runs reach
    each rung together: ⌈n/η⌉ go on from each rung, the rest stop there (epoch 0, the
    evaluation before training, not counted)."""
    total, alive, start = 0.0, runs, 0
    for rung in pruning.rungs(epochs):
        total += alive * (rung - start)
        alive, start = pruning.keeps(alive), rung
    return total + alive * (epochs - start)
