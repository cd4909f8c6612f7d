"""One training run from a validated `RunConfig`, reporting through a small callback.

    data → network → rule → optimizer; epoch 0 is evaluated before training;
    then per epoch: train, evaluate every split, checkpoint, report.

The runner knows nothing of sweeps or databases: it hands each epoch's metric
rows to `Reporter.epoch_end`. Resuming: when `checkpoint` names a file saved by
an earlier, interrupted run of the same config, training continues after its
last finished epoch, and that epoch's rows are reported again (reporters must
treat a repeated epoch as already written).

Randomness comes from the run's named streams (`corrgd.streams`): the initial
weights, feedback matrices and validation split from their own streams, and the
data order, noise and crops from per-epoch streams, so a resumed run draws the
same batches and noise as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from corrgd import streams
from corrgd.config import RunConfig
from corrgd.data import DataSplits, load_dataset
from corrgd.diagnostics import decorrelation_stats, update_angles
from corrgd.losses import get_loss
from corrgd.models import build_network, takes_flat_input
from corrgd.nn import DecorSettings, Net
from corrgd.rules import LearningRule, make_rule
from corrgd.training import evaluate, train_step

DIAGNOSTIC_SAMPLES = 256  # batch the per-epoch diagnostics are measured on
CHECK_EVERY = 10  # steps between loss checks (NaN) and progress reports


class Reporter(Protocol):
    def epoch_end(self, epoch: int, rows: list[dict[str, Any]], checkpoint: str | None) -> None:
        """Metric rows of one finished epoch (one per split), after its checkpoint is saved."""

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """Called every few training steps; cheap."""


class NullReporter:
    def epoch_end(self, epoch: int, rows: list[dict[str, Any]], checkpoint: str | None) -> None:
        pass

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        pass


@dataclass
class RunResult:
    status: str  # "done" or "diverged"
    epochs: int  # last finished epoch
    final: list[dict[str, Any]]  # rows of the last finished epoch


def decor_settings(config: RunConfig, lr: float | None = None, conv_lr: float | None = None
                   ) -> tuple[DecorSettings | None, DecorSettings | None]:
    """(dense, conv) decorrelation settings of a config; LRs default to the config's."""
    if not config.decor:
        return None, None
    dense = DecorSettings(rule=config.decor_rule, lr=lr or config.decor_lr,
                          sample_frac=config.decor_sample_frac, demean=config.decor_demean,
                          update_order=config.decor_update_order,
                          channel_mean=config.decor_channel_mean,
                          mean_in_graph=config.decor_mean_in_graph)
    conv = replace(dense, lr=conv_lr or config.decor_conv_lr or dense.lr,
                   update_order=config.decor_conv_update_order or dense.update_order)
    return dense, conv


def build(config: RunConfig, data: DataSplits, device: torch.device | str
          ) -> tuple[Net, LearningRule, torch.optim.Optimizer]:
    """The network, learning rule and optimizer a config describes, initialised from its seed."""
    decor, conv_decor = decor_settings(config)
    arch = {k: v for k in ("width", "depth", "hidden") if (v := getattr(config, k)) is not None}
    net = build_network(config.network, data.input_shape, data.num_classes, decor,
                        conv_decor=conv_decor, padding=config.padding, bias=config.bias,
                        last_hidden_activation=config.last_hidden_activation,
                        output_activation=config.output_activation,
                        generator=streams.generator(config.seed, "init"), **arch).to(device)
    options: dict[str, Any] = {"seed": config.seed}
    if config.algorithm in ("np", "inp", "anp"):
        options |= {"sigma2": config.sigma2, "samples": config.np_samples,
                    "noisy_baseline": config.noisy_baseline}
    if config.algorithm == "copi":
        options["feedback"] = config.copi_feedback
    rule = make_rule(config.algorithm, **options)
    example = data.eval_transform(data.train.x[:2].to(device))
    rule.setup(net, example)
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=config.lr,
                                                      betas=config.betas, eps=config.eps)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum)
    return net, rule, opt


def load_data(config: RunConfig, data_dir: str | None = None) -> DataSplits:
    """The data set of a run, with its validation split and the input layout its net needs."""
    return load_dataset(config.dataset, data_dir=data_dir, val_size=config.val_size,
                        seed=streams.stream_seed(config.seed, "split"),
                        flatten=takes_flat_input(config.network), **config.data)


def data_key(config: RunConfig) -> tuple:
    """Runs with equal keys can share one loaded data set."""
    return (config.dataset, config.val_size, config.seed, takes_flat_input(config.network),
            tuple(sorted(config.data.items())))


def learning_rates(config: RunConfig, epoch: int) -> tuple[float, float, float]:
    """(forward LR, decor LR, conv decor LR) of training epoch `epoch` (1-based): the
    `first_epoch_*` values in epoch 1 where set."""
    conv = config.decor_conv_lr or config.decor_lr
    if epoch == 1 and config.first_epoch_decor_lr:
        conv = config.decor_conv_lr or config.first_epoch_decor_lr
    if epoch == 1:
        return (config.first_epoch_lr or config.lr,
                config.first_epoch_decor_lr or config.decor_lr, conv)
    return config.lr, config.decor_lr, conv


