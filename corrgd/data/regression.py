"""Regression data: checks of a loader's float targets and their standardisation.

Regression sets have vector inputs ``(N, D)`` and float32 targets ``(N, k)``.
``prepare_regression``, before the validation hold-out,

* standardises each input feature with the mean and std of the whole official training
  split, if ``normalize`` (the default of ``load_dataset``);
* standardises each target the same way only if the loader asks for it
  (``RawData.standardize_targets``), recording the statistics as ``DataSplits.target_mean``
  / ``target_std``. Losses computed on ``Split.y`` are then in standardised units.
  Sets whose published results are losses in original units (sarcos: the NPD paper's
  test MSEs of 7-16 are in squared N·m) keep their targets as they are.

Statistics are population statistics (divide by N) computed in float64; a constant column
gets std 1, so standardising it leaves it at zero. Validation and test rows use the training
statistics; since these do not depend on the hold-out, runs with other seeds share one set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from corrgd.data.splits import DataSplits, Split

if TYPE_CHECKING:
    from corrgd.data.prepare import RawData


def check_raw_targets(raw: RawData) -> None:
    """ValueError unless ``raw``'s splits agree on the task and fit its class/target count."""
    train, test = raw.train, raw.test
    if test is not None and test.task != train.task:
        raise ValueError(f"train split is {train.task} data but test split is {test.task}")
    if train.task == "classification":
        if raw.num_classes < 1:
            raise ValueError(f"classification data needs num_classes >= 1, got {raw.num_classes}")
        if raw.standardize_targets:
            raise ValueError("standardize_targets is for regression targets, not class labels")
        return
    if raw.num_classes != 0:
        raise ValueError(
            "regression data has no classes: leave num_classes at 0 (the outputs are the "
            f"{train.y.shape[1]} target columns), got {raw.num_classes}"
        )
    if raw.pixel_max is not None or train.x.ndim != 2 or train.x.dtype != torch.float32:
        raise ValueError(
            f"regression inputs must be float32 vectors (N, D), got {train.x.dtype} "
            f"{list(train.x.shape)}" + (" pixels" if raw.pixel_max is not None else "")
        )
    if test is not None and (test.x.shape[1:] != train.x.shape[1:] or test.y.shape[1:] != (
        train.y.shape[1:]
    )):
        raise ValueError(
            f"test split has {list(test.x.shape[1:])} inputs and {list(test.y.shape[1:])} "
            f"targets per row, train {list(train.x.shape[1:])} and {list(train.y.shape[1:])}"
        )


def prepare_regression(
    name: str, raw: RawData, train: Split, val: Split | None, test: Split | None, *,
    normalize: bool,
) -> DataSplits:
    """Standardise the splits of a regression set with ``train``'s statistics (see the
    module docstring)."""
    inputs = column_stats(train.x) if normalize else None
    targets = column_stats(train.y) if raw.standardize_targets else None

    def convert(split: Split | None) -> Split | None:
        if split is None:
            return None
        x = split.x if inputs is None else standardize(split.x, *inputs)
        y = split.y if targets is None else standardize(split.y, *targets)
        return Split(x, y)

    mean, std = ((), ()) if targets is None else (tuple(t.tolist()) for t in targets)
    return DataSplits(
        name,
        convert(train),
        convert(val),
        convert(test),
        raw.num_outputs,
        (train.x.shape[1],),
        target_mean=mean,
        target_std=std,
    )


def column_stats(values: Tensor) -> tuple[Tensor, Tensor]:
    """Float64 mean and population std of each column of ``values`` ``(N, D)``; std 1 where
    a column is constant."""
    as_double = values.to(torch.float64)
    mean = as_double.mean(0)
    std = as_double.std(0, correction=0)
    std[std == 0] = 1.0
    return mean, std


def standardize(values: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(values - mean) / std`` per column, computed in float64, returned as float32."""
    return ((values.to(torch.float64) - mean) / std).to(torch.float32)
