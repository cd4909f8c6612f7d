"""Member-batched linear maps and convolutions, with an optional feedback matrix.

Every layer holds G members (see `corrgd.learn.nn`): inputs are (G, n, ...), weights
(G, out, in, ...). A dense layer is one batched matrix product; a convolution
is one grouped convolution, member g's channels forming group g.

Feedback alignment (FA) keeps the forward computation `y = x Kᵀ + b` but sends
`∂ℓ/∂x = ∂ℓ/∂y · B` backwards, with a fixed random `B` in place of `K`. The
weight gradient is the usual `∂ℓ/∂K = (∂ℓ/∂y)ᵀ x`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.grad import conv2d_input, conv2d_weight

from corrgd.learn.kernels import gpu_kernels


def linear(x: Tensor, weight: Tensor, bias: Tensor | None,
           feedback: Tensor | None = None) -> Tensor:
    """x (G, n, in) Kᵀ + b: weight (G, out, in), bias (G, out); the input gradient goes
    through `feedback` (G, out, in), or through `weight` itself (backpropagation).

    Both go through one autograd function whose weight gradient `(∂ℓ/∂y)ᵀ x` comes out in
    the weight's own layout: autograd's transposed one would be copied at every step and
    multiplied slowly on a CPU."""
    if not torch.is_grad_enabled():
        return _linear(x, weight, bias)
    return _FeedbackLinear.apply(x, weight, weight if feedback is None else feedback, bias)


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))


def to_groups(x: Tensor) -> Tensor:
    """(G, n, C, H, W) → (n, G·C, H, W): member g's channels are group g."""
    G, n = x.shape[:2]
    return x.transpose(0, 1).reshape(n, G * x.shape[2], *x.shape[3:])


def from_groups(y: Tensor, members: int) -> Tensor:
    """(n, G·C, H, W) → (G, n, C, H, W)."""
    n, GC = y.shape[:2]
    return y.view(n, members, GC // members, *y.shape[2:]).transpose(0, 1)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int,
           feedback: Tensor | None = None) -> Tensor:
    """Each member's convolution: x (G, n, C, H, W), weight (G, out, C, k, k), bias (G, out);
    the input gradient goes through `feedback` (shaped like weight) where given.

    GPU kernels (`corrgd.learn.kernels`): one grouped convolution. CPU kernels: one convolution
    per member: the CPU's grouped convolution rounds differently from a member's own, so a
    run would not train exactly as it does alone (and it is not faster there: see
    benchmarks/grid_throughput.py).
    """
    G = weight.shape[0]
    if not gpu_kernels(x.device):
        return torch.stack([_conv2d(x[g], weight[g], None if bias is None else bias[g],
                                    stride, padding, None if feedback is None else feedback[g])
                            for g in range(G)])
    w = weight.flatten(0, 1)
    b = None if bias is None else bias.flatten()
    xg = to_groups(x)
    if feedback is None:
        y = F.conv2d(xg, w, b, stride, padding, groups=G)
    else:
        y = _FeedbackConv2d.apply(xg, w, feedback.flatten(0, 1), b, stride, padding, G)
    return from_groups(y, G)


def _conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int,
            feedback: Tensor | None) -> Tensor:
    """One member's convolution (no member axis)."""
    if feedback is None:
        return F.conv2d(x, weight, bias, stride, padding)
    return _FeedbackConv2d.apply(x, weight, feedback, bias, stride, padding, 1)


class _FeedbackLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, feedback: Tensor,
                bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, feedback)
        ctx.has_bias = bias is not None
        return _linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, feedback = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = torch.bmm(grad_out, feedback) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:  # (G, out, n) @ (G, n, in): a transposed view, not a copy
            grad_w = torch.bmm(grad_out.transpose(1, 2), x)
        grad_b = grad_out.sum(1) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_x, grad_w, None, grad_b


class _FeedbackConv2d(torch.autograd.Function):
    """A grouped convolution (inputs in group layout) whose input gradient uses `feedback`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, feedback: Tensor, bias: Tensor | None,
                stride: int, padding: int, groups: int) -> Tensor:
        ctx.save_for_backward(x, feedback)
        ctx.conf = (weight.shape, stride, padding, groups, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, groups=groups)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, feedback = ctx.saved_tensors
        w_shape, stride, padding, groups, has_bias = ctx.conf
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(x.shape, feedback, grad_out, stride, padding, groups=groups)
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x, w_shape, grad_out, stride, padding, groups=groups)
        if has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, None, grad_b, None, None, None
