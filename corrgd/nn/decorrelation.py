"""The learned decorrelating matrix that sits in front of a layer.

    x̂ = M (x − μ)

`M` (d × d) and the running mean `μ` are buffers: the optimizer never sees them.
They change only through `Decorrelation.update`, which a training step calls
with the layer's input batch after the forward weights got their gradients.

Two rules (SPEC "Decorrelation rules"); rows of `X̂` are samples, `n` of them:

    crgd:  C = X̂ᵀX̂ / n,   g = mean_n ‖x_n − μ‖ / ‖x̂_n‖,   M ← g (M − η C M)
    copi:  M ← M − η (X̂ᵀX̂ / n − diag(mean X̂²)) M

The product `C M` is formed as `X̂ᵀ (X̂ M) / n` when the subsample is smaller than
the dimension (2 n d² flops, no d × d temporary), and as `(X̂ᵀX̂ / n) M` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Rule = Literal["crgd", "copi"]
UpdateOrder = Literal["CM", "MC"]


@dataclass(frozen=True)
class DecorSettings:
    """How a decorrelation layer learns. `lr == 0` means no decorrelation layer at all.

    rule:          "crgd" (CRGD paper, with gain) or "copi" (COPI / NPD papers)
    lr:            decorrelation learning rate η_M (α in COPI)
    sample_frac:   fraction of the batch used to measure C and g (reference code: 0.1, plus one)
    demean:        subtract a mean before decorrelating; default: True for crgd, False for copi
    update_order:  "CM" (paper) or "MC" (reference code), crgd only
    momentum:      rate of the running-mean update
    """

    rule: Rule = "crgd"
    lr: float = 0.0
    sample_frac: float = 0.1
    demean: bool | None = None
    update_order: UpdateOrder = "CM"
    momentum: float = 0.1

    def __post_init__(self) -> None:
        if self.rule not in ("crgd", "copi"):
            raise ValueError(f"decorrelation rule must be 'crgd' or 'copi', got {self.rule!r}")
        if self.lr < 0:
            raise ValueError(f"decorrelation lr must be >= 0, got {self.lr}")
        if not 0 < self.sample_frac <= 1:
            raise ValueError(f"sample_frac must be in (0, 1], got {self.sample_frac}")
        if self.update_order not in ("CM", "MC"):
            raise ValueError(f"update_order must be 'CM' or 'MC', got {self.update_order!r}")

    @property
    def enabled(self) -> bool:
        return self.lr > 0

    @property
    def demeans(self) -> bool:
        return self.rule == "crgd" if self.demean is None else self.demean


GAIN_ROWS = 4096  # rows the CRGD gain (a mean of per-row norm ratios) is measured on


def subsample_size(n: int, frac: float) -> int:
    """Rows used for the update: `frac` of the batch plus one (reference code), at most n."""
    return min(n, int(frac * n) + 1)


class Decorrelation(nn.Module):
    """A `dim × dim` decorrelating matrix with its running mean, learned by its own rule."""

    matrix: Tensor
    running_mean: Tensor

    def __init__(self, dim: int, settings: DecorSettings) -> None:
        super().__init__()
        if not settings.enabled:
            raise ValueError("a Decorrelation layer needs lr > 0; lr 0 means no layer")
        self.dim = dim
        self.settings = settings
        self.register_buffer("matrix", torch.eye(dim))
        self.register_buffer("running_mean", torch.zeros(dim))

    def extra_repr(self) -> str:
        s = self.settings
        return f"dim={self.dim}, rule={s.rule}, lr={s.lr:g}, demean={s.demeans}"

    def center(self, batch_mean: Tensor) -> Tensor | None:
        """The μ to subtract: the batch mean while training, the running mean in eval."""
        if not self.settings.demeans:
            return None
        return batch_mean.detach() if self.training else self.running_mean

    def decorrelate(self, rows: Tensor, mean: Tensor | None = None) -> Tensor:
        """x̂ for a matrix of samples (rows)."""
        if mean is not None:
            rows = rows - mean
        return rows @ self.matrix.T

    @torch.no_grad()
    def update(self, rows: Tensor, batch_mean: Tensor | None) -> None:
        """One step of the rule from sample rows (n × dim), already subsampled.

        `batch_mean` is the mean the forward pass subtracted (None when the layer
        does not demean); it also moves the running mean.
        """
        s = self.settings
        x = rows if batch_mean is None else rows - batch_mean
        x = x.to(self.matrix.dtype)
        M = self.matrix
        n = x.shape[0]
        m = _Moments(x, M, left=s.rule == "copi" or s.update_order == "CM")
        # Updated in place, so that no d × d temporary is made when n < d.
        if s.rule == "crgd":  # M ← g M − g η C M
            xs, xhs = x[:GAIN_ROWS], m.decorrelated[:GAIN_ROWS]
            gain = (xs.norm(dim=1) / xhs.norm(dim=1).clamp_min(1e-12)).mean()
            M.mul_(gain).addmm_(m.A, m.B * gain, alpha=-s.lr / n)
        else:  # M ← M − α C M + α diag(⟨x̂²⟩) M
            M.addcmul_(m.second[:, None], M, value=s.lr)
            M.addmm_(m.A, m.B, alpha=-s.lr / n)
        if batch_mean is not None:
            self.running_mean.lerp_(batch_mean.to(self.running_mean.dtype), s.momentum)

    @torch.no_grad()
    def stats(self, rows: Tensor, mean: Tensor | None) -> dict[str, float]:
        """Diagnostics on sample rows: residual correlation of x̂, CRGD gain, ‖x̂‖ / ‖x‖."""
        x = rows if mean is None else rows - mean
        xh = x @ self.matrix.T
        in_norm, out_norm = x.norm(dim=1), xh.norm(dim=1)
        return {
            "offdiag_corr": off_diagonal_correlation(xh),
            "input_offdiag_corr": off_diagonal_correlation(x),
            "gain": float((in_norm / out_norm.clamp_min(1e-12)).mean()),
            "norm_ratio": float(out_norm.norm() / in_norm.norm().clamp_min(1e-12)),
        }


class _Moments:
    """What the rules need of the decorrelated rows `x̂ = x Mᵀ`, each in its cheapest form:

    A, B:          factors with A @ B = n C M (left) or n M C, C = x̂ᵀ x̂ / n; they never
                   alias M, so M can be updated in place
    decorrelated:  x̂ of (at least) the first GAIN_ROWS rows, for the CRGD gain
    second:        ⟨x̂²⟩ per unit, for the COPI rule

    Few rows (n < d): C is never formed (3 n d² flops). Up to d + GAIN_ROWS rows:
    C = x̂ᵀ x̂ / n (2 n d² + d³). More rows (conv patches): n C = M (xᵀx) Mᵀ without
    decorrelating every row ((n + GAIN_ROWS) d² + 2 d³).
    """

    def __init__(self, x: Tensor, M: Tensor, *, left: bool) -> None:
        n, d = x.shape
        if n > d + GAIN_ROWS:
            nC = M @ (x.T @ x) @ M.T
            self.A, self.B = (nC, M.clone()) if left else (M.clone(), nC)
            self.decorrelated = x[:GAIN_ROWS] @ M.T
            self.second = nC.diagonal() / n
            return
        xh = x @ M.T
        if n < d:
            self.A, self.B = (xh.T, xh @ M) if left else (M @ xh.T, xh)
        else:
            C = xh.T @ xh
            self.A, self.B = (C, M.clone()) if left else (M.clone(), C)
        self.decorrelated = xh
        self.second = xh.pow(2).mean(0)


def off_diagonal_correlation(x: Tensor) -> float:
    """Mean |off-diagonal correlation coefficient| between the columns of x (n × d).

    Constant columns (zero variance) are left out; non-finite data gives NaN.
    """
    x = x.double()
    if not torch.isfinite(x).all():
        return float("nan")  # not 0.0: a diverged layer must not look decorrelated
    x = x - x.mean(0)
    std = x.norm(dim=0)
    keep = std > 1e-12 * std.max().clamp_min(1e-300)
    x = x[:, keep] / std[keep]
    d = x.shape[1]
    if d < 2:
        return 0.0
    r = x.T @ x
    return float((r.abs().sum() - r.diagonal().abs().sum()) / (d * (d - 1)))


def correlation_floor(n: int) -> float:
    """E|r| for two independent Gaussian columns of n samples: ≈ sqrt(2 / (π (n − 1)))."""
    return (2.0 / (torch.pi * (n - 1))) ** 0.5
