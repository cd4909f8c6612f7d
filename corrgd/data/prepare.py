"""From a loader's raw official splits to ``DataSplits``: validation hold-out, scaling,
per-channel standardisation and flattening, shared by every data set (regression data takes
the branch in ``corrgd.data.regression``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from corrgd.data.regression import prepare_regression
from corrgd.data.splits import DataSplits, Split, Task
from corrgd.data.transforms import BatchTransform

CHUNK_ROWS = 1024
"""Rows converted at a time, to bound the float64/float32 temporaries on large sets."""


@dataclass(frozen=True)
class RawData:
    """What a loader returns: the official splits, before any hold-out or scaling.

    pixel_max: ``None`` for float32 vector data ``(N, D)``, used as it is (regression
        inputs excepted); otherwise the inputs are pixels ``(N, C, H, W)`` with values in
        ``[0, pixel_max]``.
    store_uint8: keep the pixels as uint8 in ``Split.x`` and scale them in the transforms
        (for sets too large to hold as float32).
    crop: square crop applied by the transforms (random in training, centre in eval);
        needs ``store_uint8``, since training crops are drawn batch by batch.

    The task follows from the targets (see ``Split``): classification data has int64 labels
    and ``num_classes`` classes; regression data (float32 targets ``(N, k)``, vector
    inputs) leaves ``num_classes`` at 0 and may set ``standardize_targets`` (see
    ``corrgd.data.regression``).
    """

    train: Split
    test: Split | None
    num_classes: int = 0
    pixel_max: float | None = None
    store_uint8: bool = False
    crop: int | None = None
    standardize_targets: bool = False

    def __post_init__(self) -> None:
        if self.crop is not None and not self.store_uint8:
            raise ValueError("crop needs store_uint8=True")
        if self.store_uint8 and self.pixel_max is None:
            raise ValueError("store_uint8 needs pixel data (pixel_max)")
        _check_targets(self)

    @property
    def task(self) -> Task:
        return self.train.task

    @property
    def num_outputs(self) -> int:
        """Width of the model's output layer: ``num_classes``, or the number of targets."""
        return self.num_classes if self.task == "classification" else self.train.y.shape[1]


def _check_targets(raw: RawData) -> None:
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


def prepare(
    name: str, raw: RawData, *, val_size: int, seed: int, normalize: bool, flatten: bool
) -> DataSplits:
    """Scale and standardise with statistics of the whole official training split, then hold
    out ``val_size`` training rows (seeded by ``seed``) as ``val``.

    The statistics do not depend on the hold-out, so every run's data differs from
    another's only in which rows are held out: runs with other seeds can share one loaded
    set (see ``hold_out_rows``). Pixel data is standardised per channel; regression data
    per feature (and target), by ``prepare_regression``.
    """
    return hold_out(_prepare_full(name, raw, normalize=normalize, flatten=flatten), val_size,
                    seed)


def _prepare_full(name: str, raw: RawData, *, normalize: bool, flatten: bool) -> DataSplits:
    train, test = raw.train, raw.test
    if raw.task == "regression":  # vector inputs and float targets: see regression.py
        return prepare_regression(name, train, test, normalize=normalize,
                                  standardize_targets=raw.standardize_targets)

    if raw.pixel_max is None:  # vector data: nothing to scale or flatten
        return DataSplits(name, train, None, test, raw.num_classes, tuple(train.x.shape[1:]))

    mean, std = channel_stats(train.x, raw.pixel_max) if normalize else ((), ())
    pixels = BatchTransform(
        crop=raw.crop, pixel_max=raw.pixel_max, mean=mean, std=std, flatten=flatten
    )
    input_shape = tuple(pixels.eval(train.x[:1]).shape[1:])
    if raw.store_uint8:
        return DataSplits(name, train, None, test, raw.num_classes, input_shape, pixels)

    def convert(split: Split) -> Split:
        return Split(_in_chunks(pixels.eval, split.x), split.y)

    return DataSplits(name, convert(train), None, None if test is None else convert(test),
                      raw.num_classes, input_shape)


def hold_out_rows(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(training rows, validation rows) of ``n``: ``val_size`` rows chosen by a permutation
    seeded with ``seed``, both in their original order, so the result depends only on
    (n, val_size, seed)."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    if val_size == 0:
        return torch.arange(n), torch.arange(0)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


def hold_out(data: DataSplits, val_size: int, seed: int) -> DataSplits:
    """A copy of ``data`` whose ``val`` is ``val_size`` rows of ``train`` (see
    ``hold_out_rows``), and whose ``train`` is the rest."""
    if data.val is not None:
        raise ValueError(f"{data.name}: a validation split is already held out")
    if val_size == 0:
        return data
    train = data.train
    train_rows, val_rows = hold_out_rows(len(train), val_size, seed)
    return replace(data, train=Split(train.x[train_rows], train.y[train_rows]),
                   val=Split(train.x[val_rows], train.y[val_rows]))


def channel_stats(pixels: Tensor, pixel_max: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``pixels / pixel_max`` over ``(N, C, H, W)``.

    A constant channel gets std 1, so standardising it leaves it at zero.
    """
    channels = pixels.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for chunk in pixels.split(CHUNK_ROWS):
        values = chunk.to(torch.float64) / pixel_max
        total += values.sum((0, 2, 3))
        squares += values.square().sum((0, 2, 3))
    count = pixels.numel() // channels
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std[std == 0] = 1.0
    return tuple(mean.tolist()), tuple(std.tolist())


def _in_chunks(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(CHUNK_ROWS)])