def run(config: RunConfig, *, device: str = "cpu", data_dir: str | None = None,
        checkpoint: str | Path | None = None, reporter: Reporter | None = None,
        data: DataSplits | None = None) -> RunResult:
    reporter = reporter or NullReporter()
    dev = torch.device(device)
    data = data or load_data(config, data_dir)
    splits = {name: s for name in ("train", "val", "test") if (s := getattr(data, name))}
    on_device = {name: (s.x.to(dev), s.y.to(dev)) for name, s in splits.items()}
    net, rule, opt = build(config, data, dev)
    loss_fn = get_loss(config.loss)
    ckpt = Path(checkpoint) if checkpoint else None

    first, last_rows = 0, []
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        if state["config_hash"] != config.hash():
            raise ValueError(f"checkpoint {ckpt} belongs to another config")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        last_rows = state["rows"]
        reporter.epoch_end(state["epoch"], last_rows, str(ckpt))  # may not have reached it
        if state["status"] == "diverged":
            return RunResult("diverged", state["epoch"], last_rows)
        first = state["epoch"] + 1

    x_train, y_train = on_device["train"]
    n = x_train.shape[0]
    diag_idx = torch.arange(min(n, DIAGNOSTIC_SAMPLES), device=dev)
    for epoch in range(first, config.epochs + 1):
        seconds, diverged = 0.0, False
        if epoch > 0:
            lr, decor_lr, conv_decor_lr = learning_rates(config, epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            if config.decor:
                net.set_decorrelation_lr(decor_lr, conv_decor_lr)
            if hasattr(rule, "reseed"):
                rule.reseed(epoch, device=dev)
            crops = streams.generator(config.seed, "crop", epoch)
            net.train()
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=streams.generator(config.seed, "order", epoch))
            order = order.to(dev)
            steps = math.ceil(n / config.batch_size)
            for step in range(steps):
                idx = order[step * config.batch_size:(step + 1) * config.batch_size]
                xb = data.train_transform(x_train[idx], crops)
                loss = train_step(net, rule, opt, xb, y_train[idx], loss_fn)
                if step % CHECK_EVERY == 0 or step == steps - 1:  # a sync point on GPUs
                    value = float(loss)
                    if not math.isfinite(value):  # NaN stays NaN: caught within a few steps
                        diverged = True
                        break
                    reporter.progress(epoch, step + 1, steps, value)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - t0
        rows = _evaluate_splits(net, on_device, data, loss_fn, config, seconds)
        diverged = diverged or any(not math.isfinite(r["loss"]) for r in rows)
        if config.diagnostics and not diverged:
            if hasattr(rule, "noise_generator"):
                rule.noise_generator = streams.generator(config.seed, "diagnostics", epoch,
                                                         device=dev)
            rows[0]["diagnostics"] = _diagnostics(net, rule, data, x_train[diag_idx],
                                                  y_train[diag_idx], loss_fn)
        status = "diverged" if diverged else "running"
        if ckpt is not None:
            _save(ckpt, {"config_hash": config.hash(), "epoch": epoch, "rows": rows,
                         "status": status, "net": net.state_dict(),
                         "optimizer": opt.state_dict()})
        reporter.epoch_end(epoch, rows, str(ckpt) if ckpt else None)
        last_rows = rows
        if diverged:
            return RunResult("diverged", epoch, rows)
    return RunResult("done", config.epochs, last_rows)


def _evaluate_splits(net: Net, on_device: dict, data: DataSplits, loss_fn, config: RunConfig,
                     seconds: float) -> list[dict[str, Any]]:
    rows = []
    for split, (x, y) in on_device.items():
        m = evaluate(net, x, y, loss_fn, config.eval_batch_size, data.eval_transform)
        rows.append({"split": split, **m, "seconds": seconds if split == "train" else 0.0,
                     "diagnostics": None})
    return rows


def _diagnostics(net: Net, rule: LearningRule, data: DataSplits, x: torch.Tensor,
                 y: torch.Tensor, loss_fn) -> dict[str, Any]:
    """Per layer: decorrelation stats (decorrelated layers) and the update's angle to BP."""
    x = data.eval_transform(x)
    net.train()
    layers: list[dict[str, Any]] = [{} for _ in net.layers]
    if net.decorrelated:
        small = x[:64] if x.dim() > 2 else x  # conv statistics run over every patch
        for entry, stats in zip(layers, decorrelation_stats(net, small), strict=True):
            if stats is not None:
                entry.update(stats)
    if rule.name != "bp":
        for entry, a in zip(layers, update_angles(net, rule, x, y, loss_fn), strict=True):
            entry["angle_to_bp"] = a
    return {"layers": layers}


def _save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash leaves either the old or the new checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
