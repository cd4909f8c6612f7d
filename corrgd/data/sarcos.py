"""SARCOS inverse dynamics (Vijayakumar & Schaal, 2000) from the GPML book's MATLAB files.

``<data_dir>/sarcos/sarcos_inv.mat`` (training, 44484 rows) and ``sarcos_inv_test.mat``
(test, 4449 rows), as published at http://www.gaussianprocess.org/gpml/data/. Each holds one
float64 matrix named like the file, with 28 columns per row: 7 joint positions, 7 joint
velocities and 7 joint accelerations (the 21 inputs, columns 0-20), then the 7 joint torques
(the targets, columns 21-27). Comma-separated copies of the same matrices
(``sarcos_inv.csv``, ``sarcos_inv_test.csv``, no header) are read when the ``.mat`` files
are absent.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from corrgd.data.download import DOWNLOAD_DISABLED, try_download
from corrgd.data.errors import DataNotFoundError
from corrgd.data.prepare import RawData
from corrgd.data.splits import Split

FOLDER = "sarcos"
URL = "http://www.gaussianprocess.org/gpml/data/"
TRAIN, TEST = "sarcos_inv", "sarcos_inv_test"
"""File stems, which are also the names of the matrices inside the ``.mat`` files."""
SUFFIXES = (".mat", ".csv")
NUM_INPUTS, NUM_TARGETS = 21, 7
EXPECTED = "{sarcos_inv,sarcos_inv_test}.mat (or .csv copies)"


def load_sarcos(root: Path, *, download: bool, standardize_targets: bool = False) -> RawData:
    """SARCOS: 44484 train / 4449 test rows of 21 float32 inputs and 7 float32 torques.

    The targets stay raw joint torques by default, so MSE losses are in the units the NPD
    paper reports (its Appendix J test MSEs of about 7-16; a least-squares linear fit gives
    about 10.7 averaged over the 7 torques, whereas standardised torques would give losses
    below 1). ``standardize_targets=True`` standardises them with training statistics
    instead. Inputs are standardised by ``load_dataset`` (``normalize``) like every
    regression set. The official test file is used as the test split, as in the paper;
    others have reported that its rows also occur in the training file.
    """
    folder = root / FOLDER
    paths = _find(folder)
    if paths is None:
        reason = DOWNLOAD_DISABLED
        if download:
            reason = try_download(partial(_download, folder), URL) or "download gave no files"
        paths = _find(folder)
        if paths is None:
            raise DataNotFoundError("sarcos", f"{folder}/{EXPECTED}", reason)
    return RawData(
        train=read_sarcos(paths[0]),
        test=read_sarcos(paths[1]),
        standardize_targets=standardize_targets,
    )


def _file(folder: Path, stem: str) -> Path | None:
    return next((p for s in SUFFIXES if (p := folder / f"{stem}{s}").is_file()), None)


def _find(folder: Path) -> tuple[Path, Path] | None:
    train, test = _file(folder, TRAIN), _file(folder, TEST)
    return None if train is None or test is None else (train, test)


def download_url(url: str, root: str, filename: str) -> None:
    """torchvision's `download_url` (imported only to download: it is slow to import)."""
    from torchvision.datasets.utils import download_url as fetch

    fetch(url, root, filename=filename)


def _download(folder: Path) -> None:
    """Fetch the missing ``.mat`` files, each via a ``.partial`` file renamed when complete."""
    for stem in (TRAIN, TEST):
        if _file(folder, stem) is None:
            partial_name = f"{stem}.mat.partial"
            download_url(f"{URL}{stem}.mat", str(folder), filename=partial_name)
            os.replace(folder / partial_name, folder / f"{stem}.mat")


def read_sarcos(path: Path) -> Split:
    """Inputs ``(N, 21)`` and torques ``(N, 7)``, both float32, of one SARCOS file.

    A ``.mat`` file must hold a matrix named like the file's stem; a ``.csv`` file holds
    the matrix itself. ValueError if the file is unreadable or not an ``(N, 28)`` matrix of
    finite numbers.
    """
    if path.suffix == ".csv":
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        import scipy.io  # slow to import: only for .mat files

        try:
            contents = scipy.io.loadmat(path)
        except Exception as error:  # scipy raises several types for a broken file
            raise ValueError(f"{path}: not a readable MATLAB file ({error})") from error
        if path.stem not in contents:
            found = sorted(k for k in contents if not k.startswith("__"))
            raise ValueError(f"{path}: no matrix named {path.stem!r} (found {found})")
        table = np.asarray(contents[path.stem])
    columns = NUM_INPUTS + NUM_TARGETS
    if table.ndim != 2 or table.shape[1] != columns or not np.isfinite(table).all():
        raise ValueError(
            f"{path}: expected an (N, {columns}) matrix of finite numbers, got shape "
            f"{table.shape}"
        )
    values = torch.from_numpy(table.astype(np.float32))
    return Split(values[:, :NUM_INPUTS].contiguous(), values[:, NUM_INPUTS:].contiguous())
