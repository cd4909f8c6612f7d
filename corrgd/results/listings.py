"""What `corrgd status`, `runs`, `show` and `export` show or write, as frames read from the
results database (no torch: these commands answer at once; `corrgd.console` prints them).

    runs_table(db, ...)          one row per run: axes, status, epochs, peak/final scores
    best_so_far(runs)            the best score among them, in words
    run_details(db, run_id)      one run: its config, its life, its curves
    export_frame(db, sweep)      every epoch row with the run's config, long form
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import yaml

from corrgd.run.liveness import SlurmJobs, slurm_jobs, worker_gone
from corrgd.spec.sweeps import load_value
from corrgd.storage import ResultsDB

STALE_AFTER = 300.0  # seconds without a heartbeat after which a "running" run looks dead
SCORES = ("val", "test")


# --- helpers ------------------------------------------------------------------------------
def text(value: Any) -> str:
    """A cell's text: missing values (None, NaN) as nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def first_line(value: Any) -> str:
    return next((line for line in text(value).splitlines() if line.strip()), "")


def percent(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.1f}"


def live_status(row: Any, jobs: SlurmJobs, now: datetime | None = None) -> str:
    """A run's status as shown: a "running" run whose worker is gone
    (`corrgd.run.liveness`), or that sent no heartbeat for `STALE_AFTER` seconds, shows as
    "orphaned" — the next `corrgd sweep` or worker gives it back to the queue. `jobs`:
    `slurm_jobs` of the runs' SLURM jobs."""
    if row.status != "running":
        return str(row.status)
    if worker_gone(text(row.worker) or None, text(getattr(row, "slurm_job_id", None)) or None,
                   jobs):
        return "orphaned"
    beat = row.heartbeat_at
    if beat is not None and not pd.isna(beat):
        age = ((now or datetime.now(UTC)) - pd.Timestamp(beat).to_pydatetime()).total_seconds()
        if age > STALE_AFTER:
            return "orphaned"
    return "running"


def swept_axes(runs: pd.DataFrame) -> list[str]:
    """The axes a sweep's runs were expanded over (in order of first appearance)."""
    names: dict[str, None] = {}
    for axes in runs.get("axes", []):
        names.update(dict.fromkeys(axes or {}))
    return list(names)


# --- runs ---------------------------------------------------------------------------------
def scores(db: ResultsDB, sweep: str | None, run_ids: list[int] | None = None) -> pd.DataFrame:
    """Per run: epochs done, and the peak and final accuracy (loss where a run logs no
    accuracy) of its val and test splits."""
    epochs = db.epochs_frame(sweep, run_ids, diagnostics=False)
    out = pd.DataFrame({"run_id": pd.Series(dtype=int)})
    if epochs.empty:
        return out
    rows = []
    for run_id, frame in epochs.groupby("run_id"):
        row: dict[str, Any] = {"run_id": int(run_id), "epochs_done": int(frame["epoch"].max())}
        for split in SCORES:
            part = frame[frame["split"] == split].sort_values("epoch")
            if part.empty:
                continue
            metric = "accuracy" if part["accuracy"].notna().any() else "loss"
            values = part[metric]
            best = values.max() if metric == "accuracy" else values.min()
            row[f"{split}_{'acc' if metric == 'accuracy' else 'loss'}_peak"] = best
            row[f"{split}_{'acc' if metric == 'accuracy' else 'loss'}_final"] = values.iloc[-1]
        rows.append(row)
    return pd.DataFrame(rows)


