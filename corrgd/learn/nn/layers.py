"""Dense and convolutional layers with an optional decorrelating matrix in front.

    a = W M (x − μ) + b          (dense)
    a = W M (p − μ) + b          (conv: p is every k × k × C_in patch, W a 1 × 1 conv)

A layer holds G members (`corrgd.learn.nn`): W is (G, out, in, ...), inputs are
(G, n, ...), and member g computes with its own W, M and μ.

Because `W (M (x − μ)) = (W M) x − (W M) μ`, the layer can run as one linear map
or convolution with the folded weight `K = W M` and bias `b − K μ`; autograd then
maps the weight gradient back, `∂ℓ/∂W = (∂ℓ/∂K) Mᵀ`. Folding costs `d_out · d²`
per pass, decorrelating the inputs costs `n · d²` (n samples, or patches): each
forward picks the cheaper association.

Without decorrelation (`decor` None or lr 0) the layer is a plain linear map or
convolution, with no identity matrix multiplied in.

Demeaning (`DecorSettings.demeans`): `DecorLayer.mean` decides μ, for the forward
pass, the decorrelation rule and `Net.trace` alike: the batch mean while training
(or a mean the caller gives, e.g. a clean pass's) and the running mean in eval
mode. Dense layers subtract the mean input; conv layers the mean patch, or
(`channel_mean`, as the CRGD reference code) the per-channel mean of the image
before its patches are formed. With `mean_in_graph` the batch mean stays in the
autograd graph (the reference code; the paper treats it as constant).

If a `feedback` buffer is set (feedback alignment), the backward pass sends the
error through `B M` instead of `W M`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrgd.learn.checks import check_flag, check_integer
from corrgd.learn.nn import feedback as ops
from corrgd.learn.nn.decorrelation import Decorrelation, DecorSettings, subsample_size

Generators = Sequence[torch.Generator | None] | None


def fold_is_cheaper(n_rows: int, d_out: int, *, input_grad: bool, weight_grad: bool) -> bool:
    """Folded `W M` (d_out d² per product) against decorrelated inputs (n d² per product).

    Folding takes one product forward and one for the weight gradient; decorrelating
    the inputs takes one forward and one for the input gradient.
    """
    return d_out * (1 + weight_grad) < n_rows * (1 + input_grad)


def _check_options(decor: object, members: object, generators: Generators,
                   bias: object) -> None:
    """Refuse a `decor`, `members`, `generators` or `bias` that no layer can take."""
    check_flag("bias", bias)
    if decor is not None and not isinstance(decor, DecorSettings):
        raise TypeError(f"decor must be DecorSettings or None, got {decor!r}")
    check_integer("members", members)
    if generators is not None and len(generators) != members:
        raise ValueError(f"generators: {len(generators)} for {members} members")


class DecorLayer(nn.Module):
    """What dense and conv layers share: weights, bias, decorrelation, feedback."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    decor: Decorrelation | None
    feedback: Tensor | None

    def _init(self, weight_shape: tuple[int, ...], decor_dim: int, decor: DecorSettings | None,
              bias: bool, members: int, mean_dim: int | None = None,
              generators: Generators = None) -> None:
        self.weight = nn.Parameter(torch.empty(members, *weight_shape))
        self.bias = nn.Parameter(torch.empty(members, weight_shape[0])) if bias else None
        enabled = decor is not None and decor.enabled
        self.decor = Decorrelation(decor_dim, decor, mean_dim, members) if enabled else None
        self.register_buffer("feedback", None, persistent=False)
        self.fold: bool | None = None  # None: choose the cheaper association per call
        self.reset_parameters(generators)

    @property
    def members(self) -> int:
        return self.weight.shape[0]

    def reset_parameters(self, generators: Generators = None) -> None:
        """Kaiming-uniform weights and uniform bias, as torch.nn.Linear / Conv2d, member g's
        drawn from `generators[g]` (weight, then bias)."""
        bound = 1 / math.sqrt(self.fan_in)
        for g in range(self.members):
            gen = None if generators is None else generators[g]
            nn.init.kaiming_uniform_(self.weight.data[g], a=math.sqrt(5), generator=gen)
            if self.bias is not None:
                nn.init.uniform_(self.bias.data[g], -bound, bound, generator=gen)

    @property
    def fan_in(self) -> int:
        return self.weight[0, 0].numel()

    def _folded(self, n_rows: int, x: Tensor) -> bool:
        if self.fold is not None:
            return self.fold
        grad = torch.is_grad_enabled()
        return fold_is_cheaper(n_rows, self.weight.shape[1], input_grad=grad and x.requires_grad,
                               weight_grad=grad and self.weight.requires_grad)

    def _fold_weights(self, mean: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(W M, B M, b − W M μ) in the weight's own shape."""
        assert self.decor is not None
        M = self.decor.matrix
        G, d_out = self.weight.shape[:2]
        K = torch.bmm(self.weight.reshape(G, d_out, -1), M)
        Kb = None
        if self.feedback is not None:
            Kb = torch.bmm(self.feedback.reshape(G, d_out, -1), M).view_as(self.weight)
        b = self.bias
        if mean is not None:  # K μ as a sum, not a batched matrix-vector product: that one
            shift = (K * mean[:, None, :]).sum(-1)  # rounds differently for other G
            b = -shift if b is None else b - shift
        return K.view_as(self.weight), Kb, b

    def mean(self, x: Tensor, given: Tensor | None = None) -> Tensor | None:
        """μ, the mean this layer subtracts from input batch x (G, n, ...): (G, m), or None
        where it subtracts none (no decorrelation, or settings that do not demean).

        In eval mode the running mean. While training `given` (e.g. a clean pass's means)
        or else the batch's own `batch_mean`, kept in the autograd graph only with
        `mean_in_graph`.
        """
        if self.decor is None or not self.decor.settings.demeans:
            return None
        if not self.decor.training:
            return self.decor.running_mean
        mu = self.batch_mean(x) if given is None else given
        return mu if self.decor.settings.mean_in_graph else mu.detach()

    def check_input(self, x: Tensor) -> None:
        """A ValueError naming the shape expected, unless batch x has it: a few integer
        comparisons per step (a wrong member count would drop members without a word)."""
        raise NotImplementedError

    def _check_tensor(self, x: object) -> None:
        """A TypeError unless x is a tensor of the weights' dtype (under autocast: any
        floating dtype)."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or (
                x.dtype != self.weight.dtype and not torch.is_autocast_enabled(x.device.type)):
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{type(self).__name__} expects a tensor of dtype "
                            f"{self.weight.dtype}, got {got}")

    def batch_mean(self, x: Tensor) -> Tensor:
        """The mean of batch x (G, n, ...) that this layer's μ is made of: (G, m)."""
        raise NotImplementedError

    # --- decorrelation statistics -------------------------------------------------
    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
        """What the decorrelation rule sees of input batch x: the first `frac` of its rows
        (patches for conv layers), (G, rows, d), demeaned as the forward pass demeans them,
        the same rows raw, and the batch's μ (None where the layer does not demean)."""
        raise NotImplementedError

    @torch.no_grad()
    def update_decorrelation(self, x: Tensor) -> None:
        """One step of the decorrelation rule on this layer's input batch x; the running
        mean moves towards the batch's μ (in eval mode μ is the running mean: it stays)."""
        if self.decor is not None:
            if x.shape[1] == 0:  # the rule divides by the rows: NaN, for good
                raise ValueError(f"{type(self).__name__}: a decorrelation update needs a "
                                 "batch of at least one sample, got none")
            rows, raw, mean = self.decor_rows(x, self.decor.settings.fraction)
            self.decor.update(rows, raw)
            if mean is not None:
                self.decor.track_mean(mean)

    @torch.no_grad()
    def decorrelation_stats(self, x: Tensor) -> list[dict[str, float]] | None:
        """Per member: residual correlation, gain and norm ratio on batch x (None without
        decorrelation)."""
        if self.decor is None:
            return None
        was = self.decor.training
        self.decor.train()  # statistics of the batch itself, as the rule measures them
        rows, raw, _ = self.decor_rows(x)
        stats = self.decor.stats(rows, raw)
        self.decor.train(was)
        return stats


class DecorLinear(DecorLayer):
    """`a = W M (x − μ) + b` on inputs of shape (G, n, in_features)."""

    def __init__(self, in_features: int, out_features: int, decor: DecorSettings | None = None,
                 bias: bool = True, members: int = 1, generators: Generators = None) -> None:
        super().__init__()
        check_integer("in_features", in_features)
        check_integer("out_features", out_features)
        _check_options(decor, members, generators, bias)
        self.in_features, self.out_features = in_features, out_features
        self._init((out_features, in_features), in_features, decor, bias, members,
                   generators=generators)

    def extra_repr(self) -> str:
        return (f"members={self.members}, in_features={self.in_features}, "
                f"out_features={self.out_features}")

    def forward(self, x: Tensor, mean: Tensor | None = None) -> Tensor:
        """`mean`: the mean (G, in) to subtract while training (default: x's own)."""
        self.check_input(x)
        W, B, b = self.weight, self.feedback, self.bias
        if self.decor is not None:
            x, mu = self._demean(x, mean)
            if self._folded(x.shape[1], x):
                W, B, b = self._fold_weights(mu)
            else:
                x = self.decor.decorrelate(x, mu)
        return ops.linear(x, W, b, B)

    def check_input(self, x: Tensor) -> None:
        self._check_tensor(x)
        if x.dim() != 3 or x.shape[0] != self.members or x.shape[2] != self.in_features:
            raise ValueError(f"DecorLinear expects input of shape (members={self.members}, "
                             f"batch, in_features={self.in_features}), got {tuple(x.shape)}")

    def batch_mean(self, x: Tensor) -> Tensor:
        """The mean input."""
        return x.mean(1)

    def _demean(self, x: Tensor, mean: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(input, μ still to subtract): a mean kept in the graph is subtracted here."""
        assert self.decor is not None
        mu = self.mean(x, mean)
        if mu is not None and self.decor.training and self.decor.settings.mean_in_graph:
            return x - mu[:, None, :], None
        return x, mu

    def decorrelated_input(self, x: Tensor) -> Tensor:
        """x̂ = M (x − μ) for an input batch (x itself without decorrelation)."""
        if self.decor is None:
            return x
        x, mean = self._demean(x)
        return self.decor.decorrelate(x, mean)

    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
        assert self.decor is not None
        raw = x[:, : subsample_size(x.shape[1], frac)]
        mu = self.mean(x)
        if mu is None:
            return raw, raw, None
        return raw - mu[:, None, :], raw, mu


class DecorConv2d(DecorLayer):
    """Convolution that decorrelates its `C_in k²` patches: `a = W M (p − μ) + b`, on inputs
    of shape (G, n, C_in, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, decor: DecorSettings | None = None, bias: bool = True,
                 members: int = 1, generators: Generators = None) -> None:
        super().__init__()
        check_integer("in_channels", in_channels)
        check_integer("out_channels", out_channels)
        check_integer("kernel_size", kernel_size)
        check_integer("stride", stride)
        check_integer("padding", padding, 0)
        _check_options(decor, members, generators, bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        channel_mean = decor is not None and decor.channel_mean
        self._init(shape, in_channels * kernel_size**2, decor, bias, members,
                   mean_dim=in_channels if channel_mean else None, generators=generators)

    def extra_repr(self) -> str:
        return (f"members={self.members}, {self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}")

    def patches(self, x: Tensor) -> Tensor:
        """Every patch of x (G, n, C, H, W) as a row: (G, n · positions, C_in k²)."""
        G, n = x.shape[:2]
        p = F.unfold(ops.to_groups(x), self.kernel_size, padding=self.padding,
                     stride=self.stride)  # (n, G·D, P)
        D = p.shape[1] // G
        return p.view(n, G, D, -1).permute(1, 0, 3, 2).reshape(G, -1, D)

    def patch_mean(self, x: Tensor) -> Tensor:
        """Mean patch over the batch, from the mean image (unfolding is linear): (G, D)."""
        return F.unfold(x.mean(1), self.kernel_size, padding=self.padding,
                        stride=self.stride).mean(2)

    def forward(self, x: Tensor, mean: Tensor | None = None) -> Tensor:
        """`mean`: the mean to subtract while training (default: x's own)."""
        self.check_input(x)
        W, B, b = self.weight, self.feedback, self.bias
        if self.decor is not None:
            x, mu = self._demean(x, mean)
            if self._folded(x.shape[1] * self._positions(x), x):
                W, B, b = self._fold_weights(mu)
            else:
                return self._unfolded(x, mu)
        return ops.conv2d(x, W, b, self.stride, self.padding, B)

    def check_input(self, x: Tensor) -> None:
        self._check_tensor(x)
        if (x.dim() != 5 or x.shape[0] != self.members or x.shape[2] != self.in_channels
                or min(x.shape[3:]) + 2 * self.padding < self.kernel_size):
            raise ValueError(f"DecorConv2d expects input of shape (members={self.members}, "
                             f"batch, in_channels={self.in_channels}, H, W), H and W at least "
                             f"{self.kernel_size - 2 * self.padding}, got {tuple(x.shape)}")

    def batch_mean(self, x: Tensor) -> Tensor:
        """The mean patch, or the per-channel mean (`channel_mean`)."""
        assert self.decor is not None
        return x.mean((1, 3, 4)) if self.decor.settings.channel_mean else self.patch_mean(x)

    def _demean(self, x: Tensor, mean: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(input, mean patch still to subtract): a channel mean is subtracted here."""
        assert self.decor is not None
        mu = self.mean(x, mean)
        if mu is not None and self.decor.settings.channel_mean:
            return x - mu[:, None, :, None, None], None
        return x, mu

    def _out_size(self, x: Tensor) -> tuple[int, int]:
        h, w = x.shape[-2:]
        k, s, p = self.kernel_size, self.stride, self.padding
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def _positions(self, x: Tensor) -> int:
        h, w = self._out_size(x)
        return h * w

    def _unfolded(self, x: Tensor, mean: Tensor | None) -> Tensor:
        """Decorrelate every patch explicitly, then a 1 × 1 convolution (reference layout)."""
        assert self.decor is not None
        G, n = x.shape[:2]
        rows = self.decor.decorrelate(self.patches(x), mean)  # (G, n·P, D)
        W2 = self.weight.reshape(G, self.out_channels, -1)
        B2 = None if self.feedback is None else self.feedback.reshape(G, self.out_channels, -1)
        a = ops.linear(rows, W2, self.bias, B2)  # (G, n·P, out)
        h, w = self._out_size(x)
        return a.view(G, n, h * w, self.out_channels).transpose(2, 3).reshape(
            G, n, self.out_channels, h, w)

    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
        assert self.decor is not None
        sub = x[:, : subsample_size(x.shape[1], frac)]
        raw = self.patches(sub)
        mu = self.mean(x)
        if mu is None:
            return raw, raw, None
        if self.decor.settings.channel_mean:
            return self.patches(sub - mu[:, None, :, None, None]), raw, mu
        return raw - mu[:, None, :], raw, mu
