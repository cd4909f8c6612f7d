"""Training runs from validated `RunConfig`s, reporting through a small callback.

A *group* is several runs that differ only in per-member settings (`PER_MEMBER`:
learning rates, seed, noise variance, ...): they train as one batched model
(`corrgd.learn.nn`), one process, one set of kernels. A single run is a group of one;
there is no other code path. Per run:

    data → network → rule → optimizer; epoch 0 is evaluated before training;
    then per epoch: train, evaluate every split, checkpoint, report.

Each member stays its own run: its own initialisation, validation split, data
order, feedback matrices and noise (from its seed's named streams,
`corrgd.learn.streams`), its own learning rates and optimizer state, metric rows and
checkpoint file. A member whose loss turns NaN is marked diverged and leaves
the group; the others go on. A run's results do not depend on the group it
trained in.

The runner knows nothing of sweeps or databases: it hands each epoch's metric
rows (`corrgd.storage.MetricRow`, one per split) to `GroupReporter.epoch_end`.
Resuming: a member whose checkpoint (a file saved by an earlier, interrupted run of
the same config) exists continues after its last finished epoch, and that epoch's
rows are reported again (reporters must treat a repeated epoch as already written).

Members need not be at the same epoch: each keeps its own epoch, learning rates, random
streams and optimizer steps, and one training step of the group is one step of each
member's own epoch (members of a group have the same number of steps per epoch). So runs
resumed from checkpoints of different epochs train together, and a group that has shrunk
(members done, diverged or pruned) can be filled up again with runs that start
(`train_group`'s `refill`).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from corrgd.data import DataSplits, load_dataset
from corrgd.data.prepare import hold_out_rows
from corrgd.learn import streams
from corrgd.learn.diagnostics import decorrelation_stats, feedback_angles, update_angles
from corrgd.learn.losses import get_loss
from corrgd.learn.models import build_network, takes_flat_input
from corrgd.learn.nn import DecorSettings, Net
from corrgd.learn.optim import MemberAdam, MemberOptimizer, MemberSGD
from corrgd.learn.rules import LearningRule, NodePerturbation, make_rule
from corrgd.learn.training import evaluate, train_step
from corrgd.spec.config import PER_MEMBER, RunConfig
from corrgd.storage import MetricRow
from corrgd.storage.files import write_atomic

log = logging.getLogger(__name__)

DIAGNOSTIC_SAMPLES = 256  # batch the per-epoch diagnostics are measured on
CHECK_EVERY = 10  # steps between loss checks (NaN) and progress reports


@dataclass
class RunResult:
    status: str  # "done", "diverged" or "pruned"
    epochs: int  # last finished epoch
    final: list[MetricRow]  # rows of the last finished epoch


@dataclass
class MemberEpoch:
    """One finished epoch of one member of a group."""

    member: int  # its index in the configs given to `train_group`
    epoch: int  # the member's own epoch (members of a group may be at different ones)
    rows: list[MetricRow]  # one per split
    checkpoint: str | None
    status: str  # "running", "done" or "diverged"


class GroupReporter(Protocol):
    def epoch_end(self, members: list[MemberEpoch]) -> Collection[int] | None:
        """Metric rows of the epoch every member still training finished in the group's
        last step (and of those that diverged in it), after their checkpoints are saved.
        Returns the members that are to stop here (pruned at a rung of successive
        halving), if any."""

    def progress(self, epoch: int, step: int, steps: int, losses: list[float]) -> None:
        """Called every few training steps with the members' current losses; cheap."""


#: Where a group that has shrunk gets runs to fill up with: asked for at most n, it gives
#: (config, checkpoint path or None) of runs like the group's (equal `group_key`), or none.
Refill = Callable[[int], Sequence[tuple[RunConfig, str | Path | None]]]


class Reporter(Protocol):
    """The callback of a single run (`run`)."""

    def epoch_end(self, epoch: int, rows: list[MetricRow], checkpoint: str | None) -> None:
        """Metric rows of one finished epoch (one per split), after its checkpoint is saved."""

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """Called every few training steps; cheap."""


