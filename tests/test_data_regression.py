"""Tests of corrgd.data's regression sets: SARCOS read from small files written here in the
GPML layout, scikit-learn's diabetes, synthetic-correlated with task="regression", and the
target checks of Split / RawData / DataSplits."""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from sklearn.datasets import load_diabetes as sklearn_diabetes

from corrgd.data import (
    REGRESSION_DATASETS,
    DataNotFoundError,
    DataSplits,
    Split,
    dataset_names,
    dataset_task,
    load_dataset,
)
from corrgd.data import download as download_module
from corrgd.data import sarcos as sarcos_module
from corrgd.data.prepare import RawData
from corrgd.data.sarcos import read_sarcos

# ---------------------------------------------------------------- SARCOS files


def sarcos_table(rng: np.random.Generator, rows: int) -> np.ndarray:
    """An (rows, 28) float64 matrix like the GPML files: 21 inputs of assorted scales, then
    7 torques (all values distinct, so rows can be told apart)."""
    inputs = rng.normal(0, 1, (rows, 21)) * rng.uniform(0.1, 30, 21) + rng.uniform(-5, 5, 21)
    torques = rng.normal(0, 1, (rows, 7)) * rng.uniform(1, 40, 7)
    return np.concatenate([inputs, torques], axis=1)


