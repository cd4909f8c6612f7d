"""Tests of corrgd.data: each loader reads small files written here in the real formats."""

from __future__ import annotations

import gzip
import pickle
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits as sklearn_digits

from corrgd.data import (
    BatchTransform,
    DataNotFoundError,
    DataSplits,
    Split,
    dataset_names,
    default_data_dir,
    load_dataset,
)
from corrgd.data import download as download_module
from corrgd.data import mnist as mnist_module
from corrgd.data.idx import read_idx
from corrgd.data.transforms import center_crop, random_crop

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")

# ---------------------------------------------------------------- writers of the real formats


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of uint8 values (gzipped if the name ends in .gz)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist(raw_dir: Path, rng: np.random.Generator, *, gz: bool) -> dict[str, np.ndarray]:
    raw_dir.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5),
    }
    for stem, array in arrays.items():
        write_idx(raw_dir / (stem + (".gz" if gz else "")), array)
    return arrays


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str) -> None:
    batch = {
        "batch_label": "testing batch",
        label_key: labels.tolist(),
        "data": images.reshape(len(images), -1).astype(np.uint8),
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Five 3-image training batches and a 4-image test batch; returns the raw arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x = rng.integers(0, 256, (15, 3, 32, 32), dtype=np.uint8)
    train_y = rng.integers(0, 10, 15)
    for i in range(5):
        rows = slice(3 * i, 3 * i + 3)
        write_cifar_batch(folder / f"data_batch_{i + 1}", train_x[rows], train_y[rows], "labels")
    test_x = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    test_y = rng.integers(0, 10, 4)
    write_cifar_batch(folder / "test_batch", test_x, test_y, "labels")
    return train_x, train_y, test_x, test_y


TINY_COLOURS = {  # wnid -> solid RGB colour of each of its training images
    "n02000002": [(200, 30, 30), (30, 200, 30), (120, 120, 120)],
    "n01000001": [(10, 20, 250), (250, 250, 10), (0, 0, 0)],
}
TINY_VAL = [("val_0.JPEG", "n02000002", (40, 90, 160)), ("val_1.JPEG", "n01000001", (90, 0, 60))]


def write_tiny_imagenet(root: Path) -> Path:
    """A two-class tiny-imagenet-200 folder; the last n02 image is greyscale (mode L)."""
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_COLOURS) + "\n")  # not sorted
    for wnid, colours in TINY_COLOURS.items():
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i, colour in enumerate(colours):
            image = Image.new("RGB", (64, 64), colour)
            if wnid == "n02000002" and i == 2:
                image = image.convert("L")
            image.save(images / f"{wnid}_{i}.JPEG", quality=95)
    lines = []
    for name, wnid, colour in TINY_VAL:
        Image.new("RGB", (64, 64), colour).save(folder / "val" / "images" / name, quality=95)
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert dataset_names() == [
        "cifar10",
        "cifar100",
        "diabetes",
        "digits",
        "fashion-mnist",
        "mnist",
        "sarcos",
        "synthetic-correlated",
        "tiny-imagenet",
    ]


def test_unknown_name_and_option() -> None:
    with pytest.raises(ValueError, match="known: cifar10"):
        load_dataset("imagenet")
    with pytest.raises(TypeError, match="crop"):
        load_dataset("digits", crop=4)


def test_default_data_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CORRGD_DATA", raising=False)
    assert default_data_dir() == Path.home() / ".cache" / "corrgd" / "data"
    monkeypatch.setenv("CORRGD_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path


def test_load_uses_corrgd_data_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rng: np.random.Generator
) -> None:
    write_cifar10(tmp_path, rng)
    monkeypatch.setenv("CORRGD_DATA", str(tmp_path))
    assert len(load_dataset("cifar10", download=False).train) == 15


def test_split_checks_its_contents() -> None:
    with pytest.raises(ValueError, match="int64"):
        Split(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        Split(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64))


# ---------------------------------------------------------------- CIFAR


def test_cifar10_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path, rng)
    data = load_dataset("cifar10", data_dir=tmp_path, download=False, normalize=False)
    assert data.num_classes == 10 and data.input_shape == (3, 32, 32) and data.val is None
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert np.allclose(data.train.x.numpy() * 255, train_x, atol=1e-4)
    assert np.array_equal(data.train.y.numpy(), train_y)
    assert np.allclose(data.test.x.numpy() * 255, test_x, atol=1e-4)
    assert np.array_equal(data.test.y.numpy(), test_y)
    # no crop for CIFAR: both transforms leave the stored inputs unchanged
    assert torch.equal(data.train_transform(data.train.x[:2], None), data.train.x[:2])
    assert torch.equal(data.eval_transform(data.test.x), data.test.x)


