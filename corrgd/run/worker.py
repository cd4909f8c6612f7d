"""A worker drains the run queue: claim a group of runs, train it, log every epoch, repeat.

A group is runs of one sweep whose configs differ only in per-member settings
(`corrgd.spec.config.PER_MEMBER`); they train together as one batched model
(`corrgd.run.runner.train_group`). Any number of workers, on one machine or many,
share one results database: claiming a group is atomic, a heartbeat thread
keeps the claim of every member alive while the group trains, every member's
epoch rows are written in one transaction per epoch, and a group whose worker
died is handed out again after the lease expires and resumes, each member from
its own checkpoint (a path in the database, on storage every worker can read).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from corrgd.run import DEFAULT_CHECKPOINT_DIR, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS
from corrgd.run.cores import fair_threads, registered
from corrgd.run.devices import free_bytes
from corrgd.run.faults import DiskFull, full_disk
from corrgd.run.malloc import keep_freed_memory
from corrgd.spec.config import RunConfig
from corrgd.spec.sizing import auto_group_size
from corrgd.storage import (
    ClaimedRun,
    EpochEntry,
    MetricRow,
    ResultsDB,
    RunOutcome,
    default_worker_id,
    open_db,
)

if TYPE_CHECKING:
    from corrgd.data import DataSplits
    from corrgd.run.runner import MemberEpoch, Refill

# The training stack (torch, corrgd.run.runner) is imported where a group is trained, not with
# this module: the CLI and `corrgd.run.launch` import it to start workers, and must not wait
# seconds for torch before they can.

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """The worker was asked to stop while a group was in flight."""


class Cancelled(Exception):
    """The sweep of the group in flight was cancelled (`corrgd cancel`)."""


class WorkerEvents(Protocol):
    """What a worker tells whoever follows it (`corrgd worker` and `corrgd train` print
    it): each epoch a run finished, once it is written, and how each run ended."""

    def epoch(self, run: ClaimedRun, epoch: int, rows: list[MetricRow]) -> None: ...

    def ended(self, run: ClaimedRun, status: str, error: str | None = None) -> None: ...


class _DBReporter:
    """Runner callback that writes each finished epoch of every member in one transaction,
    finishes the runs that ended in it (done, diverged or pruned: the others of a group may
    train on, and runs may join it), and stops the group between steps when the worker is
    asked to stop."""

    def __init__(self, db: ResultsDB, group: list[ClaimedRun], worker: str,
                 stop: threading.Event | None, events: WorkerEvents | None) -> None:
        self.db, self.group, self.worker, self.stop = db, group, worker, stop
        self.events = events
        self.ended: set[int] = set()  # ids of the runs finished here

    def epoch_end(self, members: list[MemberEpoch]) -> list[int]:
        """Log the epoch of every member in one transaction (which also makes the rung
        decisions of a pruning sweep); returns the members pruned there."""
        lost = self.db.log_epochs([EpochEntry(self.group[m.member].run_id, m.epoch, m.rows,
                                              m.checkpoint) for m in members], self.worker)
        if lost:
            log.warning("runs %s were handed to another worker; not logging them", lost)
        if self.events is not None:
            for m in members:
                if self.group[m.member].run_id not in lost:
                    self.events.epoch(self.group[m.member], m.epoch, m.rows)
        if self.db.cancelled_runs([c.run_id for c in self.group]):
            raise Cancelled
        pruning = [self.group[m.member].run_id for m in members
                   if self.group[m.member].prune_key is not None and m.status == "running"]
        pruned = set(self.db.pruned_runs(pruning)) if pruning else set()
        # pruned runs were finished by the transaction that logged their rung
        outcomes = [RunOutcome(self.group[m.member].run_id, m.status) for m in members
                    if m.status != "running"]
        gone = set(lost) | set(self.db.finish_runs(outcomes, self.worker) if outcomes else ())
        for m in members:
            run = self.group[m.member]
            if m.status != "running" or run.run_id in pruned:
                self.ended.add(run.run_id)
                if self.events is not None and run.run_id not in gone:
                    self.events.ended(run, "pruned" if m.status == "running" else m.status)
        return [m.member for m in members if self.group[m.member].run_id in pruned]

    def progress(self, epoch: int, step: int, steps: int, losses: list[float]) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Interrupted


class _Heartbeat(threading.Thread):
    """Beats for a group's runs every `interval` seconds until stopped."""

    def __init__(self, db: ResultsDB, run_ids: list[int], worker: str, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_ids[0]}")
        self.db, self.run_ids, self.worker, self.interval = db, run_ids, worker, interval
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def add(self, run_ids: list[int]) -> None:
        """Beat for these runs too (runs that joined the group)."""
        with self.lock:
            self.run_ids = self.run_ids + run_ids

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                run_ids = list(self.run_ids)
            if not run_ids:  # until runs join the group, or it ends
                continue
            try:
                lost = set(self.db.heartbeat_runs(run_ids, self.worker))
                with self.lock:
                    self.run_ids = [r for r in self.run_ids if r not in lost]
            except Exception:  # a missed beat is not fatal; the lease is long
                log.warning("heartbeat for runs %s failed", run_ids, exc_info=True)


