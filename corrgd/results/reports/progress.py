"""How complete each curve of a sweep is, for reports on sweeps still running.

A run has *ended* (`ENDED`) when it will train no further: it is ``done`` or ``diverged``
(`corrgd.results.analysis.FINISHED`), or successive halving stopped it (``pruned``). A
``failed`` run has not: a rerun of the sweep trains it again.
"""

from __future__ import annotations

import pandas as pd

from corrgd.results.analysis import FINISHED, PRUNED
from corrgd.results.reports.curves import SETTINGS, Curves

UNFINISHED = ("running", "queued", "failed")
ENDED = (*FINISHED, PRUNED)  # no more epochs to come


def curve_counts(curves: Curves) -> pd.DataFrame:
    """One row per curve: panel, curve, total, finished, and a count per status."""
    runs = curves.runs
    columns = ["panel", "curve", "total", "finished", "settings", *UNFINISHED, "diverged",
               PRUNED]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (panel, curve), group in runs.groupby(["panel", "curve"], sort=False):
        status = group["status"].value_counts()
        rows.append({
            "panel": panel, "curve": curve, "total": len(group),
            "finished": int(group["status"].isin(ENDED).sum()),
            "settings": len(group[list(SETTINGS)].drop_duplicates()),
            **{s: int(status.get(s, 0)) for s in (*UNFINISHED, "diverged", PRUNED)},
            "order": (group["panel_rank"].iloc[0], group["curve_rank"].iloc[0]),
        })
    frame = pd.DataFrame(rows).sort_values("order").drop(columns="order")
    return frame[columns].reset_index(drop=True)


def missing_lines(curves: Curves, *, with_panel: bool = True) -> list[str]:
    """One line per unfinished curve, e.g. ``FA+decor: 3 of 5 seeds finished (2 queued)``.

    "seeds" where a curve has one (lr, decor_lr), else "runs". Empty when all finished.
    """
    lines = []
    for row in curve_counts(curves).itertuples(index=False):
        if row.finished == row.total:
            continue
        unit = "seeds" if row.settings == 1 else "runs"
        details = [f"{getattr(row, s)} {s}" for s in UNFINISHED if getattr(row, s)]
        name = f"{row.panel} {row.curve}" if with_panel else row.curve
        lines.append(f"{name}: {row.finished} of {row.total} {unit} finished"
                     + (f" ({', '.join(details)})" if details else ""))
    return lines


def summary(curves: Curves, sweep: str) -> str:
    """E.g. ``sweep figure4: 37 of 40 runs finished (2 running, 1 failed)``."""
    status = curves.runs["status"].value_counts()
    total = len(curves.runs)
    finished = int(curves.runs["status"].isin(ENDED).sum())
    details = [f"{int(status[s])} {s}" for s in (*UNFINISHED, "diverged", PRUNED)
               if status.get(s, 0)]
    return (f"sweep {sweep}: {finished} of {total} runs finished"
            + (f" ({', '.join(details)})" if details else ""))


def retry_hint(curves: Curves, sweep: str | None = None) -> str | None:
    """How to retry a sweep's failed runs, where it has some."""
    failed = int((curves.runs["status"] == "failed").sum())
    if not failed:
        return None
    which = f" --sweep {sweep}" if sweep else ""
    return (f"{failed} runs failed: `corrgd status{which}` shows why, and "
            "`corrgd sweep SPEC --retry-failed` trains them again")