def runs_table(db: ResultsDB, sweep: str | None = None, statuses: list[str] | None = None,
               where: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """One row per run: ``run_id, sweep``, its swept axes, ``status, attempts, epochs_done``
    (of ``epochs``), peak and final val/test accuracy (or loss), ``slurm_job`` (id and
    state, where runs ran on SLURM) and the first line of its error. ``where``: per axis,
    the values a run may have (as a spec writes them, e.g. lr: ["0.001", "1e-4"]; numbers
    compare by value; a setting that is not swept is shown as a column too); a column of
    numbers and a value that is not one is a ValueError."""
    runs = db.runs_frame(sweep)
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "sweep", "status"])
    jobs = slurm_jobs(runs["slurm_job_id"])
    runs = runs.assign(status=[live_status(r, jobs) for r in runs.itertuples()])
    axes = swept_axes(runs)
    table = pd.DataFrame({"run_id": runs["run_id"], "sweep": runs["sweep"]})
    for name in axes:
        table[name] = [c.get(name) for c in runs["config"]]
    table["status"] = runs["status"].values
    table["attempts"] = runs["attempts"].values
    table["epochs"] = [c["epochs"] for c in runs["config"]]
    table = table.merge(scores(db, sweep), on="run_id", how="left")
    done = table["epochs_done"] if "epochs_done" in table else pd.Series(0, index=table.index)
    table["epochs_done"] = done.fillna(0).astype(int)
    if runs["slurm_job_id"].notna().any():
        table["slurm_job"] = [f"{text(j)} {jobs.states.get(text(j), '')}".strip()
                              for j in runs["slurm_job_id"]]
    table["error"] = [first_line(e) for e in runs["error"]]
    if statuses:
        table = table[table["status"].isin(statuses)]
    for key, values in (where or {}).items():
        if key not in table and all(key in c for c in runs["config"]):  # a setting not swept:
            config = dict(zip(runs["run_id"], runs["config"], strict=True))  # shown too
            table[key] = [config[run][key] for run in table["run_id"]]
        if key not in table:
            raise KeyError(key)
        numeric = table[key].map(_is_number).all() and len(table)
        flags = table[key].map(lambda v: isinstance(v, bool)).all() and len(table)
        wanted = [(value, _parsed(value)) for value in values]  # parsed once, not per row
        for value, parsed in wanted:
            if numeric and not (_is_number(parsed) and math.isfinite(parsed)):
                raise ValueError(f"{key}: {value!r} is not a finite number, and {key} is")
            if flags and not isinstance(parsed, bool):
                raise ValueError(f"{key}: {value!r} is not true or false, and {key} is")
        table = table[[any(_matches(v, *w) for w in wanted) for v in table[key]]]
    return table.reset_index(drop=True)


def _parsed(wanted: str) -> Any:
    """A --where value as a spec reads it (`corrgd.spec.sweeps.load_value`: 1e-3 a number)."""
    try:
        return load_value(wanted)
    except yaml.YAMLError:
        return wanted


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _matches(cell: Any, wanted: str, value: Any) -> bool:
    """Whether a cell holds the value `wanted` names (YAML, as a spec writes it; `value`:
    as `_parsed` reads it)."""
    if _is_number(value) and _is_number(cell):
        return math.isclose(float(cell), float(value), rel_tol=1e-9)
    return cell == value or text(cell) == wanted


def best_so_far(runs: pd.DataFrame) -> str:
    for column in ("val_acc_peak", "test_acc_peak"):
        if column in runs and runs[column].notna().any():
            i = runs[column].idxmax()
            return f"{column.split('_')[0]} accuracy {percent(runs.loc[i, column])} % (run " \
                f"{runs.loc[i, 'run_id']})"
    for column in ("val_loss_peak", "test_loss_peak"):
        if column in runs and runs[column].notna().any():
            i = runs[column].idxmin()
            return f"{column.split('_')[0]} loss {runs.loc[i, column]:.4f} (run " \
                f"{runs.loc[i, 'run_id']})"
    return ""


# --- one run ------------------------------------------------------------------------------
@dataclass
class RunDetails:
    run_id: int
    sweep: str
    config: dict[str, Any]
    life: dict[str, str]  # status, attempts, worker, device, group, times, error
    curves: pd.DataFrame  # epoch x split: loss, accuracy (and diagnostics, per layer)


