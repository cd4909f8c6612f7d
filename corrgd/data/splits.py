"""The containers a loader hands to the experiment runner: ``Split`` and ``DataSplits``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from corrgd.data.transforms import BatchTransform


def _describe(t: Tensor) -> str:
    dtype = str(t.dtype).removeprefix("torch.")
    return f"{dtype}{list(t.shape)}@{t.device}"


@dataclass(frozen=True, repr=False)
class Split:
    """Inputs and labels of one split, kept as whole tensors so they can be moved once.

    ``x`` holds the *stored* inputs (see ``DataSplits`` for the dtype contract) and ``y`` the
    int64 class labels, one per row of ``x``.
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise ValueError(f"labels must be a 1-D int64 tensor, got {_describe(self.y)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} labels")

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
    """

    name: str
    train: Split
    val: Split | None
    test: Split | None
    num_classes: int
    input_shape: tuple[int, ...]
    transform: BatchTransform = field(default_factory=BatchTransform)

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
