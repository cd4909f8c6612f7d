"""Regression data: standardisation of a loader's vector inputs and float targets.

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
gets std 1, so standardising it leaves it at zero. Test rows use the training statistics;
since these do not depend on the hold-out, runs with other seeds share one set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from corrgd.data.splits import DataSplits, Split


def prepare_regression(
    name: str, train: Split, test: Split | None, *, normalize: bool, standardize_targets: bool
) -> DataSplits:
    """Standardise the splits of a regression set with ``train``'s statistics (see the
    module docstring); the validation rows are held out afterwards."""
    inputs = column_stats(train.x) if normalize else None
    targets = column_stats(train.y) if standardize_targets else None

    def convert(split: Split) -> Split:
        x = split.x if inputs is None else standardize(split.x, *inputs)
        y = split.y if targets is None else standardize(split.y, *targets)
        return Split(x, y)

    mean, std = ((), ()) if targets is None else (tuple(t.tolist()) for t in targets)
    return DataSplits(
        name,
        convert(train),
        None,
        None if test is None else convert(test),
        train.y.shape[1],
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
