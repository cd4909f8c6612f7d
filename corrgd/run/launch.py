"""Putting workers to work on a sweep and following them: what `corrgd sweep` does after
enqueueing.

    reclaim_orphans(db, sweep)     runs of workers that are gone go back to the queue
    start_workers(db, sweep, ...)  local processes or a SLURM array -> a `Launch`
    supervise(db, sweep, launch)   until the sweep's runs are finished: gives back the runs
                                   of a worker that dies, starts a local replacement,
                                   waits for runs that other live workers hold
    stop_workers(launch)           on Ctrl-C: workers stop at their next step

Progress is read from the results database, so it looks the same whether the workers are
local processes or SLURM array tasks on other machines; `corrgd.console` shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from corrgd.run.cores import cores, cpu_workers_running, fair_threads
from corrgd.run.devices import default_devices
from corrgd.run.faults import DiskFull, full_disk
from corrgd.run.liveness import slurm_jobs, worker_gone
from corrgd.storage import FINAL_STATUSES, ResultsDB

REPLACEMENTS = 3  # local workers started in place of dead ones, per worker planned


def reclaim_orphans(db: ResultsDB, sweep: str, max_attempts: int | None = None
                    ) -> tuple[int, int]:
    """Give back runs whose worker is gone (`corrgd.run.liveness`): a process of this host
    that no longer exists, or a SLURM job that has ended. Runs claimed `max_attempts` times
    already are failed instead. Others wait for their lease to expire. -> (given back,
    failed)."""
    runs = db.runs_frame(sweep)
    running = runs[runs["status"] == "running"]
    if running.empty:
        return 0, 0
    jobs = slurm_jobs(running["slurm_job_id"])
    dead: dict[str, list[int]] = {}
    for row in running.itertuples():
        if worker_gone(row.worker, row.slurm_job_id, jobs):
            dead.setdefault(row.worker, []).append(int(row.run_id))
    released = failed = 0
    for worker, ids in dead.items():
        gave_up = db.give_back_dead(ids, worker, max_attempts)
        failed += len(gave_up)
        released += len(ids) - len(gave_up)
    return released, failed


def local_workers(devices: str | None, workers: int | None, threads: int | None,
                  runs: int) -> tuple[list[str], int, str]:
    """The devices and number of local workers a sweep of `runs` runs starts, and that in
    words: one worker per GPU; on a CPU one per core (a worker's small kernels use one core
    well, and several groups or runs train side by side)."""
    device_list = devices.split(",") if devices else default_devices()
    n = workers or (cores() if device_list == ["cpu"] else len(device_list))
    n = max(1, min(n, runs))
    cpu_workers = sum(device_list[i % len(device_list)] == "cpu" for i in range(n))
    return device_list, n, f"{n} local worker{'s' * (n != 1)} on {', '.join(device_list)}" + (
        f" ({cpu_threads(cpu_workers, threads)})" if cpu_workers else "")


def cpu_threads(workers: int, threads: int | None) -> str:
    """How many torch threads each of `workers` CPU workers about to start here gets, in
    words: `threads`, or their share of the cores beside the CPU workers running here."""
    if threads:
        return f"{threads} torch thread{'s' * (threads > 1)} each"
    running = cpu_workers_running()
    share = fair_threads(workers)
    return (f"{share} torch thread{'s' * (share > 1)} each: {cores()} cores, {running} "
            f"other corrgd CPU worker{'s' * (running != 1)} running here")


@dataclass
class Launch:
    """Workers started for a sweep: where they run and what each was given."""

    executor: Any  # LocalExecutor or SlurmExecutor
    handles: list[Any]
    task: Callable[..., int]  # what each worker runs (`corrgd.run.worker.WorkerTask`)
    kwargs: list[dict[str, Any]]  # one per worker
    where: str  # e.g. "2 local workers on cpu (1 torch thread each)"
    local: bool
    replaced: int = 0

    def alive(self) -> list[Any]:
        return [h for h in self.handles if not h.done()]


def start_workers(db: ResultsDB, sweep: str, *, executor: str, workers: int | None,
                  devices: str | None, slurm: dict[str, Any], data_dir: str | None,
                  checkpoint_dir: str, lease: float, group_size: int | None,
                  max_attempts: int, threads: int | None, refill: bool = True) -> Launch:
    """Start workers for the queued runs of `sweep`: locally (`local_workers`; each CPU
    worker with `threads` torch threads, default its share of the cores, `corrgd.run.cores`);
    or a SLURM array."""
    from corrgd.run.executors import LocalExecutor, SlurmExecutor
    from corrgd.run.worker import WorkerTask

    left = db.run_counts(sweep)
    todo = left["queued"] + left["running"]
    kwargs = {"db_url": db.url, "sweep": sweep, "lease_seconds": lease, "data_dir": data_dir,
              "checkpoint_dir": checkpoint_dir, "group_size": group_size,
              "max_attempts": max_attempts, "refill": refill}
    if executor == "local":
        device_list, n, where = local_workers(devices, workers, threads, todo)
        per_worker = [{**kwargs, "threads": threads} for _ in range(n)]
        local: Any = LocalExecutor(device_list)
        task = WorkerTask()
        return Launch(local, local.launch(task, per_worker), task, per_worker, where, True)
    n = workers or min(todo, slurm.get("array_parallelism") or 16)
    cluster = SlurmExecutor(**{k: v for k, v in slurm.items() if v is not None})
    task = WorkerTask()
    per_worker = [{**kwargs, "device": "cuda" if slurm.get("gpus_per_job") else "cpu",
                   "threads": threads}] * n
    handles = cluster.launch(task, per_worker)
    where = (f"submitted SLURM array of {n} workers: {', '.join(h.job_id for h in handles[:3])}"
             f"{' ...' if n > 3 else ''}")
    return Launch(cluster, handles, task, per_worker, where, False)


def stop_workers(launch: Launch) -> None:
    """Stop local workers at their next step (they give their runs back); SLURM jobs keep
    running."""
    if launch.local:
        launch.executor.stop(launch.handles)


@dataclass
class Tick:
    """Where a sweep stands, for a progress display."""

    runs: pd.DataFrame  # `ResultsDB.runs_frame` of the sweep
    epochs_done: int
    epochs_total: int
    summary: str  # e.g. "runs 3/36 done, 2 running"
    latest: dict[int, pd.Series] = field(default_factory=dict)  # running run -> last train row
    note: str = ""  # what the supervisor did or waits for, if anything


def supervise(db: ResultsDB, sweep: str, launch: Launch, *, max_attempts: int | None,
              lease: float, on_tick: Callable[[Tick], None], interval: float = 1.0) -> None:
    """Follow the sweep (`_follow`); when a disk it writes to is full (a local worker
    stopped with `DiskFull`, or this process could not write the database), stop the other
    local workers, which give their runs back, and raise `DiskFull`."""
    try:
        _follow(db, sweep, launch, max_attempts=max_attempts, lease=lease, on_tick=on_tick,
                interval=interval)
    except DiskFull:
        stop_workers(launch)
        raise
    except Exception as e:
        if (what := full_disk(e)) is None:
            raise
        stop_workers(launch)
        raise DiskFull.of(what, e) from e


def _disk_full(launch: Launch) -> DiskFull | None:
    """The DiskFull a local worker of `launch` stopped with, if one did."""
    for handle in launch.handles if launch.local else []:
        if handle.done() and isinstance(error := handle.wait(0).exception, DiskFull):
            return error
    return None


def _follow(db: ResultsDB, sweep: str, launch: Launch, *, max_attempts: int | None,
            lease: float, on_tick: Callable[[Tick], None], interval: float) -> None:
    """Follow the sweep until its runs are finished, or nothing here can finish them.

    Every `interval` seconds: runs of workers that are gone (a local worker killed, a SLURM
    job ended) go back to the queue at once; if runs are queued, or held by a worker whose
    heartbeat is older than the `lease`, and every worker started here has ended, a local
    replacement starts (at most `REPLACEMENTS` per worker planned); runs that other live
    workers hold (e.g. `corrgd worker` beside this sweep) are waited for. `on_tick` hears of
    each step, and of what was done or is waited for."""
    while True:
        if (full := _disk_full(launch)) is not None:
            raise full
        notes = []
        released, failed = reclaim_orphans(db, sweep, max_attempts)
        if released or failed:
            notes.append(f"{released} runs of dead workers back in the queue" +
                         (f", {failed} failed after {max_attempts} attempts" if failed else ""))
        tick = progress(db, sweep)
        runs = tick.runs
        queued = int((runs["status"] == "queued").sum())
        running = runs[runs["status"] == "running"]
        stale = int((running["heartbeat_at"] < pd.Timestamp.now("UTC") - pd.Timedelta(
            seconds=lease)).sum())
        alive = launch.alive()
        finished = not queued and running.empty
        if not alive and not finished:
            if (queued or stale) and launch.local and \
                    launch.replaced < REPLACEMENTS * len(launch.kwargs):
                launch.handles += launch.executor.launch(launch.task, launch.kwargs[:1])
                launch.replaced += 1
                alive = launch.alive()
                notes.append("started a worker in place of one that ended")
            elif len(running) > stale:
                holders = sorted({str(w) for w in running["worker"]})
                notes.append(f"waiting for {len(running)} runs held by other workers: "
                             f"{', '.join(holders[:3])}{' ...' if len(holders) > 3 else ''}")
            else:  # queued runs no worker here takes: a cancelled sweep's, or a SLURM job's
                finished = True  # that ended (rerun the sweep)
        tick.note = "; ".join(notes)
        on_tick(tick)
        if finished:
            return
        _pause(alive, interval)


def progress(db: ResultsDB, sweep: str) -> Tick:
    """The sweep's runs, epochs done of all, and the last training row of each running run."""
    runs = db.runs_frame(sweep)
    ended = runs["status"].isin(FINAL_STATUSES)
    epochs_total = int(sum(c["epochs"] + 1 for c in runs["config"]))
    epochs_done = int(sum(
        c["epochs"] + 1 if e else max(0, int(le) + 1)
        for c, le, e in zip(runs["config"], runs["last_epoch"], ended, strict=True)))
    counts = runs["status"].value_counts().to_dict()
    summary = (f"runs {int(ended.sum())}/{len(runs)} ended"
               + "".join(f", {counts[s]} {s}" for s in ("running", "failed", "diverged", "pruned")
                         if counts.get(s)))
    running = runs[runs["status"] == "running"]
    latest: dict[int, pd.Series] = {}
    if not running.empty:
        epochs = db.epochs_frame(run_ids=[int(r) for r in running["run_id"]], diagnostics=False)
        train = epochs[epochs["split"] == "train"].sort_values("epoch")
        latest = {int(r): g.iloc[-1] for r, g in train.groupby("run_id")}
    return Tick(runs, epochs_done, epochs_total, summary, latest)


def _pause(handles: list[Any], seconds: float) -> None:
    """Wait `seconds`, or until every worker in `handles` has ended if that is sooner."""
    deadline = time.monotonic() + seconds
    if not handles:
        time.sleep(seconds)
    for handle in handles:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            handle.wait(left)
        except TimeoutError:
            return
