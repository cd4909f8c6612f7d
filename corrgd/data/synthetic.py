"""Correlated Gaussian inputs labelled by a random linear teacher (the setting of the CRGD
paper's Figure 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from corrgd.data.prepare import RawData
from corrgd.data.splits import Split


def load_synthetic_correlated(
    root: Path,
    *,
    download: bool,
    n_train: int = 10_000,
    n_test: int = 2_000,
    dim: int = 64,
    correlation: float = 0.8,
    num_classes: int = 10,
    data_seed: int = 0,
) -> RawData:
    """Equicorrelated Gaussian inputs ``x ~ N(0, (1 - c) I + c 11^T)`` with ``c = correlation``.

    Every input has unit variance and every pair is correlated by exactly ``c``, so the mean
    |off-diagonal correlation| is ``c``. Sampled as ``x = sqrt(1 - c) z + sqrt(c) s 1`` with
    ``z ~ N(0, I)`` and one shared ``s ~ N(0, 1)`` per sample.

    Labels are ``argmax_k (W x)_k`` for a teacher ``W ~ N(0, 1/dim)`` of shape
    ``(num_classes, dim)``; classes are not forced to be balanced. Teacher, training inputs and
    test inputs come from separate random streams seeded by ``data_seed``, so e.g. changing
    ``n_train`` leaves the teacher and the test set unchanged. ``n_test=0`` gives no test set.
    Inputs are float32 ``(N, dim)`` used as they are (no standardisation). ``root`` and
    ``download`` are unused.
    """
    if not 0 <= correlation < 1:
        raise ValueError(f"correlation must be in [0, 1), got {correlation}")
    if dim < 2 or num_classes < 2 or n_train < 1 or n_test < 0:
        raise ValueError("need dim >= 2, num_classes >= 2, n_train >= 1 and n_test >= 0")

    teacher = np.random.default_rng([data_seed, 0]).normal(0, dim**-0.5, (num_classes, dim))

    def sample(n: int, stream: int) -> Split:
        rng = np.random.default_rng([data_seed, stream])
        z = rng.standard_normal((n, dim))
        shared = rng.standard_normal((n, 1))
        x = np.sqrt(1 - correlation) * z + np.sqrt(correlation) * shared
        y = (x @ teacher.T).argmax(axis=1)
        return Split(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)))

    test = sample(n_test, 2) if n_test > 0 else None
    return RawData(sample(n_train, 1), test, num_classes=num_classes)
