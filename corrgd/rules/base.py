"""What every learning rule provides.

A rule turns one batch into gradients on the network's weights and biases
(`.grad`), which any torch optimizer then consumes; it never steps the
optimizer or touches the decorrelation matrices itself. A training step is:

    optimizer.zero_grad()
    step = rule.gradients(net, x, y, loss)
    optimizer.step()
    net.update_decorrelation(step.trace.inputs)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from corrgd import streams
from corrgd.losses import LossFn
from corrgd.nn.network import Net, Trace


@dataclass
class Step:
    loss: Tensor  # mean loss of the (clean) pass, detached
    trace: Trace  # the pass whose layer inputs the decorrelation rule learns from


class LearningRule:
    """Base class: subclasses set `name` and implement `gradients`."""

    name = "rule"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed  # the run seed: the rule's random streams derive from it

    def setup(self, net: Net, example: Tensor) -> None:
        """Prepare `net` (e.g. attach feedback matrices); `example` is a batch of inputs."""

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        raise NotImplementedError

    def generator(self, stream: str = "feedback", *counters: int) -> torch.Generator:
        """A generator for one of the run's named random streams (see `corrgd.streams`)."""
        return streams.generator(self.seed, stream, *counters)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"
