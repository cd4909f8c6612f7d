"""Beyond one machine, and nothing lost: the real `corrgd` CLI and workers on a shared database.

Every test drives real processes: `corrgd sweep` / `corrgd worker` / `corrgd status` as
subprocesses, on SQLite and on PostgreSQL (CORRGD_TEST_PG_URL, a fresh schema per test), and
on the single-node SLURM cluster of tests/services/slurm.sh (found through $SLURM_CONF or
/tmp/corrgd-slurm/slurm.conf). Tests needing a service are marked `services` and skip when it
is not there. What they check is what matters for a sweep: every run is done, trained by
exactly as many claims as it needed, with exactly one metrics row per epoch and split, and a
run that resumed continued from its checkpoint instead of training again.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from pg_schema import PG_URL, fresh_pg_schema
from slurm_cluster import slurm_conf_or_skip

from corrgd.run.executors import slurm_job_states
from corrgd.run.runner import run
from corrgd.spec.config import RunConfig
from corrgd.storage import MetricRow, ResultsDB, UnknownSweep, open_db

SPLITS = ("train", "val", "test")
HOST = socket.gethostname()

# -- helpers ---------------------------------------------------------------------------


def write_spec(path: Path, name: str, **settings: Any) -> Path:
    """A sweep of tiny digits runs (MLP with one hidden layer of 8 units, no diagnostics)."""
    spec = {"name": name, "dataset": "digits", "network": "mlp", "hidden": [8],
            "val_size": 200, "algorithm": "bp", "diagnostics": False, **settings}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def corrgd(*args: str, cwd: Path, check: bool = True, timeout: float = 240
           ) -> subprocess.CompletedProcess[str]:
    # os.environ as this process sees it: under pytest the C-level environment that
    # children inherit by default has gained COLUMNS=80, which no shell script has
    proc = subprocess.run([sys.executable, "-m", "corrgd", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env=dict(os.environ))
    if check and proc.returncode != 0:
        raise AssertionError(f"corrgd {' '.join(args)} -> {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def start_corrgd(*args: str, cwd: Path, log: Path, threads: int | None = None
                 ) -> subprocess.Popen[bytes]:
    """`corrgd ARGS` in the background, stdout and stderr to `log`."""
    env = dict(os.environ)
    if threads:  # several CPU workers on few cores: oversubscribed threads crawl
        env["OMP_NUM_THREADS"] = str(threads)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "corrgd", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def eventually(check: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def metric_rows(db: ResultsDB, sweep: str) -> pd.DataFrame:
    """Every metrics row of the sweep with its run's config hash."""
    runs = db.runs_frame(sweep)[["run_id", "config_hash"]]
    epochs = db.epochs_frame(sweep, diagnostics=False)
    return epochs.merge(runs, on="run_id", validate="many_to_one")


def assert_complete(db: ResultsDB, sweep: str, n_runs: int, epochs: int) -> pd.DataFrame:
    """Every run done, with exactly one row per epoch 0..epochs and split: none missing, none
    twice. Returns the runs."""
    runs = db.runs_frame(sweep)
    assert len(runs) == n_runs
    assert runs["status"].tolist() == ["done"] * n_runs, runs[["run_id", "status", "error"]]
    assert (runs["last_epoch"] == epochs).all()
    rows = db.epochs_frame(sweep, diagnostics=False)
    expected = sorted((e, s) for e in range(epochs + 1) for s in SPLITS)
    for run_id in runs["run_id"]:
        mine = rows[rows["run_id"] == run_id]
        assert sorted(zip(mine["epoch"], mine["split"], strict=True)) == expected, \
            f"run {run_id}: rows are not exactly epochs 0..{epochs} x {SPLITS}"
    assert len(rows) == n_runs * (epochs + 1) * len(SPLITS)
    assert rows["loss"].notna().all() and rows["accuracy"].between(0, 1).all()
    return runs


def rows_of(db: ResultsDB, run_ids: list[int]) -> dict[tuple[int, int, str], tuple]:
    """(run, epoch, split) -> the row's values, exactly as stored."""
    if not run_ids:
        return {}
    rows = db.epochs_frame(run_ids=run_ids, diagnostics=False)
    return {(int(r.run_id), int(r.epoch), r.split): (r.loss, r.accuracy, r.seconds)
            for r in rows.itertuples()}