class NullReporter:
    def epoch_end(self, epoch: int, rows: list[MetricRow], checkpoint: str | None) -> None:
        pass

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        pass


class _OneRun:
    """A single run's `Reporter` seen as a `GroupReporter`."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def epoch_end(self, members: list[MemberEpoch]) -> None:
        for m in members:
            self.reporter.epoch_end(m.epoch, m.rows, m.checkpoint)

    def progress(self, epoch: int, step: int, steps: int, losses: list[float]) -> None:
        self.reporter.progress(epoch, step, steps, losses[0])


# --- building ------------------------------------------------------------------------------
def decor_settings(config: RunConfig) -> tuple[DecorSettings | None, DecorSettings | None]:
    """(dense, conv) decorrelation settings of a config, at its decor LRs."""
    if not config.decor:
        return None, None
    dense = DecorSettings(rule=config.decor_rule, lr=config.decor_lr,
                          sample_frac=config.decor_sample_frac, demean=config.decor_demean,
                          update_order=config.decor_update_order,
                          channel_mean=config.decor_channel_mean,
                          mean_in_graph=config.decor_mean_in_graph)
    conv = replace(dense, lr=config.decor_conv_lr or dense.lr,
                   update_order=config.decor_conv_update_order or dense.update_order)
    return dense, conv


def build(configs: Sequence[RunConfig], data: DataSplits, device: torch.device | str
          ) -> tuple[Net, LearningRule, MemberOptimizer]:
    """The network, learning rule and optimizer of a group, each member initialised from its
    own seed exactly as it would be alone."""
    c = configs[0]
    G = len(configs)
    decor, conv_decor = decor_settings(c)
    arch = {k: v for k in ("width", "depth", "hidden") if (v := getattr(c, k)) is not None}
    net = build_network(c.network, data.input_shape, data.num_outputs, decor,
                        conv_decor=conv_decor, padding=c.padding, bias=c.bias,
                        last_hidden_activation=c.last_hidden_activation,
                        output_activation=c.output_activation, members=G,
                        generators=[streams.generator(m.seed, "init") for m in configs],
                        **arch).to(device)
    options: dict[str, Any] = {"seed": [m.seed for m in configs]}
    if c.algorithm in ("np", "inp", "anp"):
        options |= {"sigma2": [m.sigma2 for m in configs], "samples": c.np_samples,
                    "noisy_baseline": c.noisy_baseline}
    if c.algorithm == "copi":
        options["feedback"] = c.copi_feedback
    rule = make_rule(c.algorithm, **options)
    rule.setup(net, data.eval_transform(data.train.x[:2].to(device)))
    optimizer: MemberOptimizer
    if c.optimizer == "adam":
        optimizer = MemberAdam(net.parameters(), G, lr=[m.lr for m in configs],
                               betas=[m.betas for m in configs], eps=[m.eps for m in configs])
    else:
        optimizer = MemberSGD(net.parameters(), G, lr=[m.lr for m in configs],
                              momentum=[m.momentum for m in configs])
    return net, rule, optimizer


def load_data(config: RunConfig, data_dir: str | None = None) -> DataSplits:
    """The data set of a run before any validation hold-out (the runner holds out each
    run's rows itself), in the input layout its net needs."""
    return load_dataset(config.dataset, data_dir=data_dir, val_size=0,
                        flatten=takes_flat_input(config.network), **config.data)


def split_rows(config: RunConfig, n_train: int) -> tuple[Tensor, Tensor]:
    """(training rows, validation rows) of a run, of the `n_train` rows of its data set's
    whole training split: its `val_size` rows held out at random from its seed's "split"
    stream, the same in any group."""
    return hold_out_rows(n_train, config.val_size, streams.stream_seed(config.seed, "split"))


def data_key(config: RunConfig) -> tuple:
    """Runs with equal keys can share one loaded data set."""
    return (config.dataset, takes_flat_input(config.network), tuple(sorted(config.data.items())))


def learning_rates(config: RunConfig, epoch: int) -> tuple[float, float, float]:
    """(forward LR, decor LR, conv decor LR) of training epoch `epoch` (1-based): the
    `first_epoch_*` values in epoch 1 where set."""
    first = epoch == 1
    lr = (first and config.first_epoch_lr) or config.lr
    decor_lr = (first and config.first_epoch_decor_lr) or config.decor_lr
    return lr, decor_lr, config.decor_conv_lr or decor_lr


# --- a group ---------------------------------------------------------------------------------
class Group:
    """The live members of a group: their network, rule, optimizer and data rows."""

    def __init__(self, configs: Sequence[RunConfig], data: DataSplits, device: torch.device,
                 members: Sequence[int] | None = None) -> None:
        if len({c.group_key() for c in configs}) != 1:
            raise ValueError("a group's configs must differ only in " + ", ".join(PER_MEMBER))
        if data.val is not None:
            raise ValueError("pass the whole training split (val None): each run holds out "
                             "its own validation rows")
        self.configs = list(configs)
        self.members = list(range(len(configs))) if members is None else list(members)
        self.data, self.device = data, device
        self.shared = configs[0]
        self.loss_fn = get_loss(self.shared.loss)
        self.net, self.rule, self.optimizer = build(configs, data, device)
        rows = [split_rows(c, len(data.train)) for c in configs]
        self.train_rows = torch.stack([r[0] for r in rows]).to(device)
        self.val_rows = torch.stack([r[1] for r in rows]).to(device) \
            if self.shared.val_size else None
        self.epochs = [-1] * len(configs)  # each member's last finished epoch (-1: none)

    def __len__(self) -> int:
        return len(self.configs)

    def extend(self, other: Group) -> None:
        """Take on the members of `other`, a group of runs like these, after this one's."""
        if other.shared.group_key() != self.shared.group_key():
            raise ValueError("a group's configs must differ only in " + ", ".join(PER_MEMBER))
        self.net.extend_members(other.net)
        self.rule.extend_members(other.rule)
        self.optimizer.extend_members(other.optimizer)
        self.configs += other.configs
        self.members += other.members
        self.epochs += other.epochs
        self.train_rows = torch.cat([self.train_rows, other.train_rows])
        if self.val_rows is not None and other.val_rows is not None:
            self.val_rows = torch.cat([self.val_rows, other.val_rows])

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the members at positions `keep`."""
        index = torch.tensor(keep, dtype=torch.long)
        self.net.select_members(index.to(self.device))
        self.rule.select_members(index)
        self.optimizer.select_members(index.to(self.device))
        self.configs = [self.configs[i] for i in keep]
        self.members = [self.members[i] for i in keep]
        self.epochs = [self.epochs[i] for i in keep]
        self.train_rows = self.train_rows[index.to(self.device)]
        if self.val_rows is not None:
            self.val_rows = self.val_rows[index.to(self.device)]

    def start_epoch(self, epochs: Sequence[int]) -> None:
        """Each member's learning rates and random streams for its training epoch (1-based),
        `epochs[g]` for member g."""
        rates = [learning_rates(c, e) for c, e in zip(self.configs, epochs, strict=True)]
        self.optimizer.set(lr=[r[0] for r in rates])
        if self.shared.decor:
            self.net.set_decorrelation_lr(torch.tensor([r[1] for r in rates]),
                                          torch.tensor([r[2] for r in rates]))
        if isinstance(self.rule, NodePerturbation):
            self.rule.reseed_members(epochs, device=self.device)

    def epoch_order(self, epochs: Sequence[int]) -> Tensor:
        """Each member's training rows in its order for its epoch: (G, n_train)."""
        n = self.train_rows.shape[1]
        orders = torch.stack([torch.randperm(n, generator=streams.generator(c.seed, "order",
                                                                           e))
                              for c, e in zip(self.configs, epochs, strict=True)])
        return self.train_rows.gather(1, orders.to(self.device))

    def batch(self, x: Tensor, rows: Tensor, crops: list[torch.Generator] | None) -> Tensor:
        """Model inputs (G, b, ...) of the stored rows (G, b), with each member's random
        crops while training (`crops`), deterministic transforms otherwise."""
        stored = x[rows]
        if crops is not None and self.data.transform.crop is not None:
            return torch.stack([self.data.train_transform(s, g) for s, g in
                                zip(stored, crops, strict=True)])
        flat = self.data.eval_transform(stored.flatten(0, 1))
        return flat.view(*rows.shape, *flat.shape[1:])


# --- training --------------------------------------------------------------------------------
def train_group(configs: Sequence[RunConfig], *, device: str = "cpu",
                data: DataSplits | None = None, data_dir: str | None = None,
                checkpoints: Sequence[str | Path | None] | None = None,
                reporter: GroupReporter | None = None,
                refill: Refill | None = None) -> list[RunResult]:
    """Train runs that differ only in `PER_MEMBER` settings as one group; one result per
    config, in their order. `checkpoints` names each run's checkpoint file (None: none).

    With `refill`, a group that has shrunk below its first size is filled up again after
    an epoch: with the runs `refill` gives (asked again after every epoch the group is
    short, until it gives none). Their results follow, in the order they were given."""
    configs = list(configs)
    training = _Training(data or load_data(configs[0], data_dir), torch.device(device),
                         reporter or _NullGroupReporter())
    group = training.admit(configs, list(checkpoints or [None] * len(configs)))
    capacity = len(configs)
    while True:
        if refill is not None and (group is None or len(group) < capacity):
            more = refill(capacity - (0 if group is None else len(group)))
            if not more:
                refill = None  # the queue has no more such runs
            elif (joined := training.admit([c for c, _ in more], [p for _, p in more])):
                if group is None:
                    group = joined
                else:
                    group.extend(joined)
        if group is None or not len(group):
            break
        training.step(group)
    return [training.results[i] for i in range(len(training.configs))]


class _Training:
    """The runs of one `train_group` call: their configs, checkpoint files, every epoch's
    rows so far (`history`) and results, and how to take on and train them."""

    def __init__(self, data: DataSplits, dev: torch.device, reporter: GroupReporter) -> None:
        self.data, self.dev, self.reporter = data, dev, reporter
        self.configs: list[RunConfig] = []
        self.paths: list[Path | None] = []
        self.history: dict[int, list[Any]] = {}
        self.results: dict[int, RunResult] = {}
        self.x, self.y = data.train.x.to(dev), data.train.y.to(dev)
        self.test = None if data.test is None else (data.test.x.to(dev), data.test.y.to(dev))

    def admit(self, configs: Sequence[RunConfig], checkpoints: Sequence[str | Path | None]
              ) -> Group | None:
        """Take on runs: those whose checkpoints show them finished (done or diverged)
        report their history again and end; the others come back as one group, each
        member loaded from its checkpoint and its history reported again, or evaluated at
        epoch 0 (None if no run is left to train)."""
        first = len(self.configs)
        self.configs += configs
        self.paths += [None if p is None else Path(p) for p in checkpoints]
        pending: dict[int, list[int]] = {}  # resume epoch -> members
        saved: dict[int, dict[str, Any] | None] = {}
        for i in range(first, len(self.configs)):
            c, state = self.configs[i], _load_checkpoint(self.paths[i], self.configs[i],
                                                         self.dev)
            saved[i] = state
            # Every epoch a checkpoint holds is reported again: a database that lacks them
            # (a new one, or one behind the checkpoint) gets the run's whole history.
            self.history[i] = [] if state is None else state["history"]
            if state is not None and (state["status"] == "diverged"
                                      or state["epoch"] >= c.epochs):
                status = "diverged" if state["status"] == "diverged" else "done"
                _replay(self.reporter, [i], self.history, self.paths, last_status=status)
                self.results[i] = RunResult(status, state["epoch"], self.history[i][-1]["rows"])
            else:
                pending.setdefault(-1 if state is None else state["epoch"], []).append(i)
        group: Group | None = None
        for start, members in sorted(pending.items()):
            cohort = self._open(members, start, saved)
            if group is None or not len(group):
                group = cohort
            elif len(cohort):
                group.extend(cohort)
        return group if group is not None and len(group) else None

    def _open(self, members: list[int], start: int, saved: dict[int, dict[str, Any] | None]
              ) -> Group:
        """A group of `members` that all resume after epoch `start` (-1: fresh, evaluated
        at epoch 0 here)."""
        group = Group([self.configs[i] for i in members], self.data, self.dev, members)
        if start < 0:
            self.step(group)
            return group
        for g, i in enumerate(members):
            state = saved[i]
            assert state is not None
            group.net.load_member_state(g, state["net"])
            group.optimizer.load_member_state(g, state["optimizer"])
        group.epochs = [start] * len(members)
        stopped = _replay(self.reporter, members, self.history, self.paths)
        for i, k in stopped.items():
            self.results[i] = RunResult("pruned", self.history[i][k]["epoch"],
                                        self.history[i][k]["rows"])
        if stopped:
            group.select([pos for pos, i in enumerate(group.members) if i not in stopped])
        return group

    def step(self, group: Group) -> None:
        """One epoch of every member, each its own next one (epoch 0, the evaluation
        before training, for a group of fresh members): train, evaluate, checkpoint,
        report; members that finished, diverged or were pruned leave the group."""
        epochs = {i: e + 1 for i, e in zip(group.members, group.epochs, strict=True)}
        seconds, diverged = 0.0, {}
        fresh = [i for i, e in epochs.items() if e == 0]
        assert not fresh or len(fresh) == len(epochs), "fresh runs join a group after epoch 0"
        if not fresh:
            seconds, diverged = _train_epoch(group, [epochs[i] for i in group.members],
                                             self.x, self.y, self.reporter)
        rows = _evaluate(group, self.x, self.y, self.test, seconds) if len(group) else []
        for pos, member_rows in enumerate(rows):
            if any(not math.isfinite(r.loss) for r in member_rows):
                diverged[group.members[pos]] = (None, member_rows)
        if group.shared.diagnostics and len(group):
            diagnostics = _diagnostics(group, self.x, self.y,
                                       [epochs[i] for i in group.members])
            for pos, diag in enumerate(diagnostics):
                if group.members[pos] not in diverged:
                    rows[pos][0] = replace(rows[pos][0], diagnostics=diag)
        finished = []
        for pos, i in enumerate(group.members):
            if i in diverged:
                continue
            status = "done" if epochs[i] == self.configs[i].epochs else "running"
            self.history[i].append({"epoch": epochs[i], "rows": rows[pos]})
            finished.append(_finish(group, pos, i, epochs[i], status, self.paths[i],
                                    self.history[i]))
        for i, (snapshot, member_rows) in diverged.items():
            finished.append(_finish_diverged(group, i, epochs[i], snapshot, member_rows,
                                             self.paths[i], self.configs[i], self.data,
                                             self.dev, self.history[i]))
        finished.sort(key=lambda m: m.member)
        pruned = set(self.reporter.epoch_end(finished) or ())
        for m in finished:
            if m.status != "running":
                self.results[m.member] = RunResult(m.status, epochs[m.member], m.rows)
            elif m.member in pruned:  # it leaves the group as a diverged member does
                self.results[m.member] = RunResult("pruned", epochs[m.member], m.rows)
        group.epochs = [epochs[i] for i in group.members]
        keep = [pos for pos, i in enumerate(group.members) if i not in self.results]
        if len(keep) < len(group):
            group.select(keep)


def _replay(reporter: GroupReporter, members: list[int], history: dict[int, list[Any]],
            paths: list[Path | None], last_status: str = "running") -> dict[int, int]:
    """Report the epochs the members' checkpoints hold (all members at the same epochs);
    returns the members the reporter stopped (pruned at a rung the database had not
    judged yet), each with the index of that epoch in its history."""
    entries = history[members[0]]
    stopped: dict[int, int] = {}
    for k, entry in enumerate(entries):
        status = last_status if k == len(entries) - 1 else "running"
        told = reporter.epoch_end([
            MemberEpoch(i, entry["epoch"], history[i][k]["rows"],
                        None if paths[i] is None else str(paths[i]), status)
            for i in members if i not in stopped])
        stopped.update(dict.fromkeys(told or (), k))
    return stopped


#: Members that diverged in an epoch: (their state when their loss turned NaN in training,
#: None if it did in the evaluation; their rows, None until they are evaluated).
_Diverged = dict[int, tuple[dict[str, Any] | None, list[MetricRow] | None]]


def _train_epoch(group: Group, epochs: Sequence[int], x: Tensor, y: Tensor,
                 reporter: GroupReporter) -> tuple[float, _Diverged]:
    """One epoch of training, member g's `epochs[g]`; members whose loss turns NaN leave
    the group at once (their state as it was then is kept for their last evaluation)."""
    c = group.shared
    group.start_epoch(epochs)
    crops = [streams.generator(m.seed, "crop", e, device=group.device)
             for m, e in zip(group.configs, epochs, strict=True)] \
        if group.data.transform.crop is not None else None
    group.net.train()
    t0 = time.perf_counter()
    order = group.epoch_order(epochs)
    n = order.shape[1]
    steps = math.ceil(n / c.batch_size)
    diverged: _Diverged = {}
    for step in range(steps):
        rows = order[:, step * c.batch_size:(step + 1) * c.batch_size]
        xb = group.batch(x, rows, crops)
        losses = train_step(group.net, group.rule, group.optimizer, xb, y[rows], group.loss_fn)
        if step % CHECK_EVERY == 0 or step == steps - 1:  # a sync point on GPUs
            values = losses.tolist()
            bad = [pos for pos, v in enumerate(values) if not math.isfinite(v)]
            if bad:  # NaN stays NaN: caught within a few steps; freeze these members
                for pos in bad:
                    diverged[group.members[pos]] = (_snapshot(group, pos), None)
                keep = [pos for pos in range(len(group)) if pos not in bad]
                if crops is not None:
                    crops = [crops[pos] for pos in keep]
                order = order[torch.tensor(keep, dtype=torch.long, device=order.device)]
                group.select(keep)
                values = [values[pos] for pos in keep]
                if not len(group):
                    break
            reporter.progress(max(epochs), step + 1, steps, values)
    if group.device.type == "cuda":
        torch.cuda.synchronize(group.device)
    return time.perf_counter() - t0, diverged


def _snapshot(group: Group, pos: int) -> dict[str, Any]:
    return {"net": group.net.member_state(pos), "optimizer": group.optimizer.member_state(pos)}


def _eval_batches(x: Tensor, y: Tensor, rows: Tensor | None, size: int, group: Group
                  ) -> Iterator[tuple[Tensor, Tensor]]:
    """Chunks of a split: per member rows (G, n) of the stored training set, or the whole
    shared split (rows None)."""
    n = x.shape[0] if rows is None else rows.shape[1]
    for i in range(0, n, size):
        if rows is None:
            yield group.data.eval_transform(x[i:i + size]), y[i:i + size]
        else:
            chunk = rows[:, i:i + size]
            yield group.batch(x, chunk, None), y[chunk]


def _evaluate(group: Group, x: Tensor, y: Tensor, test: tuple[Tensor, Tensor] | None,
              seconds: float) -> list[list[MetricRow]]:
    """Per member, one row per split (train, val, test)."""
    size = group.shared.eval_batch_size
    splits: list[tuple[str, Iterator[tuple[Tensor, Tensor]]]] = [
        ("train", _eval_batches(x, y, group.train_rows, size, group))]
    if group.val_rows is not None:
        splits.append(("val", _eval_batches(x, y, group.val_rows, size, group)))
    if test is not None:
        splits.append(("test", _eval_batches(*test, None, size, group)))
    classification = group.data.task == "classification"
    per_member: list[list[MetricRow]] = [[] for _ in range(len(group))]
    for split, batches in splits:
        metrics = evaluate(group.net, batches, group.loss_fn, classification=classification)
        for rows, m in zip(per_member, metrics, strict=True):
            rows.append(MetricRow(split, m["loss"], m["accuracy"],
                                  seconds if split == "train" else 0.0, top5=m["top5"]))
    return per_member


def _diagnostics(group: Group, x: Tensor, y: Tensor, epochs: Sequence[int]
                 ) -> list[dict[str, Any]]:
    """Per member and layer: decorrelation stats (decorrelated layers), the update's
    angle to BP, on the first samples of the member's training split, and the angle
    between the forward weights and the feedback matrix (layers that have one)."""
    rows = group.train_rows[:, :DIAGNOSTIC_SAMPLES]
    xb, yb = group.batch(x, rows, None), y[rows]
    net, rule = group.net, group.rule
    if isinstance(rule, NodePerturbation):
        rule.reseed_members(epochs, stream="diagnostics", device=group.device)
    net.train()
    layers: list[list[dict[str, Any]]] = [[{} for _ in net.layers] for _ in range(len(group))]
    if net.decorrelated:
        small = xb[:, :64] if xb.dim() > 3 else xb  # conv statistics run over every patch
        for layer, stats in enumerate(decorrelation_stats(net, small)):
            if stats is not None:
                for member, s in zip(layers, stats, strict=True):
                    member[layer].update(s)
    if rule.name != "bp":
        for layer, angles in enumerate(update_angles(net, rule, xb, yb, group.loss_fn)):
            for member, a in zip(layers, angles, strict=True):
                member[layer]["angle_to_bp"] = a
    for layer, angles in enumerate(feedback_angles(net)):  # FA: how far W_l is from B_l
        if angles is not None:
            for member, a in zip(layers, angles, strict=True):
                member[layer]["feedback_angle"] = a
    return [{"layers": member} for member in layers]


def _finish(group: Group, pos: int, member: int, epoch: int, status: str, path: Path | None,
            history: list[dict[str, Any]]) -> MemberEpoch:
    """Save member `pos`'s checkpoint (its state and every epoch's rows so far, the last
    being `epoch`'s) and say so."""
    rows = history[-1]["rows"]
    if path is not None:  # the rows as JSON text: pickled, their every number costs a call
        history_json = json.dumps([{"epoch": e["epoch"], "rows": [asdict(r) for r in e["rows"]]}
                                   for e in history])
        _save(path, {"config_hash": group.configs[pos].hash(), "epoch": epoch,
                     "history_json": history_json, "status": status,
                     "net": group.net.member_state(pos),
                     "optimizer": group.optimizer.member_state(pos)})
    return MemberEpoch(member, epoch, rows, None if path is None else str(path), status)


def _finish_diverged(group: Group, member: int, epoch: int, snapshot: dict[str, Any] | None,
                     rows: list[MetricRow] | None, path: Path | None, config: RunConfig,
                     data: DataSplits, dev: torch.device,
                     history: list[dict[str, Any]]) -> MemberEpoch:
    """A member that diverged: evaluate it (as a group of one, from the state it had when
    its loss turned NaN) unless already evaluated, save and report it."""
    alone = Group([config], data, dev, [member])
    if snapshot is not None:
        alone.net.load_member_state(0, snapshot["net"])
        alone.optimizer.load_member_state(0, snapshot["optimizer"])
    if rows is None:
        x, y = data.train.x.to(dev), data.train.y.to(dev)
        test = None if data.test is None else (data.test.x.to(dev), data.test.y.to(dev))
        rows = _evaluate(alone, x, y, test, 0.0)[0]
    elif snapshot is None:  # diverged in the evaluation: save the group's state of it
        pos = group.members.index(member)
        alone.net.load_member_state(0, group.net.member_state(pos))
        alone.optimizer.load_member_state(0, group.optimizer.member_state(pos))
    history.append({"epoch": epoch, "rows": rows})
    return _finish(alone, 0, member, epoch, "diverged", path, history)


class _NullGroupReporter:
    def epoch_end(self, members: list[MemberEpoch]) -> None:
        pass

    def progress(self, epoch: int, step: int, steps: int, losses: list[float]) -> None:
        pass


# --- one run -----------------------------------------------------------------------------
def run(config: RunConfig, *, device: str = "cpu", data_dir: str | None = None,
        checkpoint: str | Path | None = None, reporter: Reporter | None = None,
        data: DataSplits | None = None) -> RunResult:
    """Train one run: a group of one."""
    (result,) = train_group([config], device=device, data=data, data_dir=data_dir,
                            checkpoints=[checkpoint],
                            reporter=_OneRun(reporter or NullReporter()))
    return result


# --- checkpoints -------------------------------------------------------------------------
def load_trained(config: RunConfig, data: DataSplits, checkpoint: str | Path,
                 device: torch.device | str = "cpu") -> tuple[Net, int]:
    """The network of a run (a group of one) as its checkpoint holds it, and the epoch it was
    saved after; ValueError if the file is not this config's checkpoint."""
    dev = torch.device(device)
    state = _read_checkpoint(Path(checkpoint), config, dev)
    net, _, _ = build([config], data, dev)
    net.load_member_state(0, state["net"])
    return net, state["epoch"]


class _Unusable(ValueError):
    """A checkpoint file that cannot be read (`tag` "corrupt") or that belongs to another
    config ("other-config")."""

    def __init__(self, path: Path, tag: str, why: str) -> None:
        super().__init__(f"checkpoint {path} {why}")
        self.tag, self.why = tag, why


def _read_checkpoint(path: Path, config: RunConfig, dev: torch.device) -> dict[str, Any]:
    """The state a run's checkpoint holds, its `history` (every epoch it holds, with its
    rows as `MetricRow`s) read from any layout written so far; `_Unusable` otherwise."""
    try:
        state = torch.load(path, map_location=dev, weights_only=False)
        if not isinstance(state, dict) or "config_hash" not in state:
            raise ValueError("not a corrgd checkpoint")
        if "history_json" in state:
            history = json.loads(state.pop("history_json"))
        elif "history" in state:  # pickled, before the rows were kept as JSON text
            history = state["history"]
        else:  # written before checkpoints kept every epoch's rows
            history = [{"epoch": state["epoch"], "rows": state["rows"]}]
        state["history"] = [{"epoch": e["epoch"], "rows": [MetricRow(**r) for r in e["rows"]]}
                            for e in history]
    except Exception as e:
        raise _Unusable(path, "corrupt", f"cannot be read ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if state["config_hash"] != config.hash():
        raise _Unusable(path, "other-config", "belongs to another config")
    return state


def _load_checkpoint(path: Path | None, config: RunConfig, dev: torch.device
                     ) -> dict[str, Any] | None:
    """A run's checkpoint, or None to start afresh. A file that cannot be read, or that
    belongs to another config, is set aside (renamed, with one log line naming it): the
    run then trains from scratch, re-logging every epoch with the same numbers."""
    if path is None or not path.exists():
        return None
    try:
        return _read_checkpoint(path, config, dev)
    except _Unusable as e:
        _set_aside(path, e.tag, e.why)
        return None


def _set_aside(path: Path, tag: str, why: str) -> None:
    aside = path.with_name(f"{path.name}.{tag}-{int(time.time())}")
    os.replace(path, aside)
    log.warning("checkpoint %s %s: set aside as %s; the run starts from scratch", path, why,
                aside.name)


def _save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash leaves either the old or the new checkpoint. Serialized in
    memory first, so that a full disk is the OSError that says so (torch's own file writer
    reports it as a zip position mismatch), and no partial file is left."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, lambda temporary: temporary.write_bytes(buffer.getbuffer()))
