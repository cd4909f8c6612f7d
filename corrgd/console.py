"""Everything corrgd prints with rich: the stages below compute, this module shows.

    estimate(...)        the dry run's tables: runs, epochs and cost per curve, the groups
    SweepProgress        a sweep's progress while its workers train
    sweep_summary(...)   how a sweep ended, and the exit code that says so
    EpochLines           a worker's runs, epoch by epoch (`corrgd worker`, `corrgd train`)
    print_status(...)    `corrgd status`;  frame_table: `corrgd runs`;  print_run: `corrgd show`
    terminal()           the console itself: natural width where output is piped

Text that comes from users or errors is escaped: rich would take "[parquet]" for markup.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from corrgd.results.listings import RunDetails, best_so_far, runs_table
from corrgd.spec.cost import THROUGHPUTS, curve_costs, plan_groups, pruned_cost
from corrgd.spec.sweeps import Plan, Sweep
from corrgd.storage import ResultsDB

if TYPE_CHECKING:  # not imported: the launcher and worker import torch where they train
    from corrgd.run.launch import Tick
    from corrgd.storage.queue import ClaimedRun


def estimate(out: Console, sweep: Sweep, plan: Plan, *, device: str, group_size: int | None,
             free: int, assumed: str = "") -> None:
    """The dry run of `sweep`: runs, epochs and MACs per (data set / network, curve), then
    the groups a worker on `device` with `free` bytes of memory would form (`assumed`:
    what that memory is, where it is not this machine's)."""
    runs = f"{plan.runs}" if plan.exact else f"at most {plan.runs}"
    table = Table(title=f"sweep {sweep.name}: {runs} runs (dry run, nothing written)")
    for col in ("dataset / network", "algorithm", "runs", "epochs", "TMAC"):
        table.add_column(col, justify="left" if col[0].isalpha() and col != "runs" else "right")
    costs = curve_costs(plan)
    for (data, curve), (n, epochs, macs) in costs.items():
        table.add_row(data, curve, str(n), str(epochs), f"{macs / 1e12:,.1f}")
    out.print(table)
    total = sum(macs for _, _, macs in costs.values())
    out.print(f"{runs} runs, {plan.epochs} epochs, {total / 1e12:,.1f} TMAC in all ≈ "
              f"{_hours(total)}")
    if sweep.prune is not None:
        p = sweep.prune
        epochs, macs = pruned_cost(plan, p)
        out.print(f"pruned by {p.metric} (η {p.reduction}, rungs from epoch {p.min_epochs}): "
                  f"expected {epochs:,.0f} epochs ({100 * epochs / max(1, plan.epochs):.0f} % of "
                  f"the full grid's), {macs / 1e12:,.1f} TMAC ≈ {_hours(macs)}")
    if not plan.exact:
        out.print("grids of the union overlap too intricately to count exactly: "
                  "the numbers above are upper bounds")

    plans = plan_groups(plan.groups.values(), device, group_size, free)
    size = f"--group-size {group_size}" if group_size else "automatic size"
    groups = Table(title=f"groups on {device} ({size})")
    for col in ("runs alike", "runs", "MB per member", "members per group", "groups"):
        groups.add_column(col, justify="left" if col == "runs alike" else "right")
    for p in plans:
        groups.add_row(p.label, str(p.runs), f"{p.member_mb:,.0f}", str(p.members),
                       str(p.groups))
    out.print(groups)
    out.print(f"{sum(p.groups for p in plans)} groups of runs that train together"
              + (f" ({assumed})" if assumed and not group_size else ""))


def _hours(macs: float) -> str:
    return ", ".join(f"{name}: {_duration(macs / rate)}" for name, rate in THROUGHPUTS.items())


def _duration(seconds: float) -> str:
    """1.5 h, 12 min, 8 s or under 1 s: hours from an hour on, minutes from a minute on."""
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 1 else "under 1 s"


class SweepProgress:
    """A sweep's progress as `corrgd.run.launch.supervise` reports it (`show` is its
    `on_tick`): rich bars in a terminal, one per running run; elsewhere (SLURM logs, nohup,
    CI) a plain line every `every` seconds, at every 10 % of the sweep's epochs and at the
    end. What the supervisor did or waits for is printed once, as it happens."""

    def __init__(self, out: Console, sweep: str, every: float = 60.0) -> None:
        self.out, self.sweep, self.every = out, sweep, every
        self.bars: Progress | None = None
        self.start = self.last_time = time.monotonic()
        self.last_tenth = self.last_done = -1
        self.per_run: dict[int, TaskID] = {}
        self.note = ""

    def __enter__(self) -> SweepProgress:
        if self.out.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.bars = Progress(*columns, console=self.out, transient=False)
            self.bars.__enter__()
            self.overall = self.bars.add_task(f"[bold]{escape(self.sweep)}[/] epochs",
                                              total=None, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.__exit__(None, None, None)

    def show(self, tick: Tick) -> None:
        if tick.note and tick.note != self.note:
            self.out.print(escape(tick.note), highlight=False)
        self.note = tick.note
        if self.bars is None:
            self._line(tick)
            return
        self.bars.update(self.overall, total=tick.epochs_total, completed=tick.epochs_done,
                         info=escape(tick.summary))
        for row in tick.runs.itertuples():
            rid = int(row.run_id)
            if row.status == "running" and rid not in self.per_run:
                label = (f"  run {rid} {row.algorithm.upper()}{'+decor' if row.decor else ''} "
                         f"lr={row.lr:g} seed={row.seed}")
                self.per_run[rid] = self.bars.add_task(escape(label),
                                                       total=row.config["epochs"], info="")
            if rid in self.per_run:
                last = tick.latest.get(rid)
                info = "" if last is None else f"loss {last['loss']:.4f}" + (
                    "" if pd.isna(last["accuracy"]) else f" acc {last['accuracy']:.3f}")
                self.bars.update(self.per_run[rid], completed=max(0, int(row.last_epoch)),
                                 info=info)
                if row.status != "running":
                    self.bars.remove_task(self.per_run.pop(rid))

    def _line(self, tick: Tick) -> None:
        done, total = tick.epochs_done, tick.epochs_total
        tenth = int(10 * done / total) if total else 10
        now = time.monotonic()
        if tenth > self.last_tenth or now - self.last_time >= self.every or \
                (done == total and done != self.last_done):
            self.out.print(f"[{time.strftime('%H:%M:%S')}] {escape(self.sweep)}: epochs "
                           f"{done}/{total} ({100 * done / max(total, 1):.0f} %), "
                           f"{escape(tick.summary)}, {now - self.start:.0f} s", highlight=False)
            self.last_tenth, self.last_time, self.last_done = tenth, now, done


def sweep_summary(out: Console, db: ResultsDB, sweep: str) -> int:
    """The sweep's outcome in one line (and its first failures); the exit code of
    `corrgd sweep`: 0 when every run finished without failing."""
    c = db.run_counts(sweep)
    out.print(f"sweep [bold]{escape(sweep)}[/]: {c['done']} done, {c['diverged']} diverged, "
              + (f"{c['pruned']} pruned, " if c["pruned"] else "") +
              f"{c['failed']} failed, {c['queued'] + c['running']} unfinished of {c['total']}"
              + (f" ({c['cancelled']} cancelled)" if c["cancelled"] else ""))
    if c["failed"]:
        runs = db.runs_frame(sweep)
        for row in runs[runs["status"] == "failed"].head(3).itertuples():
            first = (row.error or "").splitlines()[:1]
            out.print(f"  run {row.run_id} failed: {escape(first[0] if first else '?')}",
                      highlight=False)
        out.print("  retry them with: corrgd sweep SPEC --retry-failed")
    return 0 if c["failed"] == 0 and c["queued"] + c["running"] + c["cancelled"] == 0 else 1


class EpochLines:
    """A worker's runs as lines (`corrgd.run.worker.WorkerEvents`), for `corrgd worker` (a
    SLURM log shows the progress) and `corrgd train`: loss and accuracy per split as each
    epoch is written, and how each run ended."""

    def __init__(self, out: Console) -> None:
        self.out = out

    def epoch(self, run: ClaimedRun, epoch: int, rows: list[Any]) -> None:
        parts = [f"run {run.run_id} epoch {epoch:3d}"]
        for r in rows:
            acc = "" if r.accuracy is None else f" acc {100 * r.accuracy:.1f} %"
            parts.append(f"{r.split} loss {r.loss:.4f}{acc}")
        self.out.print("  ".join(parts), highlight=False)

    def ended(self, run: ClaimedRun, status: str, error: str | None = None) -> None:
        self.out.print(f"run {run.run_id} of sweep {escape(run.sweep)}: {status}"
                       + (f": {escape(error.splitlines()[0])}" if error else ""),
                       highlight=False)


def terminal(stderr: bool = False) -> Console:
    """The console the CLI prints on. Piped or captured (a script, a log, SLURM) it has no
    terminal width to fit: tables keep their natural width and lines are not wrapped. A
    COLUMNS that is not a width of at least `MIN_COLUMNS` is ignored (0 printed nothing)."""
    environ = dict(os.environ)
    if not _is_width(environ.get("COLUMNS", "")):
        environ.pop("COLUMNS", None)
    out = Console(stderr=stderr, _environ=environ)
    if not out.is_terminal and "COLUMNS" not in environ:
        out = Console(stderr=stderr, width=10_000, soft_wrap=True, _environ=environ)
    return out


MIN_COLUMNS = 20


def _is_width(text: str) -> bool:
    return text.strip().isdigit() and int(text) >= MIN_COLUMNS


def cell(column: str, value: Any) -> str:
    """A value as a table shows it: accuracies in percent (`_acc_` columns), losses with 4
    decimals, other numbers with 4 significant digits, lists and dicts in short, missing
    values as nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or \
            (not isinstance(value, list | dict | str) and pd.isna(value)):
        return ""
    if isinstance(value, bool | str | int):
        return str(value)
    if isinstance(value, float):
        if "_acc_" in column or column == "accuracy":
            return f"{100 * value:.1f}"
        if "_loss_" in column or column == "loss":
            return f"{value:.4f}"
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def frame_table(frame: pd.DataFrame, title: str, width: int | None = None) -> Table:
    """A frame as a rich table (`cell` formats each value); columns without a value are left
    out, accuracies say their unit. Headers stay on one line where the table fits in
    `width`, else wrap between their words ("val acc peak"), and only where even that
    does not fit inside one."""
    cells = {col: [cell(col, v) for v in frame[col]] for col in frame.columns}
    shown = [col for col in frame.columns if any(cells[col]) or frame.empty]
    headers = {col: (col if "." in col else col.replace("_", " "))  # keep metric names
               + (" (%)" if "_acc_" in col or col == "accuracy" else "") for col in shown}
    widest = {col: max([len(c) for c in cells[col]], default=0) for col in shown}
    least = {col: max([len(w) for w in headers[col].split()] + [widest[col]]) for col in shown}
    natural = sum(max(len(headers[col]), widest[col]) for col in shown) + 3 * len(shown) + 1
    fixed = width is not None and natural > width >= sum(least.values()) + 3 * len(shown) + 1
    table = Table(title=escape(title))
    for col in shown:
        numeric = pd.api.types.is_numeric_dtype(frame[col]) and frame[col].dtype != bool
        table.add_column(escape(headers[col]), justify="right" if numeric else "left",
                         width=least[col] if fixed else None, overflow="fold")
    for i in range(len(frame)):
        table.add_row(*(escape(cells[col][i]) for col in shown))
    return table


def print_status(out: Console, db: ResultsDB, sweep: str | None) -> None:
    """`corrgd status`: runs per sweep and state; the groups training now; the runs of
    `sweep` with the best score so far (else every running run); failed runs."""
    counts = db.sweep_counts()
    columns = ("queued", "running", "done", "diverged", "pruned", "failed", "cancelled",
               "total")
    out.print(frame_table(counts[["sweep", *columns]], "sweeps", out.width))
    groups = db.group_counts(sweep)
    if not groups.empty:
        shown = groups.assign(runs=[", ".join(map(str, ids[:6])) + (" ..." if len(ids) > 6
                                                                   else "")
                                    for ids in groups["run_ids"]],
                              epoch=[max(int(e), 0) for e in groups["last_epoch"]])
        out.print(frame_table(shown[["group_id", "sweep", "members", "runs", "epoch",
                                     "worker", "device"]], "groups training now",
                              out.width))
    if sweep:
        runs = runs_table(db, sweep)
        if not runs.empty:
            best = best_so_far(runs)
            title = f"runs of {sweep}" + (f" (best so far: {best})" if best else "")
            out.print(frame_table(runs.drop(columns=["sweep", "error"]), title, out.width))
    else:
        running = runs_table(db, None, ["running", "orphaned"])
        if not running.empty:
            out.print(frame_table(running.drop(columns=["error"]), "running runs", out.width))
    failed = runs_table(db, sweep, ["failed"])
    if not failed.empty:
        errors = failed.assign(error=[e or "?" for e in failed["error"]])
        out.print(frame_table(errors[["run_id", "sweep", "attempts", "error"]],
                              "failed runs (retry: corrgd sweep SPEC --retry-failed)",
                              out.width))


def print_run(out: Console, details: RunDetails) -> None:
    """`corrgd show`: one run's config, its life and its curves per epoch and split."""
    out.print(f"[bold]run {details.run_id}[/] of sweep {escape(details.sweep)}")
    out.print(escape(yaml.safe_dump(details.config, sort_keys=True).rstrip()), highlight=False)
    life = Table(title="life", show_header=False)
    life.add_column("what")
    life.add_column("value", overflow="fold")
    for key, value in details.life.items():
        life.add_row(key, escape(value))
    out.print(life)
    out.print(frame_table(details.curves, "curves", out.width))