def assert_untouched(before: dict[tuple[int, int, str], tuple], db: ResultsDB) -> None:
    """Rows logged before an interruption are still the very same values (down to the
    measured seconds): the resumed attempt started from the checkpoint, it did not train
    those epochs again (that would have rewritten them)."""
    after = rows_of(db, sorted({run_id for run_id, _, _ in before}))
    assert {key: after.get(key) for key in before} == before


def straight_run_rows(config: dict[str, Any]) -> dict[tuple[int, str], tuple[float, float]]:
    """(epoch, split) -> (loss, accuracy) of the config trained in one go, in this process."""
    rows: dict[tuple[int, str], tuple[float, float]] = {}

    class Collect:
        def epoch_end(self, epoch: int, epoch_rows: list[MetricRow],
                      checkpoint: str | None) -> None:
            rows.update({(epoch, r.split): (r.loss, r.accuracy) for r in epoch_rows})

        def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
            pass

    run(RunConfig(**config), reporter=Collect())
    return rows


@pytest.fixture(params=[
    "sqlite",
    pytest.param("postgresql", marks=[
        pytest.mark.services,
        pytest.mark.skipif(not PG_URL, reason="CORRGD_TEST_PG_URL is not set")]),
])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database shared by processes: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.sqlite'}"
    else:
        with fresh_pg_schema() as url:
            yield url


# -- 1. many workers, one queue: every run exactly once --------------------------------


@pytest.mark.slow
def test_four_workers_run_every_run_exactly_once(db_url: str, tmp_path: Path) -> None:
    # Ten groups of 4 for four workers, each long enough (80 steps an epoch; ~2.5 s for
    # one worker in all) that the first worker to start cannot drain the queue before the
    # others have imported torch: with 3 steps an epoch, one worker once trained all 40.
    epochs = 3
    spec = write_spec(tmp_path / "many.yaml", "many", lr=[1e-3, 1e-2], seed=list(range(20)),
                      epochs=epochs, batch_size=16, hidden=[128, 128])
    out = corrgd("sweep", str(spec), "--db", db_url, "--workers", "4", "--group-size", "4",
                 cwd=tmp_path).stdout

    assert "40 runs, 40 new" in out and "4 local workers" in out
    db = open_db(db_url)
    runs = assert_complete(db, "many", n_runs=40, epochs=epochs)
    assert runs["attempts"].tolist() == [1] * 40  # claimed once each, by one worker
    assert runs["worker"].nunique() > 1, "the workers did not share the queue"
    assert set(runs["worker"].str.rpartition(":")[0]) == {HOST}
    spans = list(zip(runs["worker"], runs["started_at"], runs["finished_at"], strict=True))
    assert any(w1 != w2 and s1 < f2 and s2 < f1  # two workers training at the same time
               for w1, s1, f1 in spans for w2, s2, f2 in spans), "the workers never overlapped"
    db.close()


# -- 2. kill -9 at random moments, then rerun: nothing lost, nothing twice ---------------


