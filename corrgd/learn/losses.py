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

from corrgd.learn.kernels import gpu_kernels

LossFn = Callable[[Tensor, Tensor], Tensor]


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Categorical cross-entropy of softmax(logits) against class labels."""
    per_sample = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                 reduction="none")
    return per_sample.view(target.shape)


# On a CPU, torch's log-softmax along the last axis runs value by value when that axis is
# shorter than one AVX-512 register (16 floats): 10 classes cost ~14 ns a value. Along
# the samples of the transposed view (G, k, n) the same kernel vectorises over the samples
# instead (8 members x 1000 digits: 1.5 -> 0.2 ms). It rounds the samples of a partial
# last vector differently (by an ulp), so a sample's loss depends on its place in that
# axis: each member has an axis of its own, so that a member's evaluation is bitwise what
# it is alone. Training keeps the row-wise kernel.
FEW_CLASSES = 16


def _cross_entropy_over_samples(logits: Tensor, target: Tensor) -> Tensor:
    if gpu_kernels(logits.device) or logits.shape[-1] >= FEW_CLASSES or logits.dim() != 3:
        return cross_entropy(logits, target)
    return F.cross_entropy(logits.transpose(1, 2), target, reduction="none")


def for_evaluation(loss: LossFn) -> LossFn:
    """`loss` as evaluation may compute it: the same values, up to an ulp per sample."""
    return _cross_entropy_over_samples if loss is cross_entropy else loss


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
