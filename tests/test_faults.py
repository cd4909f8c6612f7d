"""Workers that die or work beside a sweep: `corrgd sweep` notices a local worker killed
with SIGKILL at once, gives its runs back and finishes them (with its live workers or a
replacement), and waits for runs that a live `corrgd worker` outside it holds. Every run
ends done, with every epoch row once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corrgd.storage import ResultsDB, open_db

pytestmark = pytest.mark.slow

SPEC = """\
name: {name}
dataset: digits
network: mlp
hidden: [32]
val_size: 200
algorithm: bp
decor: true
decor_lr: 1.0e-3
lr: [1.0e-3, 3.0e-4]
seed: [0, 1, 2, 3]
batch_size: 16
diagnostics: false
"""


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "corrgd", *args], cwd=cwd,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_until(condition, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_complete(db: ResultsDB, sweep: str, epochs: int) -> None:
    runs = db.runs_frame(sweep)
    assert set(runs["status"]) == {"done"}, runs[["run_id", "status", "error"]]
    rows = db.epochs_frame(sweep, diagnostics=False)
    keys = list(zip(rows["run_id"], rows["epoch"], rows["split"], strict=True))
    assert len(keys) == len(set(keys)) == len(runs) * (epochs + 1) * 3


def test_a_killed_local_worker_is_noticed_and_its_runs_finished(tmp_path: Path) -> None:
    (tmp_path / "kill.yaml").write_text(SPEC.format(name="kill") + "epochs: 6\n")
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    log = tmp_path / "sweep.log"
    sweep = start(["sweep", "kill.yaml", "--db", url, "--workers", "2", "--group-size", "2"],
                  tmp_path, log)
    db = open_db(url)

    def training() -> bool:
        try:
            runs = db.runs_frame("kill")
        except Exception:  # not enqueued yet
            return False
        return bool(((runs["status"] == "running") & (runs["last_epoch"] >= 1)).any())

    wait_until(training, 120, "a run to train")
    running = db.runs_frame("kill")
    victim = running.loc[running["status"] == "running", "worker"].iloc[0]
    os.kill(int(victim.rpartition(":")[2]), signal.SIGKILL)
    assert sweep.wait(timeout=300) == 0, log.read_text()
    out = log.read_text()
    assert "runs of dead workers back in the queue" in out
    assert "8 done, 0 diverged, 0 failed, 0 unfinished of 8" in out
    assert_complete(db, "kill", epochs=6)
    runs = db.runs_frame("kill")
    assert runs["attempts"].max() == 2  # the killed worker's runs, claimed once more


def test_a_sweep_waits_for_runs_a_worker_outside_it_holds(tmp_path: Path) -> None:
    text = SPEC.format(name="beside").replace("seed: [0, 1, 2, 3]", "seed: 0") + \
        "grids:\n  - {lr: 1.0e-3, epochs: 60}\n  - {lr: 3.0e-4, epochs: 1}\n"
    (tmp_path / "beside.yaml").write_text(text)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    enqueued = subprocess.run([sys.executable, "-m", "corrgd", "sweep", "beside.yaml", "--db",
                               url, "--enqueue-only"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
    assert enqueued.returncode == 0, enqueued.stderr
    outside = start(["worker", "--db", url, "--sweep", "beside", "--group-size", "1",
                     "--max-runs", "1"], tmp_path, tmp_path / "worker.log")
    db = open_db(url)
    # the outside worker takes the long run (the queue hands out the most work first)
    wait_until(lambda: (db.runs_frame("beside")["status"] == "running").any(), 120,
               "the outside worker to claim a run")
    log = tmp_path / "sweep.log"
    sweep = start(["sweep", "beside.yaml", "--db", url, "--workers", "1"], tmp_path, log)
    assert sweep.wait(timeout=300) == 0, log.read_text()
    assert outside.wait(timeout=60) == 0
    out = log.read_text()
    assert "waiting for 1 runs held by other workers" in out, out
    assert "2 done, 0 diverged, 0 failed, 0 unfinished of 2" in out
    runs = db.runs_frame("beside").set_index("run_id")
    assert (runs["attempts"] == 1).all()  # nothing taken from the live worker
