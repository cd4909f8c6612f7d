"""One training step and one evaluation: the loop a runner repeats."""

from __future__ import annotations

import torch
from torch import Tensor

from corrgd.losses import LossFn
from corrgd.nn.network import Net
from corrgd.rules import LearningRule


def train_step(net: Net, rule: LearningRule, optimizer: torch.optim.Optimizer, x: Tensor,
               y: Tensor, loss: LossFn) -> Tensor:
    """Rule gradients, an optimizer step, then the decorrelation rules; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    step = rule.gradients(net, x, y, loss)
    optimizer.step()
    net.update_decorrelation(step.trace.inputs)
    return step.loss


@torch.no_grad()
def evaluate(net: Net, x: Tensor, y: Tensor, loss: LossFn, batch_size: int = 1000,
             transform=None) -> dict[str, float]:
    """Mean loss, accuracy and (with more than 10 classes) top-5 accuracy, in eval mode."""
    was_training = net.training
    net.eval()
    total_loss, correct, correct5, n = 0.0, 0, 0, x.shape[0]
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if transform is not None:
            xb = transform(xb)
        out = net(xb)
        total_loss += float(loss(out, yb).sum())
        correct += int((out.argmax(1) == yb).sum())
        if out.shape[1] > 10:
            top5 = out.topk(5, dim=1).indices
            correct5 += int((top5 == yb[:, None]).any(1).sum())
    net.train(was_training)
    result = {"loss": total_loss / n, "accuracy": correct / n, "top5": None}
    if x.shape[0] and out.shape[1] > 10:
        result["top5"] = correct5 / n
    return result
