"""The learned decorrelating matrix that sits in front of a layer.

    x̂ = M (x − μ)

`M` (d × d) and the running mean `μ` are buffers: the optimizer never sees them.
They change only through `Decorrelation.update`, which a training step calls
with the layer's input batch after the forward weights got their gradients.

Every tensor has a leading member axis (see `corrgd.learn.nn`): `M` is (G, d, d), μ is
(G, d), the learning rate is one value per member, and the rules below run for
all members at once as batched matrix products.

Two rules (SPEC "Decorrelation rules"); rows of `X̂` are samples, `n` of them:

    crgd:  C = X̂ᵀX̂ / n,   g = mean_n ‖x_n‖ / ‖x̂_n‖,   M ← g (M − η C M)
    copi:  D = diag(mean X̂²),                        M ← M − η (C − D) M

`x_n` in the gain is the input as it arrives, before demeaning (CRGD §3 and
Algorithm 1): the gain keeps the decorrelated activity at the norm of the raw
activity. `update_order` "MC" multiplies the other way round: `M ← g (M − η M C)`
(the CRGD reference code's dense layers) and `M ← M − η M (C − D)` (COPI eq. 4);
"CM" is CRGD's paper and NPD §2.2.

`reference_update` writes each rule out as above, one member at a time; the
training step runs `Decorrelation.update`, the same numbers (to rounding) computed
faster, in place and for all members at once: the product `C M` is formed as
`X̂ᵀ (X̂ M) / n` when the subsample is smaller than the dimension (2 n d² flops, no
d × d temporary), and as `(X̂ᵀX̂ / n) M` otherwise (see `_Moments`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from corrgd.learn.checks import check_flag, check_integer, check_number

Rule = Literal["crgd", "copi"]
UpdateOrder = Literal["CM", "MC"]


@dataclass(frozen=True)
class DecorSettings:
    """How a decorrelation layer learns. `lr == 0` means no decorrelation layer at all.

    rule:           "crgd" (CRGD paper, with gain) or "copi" (COPI / NPD papers)
    lr:             decorrelation learning rate η_M (α in COPI); the initial one of every
                    member (`Decorrelation.lr` holds each member's own)
    sample_frac:    fraction of the batch used to measure C and g, plus one sample;
                    default: 0.1 for crgd (CRGD reference code), the whole batch for copi
    demean:         subtract a mean before decorrelating; default: True for crgd, False for copi
    update_order:   "CM" (CRGD paper, NPD) or "MC" (CRGD reference code's dense layers, COPI)
    channel_mean:   conv layers subtract the per-channel mean of the image before forming
                    patches (CRGD reference code) instead of the mean patch
    mean_in_graph:  keep the batch mean in the autograd graph while training, so the BP
                    gradient is centred over the batch (CRGD reference code); the paper
                    treats μ as a constant
    momentum:       rate of the running-mean update
    """

    rule: Rule = "crgd"
    lr: float = 0.0
    sample_frac: float | None = None
    demean: bool | None = None
    update_order: UpdateOrder = "CM"
    channel_mean: bool = False
    mean_in_graph: bool = False
    momentum: float = 0.1

    def __post_init__(self) -> None:
        if self.rule not in ("crgd", "copi"):
            raise ValueError(f"decorrelation rule must be 'crgd' or 'copi', got {self.rule!r}")
        check_number("decorrelation lr", self.lr, 0)  # 0: no decorrelation layer
        if self.sample_frac is not None:
            check_number("sample_frac", self.sample_frac, 0, 1, closed="right")
        if self.update_order not in ("CM", "MC"):
            raise ValueError(f"update_order must be 'CM' or 'MC', got {self.update_order!r}")
        check_number("running-mean momentum", self.momentum, 0, 1, closed="both")
        check_flag("demean", self.demean, none=True)
        check_flag("channel_mean", self.channel_mean)
        check_flag("mean_in_graph", self.mean_in_graph)

    @property
    def enabled(self) -> bool:
        return self.lr > 0

    @property
    def demeans(self) -> bool:
        return self.rule == "crgd" if self.demean is None else self.demean

    @property
    def fraction(self) -> float:
        """The batch fraction the rule measures C (and g) on."""
        if self.sample_frac is not None:
            return self.sample_frac
        return 0.1 if self.rule == "crgd" else 1.0


def subsample_size(n: int, frac: float) -> int:
    """Rows used for the update: `frac` of the batch plus one (reference code), at most n."""
    return min(n, int(frac * n) + 1)


class Decorrelation(nn.Module):
    """G `dim × dim` decorrelating matrices with their running means, learned by their rule.

    matrix:        (G, dim, dim), the identity at first
    running_mean:  (G, mean_dim), used in eval mode (conv layers with a channel mean keep
                   one value per channel)
    lr:            (G,), each member's decorrelation learning rate
    """

    matrix: Tensor
    running_mean: Tensor
    lr: Tensor

    def __init__(self, dim: int, settings: DecorSettings, mean_dim: int | None = None,
                 members: int = 1) -> None:
        super().__init__()
        check_integer("dim", dim)
        check_integer("members", members)
        if mean_dim is not None:
            check_integer("mean_dim", mean_dim)
        if not isinstance(settings, DecorSettings):
            raise TypeError(f"settings must be DecorSettings, got {settings!r}")
        if not settings.enabled:
            raise ValueError("a Decorrelation layer needs lr > 0; lr 0 means no layer")
        self.dim = dim
        self.settings = settings
        self.register_buffer("matrix", torch.eye(dim).repeat(members, 1, 1))
        self.register_buffer("running_mean", torch.zeros(members, mean_dim or dim))
        self.register_buffer("lr", torch.full((members,), float(settings.lr)),
                             persistent=False)

    def extra_repr(self) -> str:
        s = self.settings
        return (f"members={self.matrix.shape[0]}, dim={self.dim}, rule={s.rule}, "
                f"demean={s.demeans}")

    def decorrelate(self, rows: Tensor, mean: Tensor | None = None) -> Tensor:
        """x̂ for samples (G, n, dim), demeaned by `mean` (G, dim) where given."""
        if mean is not None:
            rows = rows - mean[:, None, :]
        return torch.bmm(rows, self.matrix.transpose(1, 2))

    @torch.no_grad()
    def update(self, rows: Tensor, raw: Tensor | None = None) -> None:
        """One step of the rule from sample rows (G, n, dim), already subsampled: the fast
        form of `reference_update`, in place.

        `rows` are demeaned as the forward pass demeaned them (x − μ); `raw` are the
        same rows as the layer received them, before demeaning, for the CRGD gain
        (default: `rows`, for layers that do not demean).
        """
        s = self.settings
        raw = rows if raw is None else raw
        x = rows.to(self.matrix.dtype)
        M = self.matrix
        n = x.shape[1]
        lr = self.lr.to(M.dtype)[:, None, None]
        left = s.update_order == "CM"
        m = _Moments(x, M, left=left, rows=s.rule == "crgd")
        # Updated in place, so that no d × d temporary is made when n < d.
        if s.rule == "crgd":  # M ← g M − g η C M  (or g M − g η M C)
            assert m.decorrelated is not None
            gain = _gain(raw.to(x.dtype), m.decorrelated)[:, None, None]
            M.mul_(gain).baddbmm_(m.A * (-lr * gain / n), m.B)
        else:  # M ← (I + α D) M − α C M  (or M (I + α D) − α M C),  D = diag(⟨x̂²⟩)
            D = m.second[:, :, None] if left else m.second[:, None, :]
            M.mul_(1 + lr * D).baddbmm_(m.A * (-lr / n), m.B)

    @torch.no_grad()
    def track_mean(self, batch_mean: Tensor) -> None:
        """Move the running mean (used in eval mode) towards a training batch's mean."""
        self.running_mean.lerp_(batch_mean.detach().to(self.running_mean.dtype),
                                self.settings.momentum)

    @torch.no_grad()
    def stats(self, rows: Tensor, raw: Tensor | None = None) -> list[dict[str, float]]:
        """Per member, diagnostics on demeaned sample rows (G, n, dim): residual
        correlation of x̂ and of x − μ, the CRGD gain mean_n ‖x_n‖ / ‖x̂_n‖ and the norm
        ratio ‖x̂‖ / ‖x‖, x the raw rows."""
        raw = rows if raw is None else raw
        xh = torch.bmm(rows, self.matrix.transpose(1, 2))
        columns = {
            "offdiag_corr": off_diagonal_correlations(xh),
            "input_offdiag_corr": off_diagonal_correlations(rows),
            "gain": _gain(raw, xh),
            "norm_ratio": xh.flatten(1).norm(dim=1) / raw.flatten(1).norm(dim=1).clamp_min(1e-12),
        }
        values = {k: v.tolist() for k, v in columns.items()}
        return [{k: v[g] for k, v in values.items()} for g in range(rows.shape[0])]


def reference_update(matrix: Tensor, rows: Tensor, raw: Tensor, lr: Tensor,
                     settings: DecorSettings) -> Tensor:
    """The matrices (G, d, d) after one step of the rule, written as the papers write it,
    one member at a time: the readable form of `Decorrelation.update`.

    `rows` (G, n, d) are demeaned as the forward pass demeaned them (x − μ), `raw` are
    the same rows as the layer received them (for the CRGD gain), `lr` is η per member.
    """
    updated = []
    for M, x, x_raw, eta in zip(matrix, rows, raw, lr, strict=True):
        xh = x @ M.T                                # x̂_n = M (x_n − μ), a row per sample
        C = xh.T @ xh / len(xh)                     # C = x̂ᵀx̂ / n
        if settings.rule == "copi":
            C = C - torch.diag(xh.pow(2).mean(0))   # C − D,  D = diag(mean x̂²)
        step = C @ M if settings.update_order == "CM" else M @ C
        new = M - eta * step                        # M − η C M  (or M − η M C)
        if settings.rule == "crgd":                 # g (M − η C M), g over all n rows
            new = _gain(x_raw, xh) * new
        updated.append(new)
    return torch.stack(updated)


def _gain(raw: Tensor, decorrelated: Tensor) -> Tensor:
    """CRGD's g = mean_n ‖x_n‖ / ‖x̂_n‖ over rows (..., n, d), x_n as the layer received it
    (guarded as the reference code guards it: ‖x̂_n‖ = √(Σ x̂² + 1e-8)); one per member."""
    return (raw.norm(dim=-1) / (decorrelated.pow(2).sum(-1) + 1e-8).sqrt()).mean(-1)


class _Moments:
    """What the rules need of the decorrelated rows `x̂ = x Mᵀ` (all (G, ...)), each in its
    cheapest form:

    A, B:          factors with A @ B = n C M (left) or n M C, C = x̂ᵀ x̂ / n; they never
                   alias M, so M can be updated in place
    decorrelated:  x̂ of every row, for the CRGD gain (`rows`); else None where not made
    second:        ⟨x̂²⟩ per unit, for the COPI rule

    Few rows (n < d): C is never formed (3 n d² flops). More: C = x̂ᵀ x̂ / n (2 n d² + d³),
    or, where x̂ itself is not needed (not `rows`), n C = M (xᵀx) Mᵀ without decorrelating
    the rows (n d² + 2 d³).
    """

    decorrelated: Tensor | None

    def __init__(self, x: Tensor, M: Tensor, *, left: bool, rows: bool) -> None:
        n, d = x.shape[1:]
        Mt = M.transpose(1, 2)
        if n > d and not rows:
            nC = M @ (x.transpose(1, 2) @ x) @ Mt
            self.A, self.B = (nC, M.clone()) if left else (M.clone(), nC)
            self.decorrelated = None
            self.second = nC.diagonal(dim1=1, dim2=2) / n
            return
        xh = x @ Mt
        if n < d:
            self.A, self.B = (xh.transpose(1, 2), xh @ M) if left else \
                (M @ xh.transpose(1, 2), xh)
        else:
            C = xh.transpose(1, 2) @ xh
            self.A, self.B = (C, M.clone()) if left else (M.clone(), C)
        self.decorrelated = xh
        self.second = xh.pow(2).mean(1)


def off_diagonal_correlation(x: Tensor) -> float:
    """Mean |off-diagonal correlation coefficient| between the columns of x (n × d).

    Constant columns (zero variance) are left out; non-finite data gives NaN.
    """
    return float(off_diagonal_correlations(x[None])[0])


def off_diagonal_correlations(x: Tensor) -> Tensor:
    """`off_diagonal_correlation` of every member's samples x (G, n, d), in one go: (G,).

    Computed in x's precision (at least float32), on centred, unit-norm columns: float32
    rounding stays below 1e-6 there, far under the sampling floor of the measure."""
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    x = x - x.mean(1, keepdim=True)
    std = (x * x).sum(1).sqrt()  # (G, d); not finite where a column holds a non-finite value
    finite = torch.isfinite(std).all(1)
    keep = std > 1e-12 * std.amax(1, keepdim=True).clamp_min(1e-300)
    z = x * torch.where(keep, 1 / std, 0.0)[:, None, :]
    r = torch.bmm(z.transpose(1, 2), z).abs()
    off = (r.sum((1, 2)) - r.diagonal(dim1=1, dim2=2).sum(1)).double()
    d = keep.sum(1).double()
    result = torch.where(d >= 2, off / (d * (d - 1)).clamp_min(1), 0.0)
    # a diverged member is NaN, not 0: it must not look decorrelated
    return torch.where(finite, result, float("nan"))


def correlation_floor(n: int) -> float:
    """E|r| for two independent Gaussian columns of n samples: ≈ sqrt(2 / (π (n − 1)))."""
    return (2.0 / (torch.pi * (n - 1))) ** 0.5
