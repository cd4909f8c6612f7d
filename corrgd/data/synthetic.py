"""Correlated Gaussian inputs labelled by a random linear teacher (the setting of the CRGD
paper's Figure 2), as a classification or a regression task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from corrgd.data.prepare import RawData
from corrgd.data.splits import Split, Task

DEFAULT_CLASSES = 10
DEFAULT_OUTPUTS = 7


def load_synthetic_correlated(
    root: Path,
    *,
    download: bool,
    n_train: int = 10_000,
    n_test: int = 2_000,
    dim: int = 64,
    correlation: float = 0.8,
    task: Task = "classification",
    num_classes: int | None = None,
    num_outputs: int | None = None,
    noise: float = 0.0,
    standardize_targets: bool = False,
    data_seed: int = 0,
    shape: list[int] | tuple[int, ...] | None = None,
) -> RawData:
    """Equicorrelated Gaussian inputs ``x ~ N(0, (1 - c) I + c 11^T)`` with ``c = correlation``.

    Every input has unit variance and every pair is correlated by exactly ``c``, so the mean
    |off-diagonal correlation| is ``c``. Sampled as ``x = sqrt(1 - c) z + sqrt(c) s 1`` with
    ``z ~ N(0, I)`` and one shared ``s ~ N(0, 1)`` per sample. Inputs are float32
    ``(N, dim)``.

    The teacher is ``W ~ N(0, 1/dim)`` of shape ``(outputs, dim)``:

    * ``task="classification"``: labels ``argmax_k (W x)_k`` over ``num_classes`` classes
      (default 10), not forced to be balanced. Inputs are used as they are (no
      standardisation).
    * ``task="regression"``: float32 targets ``W x + noise * e``, ``e ~ N(0, I)``, with
      ``num_outputs`` columns (default 7). Target ``k`` has variance
      ``(1 - c) |W_k|^2 + c (sum_j W_kj)^2 + noise^2``: ``1 + noise^2`` on average over
      teachers, but with strong correlation it differs a lot between targets. As for every
      regression set, ``load_dataset`` standardises the inputs with training statistics;
      the targets only if ``standardize_targets``.

    Teacher, training inputs and test inputs come from separate random streams seeded by
    ``data_seed``, so e.g. changing ``n_train`` leaves the teacher and the test set
    unchanged. ``n_test=0`` gives no test set. ``root`` and ``download`` are unused.

    ``shape`` (e.g. ``[3, 32, 32]``, classification only) gives image-shaped inputs
    ``(N, C, H, W)`` for convolutional nets, ``dim`` being ``C·H·W``: data shaped like
    CIFAR-10 for benchmarks and tests.
    """
    if shape is not None:
        if task != "classification" or len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape needs task 'classification' and 3 sizes (C, H, W), got "
                             f"{shape}")
        dim = int(np.prod(shape))
    if not 0 <= correlation < 1:
        raise ValueError(f"correlation must be in [0, 1), got {correlation}")
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if task == "classification":
        if num_outputs is not None or noise or standardize_targets:
            raise ValueError("num_outputs, noise and standardize_targets need task 'regression'")
        outputs = DEFAULT_CLASSES if num_classes is None else num_classes
        if outputs < 2:
            raise ValueError(f"need num_classes >= 2, got {outputs}")
    else:
        if num_classes is not None:
            raise ValueError("regression has no classes: give num_outputs, not num_classes")
        outputs = DEFAULT_OUTPUTS if num_outputs is None else num_outputs
        if outputs < 1 or noise < 0:
            raise ValueError(f"need num_outputs >= 1 and noise >= 0, got {outputs}, {noise}")
    if dim < 2 or n_train < 1 or n_test < 0:
        raise ValueError("need dim >= 2, n_train >= 1 and n_test >= 0")

    teacher = np.random.default_rng([data_seed, 0]).normal(0, dim**-0.5, (outputs, dim))

    def sample(n: int, stream: int) -> Split:
        rng = np.random.default_rng([data_seed, stream])
        z = rng.standard_normal((n, dim))
        shared = rng.standard_normal((n, 1))
        x = np.sqrt(1 - correlation) * z + np.sqrt(correlation) * shared
        inputs = torch.from_numpy(x.astype(np.float32))
        if shape is not None:
            inputs = inputs.view(n, *shape)
        if task == "classification":
            labels = (x @ teacher.T).argmax(axis=1)
            return Split(inputs, torch.from_numpy(labels.astype(np.int64)))
        y = x @ teacher.T + noise * rng.standard_normal((n, outputs))
        return Split(inputs, torch.from_numpy(y.astype(np.float32)))

    test = sample(n_test, 2) if n_test > 0 else None
    if task == "classification":
        return RawData(sample(n_train, 1), test, num_classes=outputs)
    return RawData(sample(n_train, 1), test, standardize_targets=standardize_targets)