def test_cifar10_normalised_with_train_statistics(tmp_path: Path, rng: np.random.Generator) -> None:
    train_x, _, test_x, _ = write_cifar10(tmp_path, rng)
    data = load_dataset("cifar10", data_dir=tmp_path, download=False)
    # every channel of the training inputs is standardised...
    assert torch.allclose(data.train.x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(data.train.x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    # ...and the test inputs use the training mean and std, not their own
    mean = (train_x / 255).mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = (train_x / 255).std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    assert np.allclose(data.test.x.numpy(), (test_x / 255 - mean) / std, atol=1e-4)
    assert not torch.allclose(data.test.x.mean((0, 2, 3)), torch.zeros(3), atol=1e-3)


def test_flatten_gives_vectors(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar10(tmp_path, rng)
    flat = load_dataset("cifar10", data_dir=tmp_path, download=False, flatten=True)
    image = load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert flat.input_shape == (3072,) and flat.train.x.shape == (15, 3072)
    assert torch.equal(flat.test.x, image.test.x.reshape(4, -1))


def test_validation_split(tmp_path: Path, rng: np.random.Generator) -> None:
    train_x, *_ = write_cifar10(tmp_path, rng)

    def load(seed: int) -> DataSplits:
        return load_dataset(
            "cifar10", data_dir=tmp_path, download=False, normalize=False, val_size=5, seed=seed
        )

    def original_rows(split: Split) -> list[int]:
        pixels = np.rint(split.x.numpy() * 255).astype(np.uint8)
        return [int(np.flatnonzero((train_x == p).all(axis=(1, 2, 3)))[0]) for p in pixels]

    data = load(seed=3)
    train_rows, val_rows = original_rows(data.train), original_rows(data.val)
    assert len(val_rows) == 5 and len(train_rows) == 10
    assert set(train_rows).isdisjoint(val_rows)
    assert sorted(train_rows + val_rows) == list(range(15))
    assert original_rows(load(seed=3).val) == val_rows  # deterministic given the seed
    assert original_rows(load(seed=4).val) != val_rows
    assert torch.equal(load(seed=4).test.x, data.test.x)  # the test set never moves
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("cifar10", data_dir=tmp_path, download=False, val_size=15)


def test_statistics_are_the_whole_training_split_whatever_the_hold_out(
        tmp_path: Path, rng: np.random.Generator) -> None:
    """Standardised with the statistics of every official training row, validation rows
    included: runs that differ only in their hold-out (their seed) share one loaded set."""
    write_cifar10(tmp_path, rng)
    data = load_dataset("cifar10", data_dir=tmp_path, download=False, val_size=5)
    both = torch.cat([data.train.x, data.val.x])
    assert torch.allclose(both.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert not torch.allclose(data.train.x.mean((0, 2, 3)), torch.zeros(3), atol=1e-3)
    whole = load_dataset("cifar10", data_dir=tmp_path, download=False)
    other = load_dataset("cifar10", data_dir=tmp_path, download=False, val_size=5, seed=9)
    for split in (data, other):
        rows = torch.cat([split.train.x, split.val.x]).flatten(1)
        assert torch.equal(rows.sort(0).values, whole.train.x.flatten(1).sort(0).values)


def test_cifar100_fine_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train_x = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    fine = np.array([0, 99, 42, 7, 7, 63])
    write_cifar_batch(folder / "train", train_x, fine, "fine_labels")
    write_cifar_batch(folder / "test", train_x[:2], fine[:2], "fine_labels")
    data = load_dataset("cifar100", data_dir=tmp_path, download=False, normalize=False)
    assert data.num_classes == 100
    assert data.train.y.tolist() == fine.tolist()
    assert np.allclose(data.train.x.numpy() * 255, train_x, atol=1e-4)
    assert len(data.test) == 2


# ---------------------------------------------------------------- MNIST family


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_round_trip(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    arrays = write_mnist(tmp_path / "MNIST" / "raw", rng, gz=gz)
    data = load_dataset("mnist", data_dir=tmp_path, download=False, normalize=False)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert np.allclose(data.train.x[:, 0].numpy() * 255, arrays["train-images-idx3-ubyte"])
    assert data.train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert np.allclose(data.test.x[:, 0].numpy() * 255, arrays["t10k-images-idx3-ubyte"])
    assert data.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_reader_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not-idx"
    path.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    write_idx(tmp_path / "short", np.zeros((4, 3)))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-2])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_falls_back_to_system_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rng: np.random.Generator
) -> None:
    system = tmp_path / "usr-share"
    arrays = write_mnist(system, rng, gz=True)
    monkeypatch.setitem(mnist_module.SYSTEM_DIRS, "fashion-mnist", (system,))
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "empty", download=False)
    assert data.train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    # files under data_dir take precedence over the system folder
    local = write_mnist(tmp_path / "data" / "FashionMNIST" / "raw", rng, gz=False)
    data = load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)
    assert data.train.y.tolist() == local["train-labels-idx1-ubyte"].tolist()