def run_details(db: ResultsDB, run_id: int) -> RunDetails:
    runs = db.runs_frame()
    match = runs[runs["run_id"] == run_id]
    if match.empty:
        raise KeyError(run_id)
    row = next(match.itertuples())
    status = live_status(row, slurm_jobs([row.slurm_job_id]))
    if status == "pruned":  # successive halving stopped it at the rung it last logged
        status = f"pruned at the rung of epoch {int(row.last_epoch)}"
    life = {
        "status": status,
        "attempts": str(row.attempts),
        "last epoch": str(max(int(row.last_epoch), 0)), "group": text(row.group_id),
        "worker": text(row.worker), "device": text(row.device),
        "slurm job": text(row.slurm_job_id), "started": _when(row.started_at),
        "heartbeat": _when(row.heartbeat_at), "finished": _when(row.finished_at),
        "checkpoint": text(row.checkpoint_path), "error": text(row.error),
    }
    epochs = db.epochs_frame(run_ids=[run_id])
    curves = flatten(epochs)[["epoch", "split", "loss", "accuracy", *diagnostic_columns(epochs)]]
    return RunDetails(run_id, row.sweep, row.config, {k: v for k, v in life.items() if v},
                      curves.reset_index(drop=True))


def _when(stamp: Any) -> str:
    """A timestamp to the second, in UTC."""
    return "" if stamp is None or pd.isna(stamp) else \
        pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M:%S UTC")


def diagnostic_columns(epochs: pd.DataFrame) -> list[str]:
    return [c for c in flatten(epochs.head(50)).columns if c.startswith("layer")]


def flatten(epochs: pd.DataFrame) -> pd.DataFrame:
    """Epoch rows with their diagnostics as columns ``layer<l>.<name>`` (l from 1)."""
    out = epochs.drop(columns=["diagnostics"], errors="ignore").copy()
    if "diagnostics" not in epochs:
        return out
    values: dict[str, list[Any]] = {}
    for i, diag in enumerate(epochs["diagnostics"]):
        for layer, stats in enumerate((diag or {}).get("layers", []) if isinstance(
                diag, dict) else [], start=1):
            for name, value in (stats or {}).items():
                values.setdefault(f"layer{layer}.{name}", [None] * len(epochs))[i] = value
    for name, column in values.items():
        out[name] = column
    return out


# --- export -------------------------------------------------------------------------------
def export_frame(db: ResultsDB, sweep: str | None = None) -> pd.DataFrame:
    """Every epoch row of every run (of ``sweep``): one row per run x epoch x split, with
    the run's status and every setting of its config as columns (lists and dicts as JSON;
    ``config.loss`` for the loss function, next to the ``loss`` values) and its diagnostics
    flattened per layer (``layer<l>.<name>``)."""
    import json

    runs = db.runs_frame(sweep)
    epochs = flatten(db.epochs_frame(sweep))
    keep = ["run_id", "epoch", "split", "loss", "accuracy", "top5", "seconds",
            *[c for c in epochs.columns if c.startswith("layer")]]
    epochs = epochs[[c for c in keep if c in epochs]]
    settings = pd.DataFrame([{k: json.dumps(v, sort_keys=True) if isinstance(v, list | dict)
                              else v for k, v in c.items()} for c in runs["config"]])
    # a setting named like a metric column (the loss function, `loss`) becomes config.loss
    settings = settings.rename(columns={c: f"config.{c}" for c in settings.columns
                                        if c in epochs.columns})
    settings.insert(0, "run_id", runs["run_id"].values)
    settings.insert(1, "sweep", runs["sweep"].values)
    settings.insert(2, "status", runs["status"].values)
    merged = epochs.merge(settings, on="run_id", how="left")
    first = ["sweep", "run_id", "status", "epoch", "split"]
    return merged[first + [c for c in merged.columns if c not in first]]
