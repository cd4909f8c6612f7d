"""Figures computed on the spot (no training sweep needed), for `corrgd report --figure ID`.

    figure_crgd2(out_dir)               CRGD Fig. 2: GD on correlated vs decorrelated inputs
    figure_crgd3(out_dir)               CRGD Fig. 3: CRGD rule vs anti-Hebbian decorrelation
    figure_alignment(out_dir)           NPD Fig. 2 (and Fig. 6): NP / ANP / INP vs BP angles
    figure_npd7(out_dir)                NPD Fig. 7: those angles vs the noise variance σ²,
                                        float32 and float64
    figure_copi3(db, out_dir, sweep)    COPI Fig. 3: from checkpoints of finished COPI runs

Each writes PNG, PDF and SVG (and a CSV of the numbers drawn) under ``out_dir/figures``
and returns the paths. The maths lives in `corrgd.experiments.computed_maths`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter

from corrgd.data import DataNotFoundError, DataSplits, Split, load_dataset
from corrgd.experiments.computed_maths import (
    PERTURBATION_RULES,
    RULE_NAMES,
    LayerStatistics,
    alignment_angles,
    block_outputs,
    decorrelation_dynamics,
    layer_statistics,
    noise_variance_angles,
    quadratic_loss,
    receptive_fields,
    regression_paths,
    replaced_layer_accuracy,
)
from corrgd.learn import streams
from corrgd.learn.losses import get_loss
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings, Net
from corrgd.results.reports import ReportError
from corrgd.run.runner import build, data_key, load_data, split_rows
from corrgd.spec.config import RunConfig
from corrgd.storage import ResultsDB, UnknownSweep

FORMATS = ("png", "pdf", "svg")
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
         "axes.spines.top": False, "axes.spines.right": False, "svg.hashsalt": "corrgd",
         "lines.linewidth": 1.6}
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
             "svg": {"Date": None}}
RULE_COLOURS = {"np": "C2", "anp": "C3", "inp": "C4"}  # as in corrgd.results.reports.figures
METHOD_STYLE = {  # CRGD Fig. 2 methods: colour, label
    "correlated": ("C3", "correlated inputs"),
    "crgd": ("C0", "decorrelated (CRGD rule)"),
    "whitened": ("C2", "whitened (exact)"),
}


def _figure(size: tuple[float, float]) -> Figure:
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, table: pd.DataFrame, out_dir: Path, stem: str) -> list[Path]:
    """PNG, PDF, SVG and CSV under out_dir/figures; byte-stable across runs."""
    folder = Path(out_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with mpl.rc_context(STYLE):
        for fmt in FORMATS:
            path = folder / f"{stem}.{fmt}"
            fig.savefig(path, dpi=150 if fmt == "png" else None, metadata=_METADATA[fmt])
            paths.append(path)
    csv = folder / f"{stem}.csv"
    table.to_csv(csv, index=False, float_format="%.6g")
    return [*paths, csv]


# -- CRGD Fig. 2 -------------------------------------------------------------------------


def figure_crgd2(out_dir: Path, *, rho: float = 0.9, steps: int = 100,
                 decor_steps: int = 2000, seed: int = 0) -> list[Path]:
    """CRGD Fig. 2: gradient descent on a 2-D linear regression y = wᵀx whose inputs are
    correlated (⟨xxᵀ⟩ = [[1, ρ], [ρ, 1]]) takes a detour along the loss valley; with the
    inputs decorrelated by a matrix learned with the CRGD rule (y = vᵀ M x) the loss is
    isotropic in v and GD heads straight for the minimum. A third curve whitens exactly.
    Same step size for all, the same start (as a function of x)."""
    r = regression_paths(rho=rho, steps=steps, decor_steps=decor_steps, seed=seed)
    fig = _figure((11.5, 3.8))
    ax_w, ax_v, ax_loss = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.15]})

    def contours(ax: Axes, method: str, path: np.ndarray) -> None:
        hessian, optimum = r.hessians[method], r.optima[method]
        span = np.abs(path - optimum).max() * 1.25
        grid = np.linspace(-span, span, 201)
        g1, g2 = np.meshgrid(optimum[0] + grid, optimum[1] + grid)
        loss = quadratic_loss(hessian, optimum, np.stack([g1, g2], axis=-1))
        levels = np.geomspace(loss.max() * 1e-3, loss.max() * 0.6, 9)
        ax.contour(g1, g2, loss, levels=levels, colors="0.6", linewidths=0.7)
        ax.plot(*optimum, marker="*", color="k", markersize=10, zorder=5)
        ax.set_aspect("equal")

    def draw_path(ax: Axes, path: np.ndarray, method: str, **kw: Any) -> None:
        colour, label = METHOD_STYLE[method]
        ax.plot(path[:, 0], path[:, 1], "-", color=colour, label=label, marker="o",
                markersize=2.5, **kw)

    def first_step(ax: Axes, method: str, path: np.ndarray) -> None:
        """The negative gradient at the start (arrow) against the direction to the minimum."""
        start, optimum = path[0], r.optima[method]
        grad = r.hessians[method] @ (start - optimum)
        length = 0.35 * np.linalg.norm(optimum - start)
        d = -grad / np.linalg.norm(grad) * length
        ax.annotate("", start + d, start, arrowprops={"arrowstyle": "->", "lw": 1.4,
                                                      "color": "k"})
        ax.plot(*np.stack([start, optimum]).T, ":", color="0.3", lw=1)

    contours(ax_w, "correlated", r.paths_w["correlated"])
    draw_path(ax_w, r.paths_w["correlated"], "correlated")
    draw_path(ax_w, r.paths_w["crgd"], "crgd", alpha=0.8)
    first_step(ax_w, "correlated", r.paths_w["correlated"])
    ax_w.set(title=f"A  correlated inputs (ρ = {rho:g})", xlabel="$w_1$",
             ylabel="$w_2$")
    ax_w.legend(loc="lower right", frameon=False)

    contours(ax_v, "crgd", r.paths_own["crgd"])
    draw_path(ax_v, r.paths_own["crgd"], "crgd")
    first_step(ax_v, "crgd", r.paths_own["crgd"])
    corr = r.matrices["crgd"] @ r.cov @ r.matrices["crgd"].T
    ax_v.set(title="B  decorrelated inputs (CRGD rule)",
             xlabel="$v_1$", ylabel="$v_2$")
    ax_v.text(0.02, 0.02, f"residual input correlation "
              f"{corr[0, 1] / math.sqrt(corr[0, 0] * corr[1, 1]):+.3f}",
              transform=ax_v.transAxes, fontsize=8, color="0.3")

    for method, losses in r.losses.items():
        colour, label = METHOD_STYLE[method]
        ax_loss.semilogy(np.arange(len(losses)), np.maximum(losses, 1e-16), color=colour,
                         label=label)
    ax_loss.set(title=f"C  loss per GD step (step size {r.lr:.3g})", xlabel="GD step",
                ylabel="loss ½⟨(ŷ − y)²⟩", ylim=(1e-12, None))
    ax_loss.legend(frameon=False)
    ax_loss.grid(alpha=0.3, lw=0.5)
    fig.suptitle("CRGD Fig. 2: gradient descent on a linear regression y = wᵀx with correlated "
                 "inputs, and y = vᵀ(Mx) with M decorrelating them\n"
                 "contours: loss; arrow: −gradient at the start; dotted: straight to the "
                 "minimum (★); A also shows the decorrelated path as w = Mᵀv", fontsize=10)

    rows = []
    for method in r.paths_w:
        for step, (w, own, loss) in enumerate(zip(r.paths_w[method], r.paths_own[method],
                                                   r.losses[method], strict=True)):
            rows.append({"method": method, "step": step, "w1": w[0], "w2": w[1],
                         "own1": own[0], "own2": own[1], "loss": loss})
    return _save(fig, pd.DataFrame(rows), out_dir, "crgd-fig2")


# -- CRGD Fig. 3 -------------------------------------------------------------------------


def figure_crgd3(out_dir: Path, *, dim: int = 16, scales: Sequence[float] = (0.3, 1.0, 3.0),
                 lr: float = 1e-2, steps: int = 2000, batch: int = 256,
                 seed: int = 0) -> list[Path]:
    """CRGD Fig. 3: decorrelating matrices started at M0 = s I, trained on the same
    minibatches of correlated inputs by the CRGD rule and by the anti-Hebbian rule without
    gain (Földiák-style). Left: residual correlation of x̂ = M x; right: its activity norm
    relative to the input's."""
    dyn = decorrelation_dynamics(dim=dim, scales=scales, lr=lr, steps=steps, batch=batch,
                                 seed=seed)
    fig = _figure((10.5, 3.9))
    ax_corr, ax_norm = fig.subplots(1, 2)
    x = np.maximum(dyn.steps, 0.5)  # step 0 shown at 0.5 on the log axis
    colours = {s: f"C{i}" for i, s in enumerate(scales)}
    styles = {"crgd": "-", "antihebbian": "--"}
    for (rule, scale), values in dyn.correlation.items():
        ax_corr.loglog(x, values, styles[rule], color=colours[scale])
        ax_norm.loglog(x, dyn.norm[(rule, scale)], styles[rule], color=colours[scale])
    xlabel = f"update step (batch {batch}; the start drawn at 0.5)"
    ax_corr.set(title="residual correlation of x̂ = M x", xlabel=xlabel,
                ylabel="mean |off-diagonal correlation|")
    ax_norm.set(title="activity norm", xlabel=xlabel, ylabel="RMS ‖x̂‖ / RMS ‖x‖")
    ax_norm.axhline(1.0, color="0.5", lw=0.8)
    for ax in (ax_corr, ax_norm):
        ax.grid(alpha=0.3, lw=0.5, which="both")
    handles = [Line2D([], [], color="k", ls=styles[r], label=RULE_NAMES[r])
               for r in styles]
    handles += [Line2D([], [], color=colours[s], label=f"M0 = {s:g} I")
                for s in scales]
    ax_corr.legend(handles=handles, frameon=False, loc="lower left")
    ticks = [0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10]
    low, high = ax_norm.get_ylim()
    ax_norm.set_yticks([t for t in ticks if low <= t <= high])
    ax_norm.yaxis.set_major_formatter(ScalarFormatter())
    ax_norm.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"CRGD Fig. 3: decorrelation rules from matrices of different scales "
                 f"({dim} correlated Gaussian inputs, input correlation "
                 f"{dyn.input_correlation:.2f}, η = {lr:g})", fontsize=10)
    rows = [{"rule": rule, "scale": scale, "step": int(step), "offdiag_corr": c,
             "norm_ratio": n}
            for (rule, scale), corr in dyn.correlation.items()
            for step, c, n in zip(dyn.steps, corr, dyn.norm[(rule, scale)], strict=True)]
    return _save(fig, pd.DataFrame(rows), out_dir, "crgd-fig3")


