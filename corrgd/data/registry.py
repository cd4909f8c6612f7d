"""The data-set registry: names -> loaders, and ``load_dataset``, the one entry point.

What each set is (task, sizes, shapes, options) is in ``corrgd.data.catalog``, without torch."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corrgd.data import catalog
from corrgd.data.catalog import EITHER_TASK, REGRESSION_DATASETS, dataset_names
from corrgd.data.cifar import load_cifar10, load_cifar100
from corrgd.data.diabetes import load_diabetes
from corrgd.data.digits import load_digits
from corrgd.data.mnist import load_fashion_mnist, load_mnist
from corrgd.data.prepare import RawData, prepare
from corrgd.data.sarcos import load_sarcos
from corrgd.data.splits import DataSplits, Task
from corrgd.data.synthetic import load_synthetic_correlated
from corrgd.data.tiny_imagenet import load_tiny_imagenet

Loader = Callable[..., RawData]
"""``loader(root: Path, *, download: bool, **options) -> RawData``; options are its own."""

DATASETS: dict[str, Loader] = {
    "digits": load_digits,
    "synthetic-correlated": load_synthetic_correlated,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tiny-imagenet": load_tiny_imagenet,
    # regression (float32 targets (N, k)); synthetic-correlated also has task="regression"
    "diabetes": load_diabetes,
    "sarcos": load_sarcos,
}

__all__ = ["DATASETS", "EITHER_TASK", "REGRESSION_DATASETS", "check_files", "dataset_names",
           "dataset_task", "default_data_dir", "load_dataset"]

DEFAULT_DATA_DIR = "~/.cache/corrgd/data"


def dataset_task(name: str, **options: Any) -> Task:
    """The task of data set ``name`` loaded with loader ``options``, without loading it."""
    return catalog.dataset_task(name, options)


def default_data_dir() -> Path:
    """``$CORRGD_DATA`` if set, else ``~/.cache/corrgd/data``."""
    return Path(os.environ.get("CORRGD_DATA") or DEFAULT_DATA_DIR).expanduser()


def _root(data_dir: str | Path | None) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def check_files(name: str, *, data_dir: str | Path | None = None, **options: Any) -> None:
    """Raise ``DataNotFoundError`` unless data set ``name``'s files are in ``data_dir``
    (downloaded there if missing, as a worker would); reads them once, prepares nothing."""
    DATASETS[name](_root(data_dir), download=True, **options)


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_size: int = 0,
    seed: int = 0,
    download: bool = True,
    flatten: bool = False,
    normalize: bool = True,
    **options: Any,
) -> DataSplits:
    """Load data set ``name`` (see ``dataset_names()``).

    data_dir: where the files live (default ``default_data_dir()``).
    val_size: rows held out of the official training split as ``val``, chosen by a
        permutation seeded with ``seed``; ``train`` excludes them. ``test`` is the official
        test split (a fixed hold-out for digits and diabetes).
    download: fetch missing files; if that fails or is off, raise ``DataNotFoundError``.
    flatten: give ``(N, D)`` model inputs, for dense networks.
    normalize: for pixel data, standardise each channel with the mean and std of the whole
        official training split (validation rows included, so that the statistics do not
        depend on the hold-out) on top of scaling to [0, 1]; for regression data, standardise
        each input feature likewise; classification vector data (synthetic-correlated) is
        used as it is.
    options: passed to the loader, e.g. ``crop`` for tiny-imagenet, ``correlation`` or
        ``task="regression"`` for synthetic-correlated, ``standardize_targets`` for the
        regression sets; unknown options raise ``TypeError``.

    Regression sets (``DataSplits.task == "regression"``: diabetes, sarcos,
    synthetic-correlated with ``task="regression"``) have float32 targets ``(N, k)``;
    ``DataSplits.target_mean``/``target_std`` say whether and how they were standardised
    (see ``corrgd.data.regression``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(dataset_names())}")
    raw = DATASETS[name](_root(data_dir), download=download, **options)
    return prepare(name, raw, val_size=val_size, seed=seed, normalize=normalize, flatten=flatten)
