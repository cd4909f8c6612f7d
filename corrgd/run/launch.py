"""Putting workers to work on a sweep and watching them: what `corrgd sweep` does after
enqueueing, plus the tables of `corrgd status` and the one-off `corrgd train`.

Progress is read from the results database, so it looks the same whether the
workers are local processes or SLURM array tasks on other machines.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from corrgd.run.devices import default_devices
from corrgd.run.liveness import slurm_jobs, worker_gone
from corrgd.spec.config import RunConfig
from corrgd.storage import ResultsDB

ACTIVE = ("queued", "running")


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


def launch_workers(db: ResultsDB, sweep: str, *, executor: str, workers: int | None,
                   devices: str | None, slurm: dict[str, Any], wait: bool,
                   data_dir: str | None, checkpoint_dir: str, lease: float,
                   console: Console, group_size: int | None = None,
                   max_attempts: int = 3) -> int:
    """Start workers for `sweep`, show progress until it is finished; exit code."""
    from corrgd.run.executors import LocalExecutor, SlurmExecutor
    from corrgd.run.worker import WorkerTask

    released, failed = reclaim_orphans(db, sweep, max_attempts)
    if released:
        console.print(f"{released} runs of dead workers given back to the queue")
    if failed:
        console.print(f"{failed} runs failed: their workers died {max_attempts} times")
    pending = _counts(db, sweep)
    if pending["queued"] + pending["running"] == 0:
        console.print("nothing to do: every run of this sweep has finished")
        return _summary(db, sweep, console)
    kwargs = {"db_url": db.url, "sweep": sweep, "lease_seconds": lease, "data_dir": data_dir,
              "checkpoint_dir": checkpoint_dir, "group_size": group_size,
              "max_attempts": max_attempts}
    if executor == "local":
        device_list = devices.split(",") if devices else default_devices()
        # one worker per GPU; on a CPU one per core (a worker's small kernels use one core
        # well, and several groups or runs train side by side)
        n = workers or ((os.cpu_count() or 1) if device_list == ["cpu"] else len(device_list))
        n = min(n, pending["queued"] + pending["running"])
        ex: Any = LocalExecutor(device_list)
        cpu_workers = sum(device_list[i % len(device_list)] == "cpu" for i in range(n))
        threads = max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else None
        handles = ex.launch(WorkerTask(), [{**kwargs, "threads": threads}] * n)
        console.print(f"{n} local workers on {', '.join(device_list)}")
    else:
        n = workers or min(pending["queued"] + pending["running"],
                           slurm.get("array_parallelism") or 16)
        ex = SlurmExecutor(**{k: v for k, v in slurm.items() if v is not None})
        task = WorkerTask()
        handles = ex.launch(task, [{**kwargs, "device": "cuda" if slurm.get("gpus_per_job")
                                    else "cpu"}] * n)
        console.print(f"submitted SLURM array of {n} workers: "
                      f"{', '.join(h.job_id for h in handles[:3])}{' ...' if n > 3 else ''}")
        if not wait:
            return 0
    try:
        watch(db, sweep, handles, console)
    except KeyboardInterrupt:
        console.print("interrupted: stopping workers; rerun the sweep to resume")
        if executor == "local":
            ex.stop(handles)
        return 130
    return _summary(db, sweep, console)


def _counts(db: ResultsDB, sweep: str) -> dict[str, int]:
    counts = db.sweep_counts()
    row = counts[counts["sweep"] == sweep]
    return {k: int(row[k].iloc[0]) if not row.empty else 0
            for k in ("queued", "running", "done", "failed", "diverged", "total")}


def sweep_progress(db: ResultsDB, sweep: str) -> tuple[pd.DataFrame, int, int, str]:
    """(runs, epochs done, epochs in all, a summary like "runs 3/36 done, 2 running")."""
    runs = db.runs_frame(sweep)
    epochs_total = int(sum(c["epochs"] + 1 for c in runs["config"]))
    finished = runs["status"].isin(("done", "failed", "diverged"))
    epochs_done = int(sum(
        c["epochs"] + 1 if f else max(0, int(le) + 1)
        for c, le, f in zip(runs["config"], runs["last_epoch"], finished, strict=True)))
    counts = runs["status"].value_counts().to_dict()
    info = (f"runs {int(finished.sum())}/{len(runs)} done"
            + "".join(f", {counts[s]} {s}" for s in ("running", "failed", "diverged")
                      if counts.get(s)))
    return runs, epochs_done, epochs_total, info


def watch(db: ResultsDB, sweep: str, handles: list[Any], console: Console,
          interval: float = 1.0, every: float = 60.0) -> None:
    """Progress of a sweep from the database until its workers have all ended: rich bars in
    a terminal; elsewhere (SLURM logs, nohup, CI) a plain line every `every` seconds and
    at every 10 % of the sweep's epochs."""
    if not console.is_terminal:
        _watch_plain(db, sweep, handles, console, interval, every)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task(f"[bold]{sweep}[/] epochs", total=None, info="")
        per_run: dict[int, Any] = {}
        while True:
            runs, done, total, info = sweep_progress(db, sweep)
            progress.update(overall, total=total, completed=done, info=info)
            _update_run_lines(db, progress, per_run, runs)
            if all(h.done() for h in handles):
                break
            _pause(handles, interval)


