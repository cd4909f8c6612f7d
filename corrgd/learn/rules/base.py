"""What every learning rule provides.

A rule turns one batch into gradients on the network's weights and biases
(`.grad`), which any torch optimizer then consumes; it never steps the
optimizer or touches the decorrelation matrices itself. A training step is:

    optimizer.zero_grad()
    step = rule.gradients(net, x, y, loss)
    optimizer.step()
    net.update_decorrelation(step.trace.inputs)

The network holds G members (`corrgd.learn.nn`); `x` is (G, n, ...) (or a batch for
every member) and the loss each member minimises is its own mean over its n
samples. A rule has one run seed per member: its random streams (feedback
matrices, noise) are that member's, so a member draws the same numbers in any
group, alone included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from corrgd.learn import streams
from corrgd.learn.checks import check_integer
from corrgd.learn.losses import LossFn
from corrgd.learn.nn.network import Net, Trace


@dataclass
class Step:
    loss: Tensor  # (G,): each member's mean loss of the (clean) pass, detached
    trace: Trace  # the pass whose layer inputs the decorrelation rule learns from


def member_targets(y: Tensor, output: Tensor) -> Tensor:
    """Targets as (G, n) labels or (G, n, k) values: a batch's targets without the member
    axis go to every member."""
    wanted = output.dim() if y.is_floating_point() else output.dim() - 1
    if y.dim() == wanted - 1:
        return y.unsqueeze(0).expand(output.shape[0], *y.shape)
    return y


def mean_losses(loss: LossFn, output: Tensor, y: Tensor) -> Tensor:
    """Each member's mean loss over its samples: (G,)."""
    return loss(output, member_targets(y, output)).mean(1)


class LearningRule:
    """Base class: subclasses set `name` and implement `gradients`."""

    name = "rule"

    def __init__(self, seed: int | Sequence[int] = 0) -> None:
        # the run seed of every member: the rule's random streams derive from it
        seeds = list(seed) if isinstance(seed, Iterable) and not isinstance(seed, str) \
            else [seed]
        if not seeds:
            raise ValueError("seed: a rule needs one seed per member, got none")
        for s in seeds:
            check_integer("seed", s, 0)
        self.seeds = [int(s) for s in seeds]

    @property
    def seed(self) -> int:
        return self.seeds[0]

    def setup(self, net: Net, example: Tensor) -> None:
        """Prepare `net` (e.g. attach feedback matrices); `example` is a batch of inputs."""

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        raise NotImplementedError

    def generators(self, stream: str = "feedback", *counters: int,
                   device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One generator per member for one of the run's named streams (`corrgd.learn.streams`)."""
        return [streams.generator(s, stream, *counters, device=device) for s in self.seeds]

    def select_members(self, index: Tensor) -> None:
        """Keep only the members `index` (the network's `select_members` does the same)."""
        self.seeds = [self.seeds[i] for i in index.tolist()]

    def extend_members(self, other: LearningRule) -> None:
        """Append the members of `other`, the same rule set up for a net of the same
        architecture, after this one's (the network's `extend_members` does the same)."""
        if type(other) is not type(self):
            raise ValueError(f"cannot join {other.name} members to a group of {self.name}")
        self.seeds = self.seeds + other.seeds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"
