"""Per-sample losses: each returns one loss per sample.

Outputs are (..., k) (e.g. (G, n, k) for G members of n samples); targets are
class labels (int64, (...); squared-error losses compare against their one-hot
code) or, for regression, float vectors shaped like the output. The loss has the
targets' leading shape (...).

    ce        categorical cross-entropy of softmax(output)
    mse       mean over outputs of (y − t)²      (torch's MSELoss, per sample)
    sse       Σ (y − t)²                          (COPI Algorithm 1: ‖y_L − y*‖², no ½)
    half_sse  ½ Σ (y − t)²
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Categorical cross-entropy of softmax(logits) against class labels."""
    per_sample = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                 reduction="none")
    return per_sample.view(target.shape)


def _targets(output: Tensor, target: Tensor) -> Tensor:
    if target.is_floating_point():
        return target.to(output.dtype).view_as(output)
    return F.one_hot(target, output.shape[-1]).to(output.dtype)


def sum_squared_error(output: Tensor, target: Tensor) -> Tensor:
    """‖y − t‖² per sample, t the target vector (one-hot for class labels)."""
    return (output - _targets(output, target)).pow(2).sum(-1)


def half_squared_error(output: Tensor, target: Tensor) -> Tensor:
    """½ ‖y − t‖² per sample."""
    return 0.5 * sum_squared_error(output, target)


def mean_squared_error(output: Tensor, target: Tensor) -> Tensor:
    """Mean over outputs of (y − t)² per sample."""
    return (output - _targets(output, target)).pow(2).mean(-1)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy, "mse": mean_squared_error,
                             "sse": sum_squared_error, "half_sse": half_squared_error}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[name]
