"""Per-sample losses: each returns a vector with one loss per sample."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Categorical cross-entropy of softmax(logits) against class labels."""
    return F.cross_entropy(logits, target, reduction="none")


def squared_error(output: Tensor, target: Tensor) -> Tensor:
    """½ ‖y − onehot(target)‖², the COPI paper's quadratic loss."""
    onehot = F.one_hot(target, output.shape[1]).to(output.dtype)
    return 0.5 * (output - onehot).pow(2).sum(1)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "mse": squared_error}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[name]