# -- NPD Fig. 2 --------------------------------------------------------------------------


def figure_alignment(out_dir: Path, *, samples: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
                     seed: int = 0, hidden: Sequence[int] = (256, 256, 256),
                     batch: int = 1000, sigma2: float = 1e-6,
                     decorrelated: bool = False) -> list[Path]:
    """NPD Fig. 2 and Fig. 6: angle between BP's weight update and the NP, ANP and INP
    updates averaged over K noise samples, against K and against the forward passes that
    costs (NP / ANP: 1 + K, INP: 1 + K L). Network: a randomly initialised dense net with
    `hidden` leaky-ReLU layers on a batch of scikit-learn digits (offline), CE loss.
    `decorrelated` first trains COPI-rule decorrelating matrices on the batch (W fixed)."""
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
    frame = pd.DataFrame(rows)
    layers = list(frame["layer"].unique())
    fig = _figure((2.6 * len(layers), 5.2))
    axes = fig.subplots(2, len(layers), sharey=True, squeeze=False)
    for col, layer in enumerate(layers):
        part = frame[frame["layer"] == layer]
        for rule in PERTURBATION_RULES:
            line = part[part["rule"] == rule]
            for row, xcol in enumerate(("samples", "forward_passes")):
                axes[row, col].semilogx(line[xcol], line["angle"], "o-", markersize=3,
                                        color=RULE_COLOURS[rule], label=rule.upper())
        title = "all layers" if layer == "all" else (
            f"layer {layer}" + (" (output)" if int(layer) == len(hidden) + 1 else ""))
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
    net_text = "-".join(str(w) for w in (data.input_shape[0], *hidden, data.num_classes))
    fig.suptitle(f"NPD Fig. 2 / 6: angle to BP's update of NP, ANP, INP updates averaged over "
                 f"K noise samples (top) and vs forward passes (bottom; NP, ANP: 1 + K, INP: "
                 f"1 + K·L)\nrandomly initialised "
                 f"{net_text} leaky-ReLU net"
                 f"{' with trained COPI decorrelation' if decorrelated else ''}, one batch of "
                 f"{len(y)} scikit-learn digits, CE loss, σ² = {sigma2:g}", fontsize=10)
    stem = "npd-fig2-alignment" + ("-decor" if decorrelated else "")
    return _save(fig, frame.assign(decorrelated=decorrelated), out_dir, stem)


