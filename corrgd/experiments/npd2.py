"""NPD Fig. 2 and Fig. 6: the angle between BP's weight update and the NP, ANP and INP
updates averaged over K noise samples, against K and against the forward passes that costs
(NP / ANP: 1 + K, INP: 1 + K L).

    compute_alignment(...) -> AlignmentAngles    the angles per rule, K and layer
    draw_alignment(angles) -> Figure
    write_alignment(angles, out_dir)             out_dir/figures/npd-fig2-alignment[-decor].*

Networks hold G members (`corrgd.learn.nn`); the functions that look at one network's
updates take the `member` to look at (a network of one member: 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch import Tensor

from corrgd.data import load_dataset
from corrgd.learn.diagnostics import angle, bp_gradients, layer_updates
from corrgd.learn.losses import LossFn, get_loss
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings, Net
from corrgd.learn.rules import make_rule
from corrgd.results.reports.figures import ALGORITHM_COLOURS, new_figure, save

PERTURBATION_RULES = ("np", "anp", "inp")


def forward_passes(rule: str, samples: int, layers: int) -> int:
    """Forward passes per update: one clean pass plus one noisy pass per noise sample
    (NP, ANP), or one per layer and noise sample (INP)."""
    return 1 + samples * (layers if rule == "inp" else 1)


def averaged_updates(net: Net, rule: str, x: Tensor, y: Tensor, loss: LossFn, *,
                     samples: Sequence[int], sigma2: float = 1e-6,
                     seed: int = 0) -> dict[int, list[Tensor]]:
    """Per K in `samples`: each layer's update of `rule` averaged over K noise samples, as
    rows (members, weights + biases) (`corrgd.learn.diagnostics.layer_updates`); every member
    draws its noise from run seed `seed`.

    The rules average their per-sample error estimates before the (linear) weight update,
    so the K-sample update is assembled from increments of k noise samples weighted by k;
    one rule draws them all from its noise stream, so they are the noise that one call
    with samples=K would draw.
    """
    perturbation = make_rule(rule, sigma2=sigma2, samples=1, seed=[seed] * net.members)
    perturbation.reseed(device=x.device)
    result: dict[int, list[Tensor]] = {}
    total: list[Tensor] = []
    done = 0
    for k in sorted({int(k) for k in samples}):
        perturbation.samples = k - done
        update = layer_updates(net, perturbation, x, y, loss)
        weighted = [u * (k - done) for u in update]
        total = [t + w for t, w in zip(total, weighted, strict=True)] if total else weighted
        done = k
        result[k] = [t / k for t in total]
    return result


def alignment_angles(net: Net, x: Tensor, y: Tensor, loss: LossFn, *,
                     samples: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
                     rules: Sequence[str] = PERTURBATION_RULES, sigma2: float = 1e-6,
                     seed: int = 0, member: int = 0) -> list[dict[str, float | int | str]]:
    """Angle (degrees) between each rule's update averaged over K noise samples and the BP
    gradient, per layer and over all layers together, for every K in `samples`, of one
    member of `net`."""
    true = [g[member] for g in bp_gradients(net, x, y, loss)]
    true_all = torch.cat(true)
    rows: list[dict[str, float | int | str]] = []
    for rule in rules:
        updates = averaged_updates(net, rule, x, y, loss, samples=samples, sigma2=sigma2,
                                   seed=seed)
        for k, update in updates.items():
            mean = [u[member] for u in update]
            base = {"rule": rule, "samples": k,
                    "forward_passes": forward_passes(rule, k, len(mean))}
            for layer, (u, g) in enumerate(zip(mean, true, strict=True), start=1):
                rows.append({**base, "layer": str(layer), "angle": angle(u, g)})
            rows.append({**base, "layer": "all", "angle": angle(torch.cat(mean), true_all)})
    return rows


@dataclass
class AlignmentAngles:
    """The angles of one network and batch, and what the figure says about them."""

    table: pd.DataFrame  # rule, samples, forward_passes, layer, angle, decorrelated
    network: str  # layer widths, e.g. "64-256-256-256-10"
    batch: int
    sigma2: float
    decorrelated: bool


def compute_alignment(*, samples: Sequence[int] = (1, 2, 5, 10, 20, 50, 100), seed: int = 0,
                      hidden: Sequence[int] = (256, 256, 256), batch: int = 1000,
                      sigma2: float = 1e-6, decorrelated: bool = False) -> AlignmentAngles:
    """The angles of a randomly initialised dense net with `hidden` leaky-ReLU layers on a
    batch of scikit-learn digits (offline), CE loss. `decorrelated` first trains COPI-rule
    decorrelating matrices on the batch (W fixed)."""
    data = load_dataset("digits", flatten=True, seed=seed)
    x, y = data.train.x[:batch], data.train.y[:batch]
    torch.manual_seed(seed)
    decor = DecorSettings(rule="copi", lr=1e-2, sample_frac=1.0) if decorrelated else None
    net = build_network("mlp", data.input_shape, data.num_classes, decor, hidden=list(hidden))
    if decorrelated:
        with torch.no_grad():
            for _ in range(200):
                net.update_decorrelation(net.trace(x).inputs)
    rows = alignment_angles(net, x, y, get_loss("ce"), samples=samples, sigma2=sigma2,
                            seed=seed)
    network = "-".join(str(w) for w in (data.input_shape[0], *hidden, data.num_classes))
    return AlignmentAngles(pd.DataFrame(rows).assign(decorrelated=decorrelated), network,
                           len(y), sigma2, decorrelated)


def draw_alignment(a: AlignmentAngles) -> Figure:
    """One column per layer (and all layers): the angles against K (top) and against the
    forward passes (bottom)."""
    frame = a.table
    layers = list(frame["layer"].unique())  # "1" .. "L", "all"
    fig = new_figure((2.6 * len(layers), 5.2))
    axes = fig.subplots(2, len(layers), sharey=True, squeeze=False)
    for col, layer in enumerate(layers):
        part = frame[frame["layer"] == layer]
        for rule in PERTURBATION_RULES:
            line = part[part["rule"] == rule]
            for row, xcol in enumerate(("samples", "forward_passes")):
                axes[row, col].semilogx(line[xcol], line["angle"], "o-", markersize=3,
                                        color=ALGORITHM_COLOURS[rule], label=rule.upper())
        title = "all layers" if layer == "all" else (
            f"layer {layer}" + (" (output)" if int(layer) == len(layers) - 1 else ""))
        axes[0, col].set_title(title)
        axes[0, col].set_xlabel("noise samples K")
        axes[1, col].set_xlabel("forward passes")
    for row in range(2):
        axes[row, 0].set_ylabel("angle to BP update (°)")
        for ax in axes[row]:
            ax.grid(alpha=0.3, lw=0.5, which="both")
            ax.set_ylim(0, 95)
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0, -1].legend(frameon=False)
    fig.suptitle(f"NPD Fig. 2 / 6: angle to BP's update of NP, ANP, INP updates averaged over "
                 f"K noise samples (top) and vs forward passes (bottom; NP, ANP: 1 + K, INP: "
                 f"1 + K·L)\nrandomly initialised "
                 f"{a.network} leaky-ReLU net"
                 f"{' with trained COPI decorrelation' if a.decorrelated else ''}, one batch of "
                 f"{a.batch} scikit-learn digits, CE loss, σ² = {a.sigma2:g}", fontsize=10)
    return fig


def write_alignment(a: AlignmentAngles, out_dir: Path) -> list[Path]:
    """NPD Fig. 2 (Fig. 6 when decorrelated) and its numbers under out_dir/figures."""
    stem = "npd-fig2-alignment" + ("-decor" if a.decorrelated else "")
    return save(draw_alignment(a), a.table, out_dir / "figures", stem)
