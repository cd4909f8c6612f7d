"""Linear maps whose backward pass sends the error through a fixed feedback matrix.

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


class _FeedbackLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, feedback: Tensor, bias: Tensor | None
    ) -> Tensor:
        ctx.save_for_backward(x, feedback)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, feedback = ctx.saved_tensors
        grad_x = grad_out @ feedback if ctx.needs_input_grad[0] else None
        grad_w = grad_out.T @ x if ctx.needs_input_grad[1] else None
        grad_b = grad_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return grad_x, grad_w, None, grad_b


class _FeedbackConv2d(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        feedback: Tensor,
        bias: Tensor | None,
        stride: int,
        padding: int,
    ) -> Tensor:
        ctx.save_for_backward(x, feedback)
        ctx.conf = (weight.shape, stride, padding, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, feedback = ctx.saved_tensors
        w_shape, stride, padding, has_bias = ctx.conf
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = conv2d_input(x.shape, feedback, grad_out, stride, padding)
        if ctx.needs_input_grad[1]:
            grad_w = conv2d_weight(x, w_shape, grad_out, stride, padding)
        if has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, None, grad_b, None, None


def feedback_linear(x: Tensor, weight: Tensor, feedback: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear(x, weight, bias)` whose input gradient goes through `feedback`."""
    return _FeedbackLinear.apply(x, weight, feedback, bias)


def feedback_conv2d(
    x: Tensor, weight: Tensor, feedback: Tensor, bias: Tensor | None, stride: int, padding: int
) -> Tensor:
    """`F.conv2d(x, weight, bias, stride, padding)` whose input gradient goes through `feedback`."""
    return _FeedbackConv2d.apply(x, weight, feedback, bias, stride, padding)
