"""Dense and convolutional layers with an optional decorrelating matrix in front.

    a = W M (x − μ) + b          (dense)
    a = W M (p − μ) + b          (conv: p is every k × k × C_in patch, W a 1 × 1 conv)

Because `W (M (x − μ)) = (W M) x − (W M) μ`, the layer can run as one ordinary
linear map or convolution with the folded weight `K = W M` and bias `b − K μ`;
autograd then maps the weight gradient back, `∂ℓ/∂W = (∂ℓ/∂K) Mᵀ`. Folding costs
`d_out · d²` per pass, decorrelating the inputs costs `n · d²` (n samples, or
patches): each forward picks the cheaper association.

Without decorrelation (`decor` None or lr 0) the layer is a plain linear map or
convolution, with no identity matrix multiplied in.

Demeaning (`DecorSettings.demeans`): μ is the batch mean while training and the
running mean in eval mode. Dense layers subtract the mean input; conv layers the
mean patch, or (`channel_mean`, as the CRGD reference code) the per-channel mean
of the image before its patches are formed. With `mean_in_graph` the batch mean
stays in the autograd graph (the reference code; the paper treats it as constant).

If a `feedback` buffer is set (feedback alignment), the backward pass sends the
error through `B M` instead of `W M`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrgd.nn.decorrelation import Decorrelation, DecorSettings, subsample_size
from corrgd.nn.feedback import feedback_conv2d, feedback_linear


def fold_is_cheaper(n_rows: int, d_out: int, *, input_grad: bool, weight_grad: bool) -> bool:
    """Folded `W M` (d_out d² per product) against decorrelated inputs (n d² per product).

    Folding takes one product forward and one for the weight gradient; decorrelating
    the inputs takes one forward and one for the input gradient.
    """
    return d_out * (1 + weight_grad) < n_rows * (1 + input_grad)


class DecorLayer(nn.Module):
    """What dense and conv layers share: weights, bias, decorrelation, feedback."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    decor: Decorrelation | None
    feedback: Tensor | None

    def _init(self, weight_shape: tuple[int, ...], decor_dim: int, decor: DecorSettings | None,
              bias: bool, mean_dim: int | None = None,
              generator: torch.Generator | None = None) -> None:
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        enabled = decor is not None and decor.enabled
        self.decor = Decorrelation(decor_dim, decor, mean_dim) if enabled else None
        self.register_buffer("feedback", None, persistent=False)
        self.fold: bool | None = None  # None: choose the cheaper association per call
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming-uniform weights and uniform bias, as torch.nn.Linear / Conv2d."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.fan_in)
            nn.init.uniform_(self.bias, -bound, bound, generator=generator)

    @property
    def fan_in(self) -> int:
        return self.weight[0].numel()

    def _folded(self, n_rows: int, x: Tensor) -> bool:
        if self.fold is not None:
            return self.fold
        grad = torch.is_grad_enabled()
        return fold_is_cheaper(n_rows, self.weight.shape[0], input_grad=grad and x.requires_grad,
                               weight_grad=grad and self.weight.requires_grad)

    def _fold_weights(self, mean: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(W M, B M, b − W M μ) in the weight's own shape."""
        assert self.decor is not None
        M = self.decor.matrix
        d_out = self.weight.shape[0]
        K = (self.weight.reshape(d_out, -1) @ M).view_as(self.weight)
        Kb = None
        if self.feedback is not None:
            Kb = (self.feedback.reshape(d_out, -1) @ M).view_as(self.weight)
        b = self.bias
        if mean is not None:
            shift = K.reshape(d_out, -1) @ mean
            b = -shift if b is None else b - shift
        return K, Kb, b

    # --- decorrelation statistics -------------------------------------------------
    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
        """What the decorrelation rule sees of input batch x: the first `frac` of its rows
        (patches for conv layers) demeaned as the forward pass demeans them, the same rows
        raw, and the batch mean (None where the layer does not demean)."""
        raise NotImplementedError

    @torch.no_grad()
    def update_decorrelation(self, x: Tensor) -> None:
        """One step of the decorrelation rule on this layer's input batch x."""
        if self.decor is not None:
            rows, raw, mean = self.decor_rows(x, self.decor.settings.fraction)
            self.decor.update(rows, raw)
            if mean is not None:
                self.decor.track_mean(mean)

    @torch.no_grad()
    def decorrelation_stats(self, x: Tensor) -> dict[str, float] | None:
        if self.decor is None:
            return None
        was = self.decor.training
        self.decor.train()  # statistics of the batch itself, as the rule measures them
        rows, raw, _ = self.decor_rows(x)
        stats = self.decor.stats(rows, raw)
        self.decor.train(was)
        return stats


class DecorLinear(DecorLayer):
    """`a = W M (x − μ) + b` on inputs of shape (n, in_features)."""

    def __init__(self, in_features: int, out_features: int, decor: DecorSettings | None = None,
                 bias: bool = True, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init((out_features, in_features), in_features, decor, bias, generator=generator)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def forward(self, x: Tensor, mean: Tensor | None = None) -> Tensor:
        """`mean`: the batch mean to subtract while training (default: x's own)."""
        W, B, b = self.weight, self.feedback, self.bias
        if self.decor is not None:
            x, mu = self._demean(x, mean)
            if self._folded(x.shape[0], x):
                W, B, b = self._fold_weights(mu)
            else:
                x = self.decor.decorrelate(x, mu)
        return F.linear(x, W, b) if B is None else feedback_linear(x, W, B, b)

    def batch_mean(self, x: Tensor) -> Tensor | None:
        if self.decor is None or not self.decor.settings.demeans:
            return None
        return x.mean(0)

    def _demean(self, x: Tensor, mean: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(input, μ still to subtract): a mean kept in the graph is subtracted here."""
        assert self.decor is not None
        s = self.decor.settings
        if not s.demeans:
            return x, None
        if not self.decor.training:
            return x, self.decor.running_mean
        mu = self.decor.center(x.mean(0) if mean is None else mean)
        if s.mean_in_graph:
            return x - mu, None
        return x, mu

    def decorrelated_input(self, x: Tensor) -> Tensor:
        """x̂ = M (x − μ) for an input batch (x itself without decorrelation)."""
        if self.decor is None:
            return x
        x, mean = self._demean(x)
        return self.decor.decorrelate(x, mean)

    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
        assert self.decor is not None
        raw = x[: subsample_size(x.shape[0], frac)]
        mean = self.batch_mean(x)
        if mean is None:
            return raw, raw, None
        return raw - self.decor.center(mean), raw, mean


class DecorConv2d(DecorLayer):
    """Convolution that decorrelates its `C_in k²` patches: `a = W M (p − μ) + b`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, decor: DecorSettings | None = None, bias: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        channel_mean = decor is not None and decor.channel_mean
        self._init(shape, in_channels * kernel_size**2, decor, bias,
                   mean_dim=in_channels if channel_mean else None, generator=generator)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    def patches(self, x: Tensor) -> Tensor:
        """Every patch of x as a row: (n · positions, C_in k²)."""
        p = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        return p.transpose(1, 2).reshape(-1, p.shape[1])

    def patch_mean(self, x: Tensor) -> Tensor:
        """Mean patch over the batch, from the mean image (unfolding is linear)."""
        mean_image = x.mean(0, keepdim=True)
        return F.unfold(mean_image, self.kernel_size, padding=self.padding,
                        stride=self.stride)[0].mean(1)

    def forward(self, x: Tensor, mean: Tensor | None = None) -> Tensor:
        """`mean`: the batch statistic to subtract while training (default: x's own)."""
        W, B, b = self.weight, self.feedback, self.bias
        if self.decor is not None:
            x, mu = self._demean(x, mean)
            if self._folded(x.shape[0] * self._positions(x), x):
                W, B, b = self._fold_weights(mu)
            else:
                return self._unfolded(x, mu)
        if B is None:
            return F.conv2d(x, W, b, self.stride, self.padding)
        return feedback_conv2d(x, W, B, b, self.stride, self.padding)

    def batch_mean(self, x: Tensor) -> Tensor | None:
        """The mean patch, or the per-channel mean (`channel_mean`), of batch x."""
        if self.decor is None or not self.decor.settings.demeans:
            return None
        return x.mean((0, 2, 3)) if self.decor.settings.channel_mean else self.patch_mean(x)

    def _demean(self, x: Tensor, mean: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(input, mean patch still to subtract): a channel mean is subtracted here."""
        assert self.decor is not None
        s = self.decor.settings
        if not s.demeans:
            return x, None
        if self.decor.training:
            mu = self.decor.center(self.batch_mean(x) if mean is None else mean)
        else:
            mu = self.decor.running_mean
        if s.channel_mean:
            return x - mu[:, None, None], None
        return x, mu

    def _positions(self, x: Tensor) -> int:
        h, w = x.shape[-2:]
        k, s, p = self.kernel_size, self.stride, self.padding
        return ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1)

    def _unfolded(self, x: Tensor, mean: Tensor | None) -> Tensor:
        """Decorrelate every patch explicitly, then a 1 × 1 convolution (reference layout)."""
        assert self.decor is not None
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        k, s, p = self.kernel_size, self.stride, self.padding
        out_hw = ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
        rows = self.decor.decorrelate(self.patches(x), mean)  # (n·P, D)
        W2 = self.weight.reshape(self.out_channels, -1)
        if self.feedback is None:
            a = F.linear(rows, W2, self.bias)
        else:
            a = feedback_linear(rows, W2, self.feedback.reshape(self.out_channels, -1), self.bias)
        return a.view(n, -1, self.out_channels).transpose(1, 2).reshape(n, self.out_channels,
                                                                        *out_hw)

    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor, Tensor | None]:
        assert self.decor is not None
        sub = x[: subsample_size(x.shape[0], frac)]
        raw = self.patches(sub)
        mean = self.batch_mean(x)
        if mean is None:
            return raw, raw, None
        if self.decor.settings.channel_mean:
            return self.patches(sub - self.decor.center(mean)[:, None, None]), raw, mean
        return raw - self.decor.center(mean), raw, mean
