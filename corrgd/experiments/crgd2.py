"""CRGD Fig. 2: gradient descent on a 2-D linear regression y = wᵀx whose inputs are
correlated (⟨xxᵀ⟩ = [[1, ρ], [ρ, 1]]) takes a detour along the loss valley; with the inputs
decorrelated by a matrix learned with the CRGD rule (y = vᵀ M x) the loss is isotropic in v
and GD heads straight for the minimum. A third path whitens exactly.

    compute_crgd2(...) -> RegressionPaths     the GD paths and losses
    draw_crgd2(paths) -> Figure
    write_crgd2(paths, out_dir)               out_dir/figures/crgd-fig2.{png,pdf,svg,csv}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from corrgd.learn.nn import Decorrelation, DecorSettings
from corrgd.results.reports.figures import new_figure, save

METHOD_STYLE = {  # colour, label
    "correlated": ("C3", "correlated inputs"),
    "crgd": ("C0", "decorrelated (CRGD rule)"),
    "whitened": ("C2", "whitened (exact)"),
}


def equicorrelated(dim: int, rho: float) -> np.ndarray:
    """Covariance with unit variances and correlation `rho` between every pair."""
    return (1 - rho) * np.eye(dim) + rho * np.ones((dim, dim))


def gd_path(hessian: np.ndarray, optimum: np.ndarray, start: np.ndarray, lr: float,
            steps: int) -> np.ndarray:
    """Gradient descent on ½ (p − p*)ᵀ H (p − p*): the `steps + 1` iterates, one per row."""
    path = [np.asarray(start, dtype=float)]
    for _ in range(steps):
        p = path[-1]
        path.append(p - lr * hessian @ (p - optimum))
    return np.stack(path)


def quadratic_loss(hessian: np.ndarray, optimum: np.ndarray, points: np.ndarray) -> np.ndarray:
    """½ (p − p*)ᵀ H (p − p*) for every row p of `points` (any leading shape)."""
    diff = points - optimum
    return 0.5 * np.einsum("...i,ij,...j->...", diff, hessian, diff)


def learn_crgd_decorrelator(cov: np.ndarray, *, lr: float = 1e-2, steps: int = 2000,
                            batch: int = 256, seed: int = 0) -> np.ndarray:
    """The CRGD rule (`corrgd.learn.nn.Decorrelation`, rule "crgd") trained on samples of
    N(0, cov), started from the identity; returns the learned matrix M."""
    dim = cov.shape[0]
    generator = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))
    decor = Decorrelation(dim, DecorSettings(rule="crgd", lr=lr, sample_frac=1.0)).double()
    for _ in range(steps):
        x = torch.randn(batch, dim, generator=generator, dtype=torch.float64) @ chol.T
        decor.update((x - x.mean(0))[None], x[None])  # one member
    return decor.matrix[0].numpy().copy()


def whitening(cov: np.ndarray) -> np.ndarray:
    """Exact (ZCA) whitening scaled to keep the total variance: M Σ Mᵀ = (tr Σ / d) I."""
    values, vectors = np.linalg.eigh(cov)
    scale = math.sqrt(np.trace(cov) / cov.shape[0])
    return scale * vectors @ np.diag(values**-0.5) @ vectors.T


@dataclass
class RegressionPaths:
    """GD paths of y = wᵀx (inputs x ~ N(0, Σ)) and of y = vᵀ(M x) for decorrelating M.

    Parameters of the decorrelated model map to the plain model's by w = Mᵀ v, so every
    path is also given in w-coordinates. Losses are population losses ½⟨(ŷ − y)²⟩.
    """

    rho: float
    cov: np.ndarray
    optimum: np.ndarray  # w*
    lr: float
    paths_w: dict[str, np.ndarray]  # method -> (steps + 1, 2) iterates in w-coordinates
    paths_own: dict[str, np.ndarray]  # in each model's own parameters (w, or v)
    hessians: dict[str, np.ndarray]  # each model's loss Hessian in its own parameters
    optima: dict[str, np.ndarray]  # each model's optimum in its own parameters
    matrices: dict[str, np.ndarray]  # the decorrelating matrices M
    losses: dict[str, np.ndarray] = field(default_factory=dict)

    def steps_to(self, method: str, loss: float) -> int:
        """First step whose loss is below `loss` (len(path) if never)."""
        below = np.nonzero(self.losses[method] < loss)[0]
        return int(below[0]) if below.size else len(self.losses[method])

    @property
    def table(self) -> pd.DataFrame:
        """One row per method and step: w, own parameters, loss."""
        rows = []
        for method in self.paths_w:
            for step, (w, own, loss) in enumerate(zip(self.paths_w[method],
                                                       self.paths_own[method],
                                                       self.losses[method], strict=True)):
                rows.append({"method": method, "step": step, "w1": w[0], "w2": w[1],
                             "own1": own[0], "own2": own[1], "loss": loss})
        return pd.DataFrame(rows)


def compute_crgd2(*, rho: float = 0.9, optimum: Sequence[float] = (1.0, 0.5),
                  start: Sequence[float] = (-1.0, 1.1), lr: float | None = None,
                  steps: int = 100, decor_lr: float = 1e-2, decor_steps: int = 2000,
                  seed: int = 0) -> RegressionPaths:
    """GD on a 2-D linear regression with correlated inputs (correlation `rho`), and on the
    same regression with inputs decorrelated by the CRGD rule and by exact whitening.

    All three start from the same function (w0 = `start`) and use the same step size,
    by default half the largest stable one of the correlated problem (1 / λmax(Σ)).
    """
    cov = equicorrelated(2, rho)
    w_star, w0 = np.asarray(optimum, dtype=float), np.asarray(start, dtype=float)
    lr = 1.0 / np.linalg.eigvalsh(cov).max() if lr is None else lr
    matrices = {"crgd": learn_crgd_decorrelator(cov, lr=decor_lr, steps=decor_steps,
                                                seed=seed),
                "whitened": whitening(cov)}
    result = RegressionPaths(rho, cov, w_star, lr, {}, {}, {}, {}, matrices)
    result.hessians["correlated"], result.optima["correlated"] = cov, w_star
    result.paths_own["correlated"] = result.paths_w["correlated"] = gd_path(
        cov, w_star, w0, lr, steps)
    for method, m in matrices.items():
        hessian = m @ cov @ m.T  # the decorrelated inputs' second moment
        v_star, v0 = np.linalg.solve(m.T, w_star), np.linalg.solve(m.T, w0)
        path_v = gd_path(hessian, v_star, v0, lr, steps)
        result.hessians[method], result.optima[method] = hessian, v_star
        result.paths_own[method], result.paths_w[method] = path_v, path_v @ m
    for method, path in result.paths_own.items():
        result.losses[method] = quadratic_loss(result.hessians[method], result.optima[method],
                                               path)
    return result


def draw_crgd2(r: RegressionPaths) -> Figure:
    """A: the paths in w on the correlated problem's loss; B: the CRGD path in v on its own
    loss; C: the loss per step of every method. Same step size for all, the same start (as
    a function of x)."""
    fig = new_figure((11.5, 3.8))
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
    ax_w.set(title=f"A  correlated inputs (ρ = {r.rho:g})", xlabel="$w_1$",
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
    return fig


def write_crgd2(r: RegressionPaths, out_dir: Path) -> list[Path]:
    """CRGD Fig. 2 and its numbers under out_dir/figures; the paths written."""
    return save(draw_crgd2(r), r.table, out_dir / "figures", "crgd-fig2")
