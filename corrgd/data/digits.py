"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn, so always available).

The images and the fixed test split are cached in ``<data_dir>/digits.npz`` after the
first load: importing scikit-learn takes about a second, which every worker process
would otherwise pay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from corrgd.data.cache import read_cache, write_cache
from corrgd.data.prepare import RawData
from corrgd.data.splits import Split

CACHE = "digits.npz"
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0


def load_digits(root: Path, *, download: bool) -> RawData:
    """1797 images of 1x8x8 pixels with values 0..16, 10 classes.

    The set has no official test split, so a fixed one is held out: 20 % of the images
    (360), stratified by class, chosen with seed 0 whatever the run's seed. ``download`` is
    unused.
    """
    arrays = read_cache(root / CACHE, {"train_x", "train_y", "test_x", "test_y"})
    if arrays is None:
        arrays = split_digits()
        write_cache(root / CACHE, arrays, "the digits")

    def split(part: str) -> Split:
        return Split(torch.from_numpy(arrays[f"{part}_x"]), torch.from_numpy(arrays[f"{part}_y"]))

    return RawData(split("train"), split("test"), num_classes=10, pixel_max=16.0)


def split_digits() -> dict[str, np.ndarray]:
    """scikit-learn's digits as uint8 images (N, 1, 8, 8) and int64 labels, split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = bunch.images.astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    train_rows, test_rows = train_test_split(
        np.arange(len(y)), test_size=TEST_FRACTION, stratify=y, random_state=TEST_SPLIT_SEED
    )
    train_rows, test_rows = np.sort(train_rows), np.sort(test_rows)
    return {"train_x": x[train_rows], "train_y": y[train_rows],
            "test_x": x[test_rows], "test_y": y[test_rows]}
