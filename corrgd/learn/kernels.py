"""Which of corrgd's two kernel sets a computation uses: the CPU's or the GPU's.

A few operations have two implementations, each the faster one on its device:

    operation                          cpu set                     gpu set
    convolutions of G members          one per member              one grouped convolution
    Adam step of G members             torch's fused Adam kernel   one batched update
                                       on each member's slices     of all members
    evaluation cross-entropy,          along the sample axis       row by row
    fewer than 16 classes              (vectorised over samples)

`CORRGD_KERNELS` picks the set: `auto` (the default) by the device the tensors are on,
`cpu` or `gpu` whatever the device. Workers inherit it from the command that starts
them. `CORRGD_KERNELS=gpu` on a CPU runs the code a GPU runs, which is how the tests
check that code without a GPU.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no torch import: the CLI checks the setting before it starts workers
    import torch

ENV_VAR = "CORRGD_KERNELS"
CHOICES = ("auto", "cpu", "gpu")


def kernel_set() -> str:
    """The `CORRGD_KERNELS` setting: auto, cpu or gpu (ValueError for anything else)."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not one of: "
                         f"{', '.join(CHOICES)}")
    return value


def gpu_kernels(device: torch.device) -> bool:
    """Whether tensors on `device` take the GPU kernels."""
    choice = kernel_set()
    return device.type != "cpu" if choice == "auto" else choice == "gpu"