@pytest.mark.skipif(
    not (SYSTEM_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist(tmp_path: Path) -> None:
    data = load_dataset("fashion-mnist", data_dir=tmp_path, download=False, flatten=True)
    assert data.input_shape == (784,)
    assert data.train.x.shape == (60_000, 784) and data.test.x.shape == (10_000, 784)
    assert data.train.y.bincount().tolist() == [6000] * 10
    assert data.test.y.bincount().tolist() == [1000] * 10
    assert abs(data.train.x.mean().item()) < 1e-4 and abs(data.train.x.std().item() - 1) < 1e-3


# ---------------------------------------------------------------- digits


def test_digits_fixed_test_split() -> None:
    data = load_dataset("digits", normalize=False)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert all(35 <= n <= 37 for n in data.test.y.bincount().tolist())  # stratified
    # train + test are exactly the scikit-learn images, pixels scaled from 0..16 to [0, 1]
    pixels = torch.cat([data.train.x, data.test.x]).reshape(-1, 64).numpy() * 16
    assert np.allclose(pixels, np.rint(pixels), atol=1e-5)
    ours = sorted(row.tobytes() for row in np.rint(pixels).astype(np.uint8))
    theirs = sorted(row.astype(np.uint8).tobytes() for row in sklearn_digits().data)
    assert ours == theirs
    # the test split ignores the run's seed and validation size
    other = load_dataset("digits", normalize=False, seed=5, val_size=100, flatten=True)
    assert other.input_shape == (64,) and other.train.x.shape == (1337, 64)
    assert torch.equal(other.test.x, data.test.x.reshape(360, 64))


def test_digits_are_cached_after_the_first_load(tmp_path: Path) -> None:
    """The first load splits scikit-learn's digits and caches them; later loads (every
    worker's) read the cache without importing scikit-learn, and get the same data. A
    broken cache is made again."""
    first = load_dataset("digits", data_dir=tmp_path, normalize=False)
    assert (tmp_path / "digits.npz").is_file()
    code = ("import sys, torch; from corrgd.data import load_dataset; "
            f"d = load_dataset('digits', data_dir={str(tmp_path)!r}, normalize=False); "
            f"torch.save([d.train.x, d.train.y, d.test.x, d.test.y], {str(tmp_path / 'd.pt')!r}); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
    cached = torch.load(tmp_path / "d.pt")
    for a, b in zip(cached, [first.train.x, first.train.y, first.test.x, first.test.y],
                    strict=True):
        assert torch.equal(a, b)
    (tmp_path / "digits.npz").write_bytes(b"not a zip file")
    again = load_dataset("digits", data_dir=tmp_path, normalize=False)
    assert torch.equal(again.test.x, first.test.x)
    assert torch.equal(load_dataset("digits", data_dir=tmp_path, normalize=False).train.y,
                       first.train.y)


# ---------------------------------------------------------------- synthetic-correlated


def mean_abs_off_diagonal_correlation(x: torch.Tensor) -> float:
    corr = np.corrcoef(x.numpy(), rowvar=False)
    return float(np.abs(corr[~np.eye(len(corr), dtype=bool)]).mean())


@pytest.mark.parametrize("correlation", [0.3, 0.8])
def test_synthetic_correlation_strength(correlation: float) -> None:
    data = load_dataset("synthetic-correlated", correlation=correlation, n_train=5000)
    assert data.input_shape == (64,) and data.train.x.dtype == torch.float32
    assert abs(mean_abs_off_diagonal_correlation(data.train.x) - correlation) < 0.02
    assert abs(data.train.x.var(0).mean().item() - 1) < 0.05


def test_synthetic_determinism_and_teacher() -> None:
    def load(**options: int) -> DataSplits:
        return load_dataset("synthetic-correlated", **{"n_train": 3000, "n_test": 1000, **options})

    data = load()
    assert torch.equal(load().train.x, data.train.x)
    assert not torch.equal(load(data_seed=1).train.x, data.train.x)
    # the seed only picks the validation rows; n_train leaves teacher and test set alone
    assert torch.equal(load(seed=7, val_size=300).test.y, data.test.y)
    assert torch.equal(load(n_train=500).test.x, data.test.x)
    assert data.train.y.dtype == torch.int64 and set(data.train.y.tolist()) == set(range(10))
    # labels come from a noise-free linear teacher: with two classes they are a half-space,
    # whose direction least squares recovers for Gaussian inputs, however correlated
    binary = load(num_classes=2)
    targets = 2.0 * binary.train.y.double() - 1
    weights = torch.linalg.lstsq(binary.train.x.double(), targets[:, None]).solution[:, 0]
    predicted = (binary.test.x.double() @ weights > 0).long()
    assert predicted.eq(binary.test.y).double().mean() > 0.95
    three = load_dataset("synthetic-correlated", num_classes=3, dim=8, n_test=0)
    assert three.num_classes == 3 and three.test is None and int(three.train.y.max()) == 2
    with pytest.raises(ValueError, match="correlation"):
        load_dataset("synthetic-correlated", correlation=1.0)


# ---------------------------------------------------------------- tiny-imagenet


def test_tiny_imagenet_reader_and_cache(tmp_path: Path) -> None:
    folder = write_tiny_imagenet(tmp_path)
    data = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, normalize=False)
    assert data.num_classes == 2 and data.input_shape == (3, 56, 56)
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape == (6, 3, 64, 64)
    # labels index the sorted wnids: n01000001 -> 0, n02000002 -> 1
    assert data.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.test.y.tolist() == [1, 0]
    colours = TINY_COLOURS["n01000001"] + TINY_COLOURS["n02000002"]
    for image, colour in zip(data.train.x[:5], colours, strict=False):
        assert (image.float().mean((1, 2)) - torch.tensor(colour)).abs().max() <= 2
    grey = data.train.x[5].float()
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert (data.test.x[0].float().mean((1, 2)) - torch.tensor(TINY_VAL[0][2])).abs().max() <= 2

    # the decoded pixels are cached next to the folder and used without it
    assert (tmp_path / "tiny-imagenet-200.npz").is_file()
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    cached = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, normalize=False)
    assert torch.equal(cached.train.x, data.train.x) and torch.equal(cached.test.y, data.test.y)


def test_tiny_imagenet_transforms(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    data = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, val_size=2)
    assert data.train.x.dtype == torch.uint8 and len(data.train) == 4 and len(data.val) == 2
    pixels = torch.cat([data.train.x, data.val.x]).numpy() / 255  # every training image
    mean = pixels.mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = pixels.std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)

    test = data.eval_transform(data.test.x)
    assert test.dtype == torch.float32 and test.shape == (2, 3, 56, 56)
    expected = (data.test.x.numpy()[..., 4:60, 4:60] / 255 - mean) / std
    assert np.allclose(test.numpy(), expected, atol=1e-4)

    everything = torch.cat([data.train.x, data.val.x])
    batch = data.train_transform(everything, torch.Generator().manual_seed(0))
    assert batch.dtype == torch.float32 and batch.shape == (6, 3, 56, 56)
    assert torch.allclose(batch.mean((0, 2, 3)), torch.zeros(3), atol=0.05)  # near-flat images

    flat = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, crop=32, flatten=True)
    assert flat.input_shape == (3 * 32 * 32,)
    assert flat.train_transform(flat.train.x[:3], None).shape == (3, 3072)
    assert flat.eval_transform(flat.test.x).shape == (2, 3072)
    whole = load_dataset("tiny-imagenet", data_dir=tmp_path, download=False, crop=None)
    assert whole.input_shape == (3, 64, 64)


