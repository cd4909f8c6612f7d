"""CRGD Fig. 3: decorrelating matrices started at M0 = s I, trained on the same minibatches
of correlated inputs by the CRGD rule and by the anti-Hebbian rule without gain
(Földiák-style): the CRGD rule decorrelates at any scale and keeps the activity norm, the
other depends on the scale and shrinks activity.

    compute_crgd3(...) -> DecorrelationDynamics    correlation and norm per step
    draw_crgd3(dynamics) -> Figure
    write_crgd3(dynamics, out_dir)                 out_dir/figures/crgd-fig3.{png,pdf,svg,csv}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter
from torch import Tensor

from corrgd.learn.nn import Decorrelation, DecorSettings
from corrgd.results.reports.figures import new_figure, save

RULE_NAMES = {"crgd": "CRGD rule (with gain)",
              "antihebbian": "anti-Hebbian, no gain (Földiák-style)"}


def random_correlation(dim: int, *, condition: float = 20.0, seed: int = 0) -> np.ndarray:
    """A correlation matrix (unit diagonal) with eigenvalues spread over `condition`."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    cov = q @ np.diag(np.geomspace(1.0, 1.0 / condition, dim)) @ q.T
    std = np.sqrt(np.diag(cov))
    return cov / np.outer(std, std)


def mean_abs_offdiag_correlation(second_moment: Tensor | np.ndarray) -> float:
    """Mean |correlation coefficient| over the off-diagonal of a (zero-mean) second moment."""
    p = torch.as_tensor(second_moment, dtype=torch.float64)
    std = p.diagonal().clamp_min(1e-300).sqrt()
    r = p / torch.outer(std, std)
    d = p.shape[0]
    return float((r.abs().sum() - r.diagonal().abs().sum()) / (d * (d - 1)))


@dataclass
class DecorrelationDynamics:
    """Per rule and initial scale s (M0 = s I): residual correlation and activity norm of
    x̂ = M x after each recorded step, measured on the population covariance."""

    dim: int
    scales: tuple[float, ...]
    lr: float
    batch: int
    steps: np.ndarray  # recorded step numbers (0 = before any update)
    correlation: dict[tuple[str, float], np.ndarray]  # mean |off-diagonal corr| of x̂
    norm: dict[tuple[str, float], np.ndarray]  # RMS ‖x̂‖ / RMS ‖x‖
    input_correlation: float

    @property
    def table(self) -> pd.DataFrame:
        """One row per rule, scale and recorded step."""
        return pd.DataFrame([
            {"rule": rule, "scale": scale, "step": int(step), "offdiag_corr": c,
             "norm_ratio": n}
            for (rule, scale), corr in self.correlation.items()
            for step, c, n in zip(self.steps, corr, self.norm[(rule, scale)], strict=True)])


