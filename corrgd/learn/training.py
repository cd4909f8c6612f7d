"""One training step and one evaluation: the loop a runner repeats.

The network holds G members (`corrgd.learn.nn`); a step trains all of them on their
own batches and returns each member's loss, an evaluation scores each member.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from corrgd.learn.losses import LossFn, for_evaluation
from corrgd.learn.nn.network import Net
from corrgd.learn.optim import MemberOptimizer
from corrgd.learn.rules import LearningRule
from corrgd.learn.rules.base import member_targets


def train_step(net: Net, rule: LearningRule, optimizer: MemberOptimizer | torch.optim.Optimizer,
               x: Tensor, y: Tensor, loss: LossFn) -> Tensor:
    """Rule gradients, an optimizer step, then the decorrelation rules; returns each
    member's mean loss (G,)."""
    optimizer.zero_grad(set_to_none=True)
    step = rule.gradients(net, x, y, loss)
    optimizer.step()
    net.update_decorrelation(step.trace.inputs)
    return step.loss


@torch.no_grad()
def evaluate(net: Net, batches: Iterable[tuple[Tensor, Tensor]], loss: LossFn, *,
             classification: bool = True) -> list[dict[str, Any]]:
    """Per member: mean loss, accuracy and (with more than 10 classes) top-5 accuracy over
    `batches` of (inputs, targets), per member (G, b, ...) or shared (b, ...), in eval mode.
    Regression (`classification=False`) reports the loss only (accuracy None)."""
    was_training = net.training
    net.eval()
    loss = for_evaluation(loss)
    total = correct = correct5 = None
    n, classes = 0, 0
    for xb, yb in batches:
        out = net(xb)
        yb = member_targets(yb, out)
        losses = loss(out, yb).double().sum(1)
        total = losses if total is None else total + losses
        n += yb.shape[1]
        classes = out.shape[-1]
        if classification:
            hits = (out.argmax(-1) == yb).sum(1)
            correct = hits if correct is None else correct + hits
            if classes > 10:
                top5 = (out.topk(5, dim=-1).indices == yb[..., None]).any(-1).sum(1)
                correct5 = top5 if correct5 is None else correct5 + top5
    net.train(was_training)
    if total is None:
        raise ValueError("evaluate needs at least one batch")
    # one copy to the host for all members (a sync on a GPU), not one per member and metric
    sums = [total, *(c.double() for c in (correct, correct5) if c is not None)]
    results = []
    for values in (torch.stack(sums, 1) / n).tolist():  # per member: loss[, acc[, top5]]
        values += [None] * (3 - len(values))
        results.append({"loss": values[0], "accuracy": values[1], "top5": values[2]})
    return results
