"""Batch-wise input transforms that run on whatever device the batch lives on."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor


def scale_pixels(
    xb: Tensor, pixel_max: float, mean: tuple[float, ...] = (), std: tuple[float, ...] = ()
) -> Tensor:
    """Pixels in [0, pixel_max] -> float32 in [0, 1], then per-channel ``(x - mean) / std``.

    ``xb`` is ``(B, C, H, W)``; empty ``mean``/``std`` skip the standardisation.
    """
    x = xb.to(torch.float32) / pixel_max
    if mean:
        mu, sigma = _channel_stats(mean, std, x.device)
        x = (x - mu) / sigma
    return x


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                   ) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std as float32 (1, C, 1, 1) tensors on `device`, made once: a
    training step copies nothing from the host. float32 whatever torch's default dtype was
    when they were made (the cache would hand float64 ones on to float32 batches)."""
    shape = (1, len(mean), 1, 1)
    return (torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
            torch.tensor(std, dtype=torch.float32, device=device).view(shape))


def center_crop(xb: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window of every image in ``(B, C, H, W)``."""
    height, width = xb.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return xb[..., top : top + size, left : left + size]


def random_crop(xb: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """An independent, uniformly placed ``size x size`` window for every image in ``(B, C, H, W)``.

    Offsets are drawn on ``generator``'s device (so a CPU generator works for a CUDA batch)
    and then moved to the batch's device.
    """
    batch, channels, height, width = xb.shape
    draw_on = xb.device if generator is None else generator.device

    def offsets(limit: int) -> Tensor:
        drawn = torch.randint(limit - size + 1, (batch,), generator=generator, device=draw_on)
        return drawn.to(xb.device)

    window = torch.arange(size, device=xb.device)
    rows = offsets(height)[:, None] + window  # (B, size)
    cols = offsets(width)[:, None] + window
    # Advanced indexing with four broadcast index tensors gives (B, C, size, size).
    return xb[
        torch.arange(batch, device=xb.device)[:, None, None, None],
        torch.arange(channels, device=xb.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


@dataclass(frozen=True)
class BatchTransform:
    """Stored inputs -> float32 model inputs; the identity when every field is at its default.

    Steps, in order: square ``crop`` (random in ``train``, centre in ``eval``); if
    ``pixel_max`` is set, scale raw pixels to [0, 1] and standardise with ``mean``/``std``
    (see ``scale_pixels``); finally ``flatten`` to ``(B, D)``.
    """

    crop: int | None = None
    pixel_max: float | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    flatten: bool = False

    def train(self, xb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.crop is not None:
            xb = random_crop(xb, self.crop, generator)
        return self._finish(xb)

    def eval(self, xb: Tensor) -> Tensor:
        if self.crop is not None:
            xb = center_crop(xb, self.crop)
        return self._finish(xb)

    def _finish(self, xb: Tensor) -> Tensor:
        if self.pixel_max is not None:
            xb = scale_pixels(xb, self.pixel_max, self.mean, self.std)
        if self.flatten:
            xb = xb.flatten(1)
        return xb
