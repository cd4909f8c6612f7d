"""A worker drains the run queue: claim a run, train it, log every epoch, repeat.

Any number of workers, on one machine or many, share one results database:
claiming is atomic, a heartbeat thread keeps the claim alive while a run
trains, and a run whose worker died is handed out again after the lease
expires and resumes from its checkpoint (a path in the database, on storage
every worker can read).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from pathlib import Path
from typing import Any

import torch

from corrgd.config import RunConfig
from corrgd.data import DataSplits
from corrgd.runner import data_key, load_data, run
from corrgd.storage import ClaimedRun, LostLease, ResultsDB, default_worker_id, open_db

log = logging.getLogger(__name__)

DEFAULT_LEASE = 120.0
DEFAULT_CHECKPOINT_DIR = "results/checkpoints"


class Interrupted(Exception):
    """The worker was asked to stop while a run was in flight."""


class _DBReporter:
    """Runner callback that writes each finished epoch in one transaction, and stops the
    run between steps when the worker is asked to stop."""

    def __init__(self, db: ResultsDB, run_id: int, worker: str,
                 stop: threading.Event | None) -> None:
        self.db, self.run_id, self.worker, self.stop = db, run_id, worker, stop

    def epoch_end(self, epoch: int, rows: list[dict[str, Any]], checkpoint: str | None) -> None:
        self.db.log_epoch(self.run_id, epoch, rows, self.worker, checkpoint)

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted


class _Heartbeat(threading.Thread):
    """Beats for one run every `interval` seconds until stopped, or the lease is lost."""

    def __init__(self, db: ResultsDB, run_id: int, worker: str, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.db, self.run_id, self.worker, self.interval = db, run_id, worker, interval
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.db.heartbeat(self.run_id, self.worker)
            except LostLease:
                self.lost = True
                return
            except Exception:  # a missed beat is not fatal; the lease is long
                log.warning("heartbeat for run %d failed", self.run_id, exc_info=True)


class Worker:
    def __init__(self, db: ResultsDB | str | None = None, *, sweep: str | None = None,
                 device: str = "cpu", lease_seconds: float = DEFAULT_LEASE,
                 data_dir: str | None = None,
                 checkpoint_dir: str | Path = DEFAULT_CHECKPOINT_DIR) -> None:
        self.db = db if isinstance(db, ResultsDB) else open_db(db)
        self.sweep, self.device, self.lease = sweep, device, lease_seconds
        self.data_dir = data_dir
        self.checkpoint_dir = Path(checkpoint_dir)
        self.id = default_worker_id()
        self.current: ClaimedRun | None = None
        self._data_key: tuple | None = None
        self._data: DataSplits | None = None

    def run(self, max_runs: int | None = None, stop: threading.Event | None = None) -> int:
        """Train queued runs until the queue is empty (or `max_runs`, or `stop`)."""
        finished = 0
        while (max_runs is None or finished < max_runs) and not (stop and stop.is_set()):
            claimed = self.db.claim_run(self.id, self.device, sweep=self.sweep,
                                        lease_seconds=self.lease, slurm_job_id=_slurm_job_id())
            if claimed is None:
                break
            self.current = claimed
            try:
                self.execute(claimed, stop)
            except Interrupted:
                self.release()
                break
            finally:
                self.current = None
            finished += 1
        return finished

    def release(self) -> None:
        """Give the run in flight back to the queue (on preemption or Ctrl-C)."""
        if self.current is not None:
            with contextlib.suppress(LostLease):
                self.db.release_run(self.current.run_id, self.id)
            self.current = None

    def execute(self, claimed: ClaimedRun, stop: threading.Event | None = None) -> None:
        beat = _Heartbeat(self.db, claimed.run_id, self.id, interval=self.lease / 4)
        beat.start()
        try:
            config = RunConfig(**claimed.config)
            checkpoint = claimed.checkpoint_path or str(
                self.checkpoint_dir / claimed.sweep / f"{claimed.config_hash}.pt")
            result = run(config, device=self.device, checkpoint=checkpoint,
                         reporter=_DBReporter(self.db, claimed.run_id, self.id, stop),
                         data=self._dataset(config))
            self.db.finish_run(claimed.run_id, result.status, worker=self.id)
        except LostLease:
            log.warning("run %d was handed to another worker; dropping it", claimed.run_id)
        except (KeyboardInterrupt, Interrupted):
            self.release()
            raise
        except Exception as e:
            log.exception("run %d failed", claimed.run_id)
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"
            with contextlib.suppress(LostLease):
                self.db.finish_run(claimed.run_id, "failed", error, worker=self.id)
        finally:
            beat.stopped.set()

    def _dataset(self, config: RunConfig) -> DataSplits:
        """Load the run's data, reusing the last set when the next run needs the same."""
        key = data_key(config)
        if key != self._data_key:
            self._data = None  # free the previous set first
            self._data = load_data(config, self.data_dir)
            self._data_key = key
        assert self._data is not None
        return self._data


def _slurm_job_id() -> str | None:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


class WorkerTask:
    """The picklable entry point executors start: one `Worker` per call. `release` (the
    preemption hook) gives the run in flight back to the queue."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def __call__(self, db_url: str, *, sweep: str | None = None, device: str = "cpu",
                 lease_seconds: float = DEFAULT_LEASE, max_runs: int | None = None,
                 stop: threading.Event | None = None, data_dir: str | None = None,
                 checkpoint_dir: str = DEFAULT_CHECKPOINT_DIR, threads: int | None = None) -> int:
        if threads:  # CPU workers sharing a machine: oversubscribed threads spin and crawl
            torch.set_num_threads(threads)
        self.worker = Worker(db_url, sweep=sweep, device=device, lease_seconds=lease_seconds,
                             data_dir=data_dir, checkpoint_dir=checkpoint_dir)
        return self.worker.run(max_runs, stop)

    def release(self, timeout: float = 10.0) -> None:
        """Runs in a signal handler: if the interrupted main thread holds a database lock,
        a release in this thread would wait on it forever. So release from a helper
        thread and wait at most `timeout`; failing that, the run's lease expires."""
        if self.worker is not None:
            helper = threading.Thread(target=self.worker.release, daemon=True)
            helper.start()
            helper.join(timeout)


def run_worker(db_url: str | None = None, *, sweep: str | None = None, device: str = "cpu",
               lease_seconds: float = DEFAULT_LEASE, max_runs: int | None = None,
               stop: threading.Event | None = None, data_dir: str | None = None,
               checkpoint_dir: str | Path = DEFAULT_CHECKPOINT_DIR) -> int:
    """Drain the queue in this process; returns the number of runs finished."""
    return WorkerTask()(db_url, sweep=sweep, device=device, lease_seconds=lease_seconds,
                        max_runs=max_runs, stop=stop, data_dir=data_dir,
                        checkpoint_dir=checkpoint_dir)
