"""Tiny ImageNet (200 classes of 64x64 colour images) from the standard ``tiny-imagenet-200/``
folder, with the decoded pixels cached in one ``.npz`` file next to it."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from corrgd.data.cache import read_cache, write_cache
from corrgd.data.download import DOWNLOAD_DISABLED, try_download
from corrgd.data.errors import DataNotFoundError
from corrgd.data.prepare import RawData
from corrgd.data.splits import Split

FOLDER = "tiny-imagenet-200"
CACHE = "tiny-imagenet-200.npz"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
IMAGE_SIZE = 64
EXPECTED = "{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,val/val_annotations.txt}"


def load_tiny_imagenet(root: Path, *, download: bool, crop: int | None = 56) -> RawData:
    """Tiny ImageNet: 100k train images; the official ``val`` folder (10k, labelled) serves
    as the test split, since the official test images have no labels.

    Labels index the sorted WordNet ids of ``wnids.txt``. Pixels stay uint8
    ``(N, 3, 64, 64)``; the transforms take a random (train) or centre (eval) ``crop``
    window, or the whole image if ``crop`` is None.
    The decoded arrays are cached in ``<data_dir>/tiny-imagenet-200.npz`` after the first
    load; delete that file to decode the folder again.
    """
    if crop is not None and not 0 < crop <= IMAGE_SIZE:
        raise ValueError(f"crop must be in 1..{IMAGE_SIZE} or None, got {crop}")
    arrays = _cached_or_decoded(root, download)
    return RawData(
        train=Split(torch.from_numpy(arrays["train_x"]), torch.from_numpy(arrays["train_y"])),
        test=Split(torch.from_numpy(arrays["test_x"]), torch.from_numpy(arrays["test_y"])),
        num_classes=len(arrays["wnids"]),
        pixel_max=255.0,
        store_uint8=True,
        crop=crop,
    )


def _cached_or_decoded(root: Path, download: bool) -> dict[str, np.ndarray]:
    cache, folder = root / CACHE, root / FOLDER
    if (cached := read_cache(cache)) is not None:
        return cached
    if not _complete(folder):
        reason = DOWNLOAD_DISABLED
        if download:
            from torchvision.datasets.utils import download_and_extract_archive  # slow import

            fetch = partial(
                download_and_extract_archive, URL, str(root), md5=MD5, remove_finished=True
            )
            reason = try_download(fetch, URL) or "download gave no files"
        if not _complete(folder):
            raise DataNotFoundError("tiny-imagenet", f"{folder}/{EXPECTED} or {cache}", reason)
    arrays = decode_folder(folder)
    write_cache(cache, arrays, "tiny-imagenet pixels")
    return arrays


def _complete(folder: Path) -> bool:
    return (
        (folder / "wnids.txt").is_file()
        and (folder / "train").is_dir()
        and (folder / "val" / "val_annotations.txt").is_file()
    )


def decode_folder(folder: Path) -> dict[str, np.ndarray]:
    """Decode every labelled image of a ``tiny-imagenet-200`` folder.

    Returns ``wnids`` (sorted), ``train_x``/``test_x`` uint8 ``(N, 3, 64, 64)`` and
    ``train_y``/``test_y`` int64; test rows follow ``val/val_annotations.txt``.
    """
    wnids = sorted((folder / "wnids.txt").read_text().split())
    label = {wnid: i for i, wnid in enumerate(wnids)}

    train_files: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
        train_files += files
        train_labels += [label[wnid]] * len(files)
    if not train_files:
        raise ValueError(f"no training images under {folder}/train/<wnid>/images/")

    test_files: list[Path] = []
    test_labels: list[int] = []
    for line in (folder / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")  # file name, wnid, bounding box
        if len(fields) >= 2:
            test_files.append(folder / "val" / "images" / fields[0])
            test_labels.append(label[fields[1]])

    return {
        "wnids": np.array(wnids),
        "train_x": _decode_images(train_files),
        "train_y": np.array(train_labels, dtype=np.int64),
        "test_x": _decode_images(test_files),
        "test_y": np.array(test_labels, dtype=np.int64),
    }


def _decode_images(files: list[Path]) -> np.ndarray:
    """uint8 ``(N, 3, 64, 64)``; greyscale images are converted to RGB. Decoded in threads
    (PIL releases the GIL while decoding)."""
    out = np.empty((len(files), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)

    def decode(row: int) -> None:
        with Image.open(files[row]) as image:
            rgb = np.asarray(image.convert("RGB"))
        if rgb.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"{files[row]}: expected 64x64 pixels, got {rgb.shape[1::-1]}")
        out[row] = rgb.transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(files))))
    return out