@pytest.mark.slow
def test_workers_killed_at_random_moments_lose_nothing_after_rerun(
        db_url: str, tmp_path: Path, single_thread: None) -> None:
    rng = random.Random(20240611)
    epochs, n_runs = 3, 40
    spec = write_spec(tmp_path / "kill.yaml", "kill", seed=list(range(n_runs)), epochs=epochs,
                      batch_size=16, lr=1e-2)
    corrgd("sweep", str(spec), "--db", db_url, "--enqueue-only", cwd=tmp_path)
    db = open_db(db_url)
    log = tmp_path / "workers.log"
    # Groups of 4 runs (the 40 runs differ only in their seed): a kill takes a whole group.
    workers = [start_corrgd("worker", "--db", db_url, "--sweep", "kill", "--group-size", "4",
                            cwd=tmp_path, log=log, threads=1) for _ in range(4)]
    # Two kills, each once a random number of runs is done: SIGKILL a random worker that
    # is training a group, a random moment after seeing it do so.
    thresholds = sorted(rng.sample(range(2, 25), 2))
    killed: list[str] = []  # their worker ids, host:pid
    deadline = time.monotonic() + 180
    try:
        for threshold in thresholds:
            while True:
                assert time.monotonic() < deadline, f"sweep stalled; see {log}"
                runs = db.runs_frame("kill")
                busy = set(runs.loc[runs["status"] == "running", "worker"])
                candidates = [p for p in workers
                              if p.poll() is None and f"{HOST}:{p.pid}" in busy]
                if (runs["status"] == "done").sum() >= threshold and candidates:
                    break
                time.sleep(0.05)
            victim = rng.choice(candidates)
            time.sleep(rng.uniform(0.0, 0.1))
            victim.send_signal(signal.SIGKILL)
            victim.wait()  # reaped: its pid is gone, not a zombie
            killed.append(f"{HOST}:{victim.pid}")
            workers.remove(victim)
        for proc in workers:  # the survivors drain the queue and exit
            assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, log.read_text()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    runs = db.runs_frame("kill")
    orphans = runs[(runs["status"] == "running") & runs["worker"].isin(killed)]
    assert len(killed) == 2
    assert len(orphans) >= 1, "no kill landed while a run was in flight"
    assert set(runs["status"]) <= {"done", "running"}
    assert (runs["status"] == "running").sum() == len(orphans)
    orphan_ids = [int(r) for r in orphans["run_id"]]
    before = rows_of(db, orphan_ids)

    out = corrgd("sweep", str(spec), "--db", db_url, "--workers", "1", cwd=tmp_path).stdout

    assert f"{len(orphans)} runs of dead workers given back to the queue" in out
    runs = assert_complete(db, "kill", n_runs=n_runs, epochs=epochs)
    attempts = dict(zip(runs["run_id"], runs["attempts"], strict=True))
    assert {r: a for r, a in attempts.items() if r in orphan_ids} == dict.fromkeys(orphan_ids, 2)
    assert {a for r, a in attempts.items() if r not in orphan_ids} == {1}
    assert_untouched(before, db)
    # and a resumed run ends exactly where the same run trained in one go ends
    rows = db.epochs_frame("kill", diagnostics=False)
    for run_id in orphan_ids:
        config = runs.loc[runs["run_id"] == run_id, "config"].iloc[0]
        mine = rows[rows["run_id"] == run_id]
        logged = {(int(r.epoch), r.split): (r.loss, r.accuracy) for r in mine.itertuples()}
        straight = straight_run_rows(config)
        assert logged.keys() == straight.keys()
        for key, (loss, acc) in straight.items():
            assert logged[key] == (pytest.approx(loss, rel=1e-5), pytest.approx(acc)), key
    db.close()


# -- SLURM (tests/services/slurm.sh start) -----------------------------------------------


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    """A reachable SLURM cluster, with SLURM_CONF set for the CLI and its jobs."""
    conf = slurm_conf_or_skip()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", conf)
        # jobs inherit the environment: the test cluster runs many one-CPU jobs on few cores,
        # where torch's default of a thread per core would make them spin and crawl
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@contextlib.contextmanager
def shared_database(folder: Path) -> Iterator[str]:
    """A database SLURM jobs can reach: a PostgreSQL schema, else a SQLite file by absolute
    path (the jobs run on this machine)."""
    if PG_URL:
        with fresh_pg_schema() as url:
            yield url
    else:
        yield f"sqlite:///{folder.resolve() / 'results.sqlite'}"


@dataclass
class SlurmSweep:
    url: str
    folder: Path
    spec: Path
    out: str  # what `corrgd sweep` printed
    epochs: int
    n_runs: int


def slurm_args(folder: Path, *extra: str) -> list[str]:
    return ["--executor", "slurm", "--time", "10", "--slurm-folder", str(folder / "slurm"),
            "--checkpoint-dir", str(folder / "checkpoints"), *extra]


def submitted_jobs(out: str) -> list[str]:
    """Job ids from `corrgd sweep`'s "submitted SLURM array of N workers: 12_0, 12_1 ..."."""
    match = re.search(r"submitted SLURM array of \d+ workers: ([^\n]*)", out)
    return re.findall(r"\d+(?:_\d+)?", match[1]) if match else []


