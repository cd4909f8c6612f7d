"""MNIST and Fashion-MNIST, in torchvision's layout ``<data_dir>/<MNIST|FashionMNIST>/raw/``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from corrgd.data.download import DOWNLOAD_DISABLED, try_download
from corrgd.data.errors import DataNotFoundError
from corrgd.data.idx import read_idx
from corrgd.data.prepare import RawData
from corrgd.data.splits import Split

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
PATTERN = "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"

SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),  # Debian dataset-fashion-mnist
}
"""Folders where OS packages install the four files; tried when ``<data_dir>`` lacks them."""


def load_mnist(root: Path, *, download: bool) -> RawData:
    """MNIST digits: 60k train / 10k test, 1x28x28 uint8 pixels, 10 classes."""
    return _load("mnist", "MNIST", root, download)


def load_fashion_mnist(root: Path, *, download: bool) -> RawData:
    """Fashion-MNIST: 60k train / 10k test, 1x28x28 uint8 pixels, 10 classes."""
    return _load("fashion-mnist", "FashionMNIST", root, download)


def _load(
    name: str, class_name: str, root: Path, download: bool
) -> RawData:
    """`class_name`: the torchvision data set class that downloads it (and names its folder)."""
    raw_dir = root / class_name / "raw"
    folders = [raw_dir, *SYSTEM_DIRS.get(name, ())]
    files = next((found for f in folders if (found := _find_files(f)) is not None), None)
    if files is None:
        reason = DOWNLOAD_DISABLED
        if download:
            import torchvision  # slow to import: only to download

            dataset_class = getattr(torchvision.datasets, class_name)
            fetch = partial(dataset_class, str(root), download=True)
            reason = try_download(fetch, dataset_class.mirrors[0]) or "download gave no files"
        files = _find_files(raw_dir)
        if files is None:
            expected = f"{PATTERN} in {' or '.join(map(str, folders))}"
            raise DataNotFoundError(name, expected, reason)
    return RawData(
        train=_read_pair(files[TRAIN_FILES[0]], files[TRAIN_FILES[1]]),
        test=_read_pair(files[TEST_FILES[0]], files[TEST_FILES[1]]),
        num_classes=10,
        pixel_max=255.0,
    )


def _find_files(folder: Path) -> dict[str, Path] | None:
    """Each of the four files in ``folder``, plain or gzipped; None if any is missing."""
    found = {}
    for stem in TRAIN_FILES + TEST_FILES:
        candidates = [folder / stem, folder / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found[stem] = path
    return found


def _read_pair(images: Path, labels: Path) -> Split:
    x = torch.from_numpy(read_idx(images)).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    return Split(x, torch.from_numpy(read_idx(labels)).to(torch.int64))
