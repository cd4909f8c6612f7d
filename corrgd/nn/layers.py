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
              bias: bool) -> None:
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        enabled = decor is not None and decor.enabled
        self.decor = Decorrelation(decor_dim, decor) if enabled else None
        self.register_buffer("feedback", None, persistent=False)
        self.fold: bool | None = None  # None: choose the cheaper association per call
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights and uniform bias, as torch.nn.Linear / Conv2d."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

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
    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor | None]:
        """Rows the decorrelation rule sees for input batch x (subsampled) and the batch mean."""
        raise NotImplementedError

    @torch.no_grad()
    def update_decorrelation(self, x: Tensor) -> None:
        """One step of the decorrelation rule on this layer's input batch x."""
        if self.decor is not None:
            rows, mean = self.decor_rows(x, self.decor.settings.sample_frac)
            self.decor.update(rows, mean)

    @torch.no_grad()
    def decorrelation_stats(self, x: Tensor) -> dict[str, float] | None:
        if self.decor is None:
            return None
        was = self.decor.training
        self.decor.train()  # statistics of the batch itself, as the rule measures them
        rows, mean = self.decor_rows(x)
        stats = self.decor.stats(rows, mean)
        self.decor.train(was)
        return stats


class DecorLinear(DecorLayer):
    """`a = W M (x − μ) + b` on inputs of shape (n, in_features)."""

    def __init__(self, in_features: int, out_features: int, decor: DecorSettings | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init((out_features, in_features), in_features, decor, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def forward(self, x: Tensor) -> Tensor:
        W, B, b = self.weight, self.feedback, self.bias
        if self.decor is not None:
            mean = self.decor.center(x.mean(0)) if self.decor.settings.demeans else None
            if self._folded(x.shape[0], x):
                W, B, b = self._fold_weights(mean)
            else:
                x = self.decor.decorrelate(x, mean)
        return F.linear(x, W, b) if B is None else feedback_linear(x, W, B, b)

    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor | None]:
        assert self.decor is not None
        mean = self.decor.center(x.mean(0)) if self.decor.settings.demeans else None
        return x[: subsample_size(x.shape[0], frac)], mean


class DecorConv2d(DecorLayer):
    """Convolution that decorrelates its `C_in k²` patches: `a = W M (p − μ) + b`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, decor: DecorSettings | None = None, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self._init(shape, in_channels * kernel_size**2, decor, bias)

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

    def forward(self, x: Tensor) -> Tensor:
        W, B, b = self.weight, self.feedback, self.bias
        if self.decor is not None:
            mean = self.decor.center(self.patch_mean(x)) if self.decor.settings.demeans else None
            if self._folded(x.shape[0] * self._positions(x), x):
                W, B, b = self._fold_weights(mean)
            else:
                return self._unfolded(x, mean)
        if B is None:
            return F.conv2d(x, W, b, self.stride, self.padding)
        return feedback_conv2d(x, W, B, b, self.stride, self.padding)

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

    def decor_rows(self, x: Tensor, frac: float = 1.0) -> tuple[Tensor, Tensor | None]:
        assert self.decor is not None
        mean = self.decor.center(self.patch_mean(x)) if self.decor.settings.demeans else None
        return self.patches(x[: subsample_size(x.shape[0], frac)]), mean