def cancel_array(*job_ids: str) -> None:
    """Cancel (whole arrays of) jobs this test submitted, e.g. after a failed assertion."""
    arrays = sorted({job.split("_")[0] for job in job_ids})
    if arrays:
        subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def slurm_sweep(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[SlurmSweep]:
    """A tiny sweep run to the end by `corrgd sweep --executor slurm` (two array tasks)."""
    folder = tmp_path_factory.mktemp("slurm-sweep")
    spec = write_spec(folder / "tiny.yaml", "tiny-slurm", lr=[1e-3, 1e-2], seed=[0, 1, 2],
                      epochs=2, batch_size=256)
    with shared_database(folder) as url:
        proc = corrgd("sweep", str(spec), "--db", url, "--workers", "2",
                      *slurm_args(folder), cwd=folder, check=False)
        try:
            assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
            yield SlurmSweep(url, folder, spec, proc.stdout, epochs=2, n_runs=6)
        finally:
            cancel_array(*submitted_jobs(proc.stdout))


# -- 3. the same sweep on SLURM and locally: the same rows --------------------------------


@pytest.mark.services
@pytest.mark.slow
def test_sweep_on_slurm_logs_the_same_rows_as_locally(slurm_sweep: SlurmSweep,
                                                      tmp_path: Path) -> None:
    jobs = submitted_jobs(slurm_sweep.out)
    assert len(jobs) == 2
    db = open_db(slurm_sweep.url)
    slurm_runs = assert_complete(db, "tiny-slurm", slurm_sweep.n_runs, slurm_sweep.epochs)
    assert (slurm_runs["attempts"] == 1).all()
    assert set(slurm_runs["slurm_job_id"]) <= set(jobs)  # every run ran in one of our jobs
    on_slurm = metric_rows(db, "tiny-slurm")
    db.close()

    local_url = f"sqlite:///{tmp_path / 'local.sqlite'}"
    corrgd("sweep", str(slurm_sweep.spec), "--db", local_url, "--workers", "2", cwd=tmp_path)
    local_db = open_db(local_url)
    local_runs = assert_complete(local_db, "tiny-slurm", slurm_sweep.n_runs, slurm_sweep.epochs)
    assert local_runs["slurm_job_id"].isna().all()
    local = metric_rows(local_db, "tiny-slurm")
    local_db.close()

    def by_key(rows: pd.DataFrame) -> dict[tuple[str, int, str], tuple[float, float]]:
        return {(r.config_hash, int(r.epoch), r.split): (r.loss, r.accuracy)
                for r in rows.itertuples()}

    slurm_values, local_values = by_key(on_slurm), by_key(local)
    assert slurm_values.keys() == local_values.keys()
    assert len(slurm_values) == slurm_sweep.n_runs * (slurm_sweep.epochs + 1) * len(SPLITS)
    for key, (loss, accuracy) in local_values.items():
        assert slurm_values[key] == (pytest.approx(loss, rel=1e-4, abs=1e-6),
                                     pytest.approx(accuracy, abs=1e-3)), key


# -- 6. corrgd status: SLURM job ids and states next to the runs' -----------------------


def status_lines(url: str, sweep: str, cwd: Path) -> dict[int, str]:
    """`corrgd status --sweep` as a script would read it: run id -> its table line."""
    out = corrgd("status", "--db", url, "--sweep", sweep, cwd=cwd).stdout
    lines: dict[int, str] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0].isdigit():
            lines[int(cells[0])] = " ".join(cells)
    return lines


@pytest.mark.services
@pytest.mark.slow
def test_status_shows_slurm_job_ids_and_states(slurm_sweep: SlurmSweep) -> None:
    db = open_db(slurm_sweep.url)
    runs = db.runs_frame("tiny-slurm")
    db.close()

    lines = status_lines(slurm_sweep.url, "tiny-slurm", slurm_sweep.folder)

    assert sorted(lines) == sorted(int(r) for r in runs["run_id"])
    for row in runs.itertuples():
        assert re.search(rf"\bdone\b.*\b{row.slurm_job_id} COMPLETED\b", lines[row.run_id]), \
            lines[row.run_id]


# -- 4. scancel mid-run, then rerun: the run resumes from its checkpoint ------------------

LONG = {"lr": 1e-3, "seed": 0, "epochs": 100, "batch_size": 2}  # ~10 s of training


def job_processes_gone(job: str) -> bool:
    """Whether SLURM has killed the job's processes. sacct says CANCELLED at once, but
    the worker ignores SIGTERM (submitit does) and trains on until SIGKILL, KillWait later."""
    listed = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                            text=True, timeout=30).stdout.split()
    return not set(listed) & {"RUNNING", "COMPLETING", "PENDING"}


def wait_for_job_to_train(db: ResultsDB, sweep: str, min_epoch: int,
                          timeout: float = 120) -> str:
    """The SLURM job id of the sweep's only run once it has logged `min_epoch`."""
    def training() -> bool:
        try:
            runs = db.runs_frame(sweep)
        except UnknownSweep:  # `corrgd sweep` has not enqueued it yet
            return False
        return runs["status"].iloc[0] == "running" and runs["last_epoch"].iloc[0] >= min_epoch

    eventually(training, timeout, f"the run to reach epoch {min_epoch}")
    job = db.runs_frame(sweep)["slurm_job_id"].iloc[0]
    assert isinstance(job, str) and job
    return job


