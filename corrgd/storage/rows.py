"""What a worker writes about its runs: each epoch's metric rows and how each run ended.

Plain dataclasses, without SQLAlchemy: the runner builds `MetricRow`s as it evaluates, and
:func:`corrgd.storage.queue.log_epochs` checks and writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricRow:
    """One split's metrics after one epoch of a run.

    ``split`` is "train", "val" or "test"; ``seconds`` the epoch's training time (on the
    train row; 0 elsewhere and in epoch 0, which is evaluated before training). A NaN loss
    is stored as NULL; ``accuracy`` is None for regression, ``top5`` None unless there are
    more than 10 classes; ``diagnostics`` is JSON-able (NaN in it is stored as null).
    """

    split: str
    loss: float
    accuracy: float | None
    seconds: float
    top5: float | None = None
    diagnostics: dict[str, Any] | None = None


@dataclass(frozen=True)
class EpochEntry:
    """One run's epoch for :func:`corrgd.storage.queue.log_epochs`: its rows, one per split,
    and the checkpoint saved after it (None: the run's checkpoint path stays as it is)."""

    run_id: int
    epoch: int
    rows: Sequence[MetricRow]
    checkpoint_path: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended, for :func:`corrgd.storage.queue.finish_runs`: ``done``,
    ``failed`` or ``diverged``."""

    run_id: int
    status: str
    error: str | None = None
