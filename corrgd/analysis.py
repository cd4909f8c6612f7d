"""Pure pandas over the results frames: selecting learning rates, summarising curves.

Frames come from `ResultsDB.runs_frame` / `epochs_frame` (or anything with the
same columns), so this module knows nothing of SQL.
"""

from __future__ import annotations

import pandas as pd

from corrgd.config import CURVE_KEYS

# metric name -> (split, column, larger is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    f"{split}_{short}": (split, column, short == "acc")
    for split in ("train", "val", "test")
    for short, column in (("acc", "accuracy"), ("loss", "loss"))
}
FINISHED = ("done", "diverged")
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


def best_params(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str = "val_acc"
                ) -> pd.DataFrame:
    """For every curve (dataset × network × algorithm × decor) the lr and decor_lr whose
    run has the best peak `metric` over epochs (CRGD Appendix E). Finished runs only.

    Columns: the curve keys, lr, decor_lr, score, peak_epoch, run_id, candidates
    (runs compared) and tied (how many other runs reached the same score).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    larger = METRICS[metric][2]
    finished = runs[runs["status"].isin(FINISHED)]
    scored = finished.merge(peak_scores(epochs, metric), on="run_id")
    columns = [*CURVE_KEYS, "lr", "decor_lr", "score", "peak_epoch", "run_id", "candidates",
               "tied"]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    scored = scored.assign(order=-scored["score"] if larger else scored["score"])
    scored = scored.sort_values(["order", "lr", "decor_lr", "run_id"])
    groups = scored.groupby(list(CURVE_KEYS), sort=True)["score"]
    scored["candidates"] = groups.transform("size")
    scored["tied"] = groups.transform(lambda s: int((s == s.iloc[0]).sum()) - 1)
    best = scored.groupby(list(CURVE_KEYS), sort=True).head(1)
    return best[columns].sort_values(list(CURVE_KEYS)).reset_index(drop=True)


def lookup(best: pd.DataFrame) -> dict[tuple, dict[str, float]]:
    """`best_params` as {curve key: {"lr": .., "decor_lr": ..}} for sweep selection."""
    return {tuple(row[k] for k in CURVE_KEYS): {"lr": float(row["lr"]),
                                                "decor_lr": float(row["decor_lr"])}
            for _, row in best.iterrows()}
