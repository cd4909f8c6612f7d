"""CIFAR-10 and CIFAR-100 from torchvision's "python version" pickle batches."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from corrgd.data.download import DOWNLOAD_DISABLED, try_download
from corrgd.data.errors import DataNotFoundError
from corrgd.data.prepare import RawData
from corrgd.data.splits import Split


@dataclass(frozen=True)
class CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    expected_files: str  # the file list, as shown in error messages
    dataset_class: str  # its torchvision class, which downloads it (imported only then)


CIFAR10 = CifarLayout(
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    num_classes=10,
    expected_files="{data_batch_1..5,test_batch}",
    dataset_class="CIFAR10",
)
CIFAR100 = CifarLayout(
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    num_classes=100,
    expected_files="{train,test}",
    dataset_class="CIFAR100",
)


def load_cifar10(root: Path, *, download: bool) -> RawData:
    """CIFAR-10: 50k train / 10k test, 3x32x32 uint8 pixels, 10 classes."""
    return _load("cifar10", CIFAR10, root, download)


def load_cifar100(root: Path, *, download: bool) -> RawData:
    """CIFAR-100 with its 100 fine labels: 50k train / 10k test, 3x32x32 uint8 pixels."""
    return _load("cifar100", CIFAR100, root, download)


def _load(name: str, layout: CifarLayout, root: Path, download: bool) -> RawData:
    folder = root / layout.folder
    if not _complete(folder, layout):
        reason = DOWNLOAD_DISABLED
        if download:
            import torchvision  # slow to import: only to download

            dataset_class = getattr(torchvision.datasets, layout.dataset_class)
            fetch = partial(dataset_class, str(root), download=True)
            reason = try_download(fetch, dataset_class.url) or "download gave no files"
        if not _complete(folder, layout):
            raise DataNotFoundError(name, f"{folder}/{layout.expected_files}", reason)
    return RawData(
        train=_read_batches([folder / f for f in layout.train_files], layout.label_key),
        test=_read_batches([folder / f for f in layout.test_files], layout.label_key),
        num_classes=layout.num_classes,
        pixel_max=255.0,
    )


def _complete(folder: Path, layout: CifarLayout) -> bool:
    return all((folder / f).is_file() for f in layout.train_files + layout.test_files)


def _read_batches(paths: list[Path], label_key: str) -> Split:
    """Concatenated images ``(N, 3, 32, 32)`` and labels of the given pickle batches.

    Each batch is a pickled dict whose ``data`` is a uint8 ``(n, 3072)`` array of
    channel-major rows (1024 red, then green, then blue values). These pickles come from the
    data set's own site; like torchvision, we trust them.
    """
    images, labels = [], []
    for path in paths:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return Split(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))