def write_sarcos(
    root: Path, rng: np.random.Generator, *, n_train: int = 40, n_test: int = 9, csv: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``<root>/sarcos/sarcos_inv{,_test}.mat`` (or ``.csv``); returns the two matrices."""
    folder = root / "sarcos"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = sarcos_table(rng, n_train), sarcos_table(rng, n_test)
    for stem, table in (("sarcos_inv", train), ("sarcos_inv_test", test)):
        if csv:
            np.savetxt(folder / f"{stem}.csv", table, delimiter=",")
        else:
            scipy.io.savemat(folder / f"{stem}.mat", {stem: table})
    return train, test


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


def rows_of(raw: np.ndarray, targets: torch.Tensor) -> np.ndarray:
    """Indices of the raw rows whose torques are ``targets`` (raw units), in order."""
    raw_targets = raw[:, 21:].astype(np.float32)
    return np.array([int(np.flatnonzero((raw_targets == t).all(1))[0]) for t in targets.numpy()])


def test_sarcos_reader_shapes_and_input_standardisation(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    train_raw, test_raw = write_sarcos(tmp_path, rng)
    data = load_dataset("sarcos", data_dir=tmp_path, download=False, val_size=8, seed=3)

    assert data.task == "regression" and data.train.task == "regression"
    assert data.num_outputs == data.num_classes == 7 and data.input_shape == (21,)
    assert len(data.train) == 32 and len(data.val) == 8 and len(data.test) == 9
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == split.y.dtype == torch.float32
        assert split.x.shape[1:] == (21,) and split.y.shape[1:] == (7,)

    # targets: raw torques (the paper's units), train and val partitioning the training file
    assert data.target_mean == data.target_std == () and not data.targets_standardized
    assert torch.equal(data.test.y, torch.from_numpy(test_raw[:, 21:].astype(np.float32)))
    train_rows, val_rows = rows_of(train_raw, data.train.y), rows_of(train_raw, data.val.y)
    assert sorted([*train_rows, *val_rows]) == list(range(40))
    assert list(train_rows) == sorted(train_rows)  # hold-out keeps the file's row order

    # inputs: standardised with the mean / std of all 40 rows of the training file (the
    # statistics do not depend on the hold-out)
    every = train_raw[:, :21].astype(np.float32).astype(np.float64)
    mean, std = every.mean(0), every.std(0)
    kept = every[train_rows]
    assert np.allclose(data.train.x.numpy(), (kept - mean) / std, atol=1e-5)
    test_x = test_raw[:, :21].astype(np.float32).astype(np.float64)
    assert np.allclose(data.test.x.numpy(), (test_x - mean) / std, atol=1e-5)
    both = torch.cat([data.train.x, data.val.x])
    assert torch.allclose(both.mean(0), torch.zeros(21), atol=1e-5)
    assert torch.allclose(both.std(0, correction=0), torch.ones(21), atol=1e-5)
    assert data.eval_transform(data.test.x) is data.test.x  # inputs stored ready to use


def test_sarcos_options(tmp_path: Path, rng: np.random.Generator) -> None:
    train_raw, test_raw = write_sarcos(tmp_path, rng)
    raw_test_targets = torch.from_numpy(test_raw[:, 21:].astype(np.float32))

    scaled = load_dataset("sarcos", data_dir=tmp_path, download=False, standardize_targets=True)
    torques = train_raw[:, 21:].astype(np.float32).astype(np.float64)
    assert np.allclose(scaled.target_mean, torques.mean(0)) and scaled.targets_standardized
    assert np.allclose(scaled.target_std, torques.std(0))
    assert torch.allclose(scaled.train.y.mean(0), torch.zeros(7), atol=1e-5)
    assert torch.allclose(scaled.train.y.std(0, correction=0), torch.ones(7), atol=1e-5)
    back = scaled.targets_in_original_units(scaled.test.y)
    assert torch.allclose(back, raw_test_targets, atol=1e-3)
    assert scaled.to("cpu").target_std == scaled.target_std

    as_is = load_dataset("sarcos", data_dir=tmp_path, download=False, normalize=False)
    assert torch.equal(as_is.test.x, torch.from_numpy(test_raw[:, :21].astype(np.float32)))
    assert torch.equal(as_is.targets_in_original_units(as_is.test.y), raw_test_targets)


def test_sarcos_holdout_follows_the_seed(tmp_path: Path, rng: np.random.Generator) -> None:
    write_sarcos(tmp_path, rng)

    def val_targets(seed: int) -> torch.Tensor:
        return load_dataset(
            "sarcos", data_dir=tmp_path, download=False, val_size=10, seed=seed, normalize=False
        ).val.y

    assert torch.equal(val_targets(0), val_targets(0))
    assert not torch.equal(val_targets(0), val_targets(1))
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("sarcos", data_dir=tmp_path, download=False, val_size=40)


def test_sarcos_csv_copies_read_like_the_mat_files(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    write_sarcos(tmp_path / "mat", np.random.default_rng(5))
    write_sarcos(tmp_path / "csv", np.random.default_rng(5), csv=True)
    from_mat = load_dataset("sarcos", data_dir=tmp_path / "mat", download=False, val_size=4)
    from_csv = load_dataset("sarcos", data_dir=tmp_path / "csv", download=False, val_size=4)
    for name in ("train", "val", "test"):
        a, b = getattr(from_mat, name), getattr(from_csv, name)
        assert torch.allclose(a.x, b.x, atol=1e-5) and torch.equal(a.y, b.y)


def test_sarcos_reader_rejects_other_layouts(tmp_path: Path, rng: np.random.Generator) -> None:
    narrow = tmp_path / "sarcos_inv.mat"
    scipy.io.savemat(narrow, {"sarcos_inv": sarcos_table(rng, 5)[:, :27]})
    with pytest.raises(ValueError, match=r"expected an \(N, 28\) matrix"):
        read_sarcos(narrow)
    renamed = tmp_path / "other" / "sarcos_inv.mat"
    renamed.parent.mkdir()
    scipy.io.savemat(renamed, {"data": sarcos_table(rng, 5)})
    with pytest.raises(ValueError, match=r"no matrix named 'sarcos_inv' \(found \['data'\]\)"):
        read_sarcos(renamed)
    broken = tmp_path / "broken" / "sarcos_inv.mat"
    broken.parent.mkdir()
    broken.write_text("<html>not found</html>")
    with pytest.raises(ValueError, match="not a readable MATLAB file"):
        read_sarcos(broken)
    with_nan = sarcos_table(rng, 5)
    with_nan[2, 3] = np.nan
    scipy.io.savemat(narrow, {"sarcos_inv": with_nan})
    with pytest.raises(ValueError, match="finite"):
        read_sarcos(narrow)


def test_sarcos_missing_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("sarcos", data_dir=tmp_path, download=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("sarcos: expected ")
    assert f"{tmp_path}/sarcos/{{sarcos_inv,sarcos_inv_test}}.mat" in message
    assert "download disabled" in message and "CORRGD_DATA" in message
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_sarcos_failed_download_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(
        DataNotFoundError, match="download failed: cannot resolve www.gaussianprocess.org"
    ) as caught:
        load_dataset("sarcos", data_dir=tmp_path, download=True)
    assert "\n" not in str(caught.value)


def test_sarcos_download_fetches_only_missing_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rng: np.random.Generator
) -> None:
    """Online path, with the network replaced: the test file is fetched to a ``.partial``
    name and renamed; the training file, present as CSV, is not fetched."""
    train_raw, test_raw = write_sarcos(tmp_path, rng, csv=True)
    (tmp_path / "sarcos" / "sarcos_inv_test.csv").unlink()
    fetched: list[tuple[str, str]] = []

    def fake_download_url(url: str, root: str, filename: str) -> None:
        fetched.append((url, filename))
        scipy.io.savemat(Path(root) / filename, {"sarcos_inv_test": test_raw}, appendmat=False)

    monkeypatch.setattr(download_module, "_resolve", lambda host, timeout: None)
    monkeypatch.setattr(sarcos_module, "download_url", fake_download_url)
    data = load_dataset("sarcos", data_dir=tmp_path, download=True, normalize=False)
    url = "http://www.gaussianprocess.org/gpml/data/sarcos_inv_test.mat"
    assert fetched == [(url, "sarcos_inv_test.mat.partial")]
    assert sorted(p.name for p in (tmp_path / "sarcos").iterdir()) == [
        "sarcos_inv.csv",
        "sarcos_inv_test.mat",
    ]
    assert len(data.train) == len(train_raw)
    assert torch.equal(data.test.x, torch.from_numpy(test_raw[:, :21].astype(np.float32)))


# ---------------------------------------------------------------- offline regression sets


def test_diabetes_offline_with_fixed_test_split() -> None:
    data = load_dataset("diabetes", val_size=50, seed=1)
    assert data.task == "regression" and data.num_outputs == data.num_classes == 1
    assert data.input_shape == (10,)
    assert (len(data.train), len(data.val), len(data.test)) == (303, 50, 89)
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == split.y.dtype == torch.float32 and split.y.shape[1:] == (1,)

    # the test rows and their scaling do not depend on the run's seed or hold-out
    other = load_dataset("diabetes", seed=2)
    assert len(other.train) == 353
    assert torch.allclose(
        other.targets_in_original_units(other.test.y),
        data.targets_in_original_units(data.test.y),
        atol=1e-3,
    )

    # targets standardised by default with the statistics of every training row
    ys = torch.cat([data.train.y, data.val.y])
    assert torch.allclose(ys.mean(), torch.zeros(()), atol=1e-5)
    assert torch.allclose(ys.std(correction=0), torch.ones(()), atol=1e-5)
    raw = load_dataset("diabetes", val_size=50, seed=1, standardize_targets=False)
    assert raw.target_mean == () and float(raw.train.y.min()) >= 25
    raw_ys = torch.cat([raw.train.y, raw.val.y]).double()
    assert data.target_mean == pytest.approx((raw_ys.mean().item(),))
    assert torch.allclose(data.targets_in_original_units(data.test.y), raw.test.y, atol=1e-3)
    all_targets = torch.cat([raw.train.y, raw.val.y, raw.test.y])[:, 0].sort().values
    expected = torch.from_numpy(np.sort(sklearn_diabetes().target).astype(np.float32))
    assert torch.equal(all_targets, expected)


def test_synthetic_regression() -> None:
    def load(**options: object) -> DataSplits:
        settings = {"task": "regression", "dim": 21, "n_train": 2000, "n_test": 300}
        return load_dataset("synthetic-correlated", **{**settings, **options})

    data = load()
    assert data.task == "regression" and data.num_outputs == 7 and data.input_shape == (21,)
    assert data.train.y.shape == (2000, 7) and data.test.y.shape == (300, 7)
    assert data.train.y.dtype == torch.float32 and data.target_mean == ()
    assert torch.equal(load().test.y, data.test.y)
    assert not torch.equal(load(data_seed=1).test.y, data.test.y)
    assert torch.equal(load(n_train=500).test.y, data.test.y)

    # noise-free targets are exactly linear in the (raw) inputs; noise adds its variance
    def residual_variance(split_data: DataSplits) -> float:
        x = torch.cat([split_data.train.x, torch.ones(2000, 1)], 1).double()
        y = split_data.train.y.double()
        fit = torch.linalg.lstsq(x, y).solution
        return float((y - x @ fit).var())

    assert residual_variance(load(normalize=False)) < 1e-10
    assert residual_variance(load()) < 1e-10  # standardised inputs: still linear
    assert residual_variance(load(noise=0.5)) == pytest.approx(0.25, rel=0.1)
    three = load(num_outputs=3, standardize_targets=True)
    assert three.num_outputs == 3 and len(three.target_std) == 3
    with pytest.raises(ValueError, match="num_outputs"):
        load(num_classes=3)
    with pytest.raises(ValueError, match="regression"):
        load_dataset("synthetic-correlated", num_outputs=3)
    with pytest.raises(ValueError, match="task"):
        load(task="ranking")


# ---------------------------------------------------------------- classification unchanged


@pytest.mark.parametrize(
    ("name", "options"), [("digits", {}), ("synthetic-correlated", {"n_train": 200})]
)
def test_classification_sets_keep_int64_labels(name: str, options: dict[str, int]) -> None:
    data = load_dataset(name, val_size=20, **options)
    assert data.task == "classification" and data.num_outputs == data.num_classes == 10
    assert data.target_mean == data.target_std == ()
    for split in (data.train, data.val, data.test):
        assert split.y.dtype == torch.int64 and split.y.ndim == 1
        assert split.task == "classification"
    assert data.targets_in_original_units(data.test.y) is data.test.y


def test_dataset_task_without_loading() -> None:
    assert set(dataset_names()) >= REGRESSION_DATASETS == {"sarcos", "diabetes"}
    assert dataset_task("sarcos") == dataset_task("diabetes") == "regression"
    assert dataset_task("digits") == dataset_task("cifar10") == "classification"
    assert dataset_task("synthetic-correlated") == "classification"
    assert dataset_task("synthetic-correlated", task="regression") == "regression"
    with pytest.raises(ValueError, match="known: cifar10"):
        dataset_task("imagenet")


# ---------------------------------------------------------------- container checks


def test_split_accepts_labels_or_float_targets() -> None:
    assert Split(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64)).task == "classification"
    assert Split(torch.zeros(3, 2), torch.zeros(3, 4)).task == "regression"
    with pytest.raises(ValueError, match=r"float32 tensor \(N, k\).*\(N, 1\)"):
        Split(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="int64 class labels.*float32 regression targets"):
        Split(torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="1-D int64"):
        Split(torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="3 inputs but 2 targets"):
        Split(torch.zeros(3, 2), torch.zeros(2, 1))


def test_raw_data_checks_task_and_outputs() -> None:
    regression = Split(torch.zeros(4, 3), torch.zeros(4, 2))
    labels = Split(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64))
    raw = RawData(regression, regression)
    assert raw.task == "regression" and raw.num_outputs == 2 and raw.num_classes == 0
    assert RawData(labels, None, num_classes=5).num_outputs == 5
    with pytest.raises(ValueError, match="leave num_classes at 0"):
        RawData(regression, None, num_classes=2)
    with pytest.raises(ValueError, match="train split is regression data but test split"):
        RawData(regression, labels)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        RawData(labels, None)
    with pytest.raises(ValueError, match="standardize_targets"):
        RawData(labels, None, num_classes=5, standardize_targets=True)
    with pytest.raises(ValueError, match="float32 vectors"):
        RawData(Split(torch.zeros(4, 1, 2, 2), torch.zeros(4, 2)), None, pixel_max=1.0)
    with pytest.raises(ValueError, match="test split has"):
        RawData(regression, Split(torch.zeros(4, 3), torch.zeros(4, 5)))


def test_data_splits_check_regression_outputs() -> None:
    regression = Split(torch.zeros(4, 3), torch.zeros(4, 2))
    data = DataSplits("toy", regression, None, regression, 2, (3,), target_mean=(1, 2),
                      target_std=(3, 4))
    assert data.task == "regression" and data.num_outputs == 2
    assert torch.equal(data.targets_in_original_units(torch.ones(1, 2)), torch.tensor([[4, 6]]))
    with pytest.raises(ValueError, match="num_classes must equal the number of regression"):
        DataSplits("toy", regression, None, None, 3, (3,))
    with pytest.raises(ValueError, match="one value per target"):
        DataSplits("toy", regression, None, None, 2, (3,), target_mean=(0,), target_std=(1,))
    labels = Split(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="classification split in a regression"):
        DataSplits("toy", regression, labels, None, 2, (3,))
    with pytest.raises(ValueError, match="for regression"):
        DataSplits("toy", labels, None, None, 10, (3,), target_mean=(0,), target_std=(1,))