def compute_crgd3(*, dim: int = 16, scales: Sequence[float] = (0.3, 1.0, 3.0),
                  lr: float = 1e-2, steps: int = 2000, batch: int = 256,
                  condition: float = 20.0, seed: int = 0) -> DecorrelationDynamics:
    """Train decorrelating matrices M0 = s I on minibatches of correlated Gaussian inputs
    with two rules, from the same batches:

        CRGD:         M ← g (M − η ⟨x̂x̂ᵀ⟩ M),  g = ⟨‖x‖ / ‖x̂‖⟩   (corrgd.learn.nn.Decorrelation)
        anti-Hebbian: M ← M − η ⟨x̂x̂ᵀ⟩ M                       (the same without the gain)

    The anti-Hebbian update is the matrix form of Földiák's lateral anti-Hebbian learning
    (ΔW ∝ −y yᵀ); its step on M scales with s², and its diagonal part shrinks activity.
    """
    cov = torch.as_tensor(random_correlation(dim, condition=condition, seed=seed),
                          dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    recorded = np.unique(np.concatenate([[0], np.geomspace(1, steps, 60).astype(int)]))
    correlation: dict[tuple[str, float], np.ndarray] = {}
    norm: dict[tuple[str, float], np.ndarray] = {}
    for scale in scales:
        crgd = Decorrelation(dim, DecorSettings(rule="crgd", lr=lr, sample_frac=1.0,
                                                demean=False)).double()
        crgd.matrix.mul_(scale)
        plain = scale * torch.eye(dim, dtype=torch.float64)
        generator = torch.Generator().manual_seed(seed + 1)  # the same batches for every s
        stats: dict[str, list[tuple[float, float]]] = {"crgd": [], "antihebbian": []}
        for step in range(steps + 1):
            if step in recorded:
                for name, m in (("crgd", crgd.matrix[0]), ("antihebbian", plain)):
                    moment = m @ cov @ m.T
                    stats[name].append((mean_abs_offdiag_correlation(moment),
                                        math.sqrt(float(moment.trace() / cov.trace()))))
            if step == steps:
                break
            x = torch.randn(batch, dim, generator=generator, dtype=torch.float64) @ chol.T
            crgd.update(x[None])  # one member
            xh = x @ plain.T
            plain = plain - lr * (xh.T @ xh / batch) @ plain
        for name, rows in stats.items():
            values = np.array(rows)
            correlation[(name, scale)], norm[(name, scale)] = values[:, 0], values[:, 1]
    return DecorrelationDynamics(dim, tuple(scales), lr, batch, recorded, correlation, norm,
                                 mean_abs_offdiag_correlation(cov))


def draw_crgd3(dyn: DecorrelationDynamics) -> Figure:
    """Left: residual correlation of x̂ = M x; right: its activity norm relative to the
    input's; per rule (line style) and initial scale (colour)."""
    fig = new_figure((10.5, 3.9))
    ax_corr, ax_norm = fig.subplots(1, 2)
    x = np.maximum(dyn.steps, 0.5)  # step 0 shown at 0.5 on the log axis
    colours = {s: f"C{i}" for i, s in enumerate(dyn.scales)}
    styles = {"crgd": "-", "antihebbian": "--"}
    for (rule, scale), values in dyn.correlation.items():
        ax_corr.loglog(x, values, styles[rule], color=colours[scale])
        ax_norm.loglog(x, dyn.norm[(rule, scale)], styles[rule], color=colours[scale])
    xlabel = f"update step (batch {dyn.batch}; the start drawn at 0.5)"
    ax_corr.set(title="residual correlation of x̂ = M x", xlabel=xlabel,
                ylabel="mean |off-diagonal correlation|")
    ax_norm.set(title="activity norm", xlabel=xlabel, ylabel="RMS ‖x̂‖ / RMS ‖x‖")
    ax_norm.axhline(1.0, color="0.5", lw=0.8)
    for ax in (ax_corr, ax_norm):
        ax.grid(alpha=0.3, lw=0.5, which="both")
    handles = [Line2D([], [], color="k", ls=styles[r], label=RULE_NAMES[r])
               for r in styles]
    handles += [Line2D([], [], color=colours[s], label=f"M0 = {s:g} I")
                for s in dyn.scales]
    ax_corr.legend(handles=handles, frameon=False, loc="lower left")
    ticks = [0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10]
    low, high = ax_norm.get_ylim()
    ax_norm.set_yticks([t for t in ticks if low <= t <= high])
    ax_norm.yaxis.set_major_formatter(ScalarFormatter())
    ax_norm.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"CRGD Fig. 3: decorrelation rules from matrices of different scales "
                 f"({dyn.dim} correlated Gaussian inputs, input correlation "
                 f"{dyn.input_correlation:.2f}, η = {dyn.lr:g})", fontsize=10)
    return fig


def write_crgd3(dyn: DecorrelationDynamics, out_dir: Path) -> list[Path]:
    """CRGD Fig. 3 and its numbers under out_dir/figures; the paths written."""
    return save(draw_crgd3(dyn), dyn.table, out_dir / "figures", "crgd-fig3")
