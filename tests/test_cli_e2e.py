"""The user's workflow through the real CLI, into a temporary SQLite database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corrgd.storage import open_db

TINY = """\
name: tiny
dataset: digits
network: mlp
hidden: [16]
val_size: 200
algorithm: [bp, np]
decor: [false, true]
decor_lr: 1.0e-3
lr: 1.0e-3
seed: 0
epochs: 2
batch_size: 128
"""


def corrgd(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "corrgd", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"corrgd {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def test_sweep_logs_every_epoch_and_split_once_and_rerun_adds_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    out = corrgd("sweep", str(spec), "--db", url, "--workers", "2", cwd=tmp_path).stdout
    assert "4 runs, 4 new" in out

    db = open_db(url)
    runs = db.runs_frame("tiny")
    assert len(runs) == 4 and set(runs["status"]) == {"done"}
    assert set(zip(runs["algorithm"], runs["decor"], strict=True)) == {
        ("bp", False), ("bp", True), ("np", False), ("np", True)}
    epochs = db.epochs_frame("tiny")
    assert len(epochs) == 4 * 3 * 3  # runs x epochs 0..2 x splits
    for _, rows in epochs.groupby("run_id"):
        assert sorted(zip(rows["epoch"], rows["split"], strict=True)) == sorted(
            (e, s) for e in range(3) for s in ("train", "val", "test"))
        assert rows["accuracy"].between(0, 1).all() and (rows["loss"] > 0).all()
        assert (rows[rows["epoch"] == 0]["seconds"] == 0).all()
        assert (rows[(rows["epoch"] > 0) & (rows["split"] == "train")]["seconds"] > 0).all()
    db.close()

    again = corrgd("sweep", str(spec), "--db", url, cwd=tmp_path).stdout
    assert "0 new, 4 already in the database" in again
    assert "nothing to do" in again
    assert len(open_db(url).epochs_frame("tiny")) == len(epochs)


def test_invalid_spec_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY.replace("algorithm: [bp, np]", "algorithm: [bp, sgd]"))
    db_file = tmp_path / "r.sqlite"
    proc = corrgd("sweep", str(spec), "--db", f"sqlite:///{db_file}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(spec) in lines[0] and "algorithm" in lines[0] and "bp, fa" in lines[0]
    assert not db_file.exists()


@pytest.mark.slow
def test_worker_killed_mid_run_resumes_without_duplicates(tmp_path: Path) -> None:
    spec = tmp_path / "long.yaml"
    # batch 16: at batch 8 the CRGD gain, measured on int(0.1 · 8) + 1 = 1 sample, makes
    # this run diverge in epoch 27
    spec.write_text(TINY.replace("epochs: 2", "epochs: 30").replace("batch_size: 128",
                                                                    "batch_size: 16")
                    .replace("algorithm: [bp, np]", "algorithm: bp")
                    .replace("decor: [false, true]", "decor: true").replace("name: tiny",
                                                                            "name: long"))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    corrgd("sweep", str(spec), "--db", url, "--enqueue-only", cwd=tmp_path)
    worker = subprocess.Popen([sys.executable, "-m", "corrgd", "worker", "--db", url],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = open_db(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = db.runs_frame("long")
        if runs["last_epoch"].iloc[0] >= 3:
            break
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = int(db.runs_frame("long")["last_epoch"].iloc[0])
    assert 3 <= killed_at < 30, "the worker must die mid-run"
    assert db.runs_frame("long")["status"].iloc[0] == "running"

    out = corrgd("sweep", str(spec), "--db", url, cwd=tmp_path).stdout
    assert "given back to the queue" in out
    runs = db.runs_frame("long")
    assert runs["status"].iloc[0] == "done" and runs["attempts"].iloc[0] == 2
    epochs = db.epochs_frame("long")
    keys = list(zip(epochs["epoch"], epochs["split"], strict=True))
    assert len(keys) == len(set(keys)) == 31 * 3


def test_missing_data_set_offline_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = corrgd("train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"),
                  "--epochs", "1", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cifar-10-batches-py" in lines[0] and str(tmp_path) in lines[0]


KERNELS_GRID = """\
name: kernels
dataset: digits
val_size: 200
grids:
  - {network: mlp, hidden: [64, 32]}
  - {network: convnet, padding: 1}
algorithm: [bp, fa]
decor: [false, true]
decor_lr: 1.0e-4
lr: [1.0e-3, 1.0e-4]
seed: [0, 1]
epochs: 2
batch_size: 64
"""


def test_gpu_kernels_sweep_ends_with_the_losses_of_the_default_kernels(tmp_path: Path) -> None:
    """`CORRGD_KERNELS=gpu corrgd sweep` (grouped convolutions, batched Adam, row-wise
    evaluation loss, in every worker) on a dense + conv grid: the final losses of BP and FA
    are those of the default (CPU) kernels to 1e-4 relative, in float32 (tests/
    test_kernels.py compares the two sets for every rule in float64)."""
    spec = tmp_path / "kernels.yaml"
    spec.write_text(KERNELS_GRID)
    final = {}
    for kernels in ("auto", "gpu"):
        url = f"sqlite:///{tmp_path / kernels}.sqlite"
        env = {**os.environ, "CORRGD_KERNELS": kernels}
        proc = subprocess.run([sys.executable, "-m", "corrgd", "sweep", str(spec), "--db", url],
                              cwd=tmp_path, env=env, text=True, capture_output=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        db = open_db(url)
        runs, epochs = db.runs_frame("kernels"), db.epochs_frame("kernels", diagnostics=False)
        db.close()
        assert len(runs) == 32 and set(runs["status"]) == {"done"}
        last = epochs[epochs["epoch"] == 2].merge(runs[["run_id", "config_hash"]], on="run_id")
        final[kernels] = {(h, s): loss for h, s, loss in
                          zip(last["config_hash"], last["split"], last["loss"], strict=True)}
    assert final["auto"].keys() == final["gpu"].keys() and len(final["gpu"]) == 32 * 3
    for key, loss in final["auto"].items():
        assert final["gpu"][key] == pytest.approx(loss, rel=1e-4), key


def test_a_bad_kernel_setting_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    env = {**os.environ, "CORRGD_KERNELS": "fast"}
    for args in (["sweep", str(spec)], ["worker"], ["train", "--epochs", "1"]):
        proc = subprocess.run([sys.executable, "-m", "corrgd", *args], cwd=tmp_path, env=env,
                              text=True, capture_output=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0
        assert "CORRGD_KERNELS='fast' is not one of: auto, cpu, gpu" in proc.stderr
    assert list(tmp_path.iterdir()) == [spec]