@pytest.mark.services
@pytest.mark.slow
def test_scancelled_job_is_recovered_by_rerunning_the_sweep(slurm_cluster: None,
                                                            tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "cancel.yaml", "cancel", **LONG)
    log = tmp_path / "sweep.log"
    with shared_database(tmp_path) as url:
        db = open_db(url)
        sweep = start_corrgd("sweep", str(spec), "--db", url, "--workers", "1",
                             *slurm_args(tmp_path), cwd=tmp_path, log=log)
        job = ""
        try:
            job = wait_for_job_to_train(db, "cancel", min_epoch=2)

            subprocess.run(["scancel", job], check=True, timeout=30)
            # the waiting `corrgd sweep` sees its job end (cancelled, no longer queued), gives
            # the run back to the queue at once and ends with it unfinished
            assert sweep.wait(timeout=180) == 1, log.read_text()
            assert "1 runs of dead workers back in the queue" in log.read_text()
            assert "1 unfinished" in log.read_text()
            eventually(lambda: slurm_job_states([job])[job] == "CANCELLED", 30, "CANCELLED")
            eventually(lambda: job_processes_gone(job), 60, "the job's processes to end")
            runs = db.runs_frame("cancel")
            assert runs["status"].iloc[0] == "queued"
            assert 2 <= runs["last_epoch"].iloc[0] < LONG["epochs"], "not killed mid-run"
            [line] = status_lines(url, "cancel", tmp_path).values()
            assert re.search(rf"\bqueued\b.*\b{job} CANCELLED\b", line), line
            before = rows_of(db, [int(runs["run_id"].iloc[0])])

            out = corrgd("sweep", str(spec), "--db", url, "--workers", "1",
                         *slurm_args(tmp_path), cwd=tmp_path).stdout

            runs = assert_complete(db, "cancel", n_runs=1, epochs=LONG["epochs"])
            assert runs["attempts"].iloc[0] == 2
            assert runs["slurm_job_id"].iloc[0] in submitted_jobs(out)  # finished by the new job
            assert_untouched(before, db)
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()
            cancel_array(job, *submitted_jobs(log.read_text()))
            db.close()


# -- 5. preemption: the signalled worker gives its run back and is requeued ---------------


@pytest.mark.services
@pytest.mark.slow
def test_preempted_worker_gives_its_run_back_and_resumes_after_requeue(
        slurm_cluster: None, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "preempt.yaml", "preempt", **LONG)
    log = tmp_path / "sweep.log"
    with shared_database(tmp_path) as url:
        db = open_db(url)
        sweep = start_corrgd("sweep", str(spec), "--db", url, "--workers", "1",
                             *slurm_args(tmp_path), cwd=tmp_path, log=log)
        job = ""
        try:
            job = wait_for_job_to_train(db, "preempt", min_epoch=2)

            # what SLURM sends a job before preempting it (or at its time limit)
            subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)

            # the worker gives its run back before it goes: the run waits in the queue,
            # with its progress, until the requeued job starts again
            eventually(lambda: db.runs_frame("preempt")["status"].iloc[0] == "queued", 30,
                       "the run to be given back", interval=0.05)
            released = db.runs_frame("preempt").iloc[0]
            assert released["worker"] is None and released["attempts"] == 1
            assert 2 <= released["last_epoch"] < LONG["epochs"]
            assert released["checkpoint_path"].startswith(str(tmp_path / "checkpoints"))
            before = rows_of(db, [int(released["run_id"])])

            assert sweep.wait(timeout=240) == 0, log.read_text()  # the sweep finishes

            runs = assert_complete(db, "preempt", n_runs=1, epochs=LONG["epochs"])
            assert runs["attempts"].iloc[0] == 2
            assert runs["slurm_job_id"].iloc[0] == job  # the same job, requeued
            assert_untouched(before, db)

            def history() -> list[str]:
                return subprocess.run(
                    ["sacct", "-D", "-X", "-n", "-P", "--format=State", "-j", job],
                    capture_output=True, text=True, check=True, timeout=30).stdout.split()

            # the job has written its result; SLURM marks it COMPLETED once its process ends
            eventually(lambda: history()[-1] == "COMPLETED", 30, "the job to complete")
            assert history()[0] == "REQUEUED", history()
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait()
            cancel_array(job, *submitted_jobs(log.read_text()))
            db.close()
