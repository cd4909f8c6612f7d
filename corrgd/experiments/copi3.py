"""COPI Fig. 3 from the checkpoints of a sweep's finished COPI runs: input decorrelation and
each layer's linear features (3A/B), and layers replaced by linear maps inferred from
decorrelated activities (3C).

    compute_copi3(db, sweep, ...) -> Copi3      features of one run, accuracies of all
    draw_copi3_features(features) -> Figure     3A/B
    draw_copi3_compression(accuracy, sweep) -> Figure
                                                3C
    write_copi3(copi3, out_dir)                 out_dir/figures/copi-fig3ab[-SWEEP].* and
                                                copi-fig3c[-SWEEP].* (no suffix for copi-mnist)

Networks hold G members (`corrgd.learn.nn`); the functions that look at one network's
activities take the `member` to look at (a network of one member: 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from corrgd.data import DataSplits, Split
from corrgd.learn.nn import Net
from corrgd.results.reports import ReportError, source
from corrgd.results.reports.figures import new_figure, save
from corrgd.run.runner import data_key, load_data, load_trained, split_rows
from corrgd.spec.config import RunConfig
from corrgd.storage import ResultsDB, UnknownSweep

# -- linear maps from decorrelated activities ---------------------------------------------


def block_outputs(net: Net, x: Tensor, member: int = 0) -> tuple[list[Tensor], list[Tensor]]:
    """(decorrelated input x̂_{l−1} of every layer, output of every block) of one member of
    `net` on inputs x, without the member axis."""
    trace = net.trace(x)
    inputs = [layer.decorrelated_input(inp)[member] for layer, inp in
              zip(net.layers, trace.inputs, strict=True)]
    outputs = [block.finish(a)[member]
               for block, a in zip(net.blocks, trace.preacts, strict=True)]
    return inputs, outputs


def batches(x: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, len(x), size):
        yield x[i:i + size]


@dataclass
class LayerStatistics:
    """Sums over a data set, for linear maps Z Xᵀ D from decorrelated activities X.

    `input_cross[l]`:  Σ_n y_l xᵀ0  (output of layer l against decorrelated network input)
    `hidden_cross[k]`: Σ_n y_k xᵀ1  (output of layer k ≥ 2 against the decorrelated input of
                       layer 2), 1-based layer numbers
    `input_power`, `hidden_power`: Σ_n x̂² of the two decorrelated inputs (D⁻¹).
    """

    input_cross: dict[int, Tensor]
    hidden_cross: dict[int, Tensor]
    input_power: Tensor
    hidden_power: Tensor
    samples: int


@torch.no_grad()
def layer_statistics(net: Net, x: Tensor, *, batch_size: int = 5000,
                     member: int = 0) -> LayerStatistics:
    """One pass over `x` (rows: flattened inputs), in float64 sums, of one member of `net`."""
    net.eval()
    layers = len(net.layers)
    input_cross = {}
    hidden_cross = {}
    input_power = hidden_power = torch.zeros(0)
    for xb in batches(x, batch_size):
        inputs, outputs = block_outputs(net, xb, member)
        x0, x1 = inputs[0].double(), inputs[1].double()
        for l in range(1, layers + 1):
            part = outputs[l - 1].double().T @ x0
            input_cross[l] = input_cross[l] + part if l in input_cross else part
            if l >= 2:
                part = outputs[l - 1].double().T @ x1
                hidden_cross[l] = hidden_cross[l] + part if l in hidden_cross else part
        p0, p1 = x0.pow(2).sum(0), x1.pow(2).sum(0)
        input_power = p0 if input_power.numel() == 0 else input_power + p0
        hidden_power = p1 if hidden_power.numel() == 0 else hidden_power + p1
    return LayerStatistics(input_cross, hidden_cross, input_power, hidden_power, len(x))


def inferred_map(cross: Tensor, power: Tensor, ridge: float = 0.0) -> Tensor:
    """W = Z Xᵀ D with D = diag(1 / (Σ_n x² + λ)), λ = `ridge` × mean Σ_n x²; inputs that
    are always zero get weight 0. With ridge 0 this is COPI's exact map for decorrelated X."""
    keep = power > 1e-12 * power.max().clamp_min(1e-300)
    damped = (power + ridge * power.mean()).clamp_min(1e-300)
    return cross * torch.where(keep, 1.0 / damped, torch.zeros_like(power))


def receptive_fields(stats: LayerStatistics, ridge: float = 0.1) -> dict[int, Tensor]:
    """Per layer (1-based), each unit's linear feature in decorrelated-input space: rows of
    Y X̂0ᵀ D0 (COPI Fig. 3B). The small ridge keeps inputs that are almost never active
    (e.g. border pixels) from dominating through 1 / Σ x̂²."""
    return {l: inferred_map(c, stats.input_power, ridge) for l, c in stats.input_cross.items()}


