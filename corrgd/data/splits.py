"""The containers a loader hands to the experiment runner: ``Split`` and ``DataSplits``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from corrgd.data.transforms import BatchTransform

Task = Literal["classification", "regression"]
"""What ``Split.y`` holds: int64 class labels ``(N,)`` or float32 regression targets
``(N, k)``. Always derived from ``y``'s dtype, so it cannot disagree with the data."""


def _describe(t: Tensor) -> str:
    dtype = str(t.dtype).removeprefix("torch.")
    return f"{dtype}{list(t.shape)}@{t.device}"


def target_task(y: Tensor) -> Task:
    """The task whose targets ``y`` are; ValueError, naming the accepted layouts, if none."""
    if y.dtype == torch.int64:
        if y.ndim != 1:
            raise ValueError(f"class labels must be a 1-D int64 tensor (N,), got {_describe(y)}")
        return "classification"
    if y.dtype == torch.float32:
        if y.ndim != 2 or y.shape[1] < 1:
            raise ValueError(
                f"regression targets must be a float32 tensor (N, k) with k >= 1, got "
                f"{_describe(y)} (a single target needs shape (N, 1))"
            )
        return "regression"
    raise ValueError(
        "targets must be int64 class labels (N,) or float32 regression targets (N, k), "
        f"got {_describe(y)}"
    )


@dataclass(frozen=True, repr=False)
class Split:
    """Inputs and targets of one split, kept as whole tensors so they can be moved once.

    ``x`` holds the *stored* inputs (see ``DataSplits`` for the dtype contract). ``y`` holds,
    one row per row of ``x``, either the int64 class labels ``(N,)`` (classification) or the
    float32 regression targets ``(N, k)`` (regression); ``task`` says which.
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        task = target_task(self.y)
        if len(self.x) != len(self.y):
            kind = "labels" if task == "classification" else "targets"
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} {kind}")

    @property
    def task(self) -> Task:
        return target_task(self.y)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"Split(x={_describe(self.x)}, y={_describe(self.y)})"

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class DataSplits:
    """A loaded data set: train / validation / test splits plus what a model needs to know.

    Contract for ``Split.x``: model inputs are always obtained by passing a batch of rows
    through a transform, ``train_transform(x[idx], generator)`` while training and
    ``eval_transform(x[idx])`` otherwise; both return float32 tensors of shape
    ``(len(idx), *input_shape)`` on the batch's device.

    * For every set except tiny-imagenet, ``x`` is already the float32 model input (scaled
      and standardised) and both transforms are the identity.
    * For tiny-imagenet, ``x`` is raw uint8 pixels ``(N, 3, 64, 64)`` (4x less memory); the
      transforms crop (random / centre), scale to [0, 1], standardise and, with
      ``flatten=True``, flatten.

    Targets: ``task`` is "classification" (``y`` int64 labels ``(N,)``) or "regression"
    (``y`` float32 ``(N, k)``), the same for every split.

    num_classes: the width of the model's output layer: the number of classes for
        classification, the number of regression targets ``k`` for regression (so code that
        sizes the output layer by ``num_classes`` works for both). ``num_outputs`` is the
        same number under a task-neutral name; check ``task`` before treating it as a
        class count (e.g. for accuracies).
    target_mean, target_std: for regression sets whose targets were standardised, the
        per-target mean and std (original units) that were used: stored targets are
        ``(y_original - target_mean) / target_std``, and losses computed on ``y`` are in
        standardised units (an MSE times ``target_std**2`` is in original units; see
        ``targets_in_original_units``). Empty when ``y`` is stored in original units
        (classification, or regression sets kept in their own units such as sarcos).
    """

    name: str
    train: Split
    val: Split | None
    test: Split | None
    num_classes: int
    input_shape: tuple[int, ...]
    transform: BatchTransform = field(default_factory=BatchTransform)
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for split in (self.val, self.test):
            if split is not None and split.task != self.task:
                raise ValueError(f"{self.name}: {split.task} split in a {self.task} data set")
        if self.task == "classification":
            if self.target_mean or self.target_std:
                raise ValueError(f"{self.name}: target_mean/target_std are for regression")
            return
        widths = {s.y.shape[1] for s in (self.train, self.val, self.test) if s is not None}
        if widths != {self.num_classes}:
            raise ValueError(
                f"{self.name}: num_classes must equal the number of regression targets "
                f"{sorted(widths)}, got {self.num_classes}"
            )
        if len(self.target_mean) != len(self.target_std) or len(self.target_mean) not in (
            0,
            self.num_classes,
        ):
            raise ValueError(
                f"{self.name}: target_mean and target_std need one value per target "
                f"({self.num_classes}) or none"
            )

    @property
    def task(self) -> Task:
        """"classification" or "regression", from the training targets."""
        return self.train.task

    @property
    def num_outputs(self) -> int:
        """Width of the model's output layer: classes, or regression targets."""
        return self.num_classes

    @property
    def targets_standardized(self) -> bool:
        return bool(self.target_std)

    def targets_in_original_units(self, y: Tensor) -> Tensor:
        """Stored (possibly standardised) regression targets or predictions ``(B, k)`` ->
        original units: ``y * target_std + target_mean``; ``y`` itself if not standardised."""
        if not self.target_std:
            return y
        std = torch.tensor(self.target_std, dtype=y.dtype, device=y.device)
        mean = torch.tensor(self.target_mean, dtype=y.dtype, device=y.device)
        return y * std + mean

    def train_transform(self, xb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Stored inputs -> float32 model inputs, with training-time randomness (crops)."""
        return self.transform.train(xb, generator)

    def eval_transform(self, xb: Tensor) -> Tensor:
        """Stored inputs -> float32 model inputs, deterministically (centre crops)."""
        return self.transform.eval(xb)

    def to(self, device: torch.device | str) -> DataSplits:
        """A copy with every split moved to ``device``."""
        return replace(
            self,
            train=self.train.to(device),
            val=None if self.val is None else self.val.to(device),
            test=None if self.test is None else self.test.to(device),
        )
