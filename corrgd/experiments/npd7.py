"""NPD Fig. 7 (Appendix H): the angle between BP's weight update and the NP, ANP and INP
updates of one layer against the noise variance σ², in float32 (left) and float64 (right).

    compute_npd7(...) -> NoiseVarianceAngles    the angles per dtype, rule, σ² and layer
    draw_npd7(angles) -> Figure
    write_npd7(angles, out_dir)                 out_dir/figures/npd-fig7.{png,pdf,svg,csv}
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from torch import Tensor

from corrgd.data import DataNotFoundError, DataSplits, load_dataset
from corrgd.experiments.npd2 import PERTURBATION_RULES
from corrgd.learn import streams
from corrgd.learn.diagnostics import angle, bp_gradients, layer_updates
from corrgd.learn.losses import LossFn, get_loss
from corrgd.learn.models import build_network
from corrgd.learn.nn import Net
from corrgd.learn.rules import make_rule
from corrgd.results.reports import ReportError
from corrgd.results.reports.figures import ALGORITHM_COLOURS, new_figure, save

NPD7_DATA = ("cifar10", "fashion-mnist", "digits")  # CIFAR-10, else offline stand-ins
DATA_NAMES = {"cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST",
              "digits": "scikit-learn digits"}
NPD7_SIGMA2 = tuple(10.0**-e for e in range(2, 17))  # 1e-2 .. 1e-16
DTYPE_STYLE = {"float32": "-", "float64": "--"}
RULE_MARKERS = {"np": "o", "anp": "s", "inp": "^"}


def noise_variance_angles(net: Net, x: Tensor, y: Tensor, loss: LossFn, *,
                          sigma2s: Sequence[float], samples: int = 10,
                          rules: Sequence[str] = PERTURBATION_RULES,
                          dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
                          seed: int = 0, member: int = 0) -> list[dict[str, float | int | str]]:
    """Angle (degrees) between each rule's update, averaged over `samples` noise samples,
    and the BP gradient, per layer and over all layers together, for every noise variance
    in `sigma2s` and every floating-point type in `dtypes`, of one member of `net`.

    That member is copied once per σ² into a network of len(sigma2s) identical members
    (member g perturbed with variance sigma2s[g]), run in each dtype (weights, inputs and
    every pass). All members draw their noise from run seed `seed`, so every σ² sees the
    same standard-normal draws scaled by its own σ: differences between σ² are the effect
    of the scale alone, not of another noise realisation. (torch draws other numbers in
    float32 than in float64 from the same generator, so the two dtypes' noise differs.)
    Rows: dtype, rule, sigma2, samples, layer ("1".."L" or "all"), angle. `net` is left
    unchanged."""
    variances = [float(v) for v in sigma2s]
    replicas = copy.deepcopy(net)
    replicas.select_members(torch.full((len(variances),), member, dtype=torch.long,
                                       device=x.device))
    rows: list[dict[str, float | int | str]] = []
    for dtype in dtypes:
        model = copy.deepcopy(replicas).to(dtype)
        xs = x.to(dtype)
        ys = y.to(dtype) if y.is_floating_point() else y
        true = bp_gradients(model, xs, ys, loss)
        name = str(dtype).removeprefix("torch.")
        for rule in rules:
            perturbation = make_rule(rule, sigma2=variances, samples=samples,
                                     seed=[seed] * len(variances))
            perturbation.reseed(device=x.device)
            update = layer_updates(model, perturbation, xs, ys, loss)
            for g, sigma2 in enumerate(variances):
                base = {"dtype": name, "rule": rule, "sigma2": sigma2, "samples": samples}
                for layer, (u, t) in enumerate(zip(update, true, strict=True), start=1):
                    rows.append({**base, "layer": str(layer), "angle": angle(u[g], t[g])})
                rows.append({**base, "layer": "all",
                             "angle": angle(torch.cat([u[g] for u in update]),
                                            torch.cat([t[g] for t in true]))})
    return rows


def npd7_data(dataset: str | None = None, data_dir: str | Path | None = None,
              seed: int = 0) -> tuple[str, DataSplits]:
    """(name, data) for NPD Fig. 7: `dataset` if given, else CIFAR-10 when its files are in
    `data_dir` (default: $CORRGD_DATA or ~/.cache/corrgd/data), else Fashion-MNIST when
    present (there or in Debian's /usr/share/datasets/fashion-mnist), else scikit-learn's
    digits (always there). Nothing is downloaded."""
    names = (dataset,) if dataset else NPD7_DATA
    for name in names:
        try:
            return name, load_dataset(name, data_dir=data_dir, download=False, flatten=True,
                                      seed=seed)
        except DataNotFoundError as e:
            if dataset:
                raise ReportError(f"figure npd7: {e}") from None
    raise ReportError("figure npd7: no data set found")  # digits is always there


@dataclass
class NoiseVarianceAngles:
    """The angles of one network and batch, and what the figure says about them."""

    table: pd.DataFrame  # noise_variance_angles' rows + data, dataset, batch, network, seed
    layer: int  # the layer drawn
    depth: int  # hidden layers
    network: str  # layer widths, e.g. "3072-1024-1024-1024-10"
    data: str  # the data set's name in the title, e.g. "CIFAR-10"
    batch: int
    samples: int


def compute_npd7(*, sigma2s: Sequence[float] = NPD7_SIGMA2, samples: int = 10,
                 batch: int = 1000, width: int = 1024, depth: int = 3, layer: int = 2,
                 seed: int = 0, dataset: str | None = None,
                 data_dir: str | Path | None = None,
                 device: str | torch.device | None = None) -> NoiseVarianceAngles:
    """The angles of NPD Fig. 7, every layer and all layers together ("all"); the figure
    draws `layer`.

    As NPD Fig. 7 states it: the second hidden layer (`layer` 2: the weights and biases
    into hidden layer 2) of a randomly initialised NPD FC net with three hidden layers
    (`npd-fc`, `depth` 3 x `width` 1024, leaky ReLU; the net of Fig. 2), one mini-batch of
    `batch` = 1000 CIFAR-10 training images (the first 1000, standardised per channel).

    Open in the paper, chosen here:
    - each update averaged over `samples` K = 10 noise samples (the paper does not say how
      many; with K = 1 the NP and ANP angles sit within ~2° of 90° and hardly show a
      change; K = 100 costs 10x more);
    - cross-entropy loss (NPD's training loss); weights from the init stream of run seed
      `seed`, noise from its noise stream;
    - every σ² sees the same standard-normal draws, scaled by its σ (the network is copied
      once per σ² as members of one `Net`; `noise_variance_angles`), so changes along σ²
      are the scale's alone; float32 and float64 draw different numbers;
    - σ² from 1e-2 to 1e-16 in decades: further down than the paper's precision threshold
      (1e-7) because in IEEE float32, as computed here, the angles only start to degrade
      near 1e-11 (INP) to 1e-13 (NP, ANP); float64 stays flat all the way.

    Data: CIFAR-10 if its files are in `data_dir` (default $CORRGD_DATA or
    ~/.cache/corrgd/data; nothing is downloaded), else an offline stand-in, named in the
    title and in the CSV's `data` and `dataset` columns: Fashion-MNIST if present (also
    Debian's /usr/share/datasets/fashion-mnist), else scikit-learn's digits (`npd7_data`).
    `dataset` forces one. `device`: default CUDA if available, else the CPU (about 5
    minutes on 2 CPU cores for the defaults on Fashion-MNIST).
    """
    name, data = npd7_data(dataset, data_dir, seed)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    x = data.eval_transform(data.train.x[:batch]).to(device)
    y = data.train.y[:batch].to(device)
    net = build_network("npd-fc", data.input_shape, data.num_classes, width=width,
                        depth=depth, generators=[streams.generator(seed, "init")]).to(device)
    if not 1 <= layer <= len(net.layers):
        raise ValueError(f"layer must be 1 .. {len(net.layers)}, got {layer}")
    rows = noise_variance_angles(net, x, y, get_loss("ce"), sigma2s=sigma2s, samples=samples,
                                 seed=seed)
    label = DATA_NAMES.get(name, name)
    if name != "cifar10":
        label += (" (offline stand-in: no CIFAR-10 files)" if dataset is None
                  else " (stand-in for CIFAR-10, as asked)")
    network = "-".join(str(w) for w in (data.input_shape[0], *[width] * depth,
                                        data.num_classes))
    table = pd.DataFrame(rows).assign(data=label, dataset=name, batch=len(y),
                                      network=f"npd-fc {network}", seed=seed)
    return NoiseVarianceAngles(table, layer, depth, network, label, len(y), samples)


def draw_npd7(a: NoiseVarianceAngles) -> Figure:
    """One panel per dtype: the angles of layer `a.layer` against σ², a line per rule."""
    part = a.table[a.table["layer"] == str(a.layer)]
    dtypes = list(dict.fromkeys(part["dtype"]))
    fig = new_figure((4.8 * len(dtypes), 4.3))
    axes = fig.subplots(1, len(dtypes), sharey=True, squeeze=False)[0]
    top = max(95.0, float(part["angle"].max()) + 3)
    for ax, dtype in zip(axes, dtypes, strict=True):
        ax.axvspan(1e-6, 1e-4, color="0.9", zorder=0, label="stable in NPD (1e-6 – 1e-4)")
        ax.axvline(1e-6, color="0.5", lw=0.8, ls=":", label="σ² of NPD's runs (1e-6)")
        for rule in PERTURBATION_RULES:
            line = part[(part["dtype"] == dtype) & (part["rule"] == rule)].sort_values("sigma2")
            ax.semilogx(line["sigma2"], line["angle"], DTYPE_STYLE.get(dtype, "-"),
                        marker=RULE_MARKERS[rule], markersize=4, markerfacecolor="none",
                        color=ALGORITHM_COLOURS[rule], label=rule.upper())
        ax.set(title=dtype, xlabel="noise variance σ²", ylim=(0, top))
        ax.grid(alpha=0.3, lw=0.5, which="major")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel(f"angle to BP update, layer {a.layer} (°)")
    axes[-1].legend(frameon=False, loc="lower left")
    into = f"hidden layer {a.layer}" if a.layer <= a.depth else "the output"
    fig.suptitle(f"NPD Fig. 7: angle to BP's update of NP, ANP, INP updates of layer {a.layer} "
                 f"(weights into {into}) vs the noise variance σ²\n"
                 f"randomly initialised {a.network} leaky-ReLU net (npd-fc), one batch of "
                 f"{a.batch} {a.data}\nCE loss; each update averaged over K = {a.samples} "
                 f"noise samples, the same draws at every σ²", fontsize=9)
    return fig


def write_npd7(a: NoiseVarianceAngles, out_dir: Path) -> list[Path]:
    """NPD Fig. 7 and its numbers under out_dir/figures; the paths written."""
    return save(draw_npd7(a), a.table, out_dir / "figures", "npd-fig7")