@torch.no_grad()
def replaced_layer_accuracy(net: Net, stats: LayerStatistics, x: Tensor, y: Tensor,
                            replaced: int, *, batch_size: int = 5000, member: int = 0) -> float:
    """Accuracy of one member of `net` on (x, y) when its layers 2 .. 1 + `replaced` are
    replaced by the linear map Z Xᵀ D from layer 2's decorrelated input X to layer
    (1 + replaced)'s output Z, inferred from `stats` (that member's) without retraining
    (COPI Fig. 3C; the first layer is never replaced). `replaced` = 0 is the intact
    network."""
    net.eval()
    blocks = list(net.blocks)
    if not 0 <= replaced < len(blocks):
        raise ValueError(f"can replace 0 to {len(blocks) - 1} layers, not {replaced}")
    weight = None
    if replaced:
        weight = inferred_map(stats.hidden_cross[1 + replaced], stats.hidden_power)
    correct = 0
    for xb, yb in zip(batches(x, batch_size), batches(y, batch_size), strict=True):
        if weight is None:
            out = net(xb)[member]
        else:  # every member goes through the map; only `member`'s output is read
            first = blocks[0]
            h = first.finish(first.layer(first.prepare(net.per_member(xb))))
            h = (blocks[1].layer.decorrelated_input(blocks[1].prepare(h)).double()
                 @ weight.T).to(xb.dtype)
            for block in blocks[1 + replaced:]:
                h = block.finish(block.layer(block.prepare(h)))
            out = h[member]
        correct += int((out.argmax(1) == yb).sum())
    return correct / len(y)


def _zca(x: Tensor, eps_fraction: float = 1e-2, rows: int = 10_000) -> tuple[Tensor, Tensor]:
    """(mean, ZCA whitening matrix) of the first `rows` rows of x, with
    ε = eps_fraction × mean eigenvalue added to the covariance's eigenvalues."""
    xs = x[:rows].double()
    mean = xs.mean(0)
    xc = xs - mean
    values, vectors = torch.linalg.eigh(xc.T @ xc / len(xs))
    values = values.clamp_min(0)
    eps = eps_fraction * values.mean()
    return mean, vectors @ torch.diag((values + eps).rsqrt()) @ vectors.T