def _watch_plain(db: ResultsDB, sweep: str, handles: list[Any], console: Console,
                 interval: float, every: float) -> None:
    start = last_time = time.monotonic()
    last_tenth = last_done = -1
    while True:
        ended = all(h.done() for h in handles)
        _, done, total, info = sweep_progress(db, sweep)
        tenth = int(10 * done / total) if total else 10
        now = time.monotonic()
        if tenth > last_tenth or now - last_time >= every or (ended and done != last_done):
            console.print(f"[{time.strftime('%H:%M:%S')}] {sweep}: epochs {done}/{total} "
                          f"({100 * done / max(total, 1):.0f} %), {info}, "
                          f"{now - start:.0f} s", highlight=False)
            last_tenth, last_time, last_done = tenth, now, done
        if ended:
            break
        _pause(handles, interval)


def _pause(handles: list[Any], seconds: float) -> None:
    """Wait `seconds`, or until every worker has ended if that is sooner."""
    deadline = time.monotonic() + seconds
    for handle in handles:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            handle.wait(left)
        except TimeoutError:
            return


def _update_run_lines(db: ResultsDB, progress: Progress, per_run: dict[int, Any],
                      runs: pd.DataFrame) -> None:
    running = runs[runs["status"] == "running"]
    latest: dict[int, pd.Series] = {}
    if not running.empty:
        epochs = db.epochs_frame(run_ids=[int(r) for r in running["run_id"]], diagnostics=False)
        train = epochs[epochs["split"] == "train"].sort_values("epoch")
        latest = {int(r): g.iloc[-1] for r, g in train.groupby("run_id")}
    for row in runs.itertuples():
        rid = int(row.run_id)
        if row.status == "running" and rid not in per_run:
            label = (f"  run {rid} {row.algorithm.upper()}{'+decor' if row.decor else ''} "
                     f"lr={row.lr:g} seed={row.seed}")
            per_run[rid] = progress.add_task(label, total=row.config["epochs"], info="")
        if rid in per_run:
            last = latest.get(rid)
            info = "" if last is None else \
                f"loss {last['loss']:.4f} acc {last['accuracy']:.3f}"
            progress.update(per_run[rid], completed=max(0, int(row.last_epoch)), info=info)
            if row.status != "running":
                progress.remove_task(per_run.pop(rid))


