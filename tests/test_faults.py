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
from test_integrity import TINY

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


# --- a full disk: one line, no run failed, no partial file; a rerun resumes exactly ----------
CORRGD = f"{sys.executable} -m corrgd"


def in_namespace(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` (sh) in a private mount namespace, where it may mount small file systems."""
    return subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script],
                          cwd=folder, capture_output=True, text=True, timeout=600)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    if subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c",
                       f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
                      capture_output=True).returncode != 0:
        pytest.skip("needs unshare with user and mount namespaces")
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def rows_of(url: str) -> list[tuple]:
    db = open_db(url)
    frame = db.epochs_frame("tiny", diagnostics=False)
    statuses = set(db.runs_frame("tiny")["status"])
    db.close()
    assert statuses == {"done"}, statuses
    return sorted((int(r.run_id), int(r.epoch), r.split, float(r.loss), float(r.accuracy))
                  for r in frame.itertuples())


def reference_rows(folder: Path) -> list[tuple]:
    """The epoch rows of the tiny sweep trained with room to spare."""
    (folder / "reference").mkdir()
    url = f"sqlite:///{folder / 'reference' / 'r.sqlite'}"
    done = subprocess.run([*CORRGD.split(), "sweep", "tiny.yaml", "--db", url,
                           "--checkpoint-dir", "reference/ck", "--workers", "1"],
                          cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return rows_of(url)


def assert_one_line_disk_full(stderr: str, what: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {what}") and \
        "is full (No space left on device); free space and rerun" in lines[0], lines[0]


def test_a_full_checkpoint_disk_stops_the_sweep_and_a_rerun_resumes(tiny: Path) -> None:
    url = f"sqlite:///{tiny / 'results.sqlite'}"
    (tiny / "ck").mkdir()
    # checkpoints of the first epochs fit in 48 KiB, not all 12
    full = in_namespace(tiny, f"mount -t tmpfs -o size=48k tmpfs ck && {CORRGD} sweep "
                        f"tiny.yaml --db {url} --checkpoint-dir ck --workers 1; "
                        "echo exit=$?; ls -a ck/tiny")
    assert "exit=1" in full.stdout, full.stdout + full.stderr
    assert_one_line_disk_full(full.stderr, "the disk holding ck/tiny/")
    left = full.stdout.split("exit=1")[1].split()
    assert not [name for name in left if "tmp" in name], left  # no partial checkpoint
    db = open_db(url)
    assert set(db.runs_frame("tiny")["status"]) <= {"queued", "done"}  # none failed
    db.close()
    # the small disk is gone with its checkpoints: the rerun retrains what the database
    # lacks and tops up the rest, to the very numbers of a run with room to spare
    rerun = subprocess.run([*CORRGD.split(), "sweep", "tiny.yaml", "--db", url,
                            "--checkpoint-dir", "ck", "--workers", "1"],
                           cwd=tiny, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert rows_of(url) == reference_rows(tiny)


def test_a_full_database_disk_stops_the_sweep_and_a_rerun_resumes(tiny: Path) -> None:
    url = "sqlite:///db/results.sqlite"
    (tiny / "db").mkdir()
    # the database on a 2 MiB disk that a filler leaves ~100 KiB of: enough to open it,
    # not to log every epoch; then the filler goes and the sweep is run again
    script = f"""
        mount -t tmpfs -o size=2m tmpfs db && {CORRGD} sweep tiny.yaml --db {url} \\
            --enqueue-only > /dev/null || exit 9
        free=$(df -k --output=avail db | tail -1)
        dd if=/dev/zero of=db/filler bs=4k count=$(( (free - 100) / 4 )) 2> /dev/null
        {CORRGD} sweep tiny.yaml --db {url} --checkpoint-dir ck --workers 1 > /dev/null
        echo "exit=$?" >&2
        rm db/filler
        {CORRGD} sweep tiny.yaml --db {url} --checkpoint-dir ck --workers 1 > /dev/null
        echo "rerun=$?" >&2
        cp db/results.sqlite kept.sqlite
    """
    done = in_namespace(tiny, script)
    first, rest = done.stderr.split("exit=")
    assert rest.split() == ["1", "rerun=0"], done.stderr
    assert_one_line_disk_full(first, "the disk holding ")
    assert rows_of(f"sqlite:///{tiny / 'kept.sqlite'}") == reference_rows(tiny)


def test_a_full_disk_is_told_apart_from_other_errors(tmp_path: Path) -> None:
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from corrgd.run.faults import full_disk

    class PgDiskFull(Exception):
        sqlstate = "53100"  # psycopg's errors.DiskFull

    sqlite_full = sqlite3.OperationalError("database or disk is full")
    sqlite_full.sqlite_errorcode = 13
    sqlite_io = sqlite3.OperationalError("disk I/O error")
    sqlite_io.sqlite_errorcode = 10
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "ck/1.pt")
    assert full_disk(wrapped) == "the disk holding ck/1.pt"
    assert full_disk(OSError(errno.EDQUOT, "Disk quota exceeded")) == "a disk"
    assert full_disk(OperationalError("INSERT", {}, sqlite_full)) == \
        "the disk holding the results database"
    assert full_disk(OperationalError("INSERT", {}, PgDiskFull())) == \
        "the disk holding the results database"
    assert full_disk(OSError(errno.EACCES, "Permission denied", "x")) is None
    # an SQLite I/O error is a full disk only where the disk is full
    assert full_disk(OperationalError("BEGIN", {}, sqlite_io), tmp_path / "r.sqlite") is None
