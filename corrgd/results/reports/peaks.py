"""NPD Tables 3 and 4: peak train and test accuracy per curve, over seeds.

Each finished run's peak accuracy over its epochs (epoch 0, before training,
included), per split; then per line the mean and the sample standard deviation
(ddof 1) over its seeds, shown as ``mean ± std`` in percent. The best mean per
column is set in bold, as in the papers.
"""

from __future__ import annotations

import pandas as pd

from corrgd.results.analysis import FINISHED, peak_scores
from corrgd.results.reports import labels, progress
from corrgd.results.reports.curves import choose_settings, label_runs, logs_accuracy
from corrgd.results.reports.tables import BOLD, Table

SPLITS = ("train", "test")
SPREAD = "± sample standard deviation over seeds (ddof 1)"


def peak_frame(runs: pd.DataFrame, epochs: pd.DataFrame, lrs: str = "best"
               ) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """Per panel, line and split: mean, std, min, max and n_seeds of the runs' peak accuracy
    (for regression runs, their lowest loss).

    Also returns the panels and the lines in order (including those without a
    finished run yet) and notes (LR choice, incomplete curves).
    """
    curves = choose_settings(label_runs(runs), epochs, lrs)
    finished = curves.runs[curves.runs["status"].isin(FINISHED)]
    short = "acc" if logs_accuracy(epochs) else "loss"
    parts = []
    for split in SPLITS:
        scores = peak_scores(epochs, f"{split}_{short}")[["run_id", "score"]]
        parts.append(finished.merge(scores, on="run_id").assign(split=split))
    peaks = pd.concat(parts, ignore_index=True)
    peaks["score"] = peaks["score"].astype(float) * (100 if short == "acc" else 1)
    keys = ["panel_rank", "curve_rank", "panel", "line", "curve", "lr", "decor_lr", "split"]
    stats = (peaks.groupby(keys, sort=True)["score"]
             .agg(mean="mean", std="std", min="min", max="max", n_seeds="count").reset_index())
    stats["split"] = pd.Categorical(stats["split"], SPLITS)
    stats = stats.sort_values(["panel_rank", "curve_rank", "lr", "decor_lr", "split"])
    panels = curves.runs.sort_values("panel_rank")["panel"].drop_duplicates().tolist()
    lines = (curves.runs.sort_values(["curve_rank", "lr", "decor_lr"])["line"]
             .drop_duplicates().tolist())
    notes = list(curves.notes)
    notes += [f"Incomplete: {line}" for line in progress.missing_lines(curves)]
    if hint := progress.retry_hint(curves):
        notes.append(f"Failed: {hint}")
    data = stats.drop(columns=["panel_rank", "curve_rank"]).reset_index(drop=True)
    data["split"] = data["split"].astype(str)
    return data, panels, lines, notes


def _cell(mean: float, std: float, n: int, digits: int) -> str:
    if n < 2 or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def peak_table(runs: pd.DataFrame, epochs: pd.DataFrame, sweep: str, lrs: str = "best"
               ) -> Table:
    """Peak accuracy (%) per line and split (NPD Tables 3-4), or for regression runs the
    lowest loss (NPD Fig. 8's final numbers); the best mean per column in bold."""
    data, panels, lines, notes = peak_frame(runs, epochs, lrs)
    accuracy = logs_accuracy(epochs)
    what = "Peak accuracy (%)" if accuracy else "Lowest loss"
    columns = [f"{panel} {split}" for panel in panels for split in SPLITS]
    display = pd.DataFrame("–", index=pd.Index(lines, name="method"), columns=columns)
    groups = data.groupby(["panel", "split"])["mean"]
    best = groups.transform("max" if accuracy else "min")
    for row, is_best in zip(data.itertuples(index=False), data["mean"] == best, strict=True):
        text = _cell(row.mean, row.std, row.n_seeds, 1 if accuracy else 3)
        display.loc[row.line, f"{row.panel} {row.split}"] = (
            f"{BOLD}{text}{BOLD}" if is_best and len(lines) > 1 else text)
    display = display.reset_index()
    notes = [f"{what} over epochs per run, mean {SPREAD}; best mean per column in bold.",
             *notes]
    return Table(f"peak-{labels.slug(sweep)}", f"{what}, sweep {sweep}", display, data, notes)