def _summary(db: ResultsDB, sweep: str, console: Console) -> int:
    c = _counts(db, sweep)
    console.print(f"sweep [bold]{sweep}[/]: {c['done']} done, {c['diverged']} diverged, "
                  f"{c['failed']} failed, {c['queued'] + c['running']} unfinished "
                  f"of {c['total']}")
    if c["failed"]:
        runs = db.runs_frame(sweep)
        for row in runs[runs["status"] == "failed"].head(3).itertuples():
            first = (row.error or "").splitlines()[:1]
            console.print(f"  run {row.run_id} failed: {first[0] if first else '?'}")
        console.print("  retry them with: corrgd sweep SPEC --retry-failed")
    return 0 if c["failed"] == 0 and c["queued"] + c["running"] == 0 else 1


class _Printer:
    """A run's epochs as lines: loss and accuracy (in percent) per split."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def epoch_end(self, epoch: int, rows: list[dict[str, Any]], checkpoint: str | None) -> None:
        parts = [f"epoch {epoch:3d}"]
        for r in rows:
            acc = "" if r["accuracy"] is None else f" acc {100 * r['accuracy']:.1f} %"
            parts.append(f"{r['split']} loss {r['loss']:.4f}{acc}")
        self.console.print("  ".join(parts), highlight=False)

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        pass


class _Logged(_Printer):
    """Prints a run's epochs and writes them to the results database as its worker would."""

    def __init__(self, console: Console, db: ResultsDB, run_id: int, worker: str) -> None:
        super().__init__(console)
        self.db, self.run_id, self.worker = db, run_id, worker

    def epoch_end(self, epoch: int, rows: list[dict[str, Any]], checkpoint: str | None) -> None:
        self.db.log_epoch(self.run_id, epoch, rows, self.worker, checkpoint)
        super().epoch_end(epoch, rows, checkpoint)


def train_one(config: RunConfig, *, device: str, data_dir: str | None, console: Console,
              db: ResultsDB | None = None, sweep: str | None = None,
              checkpoint_dir: str = "results/checkpoints") -> str:
    """Train one config in this process, printing a row per epoch; with `db`, it is logged
    there as a sweep of one (named `sweep`, default train-<config hash>), and rerunning the
    same command resumes or reuses it."""
    import yaml

    from corrgd.run.runner import run
    from corrgd.storage import RunSpec, default_worker_id

    console.print(f"[bold]{config.label}[/] on {config.dataset}/{config.network}, "
                  f"lr {config.lr:g}" + (f", decor lr {config.decor_lr:g}" if config.decor else ""))
    if db is None:
        result = run(config, device=device, data_dir=data_dir, reporter=_Printer(console))
        console.print(f"{result.status} after {result.epochs} epochs")
        return result.status
    name = sweep or f"train-{config.hash()[:8]}"
    values = config.model_dump(mode="json")
    db.add_sweep(name, yaml.safe_dump({"name": name, **values}, sort_keys=True),
                 [RunSpec(config=values, group_key=config.group_key())])
    worker = default_worker_id()
    claimed = db.claim_run(worker, device, sweep=name, lease_seconds=3600.0)
    if claimed is None:
        console.print(f"sweep {name}: its run has finished already (corrgd show "
                      f"{int(db.runs_frame(name)['run_id'].iloc[0])})")
        return "done"
    path = claimed.checkpoint_path or f"{checkpoint_dir}/{name}/{claimed.config_hash}.pt"
    try:
        result = run(config, device=device, data_dir=data_dir, checkpoint=path,
                     reporter=_Logged(console, db, claimed.run_id, worker))
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            db.release_run(claimed.run_id, worker)
        else:
            db.finish_run(claimed.run_id, "failed", f"{type(e).__name__}: {e}", worker=worker)
        raise
    db.finish_run(claimed.run_id, result.status, worker=worker)
    console.print(f"{result.status} after {result.epochs} epochs: run {claimed.run_id} of "
                  f"sweep {name} in {db.url}")
    return result.status