def _image_shape(dim: int) -> tuple[int, int, int] | None:
    """(C, H, W) of a flattened square image with 1 or 3 channels, else None."""
    for channels in (1, 3):
        side = math.isqrt(dim // channels)
        if dim % channels == 0 and side * side * channels == dim:
            return channels, side, side
    return None


# -- the runs, their networks and data ------------------------------------------------------


def _finished_copi_runs(db: ResultsDB, sweep: str) -> pd.DataFrame:
    """The finished COPI runs of `sweep` whose checkpoint file is here, with their
    `feedback`, ordered by feedback, seed and run id."""
    try:
        runs = db.runs_frame(sweep)
    except UnknownSweep:
        raise ReportError(f"figure copi3: sweep {sweep!r} is not in the database; "
                          f"{source.run_first([sweep])}") from None
    done = runs[(runs["status"] == "done") & (runs["algorithm"] == "copi")
                & runs["checkpoint_path"].notna()]
    done = done[[Path(p).is_file() for p in done["checkpoint_path"]]]
    if done.empty:
        raise ReportError(f"figure copi3: sweep {sweep!r} has no finished COPI run with a "
                          "checkpoint file here")
    feedback = [c.get("copi_feedback", "bp") for c in done["config"]]
    return done.assign(feedback=feedback).sort_values(["feedback", "seed", "run_id"])


def _run_splits(data: DataSplits, config: RunConfig) -> tuple[Split, Split | None]:
    """(training rows, validation rows or None) of one run of the whole training split
    `data.train`, held out as `corrgd.run.runner` holds them out for it."""
    train_rows, val_rows = split_rows(config, len(data.train))
    train = Split(data.train.x[train_rows], data.train.y[train_rows])
    if not len(val_rows):
        return train, None
    return train, Split(data.train.x[val_rows], data.train.y[val_rows])


# -- the figure's numbers -------------------------------------------------------------------


@dataclass
class Features:
    """COPI Fig. 3A/B of one network: rows of (label, vectors, signed) to show as images."""

    rows: list[tuple[str, np.ndarray, bool]]
    shape: tuple[int, int, int] | None  # (C, H, W) of an input, None if not an image
    last_units: list[int]  # the units shown in the last row
    table: pd.DataFrame  # layer, unit, x0 .. x{D-1}: the features shown
    feedback: str  # "bp" or "fa"
    dataset: str
    seed: int
    units: int  # features per layer
    samples_shown: int  # inputs per row


@dataclass
class Copi3:
    """COPI Fig. 3 of one sweep: the features of its first run, every run's accuracies."""

    sweep: str
    features: Features
    accuracy: pd.DataFrame  # run_id, feedback, seed, replaced_layers, test_accuracy, epochs


def _compute_features(net: Net, stats: LayerStatistics, x_train: Tensor, config: RunConfig,
                      feedback: str, units: int, samples_shown: int) -> Features:
    """Inputs, decorrelated and ZCA-whitened inputs, then `units` linear features per layer
    (all units of a layer with no more, else a random choice from the run's seed)."""
    fields = receptive_fields(stats)
    with torch.no_grad():
        shown = x_train[:samples_shown]
        decorrelated = block_outputs(net, shown)[0][0]
        mean, whiten = _zca(x_train)
        whitened = (shown.double() - mean) @ whiten
    rows: list[tuple[str, np.ndarray, bool]] = [
        ("input", shown.numpy(), False),
        ("COPI-decorrelated", decorrelated.numpy(), True),
        ("ZCA-whitened", whitened.numpy(), True)]
    generator = np.random.default_rng(config.seed)
    table = []
    last_units: list[int] = []
    for layer, rf in fields.items():
        chosen = np.arange(rf.shape[0]) if rf.shape[0] <= units else np.sort(
            generator.choice(rf.shape[0], units, replace=False))
        last = layer == len(fields)
        rows.append((f"layer {layer}{' (output)' if last else ''}",
                     rf[chosen].numpy(), True))
        last_units = [int(u) for u in chosen]
        table += [{"layer": layer, "unit": int(u), **{f"x{i}": float(v) for i, v in
                                                     enumerate(rf[u].tolist())}}
                  for u in chosen]
    return Features(rows, _image_shape(x_train.shape[1]), last_units, pd.DataFrame(table),
                    feedback, config.dataset, config.seed, units, samples_shown)


def compute_copi3(db: ResultsDB, sweep: str = "copi-mnist", *, data_dir: str | None = None,
                  units: int = 10, samples_shown: int = 10) -> Copi3:
    """COPI Fig. 3 from the checkpoints of the finished COPI runs of `sweep`.

    A/B (first run, BP perturbations if any): input samples, the same decorrelated by the
    network's first lateral matrix and ZCA-whitened; then each layer's linear features,
    rows of Y X̂0ᵀ D0 (layer outputs Y against decorrelated inputs X̂0 over the training set,
    D0 = diag(1 / Σ x̂0²) with a 10 % ridge against rarely active pixels). C (every run):
    test accuracy with 1 .. L−1 of the layers after the first replaced by the linear map
    Z X̂1ᵀ D1 from layer 2's decorrelated input X̂1 to the last replaced layer's output Z,
    inferred from the training set (no retraining; the first layer is kept, as in COPI
    Appendix B). Statistics from the run's own training rows (its validation rows held out
    as the runner holds them out); test set from `corrgd.run.runner.load_data(config)`, or
    the run's validation rows where the data set has none."""
    runs = _finished_copi_runs(db, sweep)
    accuracy_rows = []
    features: Features | None = None
    loaded: tuple[tuple, Any] | None = None  # the last data set, reused by runs sharing it
    for run in runs.itertuples(index=False):
        config = RunConfig(**run.config)
        if loaded is None or loaded[0] != data_key(config):
            loaded = None  # free the previous set first
            loaded = (data_key(config), load_data(config, data_dir))
        data = loaded[1]
        net, epoch = load_trained(config, data, run.checkpoint_path)
        train, val = _run_splits(data, config)
        x_train = data.eval_transform(train.x)
        stats = layer_statistics(net, x_train)
        test = data.test if data.test is not None else val
        if test is None:
            raise ReportError(f"figure copi3: run {run.run_id} has no test split")
        x_test = data.eval_transform(test.x)
        for replaced in range(len(net.layers)):
            accuracy_rows.append({
                "run_id": run.run_id, "feedback": run.feedback, "seed": run.seed,
                "replaced_layers": replaced,
                "test_accuracy": replaced_layer_accuracy(net, stats, x_test, test.y, replaced),
                "epochs": epoch})
        if features is None:
            features = _compute_features(net, stats, x_train, config, run.feedback, units,
                                         samples_shown)
    assert features is not None  # _finished_copi_runs returns at least one run
    return Copi3(sweep, features, pd.DataFrame(accuracy_rows))


# -- drawing --------------------------------------------------------------------------------


def _show(ax: Axes, vector: np.ndarray, shape: tuple[int, int, int] | None,
          signed: bool) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if shape is None:  # not an image: a strip
        vector = vector.reshape(1, -1)
        shape = (1, 1, vector.size)
    if shape[0] == 3:
        img = vector.reshape(shape).transpose(1, 2, 0)
        span = img.max() - img.min()
        ax.imshow((img - img.min()) / (span if span > 0 else 1.0))
    elif signed:
        limit = float(np.abs(vector).max()) or 1.0
        ax.imshow(vector.reshape(shape[1:]), cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        ax.imshow(vector.reshape(shape[1:]), cmap="gray")


def draw_copi3_features(f: Features) -> Figure:
    """COPI Fig. 3A/B: a row of images per input kind and per layer."""
    columns = max(f.units, f.samples_shown)
    fig = new_figure((0.95 * columns + 1.4, 1.0 * len(f.rows) + 0.6))
    grid = fig.add_gridspec(len(f.rows), columns)
    for r, (label, vectors, signed) in enumerate(f.rows):
        for c in range(columns):
            ax = fig.add_subplot(grid[r, c])
            if c < len(vectors):
                _show(ax, vectors[c], f.shape, signed)
                if r == len(f.rows) - 1:
                    ax.set_xlabel(f"unit {f.last_units[c]}", fontsize=7)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    feedback = "BP" if f.feedback == "bp" else "FA"
    fig.suptitle(f"COPI Fig. 3A/B: input decorrelation and linear features per layer "
                 f"(COPI-{feedback}, {f.dataset}, seed {f.seed}, {f.units} units per "
                 f"layer)\nfeatures: rows of Y X̂0ᵀ D0 over the training set (Y: layer output, "
                 f"X̂0: decorrelated input, D0 = diag(1 / (Σx̂0² + 10% of its mean))); red +, "
                 f"blue −", fontsize=10)
    return fig


def draw_copi3_compression(frame: pd.DataFrame, sweep: str) -> Figure:
    """COPI Fig. 3C: test accuracy per number of replaced layers, a bar per feedback (mean
    ± std over seeds) and a dot per seed."""
    summary = (frame.groupby(["feedback", "replaced_layers"])["test_accuracy"]
               .agg(["mean", "std", "count"]).reset_index())
    feedbacks = list(dict.fromkeys(summary["feedback"]))
    depths = sorted(int(d) for d in frame["replaced_layers"].unique())
    fig = new_figure((max(7.0, 1.2 + 1.3 * len(depths)), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(feedbacks)
    for i, fb in enumerate(feedbacks):
        part = summary[summary["feedback"] == fb].set_index("replaced_layers").loc[depths]
        xs = np.arange(len(depths)) + (i - (len(feedbacks) - 1) / 2) * width
        colour = "C5" if fb == "bp" else "C1"
        ax.bar(xs, 100 * part["mean"], width, yerr=100 * part["std"].fillna(0),
               color=colour, alpha=0.8, capsize=3, label=f"COPI-{fb.upper()}")
        points = frame[frame["feedback"] == fb]
        for j, depth in enumerate(depths):
            values = points[points["replaced_layers"] == depth]["test_accuracy"]
            ax.plot(np.full(len(values), xs[j]), 100 * values, "k.", markersize=3)
    ax.set_xticks(np.arange(len(depths)),
                  ["intact" if d == 0 else f"{d} layer{'s' if d > 1 else ''} replaced"
                   for d in depths])
    ax.set(ylabel="test accuracy (%)", ylim=(0, 100))
    ax.set_title(f"COPI Fig. 3C ({sweep}): layers after the first replaced by one linear map\n"
                 "Z X̂ᵀ D from training-set activities, no retraining (bars: mean ± std over "
                 "seeds; dots: seeds)", fontsize=9)
    ax.grid(axis="y", alpha=0.3, lw=0.5)
    fig.legend(loc="outside lower center", ncol=len(feedbacks), frameon=False)
    return fig


def write_copi3(c: Copi3, out_dir: Path) -> list[Path]:
    """COPI Fig. 3A/B and 3C and their numbers under out_dir/figures (a sweep other than
    copi-mnist named in the file names); the paths written."""
    suffix = "" if c.sweep == "copi-mnist" else f"-{c.sweep}"
    folder = out_dir / "figures"
    return [*save(draw_copi3_features(c.features), c.features.table, folder,
                  f"copi-fig3ab{suffix}"),
            *save(draw_copi3_compression(c.accuracy, c.sweep), c.accuracy, folder,
                  f"copi-fig3c{suffix}")]