def positions(batch: int, channels: int = 2, size: int = 64) -> torch.Tensor:
    """int64 images whose every value encodes (sample, channel, row, column)."""
    b, c, i, j = torch.meshgrid(
        *(torch.arange(n) for n in (batch, channels, size, size)), indexing="ij"
    )
    return b * 100_000 + c * 10_000 + i * size + j


def test_center_crop_is_the_centre() -> None:
    x = positions(3)
    assert torch.equal(center_crop(x, 56), x[..., 4:60, 4:60])
    assert torch.equal(center_crop(x, 5), x[..., 29:34, 29:34])


def test_random_crops_are_windows_with_independent_offsets() -> None:
    x = positions(200)
    out = random_crop(x, 56, torch.Generator().manual_seed(0))
    assert out.shape == (200, 2, 56, 56)
    offsets = []
    for b in range(200):
        corner = int(out[b, 0, 0, 0]) - b * 100_000
        top, left = divmod(corner, 64)
        assert torch.equal(out[b], x[b, :, top : top + 56, left : left + 56])
        offsets.append((top, left))
    tops, lefts = zip(*offsets, strict=True)
    assert set(tops) == set(lefts) == set(range(9))  # every placement of 56 in 64 occurs
    again = random_crop(x, 56, torch.Generator().manual_seed(0))
    other = random_crop(x, 56, torch.Generator().manual_seed(1))
    assert torch.equal(again, out) and not torch.equal(other, out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_transforms_on_cuda() -> None:
    x = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, device="cuda")
    transform = BatchTransform(crop=56, pixel_max=255.0, mean=(0.5,) * 3, std=(0.25,) * 3)
    for generator in (None, torch.Generator().manual_seed(0), torch.Generator("cuda")):
        out = transform.train(x, generator)
        assert out.device == x.device and out.dtype == torch.float32
        assert out.shape == (8, 3, 56, 56)
    expected = (x[..., 4:60, 4:60].float() / 255 - 0.5) / 0.25
    assert torch.allclose(transform.eval(x), expected)