# -- NPD Fig. 7 --------------------------------------------------------------------------

NPD7_DATA = ("cifar10", "fashion-mnist", "digits")  # CIFAR-10, else offline stand-ins
DATA_NAMES = {"cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST",
              "digits": "scikit-learn digits"}
NPD7_SIGMA2 = tuple(10.0**-e for e in range(2, 17))  # 1e-2 .. 1e-16
DTYPE_STYLE = {"float32": "-", "float64": "--"}
RULE_MARKERS = {"np": "o", "anp": "s", "inp": "^"}


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


def figure_npd7(out_dir: Path, *, sigma2s: Sequence[float] = NPD7_SIGMA2, samples: int = 10,
                batch: int = 1000, width: int = 1024, depth: int = 3, layer: int = 2,
                seed: int = 0, dataset: str | None = None,
                data_dir: str | Path | None = None,
                device: str | torch.device | None = None) -> list[Path]:
    """NPD Fig. 7 (Appendix H): angle between BP's weight update and the NP, ANP and INP
    updates of one layer against the noise variance σ², in float32 (left) and float64
    (right).

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
    minutes on 2 CPU cores for the defaults on Fashion-MNIST). The CSV holds every layer
    and all layers together ("all"); the figure draws `layer`.
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
    net_text = "-".join(str(w) for w in (data.input_shape[0], *[width] * depth,
                                         data.num_classes))
    frame = pd.DataFrame(rows).assign(data=label, dataset=name, batch=len(y),
                                      network=f"npd-fc {net_text}", seed=seed)
    part = frame[frame["layer"] == str(layer)]
    dtypes = list(dict.fromkeys(part["dtype"]))
    fig = _figure((4.8 * len(dtypes), 4.3))
    axes = fig.subplots(1, len(dtypes), sharey=True, squeeze=False)[0]
    top = max(95.0, float(part["angle"].max()) + 3)
    for ax, dtype in zip(axes, dtypes, strict=True):
        ax.axvspan(1e-6, 1e-4, color="0.9", zorder=0, label="stable in NPD (1e-6 – 1e-4)")
        ax.axvline(1e-6, color="0.5", lw=0.8, ls=":", label="σ² of NPD's runs (1e-6)")
        for rule in PERTURBATION_RULES:
            line = part[(part["dtype"] == dtype) & (part["rule"] == rule)].sort_values("sigma2")
            ax.semilogx(line["sigma2"], line["angle"], DTYPE_STYLE.get(dtype, "-"),
                        marker=RULE_MARKERS[rule], markersize=4, markerfacecolor="none",
                        color=RULE_COLOURS[rule], label=rule.upper())
        ax.set(title=dtype, xlabel="noise variance σ²", ylim=(0, top))
        ax.grid(alpha=0.3, lw=0.5, which="major")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel(f"angle to BP update, layer {layer} (°)")
    axes[-1].legend(frameon=False, loc="lower left")
    into = f"hidden layer {layer}" if layer <= depth else "the output"
    fig.suptitle(f"NPD Fig. 7: angle to BP's update of NP, ANP, INP updates of layer {layer} "
                 f"(weights into {into}) vs the noise variance σ²\n"
                 f"randomly initialised {net_text} leaky-ReLU net (npd-fc), one batch of "
                 f"{len(y)} {label}\nCE loss; each update averaged over K = {samples} noise "
                 f"samples, the same draws at every σ²", fontsize=9)
    return _save(fig, frame, out_dir, "npd-fig7")


# -- COPI Fig. 3 -------------------------------------------------------------------------


def _image_shape(dim: int) -> tuple[int, int, int] | None:
    """(C, H, W) of a flattened square image with 1 or 3 channels, else None."""
    for channels in (1, 3):
        side = math.isqrt(dim // channels)
        if dim % channels == 0 and side * side * channels == dim:
            return channels, side, side
    return None


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


def _zca(x: torch.Tensor, eps_fraction: float = 1e-2,
         rows: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, ZCA whitening matrix) of the first `rows` rows of x, with
    ε = eps_fraction × mean eigenvalue added to the covariance's eigenvalues."""
    xs = x[:rows].double()
    mean = xs.mean(0)
    xc = xs - mean
    values, vectors = torch.linalg.eigh(xc.T @ xc / len(xs))
    values = values.clamp_min(0)
    eps = eps_fraction * values.mean()
    return mean, vectors @ torch.diag((values + eps).rsqrt()) @ vectors.T


