"""Pure pandas over the results frames: selecting learning rates, summarising curves.

Frames come from `ResultsDB.runs_frame` / `epochs_frame` (or anything with the
same columns), so this module knows nothing of SQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd

from corrgd.spec.config import CURVE_KEYS

# metric name -> (split, column, larger is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    f"{split}_{short}": (split, column, short == "acc")
    for split in ("train", "val", "test")
    for short, column in (("acc", "accuracy"), ("loss", "loss"))
}
FINISHED = ("done", "diverged")
#: Stopped at a rung of successive halving (`corrgd.spec.pruning`): trained no further, so
#: neither finished nor eligible; figures leave such runs out unless asked.
PRUNED = "pruned"
#: Runs a selection may pick (`best_params`, a spec's `select:`): a run that diverged is not
#: stable at its LRs, however high it peaked first (NPD Appendix F: "the highest stable
#: learning rate"; CRGD does not say).
ELIGIBLE = ("done",)
TIE_BREAK = "ties go to the smaller lr, then the smaller decor_lr, then the earlier run"


def peak_scores(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per run: the best value of `metric` over its epochs and the epoch it occurred."""
    split, column, larger = METRICS[metric]
    rows = epochs[(epochs["split"] == split) & epochs[column].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["run_id", "score", "peak_epoch"])
    best = rows.loc[(rows[column] if larger else -rows[column]).groupby(rows["run_id"]).idxmax()]
    return best[["run_id", column, "epoch"]].rename(columns={column: "score",
                                                             "epoch": "peak_epoch"})


def setting_values(value: Any) -> Any:
    """A setting's value in a form that compares and hashes (lists, dicts)."""
    if isinstance(value, list | tuple):
        return tuple(setting_values(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def varying_settings(runs: pd.DataFrame) -> dict[str, list[Any]]:
    """Every setting other than the curve keys, lr, decor_lr and seed that takes several
    values among `runs` (from each run's full config, swept or not: e.g. depth,
    np_samples, or `data` options set per grid; frames without configs: their swept
    axes), with its value per run. Such settings split curves: only seeds are pooled
    (and lr, decor_lr are chosen or labelled)."""
    standard = {*CURVE_KEYS, "lr", "decor_lr", "seed"}
    if "config" in runs:
        sources = [c or {} for c in runs["config"]]
    else:
        sources = [a or {} for a in runs.get("axes", pd.Series([{}] * len(runs)))]
    names = dict.fromkeys(k for c in sources for k in c if k not in standard)
    out = {}
    for name in names:
        column = [setting_values(c.get(name)) for c in sources]
        if len(set(map(repr, column))) > 1:
            out[name] = column
    return out


def swept_axes(runs: pd.DataFrame) -> list[str]:
    """The names of `varying_settings(runs)`: they split curves too."""
    return list(varying_settings(runs))


def with_settings(runs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """`runs` with a column per setting in `names`, from each run's config (frames without
    configs keep their columns)."""
    if "config" not in runs:
        return runs
    out = runs.copy()
    for name in names:
        out[name] = pd.Series([setting_values((c or {}).get(name)) for c in runs["config"]],
                              index=runs.index, dtype=object)
    return out


def best_params(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str = "val_acc",
                by: list[str] | None = None) -> pd.DataFrame:
    """For every curve (dataset × network × algorithm × decor, and the axes `by`; default:
    `swept_axes(runs)`) the lr and decor_lr whose run has the best peak `metric` over
    epochs (CRGD Appendix E). Eligible runs only: finished and not diverged (`ELIGIBLE`).

    Columns: the curve keys, `by`, lr, decor_lr, score, peak_epoch, run_id, candidates
    (runs compared) and tied (how many other runs reached the same score).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    by = swept_axes(runs) if by is None else by
    keys = [*CURVE_KEYS, *by]
    larger = METRICS[metric][2]
    runs = with_settings(runs, by)
    eligible = runs[runs["status"].isin(ELIGIBLE)]
    scored = eligible.merge(peak_scores(epochs, metric), on="run_id")
    columns = [*keys, "lr", "decor_lr", "score", "peak_epoch", "run_id", "candidates", "tied"]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    scored = scored.assign(order=-scored["score"] if larger else scored["score"])
    scored = scored.sort_values(["order", "lr", "decor_lr", "run_id"])
    groups = scored.groupby(keys, sort=True, dropna=False)["score"]
    scored["candidates"] = groups.transform("size")
    scored["tied"] = groups.transform(lambda s: int((s == s.iloc[0]).sum()) - 1)
    best = scored.groupby(keys, sort=True, dropna=False).head(1)
    return best[columns].sort_values(keys).reset_index(drop=True)


def selection_lookup(db: Any) -> Callable[[str, str], list[tuple[dict, dict]]]:
    """For `sweeps.expand`: (source sweep, metric) -> [(curve conditions, {lr, decor_lr})].

    `db` is anything with `runs_frame(sweep)` and `epochs_frame(sweep, diagnostics=)`
    (a `ResultsDB`), or None (no database yet); an unknown source sweep is a LookupError
    saying which sweeps there are, and a curve without an eligible run (all its runs
    diverged, failed or are unfinished) gives no entry.
    """

    def lookup(source: str, metric: str) -> list[tuple[dict, dict]]:
        names = [] if db is None else list(db.list_sweeps()["sweep"])
        if source not in names:
            raise LookupError(f"no sweep {source!r} in the results database (sweeps: "
                              f"{', '.join(names) or 'none'})")
        runs = db.runs_frame(source)
        best = best_params(runs, db.epochs_frame(source, diagnostics=False), metric)
        keys = [c for c in best.columns if c not in _RESULT_COLUMNS]
        configs = dict(zip(runs["run_id"], runs["config"], strict=True))
        return [({k: configs[row["run_id"]].get(k, _plain(row[k])) for k in keys},
                 {"lr": float(row["lr"]), "decor_lr": float(row["decor_lr"])})
                for _, row in best.iterrows()]

    return lookup


_RESULT_COLUMNS = {"lr", "decor_lr", "score", "peak_epoch", "run_id", "candidates", "tied"}



def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so they compare equal to a spec's settings."""
    return value.item() if hasattr(value, "item") else value