# ---------------------------------------------------------------- missing files


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py/{data_batch_1..5,test_batch}"),
        ("cifar100", "cifar-100-python/{train,test}"),
        ("tiny-imagenet", "tiny-imagenet-200/"),
    ],
)
def test_missing_files_name_the_expected_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, expected: str
) -> None:
    monkeypatch.setitem(mnist_module.SYSTEM_DIRS, "fashion-mnist", ())
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset(name, data_dir=tmp_path, download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: expected ")
    assert f"{tmp_path}/{expected}" in message
    assert "download disabled" in message and "CORRGD_DATA" in message
    assert str(pickle.loads(pickle.dumps(caught.value))) == message  # survives job runners


def test_failed_download_is_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for name in ("cifar10", "mnist", "tiny-imagenet"):
        with pytest.raises(DataNotFoundError, match="download failed: cannot resolve") as caught:
            load_dataset(name, data_dir=tmp_path, download=True)
        assert "\n" not in str(caught.value)


def test_hanging_name_lookup_gives_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def slow_dns(*args: object, **kwargs: object) -> None:
        time.sleep(3)
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", slow_dns)
    monkeypatch.setattr(download_module, "DOWNLOAD_TIMEOUT_S", 0.2)
    start = time.monotonic()
    with pytest.raises(DataNotFoundError, match="no answer resolving www.cs.toronto.edu"):
        load_dataset("cifar10", data_dir=tmp_path, download=True)
    assert time.monotonic() - start < 2


def test_download_runs_under_a_socket_timeout_and_restores_it() -> None:
    seen: list[float | None] = []

    def fetch() -> None:
        seen.append(socket.getdefaulttimeout())
        raise RuntimeError("Error downloading x:\nTried mirror, got: 404")

    before = socket.getdefaulttimeout()
    reason = download_module.try_download(fetch, "http://localhost/file.zip", timeout=7.0)
    assert seen == [7.0] and socket.getdefaulttimeout() == before
    assert reason == "download failed: RuntimeError: Error downloading x: Tried mirror, got: 404"
    assert download_module.try_download(lambda: None, "http://localhost/f", timeout=7.0) is None


def test_scaled_pixels_are_float32_whatever_the_default_dtype_was() -> None:
    """The per-channel stats are cached: made under a float64 default (as a float64 test
    sets it) they must not turn later float32 batches into float64."""
    from corrgd.data.transforms import _channel_stats, scale_pixels

    _channel_stats.cache_clear()
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    stats = ((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert scale_pixels(pixels, 255.0, *stats).dtype == torch.float32
    finally:
        torch.set_default_dtype(default)
    assert scale_pixels(pixels, 255.0, *stats).dtype == torch.float32