def _finished_copi_runs(db: ResultsDB, sweep: str) -> pd.DataFrame:
    try:
        runs = db.runs_frame(sweep)
    except UnknownSweep:
        raise ReportError(f"figure copi3: sweep {sweep!r} is not in the database; run "
                          f"`corrgd sweep sweeps/{sweep}.yaml` first") from None
    done = runs[(runs["status"] == "done") & (runs["algorithm"] == "copi")
                & runs["checkpoint_path"].notna()]
    done = done[[Path(p).is_file() for p in done["checkpoint_path"]]]
    if done.empty:
        raise ReportError(f"figure copi3: sweep {sweep!r} has no finished COPI run with a "
                          "checkpoint file here")
    feedback = [c.get("copi_feedback", "bp") for c in done["config"]]
    return done.assign(feedback=feedback).sort_values(["feedback", "seed", "run_id"])


def figure_copi3(db: ResultsDB, out_dir: Path, sweep: str = "copi-mnist", *,
                 data_dir: str | None = None, units: int = 10,
                 samples_shown: int = 10) -> list[Path]:
    """COPI Fig. 3 from the checkpoints of the finished COPI runs of `sweep`.

    A/B (first run, BP perturbations if any): input samples, the same decorrelated by the
    network's first lateral matrix and ZCA-whitened; then each layer's linear features,
    rows of Y X̂0ᵀ D0 (layer outputs Y against decorrelated inputs X̂0 over the training set,
    D0 = diag(1 / Σ x̂0²) with a 10 % ridge against rarely active pixels). C (every run):
    test accuracy with 1 .. L−1 of the layers after the first replaced by the linear map
    Z X̂1ᵀ D1 from layer 2's decorrelated input X̂1 to the last replaced layer's output Z,
    inferred from the training set (no retraining; the first layer is kept, as in COPI
    Appendix B). Statistics from the run's own training rows (its validation rows held out
    as the runner holds them out); test set from `corrgd.run.runner.load_data(config)`, or the
    run's validation rows where the data set has none."""
    runs = _finished_copi_runs(db, sweep)
    suffix = "" if sweep == "copi-mnist" else f"-{sweep}"
    accuracy_rows = []
    feature_paths: list[Path] = []
    loaded: tuple[tuple, Any] | None = None  # the last data set, reused by runs sharing it
    for index, run in enumerate(runs.itertuples(index=False)):
        config = RunConfig(**run.config)
        if loaded is None or loaded[0] != data_key(config):
            loaded = None  # free the previous set first
            loaded = (data_key(config), load_data(config, data_dir))
        data = loaded[1]
        net, _, _ = build([config], data, "cpu")
        state = torch.load(run.checkpoint_path, map_location="cpu", weights_only=False)
        net.load_member_state(0, state["net"])  # a checkpoint holds one member
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
                "epochs": state["epoch"]})
        if index == 0:
            feature_paths = _copi_features(net, stats, x_train, config, run, units,
                                           samples_shown, out_dir, f"copi-fig3ab{suffix}")
    frame = pd.DataFrame(accuracy_rows)
    return [*feature_paths, *_copi_compression(frame, sweep, out_dir, f"copi-fig3c{suffix}")]


