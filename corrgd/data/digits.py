"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn, so always available)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits as sklearn_digits
from sklearn.model_selection import train_test_split

from corrgd.data.prepare import RawData
from corrgd.data.splits import Split

TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0


def load_digits(root: Path, *, download: bool) -> RawData:
    """1797 images of 1x8x8 pixels with values 0..16, 10 classes.

    The set has no official test split, so a fixed one is held out: 20 % of the images
    (360), stratified by class, chosen with seed 0 whatever the run's seed. ``root`` and
    ``download`` are unused.
    """
    bunch = sklearn_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    train_rows, test_rows = train_test_split(
        np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=TEST_SPLIT_SEED
    )
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)

    def split(rows: np.ndarray) -> Split:
        return Split(torch.from_numpy(x[rows]), torch.from_numpy(y[rows]))

    return RawData(split(train_rows), split(test_rows), num_classes=10, pixel_max=16.0)