class Worker:
    """Claims groups of at most `group_size` runs (None: as many as fit the device's
    memory, `corrgd.spec.sizing.auto_group_size`; 1: one run at a time). With `refill`
    (the default), a group that has shrunk (members done, diverged or pruned) takes on
    queued runs of its sweep and group key after an epoch, up to its first size."""

    def __init__(self, db: ResultsDB | str | None = None, *, sweep: str | None = None,
                 device: str = "cpu", lease_seconds: float = DEFAULT_LEASE,
                 data_dir: str | None = None,
                 checkpoint_dir: str | Path = DEFAULT_CHECKPOINT_DIR,
                 group_size: int | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 events: WorkerEvents | None = None, threads: int | None = None,
                 refill: bool = True) -> None:
        self.db = db if isinstance(db, ResultsDB) else open_db(db)
        self.refill = refill
        self.events = events
        self.max_attempts = max_attempts
        self.sweep, self.device, self.lease = sweep, device, lease_seconds
        self.data_dir = data_dir
        self.checkpoint_dir = Path(checkpoint_dir)
        self.group_size = group_size
        self.threads = threads
        self.id = default_worker_id()
        self.current: list[ClaimedRun] = []
        self._data_key: tuple | None = None
        self._data: DataSplits | None = None

    def members_for(self, config: dict[str, Any], left: int | None = None) -> int:
        """The group size for runs like `config`, at most `left`."""
        size = self.group_size or auto_group_size(RunConfig(**config), self.device,
                                                  free_bytes(self.device) or 0)
        return size if left is None else min(size, left)

    def run(self, max_runs: int | None = None, stop: threading.Event | None = None) -> int:
        """Train queued groups until the queue is empty (or `max_runs` runs, or `stop`);
        returns the number of runs finished."""
        try:
            with registered() if self.device == "cpu" else contextlib.nullcontext():
                return self._run(max_runs, stop)
        except Exception as e:  # the database's disk full, say, while claiming
            if isinstance(e, DiskFull) or (what := full_disk(e)) is None:
                raise
            raise DiskFull.of(what, e) from e

    def share_cores(self) -> None:
        """A CPU worker's torch threads: `threads` if given, else its fair share of the
        machine's cores among the CPU workers running on it now (`corrgd.run.cores`),
        looked at before each group: oversubscribed threads spin and crawl."""
        if self.device == "cpu":
            import torch

            torch.set_num_threads(self.threads or fair_threads())

    def _run(self, max_runs: int | None, stop: threading.Event | None) -> int:
        finished = 0
        while (max_runs is None or finished < max_runs) and not (stop and stop.is_set()):
            left = None if max_runs is None else max_runs - finished
            self.share_cores()
            group = self.db.claim_group(self.id, self.device, sweep=self.sweep,
                                        lease_seconds=self.lease,
                                        max_members=partial(self.members_for, left=left),
                                        slurm_job_id=_slurm_job_id(),
                                        max_attempts=self.max_attempts)
            if not group:
                break
            self.current = group
            try:
                self.execute(group, stop, refill=self.refill and max_runs is None)
            except Interrupted:
                self.release()
                break
            finally:
                self.current = []
            finished += len(group)
        return finished

    def release(self) -> None:
        """Give the group in flight back to the queue (on preemption or Ctrl-C)."""
        if self.current:
            with contextlib.suppress(Exception):
                self.db.release_runs([c.run_id for c in self.current], self.id)
            self.current = []

    def execute(self, group: list[ClaimedRun], stop: threading.Event | None = None,
                refill: bool = False) -> None:
        """Train a claimed group and log it; with `refill`, runs that join it on the way
        are appended to `group`."""
        from corrgd.run.runner import train_group

        beat = _Heartbeat(self.db, [c.run_id for c in group], self.id, interval=self.lease / 4)
        reporter = _DBReporter(self.db, group, self.id, stop, self.events)
        beat.start()
        try:
            configs = [RunConfig(**c.config) for c in group]
            results = train_group(configs, device=self.device,
                                  checkpoints=[self.checkpoint(c) for c in group],
                                  reporter=reporter, data=self.load_data(configs[0]),
                                  refill=self._refill(group, beat, stop) if refill
                                  else None)
            # every run ended in the reporter; any it did not (none) is finished here
            rest = [(c, r) for c, r in zip(group, results, strict=True)
                    if c.run_id not in reporter.ended and r.status != "pruned"]
            lost = self.db.finish_runs([RunOutcome(c.run_id, r.status) for c, r in rest],
                                       self.id)
            if self.events is not None:
                for claimed, result in rest:
                    if claimed.run_id not in lost:
                        self.events.ended(claimed, result.status)
        except Cancelled:  # they stay in the queue of their cancelled sweep
            log.info("runs %s: their sweep was cancelled; stopped after an epoch",
                     [c.run_id for c in group])
            self.release()
        except (KeyboardInterrupt, SystemExit, Interrupted):
            # SystemExit: SIGTERM on a local worker, or submitit's exit after a SLURM
            # preemption. Its hook releases from a helper thread, which waits in vain if
            # this thread held a database lock when the signal came: then the runs are
            # released here, once that transaction has been rolled back.
            self.release()
            raise
        except Exception as e:
            if (what := full_disk(e)) is not None:  # not the runs' fault: they resume later
                self.release()
                raise DiskFull.of(what, e) from e
            log.exception("group of runs %s failed", [c.run_id for c in group])
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"
            with contextlib.suppress(Exception):
                self.db.finish_runs([RunOutcome(c.run_id, "failed", error) for c in group],
                                    self.id)
            if self.events is not None:
                for claimed in group:
                    if claimed.run_id not in reporter.ended:
                        self.events.ended(claimed, "failed", f"{type(e).__name__}: {e}")
        finally:
            beat.stopped.set()

    def checkpoint(self, run: ClaimedRun) -> str:
        """The checkpoint file of a claimed run: where an earlier attempt saved it, else
        `checkpoint_dir`/sweep/config hash.pt."""
        return run.checkpoint_path or str(self.checkpoint_dir / run.sweep /
                                          f"{run.config_hash}.pt")

    def _refill(self, group: list[ClaimedRun], beat: _Heartbeat,
                stop: threading.Event | None) -> Refill:
        """The runner's `refill` for a group in flight: claims queued runs like the group's
        (`ResultsDB.refill_group`), which become members of `group` (the reporter, the
        heartbeat and the final outcome cover them)."""

        def refill(count: int) -> list[tuple[RunConfig, str]]:
            if stop is not None and stop.is_set():
                return []
            more = self.db.refill_group(group, count, slurm_job_id=_slurm_job_id())
            group.extend(more)
            beat.add([c.run_id for c in more])
            if more:
                log.info("runs %s joined the group of run %s", [c.run_id for c in more],
                         group[0].run_id)
            return [(RunConfig(**c.config), self.checkpoint(c)) for c in more]

        return refill

    def load_data(self, config: RunConfig) -> DataSplits:
        """The data of runs like `config`, loaded once and kept while the next groups need
        the same (`corrgd.data.DataNotFoundError` where its files are missing)."""
        from corrgd.run.runner import data_key, load_data

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
    preemption hook) gives the group in flight back to the queue."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def __call__(self, db_url: str, *, sweep: str | None = None, device: str = "cpu",
                 lease_seconds: float = DEFAULT_LEASE, max_runs: int | None = None,
                 stop: threading.Event | None = None, data_dir: str | None = None,
                 checkpoint_dir: str = DEFAULT_CHECKPOINT_DIR, threads: int | None = None,
                 group_size: int | None = None,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, refill: bool = True) -> int:
        keep_freed_memory()  # tensors of a step reuse memory, no page faults (corrgd.run.malloc)
        self.worker = Worker(db_url, sweep=sweep, device=device, lease_seconds=lease_seconds,
                             data_dir=data_dir, checkpoint_dir=checkpoint_dir,
                             group_size=group_size, max_attempts=max_attempts, threads=threads,
                             refill=refill)
        try:
            return self.worker.run(max_runs, stop)
        finally:
            self.worker.db.close()  # its connections end cleanly, even if the process does not

    def release(self, timeout: float = 10.0) -> None:
        """Runs in a signal handler: if the interrupted main thread holds a database lock,
        a release in this thread would wait on it forever. So release from a helper
        thread and wait at most `timeout`; failing that, the worker gives the runs back
        when the job's exit unwinds it (`Worker.execute`)."""
        if self.worker is not None:
            helper = threading.Thread(target=self.worker.release, daemon=True)
            helper.start()
            helper.join(timeout)