def _run_splits(data: DataSplits, config: RunConfig) -> tuple[Split, Split | None]:
    """(training rows, validation rows or None) of one run of the whole training split
    `data.train`, held out as `corrgd.run.runner` holds them out for it."""
    train_rows, val_rows = split_rows(config, len(data.train))
    train = Split(data.train.x[train_rows], data.train.y[train_rows])
    if not len(val_rows):
        return train, None
    return train, Split(data.train.x[val_rows], data.train.y[val_rows])


def _copi_features(net: Net, stats: LayerStatistics, x_train: torch.Tensor,
                   config: RunConfig, run: Any, units: int, samples_shown: int, out_dir: Path,
                   stem: str) -> list[Path]:
    """COPI Fig. 3A/B of one network: inputs, decorrelated and ZCA-whitened inputs, then
    `units` linear features per layer (all units of a layer with no more)."""
    fields = receptive_fields(stats)
    shape = _image_shape(x_train.shape[1])
    with torch.no_grad():
        shown = x_train[:samples_shown]
        decorrelated = block_outputs(net, shown)[0][0]
        mean, whiten = _zca(x_train)
        zca = (shown.double() - mean) @ whiten
    rows: list[tuple[str, np.ndarray, bool]] = [
        ("input", shown.numpy(), False),
        ("COPI-decorrelated", decorrelated.numpy(), True),
        ("ZCA-whitened", zca.numpy(), True)]
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
    columns = max(units, samples_shown)
    fig = _figure((0.95 * columns + 1.4, 1.0 * len(rows) + 0.6))
    grid = fig.add_gridspec(len(rows), columns)
    for r, (label, vectors, signed) in enumerate(rows):
        for c in range(columns):
            ax = fig.add_subplot(grid[r, c])
            if c < len(vectors):
                _show(ax, vectors[c], shape, signed)
                if r == len(rows) - 1:
                    ax.set_xlabel(f"unit {last_units[c]}", fontsize=7)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    feedback = "BP" if run.feedback == "bp" else "FA"
    fig.suptitle(f"COPI Fig. 3A/B: input decorrelation and linear features per layer "
                 f"(COPI-{feedback}, {config.dataset}, seed {config.seed}, {units} units per "
                 f"layer)\nfeatures: rows of Y X̂0ᵀ D0 over the training set (Y: layer output, "
                 f"X̂0: decorrelated input, D0 = diag(1 / (Σx̂0² + 10% of its mean))); red +, "
                 f"blue −", fontsize=10)
    return _save(fig, pd.DataFrame(table), out_dir, stem)


def _copi_compression(frame: pd.DataFrame, sweep: str, out_dir: Path,
                      stem: str) -> list[Path]:
    summary = (frame.groupby(["feedback", "replaced_layers"])["test_accuracy"]
               .agg(["mean", "std", "count"]).reset_index())
    feedbacks = list(dict.fromkeys(summary["feedback"]))
    depths = sorted(int(d) for d in frame["replaced_layers"].unique())
    fig = _figure((max(7.0, 1.2 + 1.3 * len(depths)), 3.8))
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
    return _save(fig, frame, out_dir, stem)
