"""Per-epoch statistics over seeds: the lines and shaded envelopes of the figures.

Pure pandas. A curve's envelope at epoch ``t`` is the minimum and maximum over
its runs (seeds) of the metric at ``t`` (CRGD Fig. 4, NPD Figs. 3-5); COPI Fig. 2
shades mean ± standard deviation instead, so ``std`` is given too.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from corrgd.results.analysis import METRICS
from corrgd.results.reports.curves import Curves

STAT_COLUMNS = ("mean", "min", "max", "std", "n_seeds")
#: The columns of a figure's CSV, one row per panel, metric, curve and epoch.
CSV_COLUMNS = ["panel", "metric", "curve", "algorithm", "decor", "lr", "decor_lr", "epoch",
               *STAT_COLUMNS]


#: Per-layer diagnostics logged every epoch (on the train row): ``NAME`` is the mean over
#: the layers that have it, ``NAME@L`` layer L (from 1).
DIAGNOSTICS = ("offdiag_corr", "input_offdiag_corr", "gain", "norm_ratio", "angle_to_bp",
               "feedback_angle")
METRIC_HELP = (f"{', '.join(METRICS)}, or a diagnostic ({', '.join(DIAGNOSTICS)}; "
               "NAME@L for layer L)")


def is_diagnostic(metric: str) -> bool:
    return metric.partition("@")[0] in DIAGNOSTICS


def check_metric(metric: str) -> None:
    name, at, layer = metric.partition("@")
    if metric in METRICS or (name in DIAGNOSTICS and (not at or layer.isdigit())):
        return
    raise ValueError(f"unknown metric {metric!r}; choose from {METRIC_HELP}")


def scale(metric: str) -> float:
    """Accuracies are shown in percent, losses and diagnostics as they are."""
    return 100.0 if metric.endswith("_acc") else 1.0


def metric_values(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``run_id, epoch, value``: `metric` (e.g. ``test_acc``, ``angle_to_bp@2``) per run and
    epoch, NaN dropped. Diagnostics need `epochs` with its ``diagnostics`` column."""
    check_metric(metric)
    if metric in METRICS:
        split, column, _ = METRICS[metric]
        rows = epochs[(epochs["split"] == split) & epochs[column].notna()]
        return rows[["run_id", "epoch", column]].rename(columns={column: "value"})
    name, _, layer = metric.partition("@")
    rows = epochs[epochs["split"] == "train"]
    values = [_diagnostic(d, name, int(layer) if layer else None)
              for d in rows.get("diagnostics", pd.Series([None] * len(rows)))]
    out = pd.DataFrame({"run_id": rows["run_id"].values, "epoch": rows["epoch"].values,
                        "value": values})
    return out[out["value"].notna()]


def _diagnostic(diagnostics: object, name: str, layer: int | None) -> float | None:
    layers = diagnostics.get("layers", []) if isinstance(diagnostics, dict) else []
    picked = [(s or {}).get(name) for s in (layers if layer is None else layers[layer - 1:
                                                                                 layer])]
    picked = [float(v) for v in picked if v is not None]
    return sum(picked) / len(picked) if picked else None


def envelope(values: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by`` and epoch: mean, min, max, std (ddof 1) and n_seeds of ``value``.

    ``values`` has one row per run and epoch (columns ``by``, ``epoch``, ``value``);
    ``n_seeds`` counts the runs with a value at that epoch.
    """
    keys = [*by, "epoch"]
    if values.empty:
        return pd.DataFrame(columns=[*keys, *STAT_COLUMNS])
    stats = values.groupby(keys, sort=True, dropna=False)["value"].agg(
        ["mean", "min", "max", "std", "count"])
    return stats.rename(columns={"count": "n_seeds"}).reset_index()


def curve_envelopes(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str,
                    by: Sequence[str]) -> pd.DataFrame:
    """`envelope` of `metric` (scaled, see :func:`scale`) for runs grouped by ``by``.

    ``runs`` has ``run_id`` and the ``by`` columns; epochs of other runs are ignored.
    """
    values = metric_values(epochs, metric).merge(runs[["run_id", *by]], on="run_id")
    values["value"] = values["value"] * scale(metric)
    return envelope(values, by)


def curve_frame(curves: Curves, epochs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The numbers behind a figure: per panel, metric, line and epoch, the stats over seeds.

    Columns: `CSV_COLUMNS` (``curve`` is the line's label) plus ``family``,
    ``panel_rank`` and ``curve_rank``. Failed runs are left out; running runs
    count with the epochs they have logged (``n_seeds`` says how many runs a point
    averages).
    """
    runs = curves.runs[curves.runs["status"] != "failed"]
    by = ["panel", "line", "family", "algorithm", "decor", "lr", "decor_lr", "panel_rank",
          "curve_rank"]
    parts = [curve_envelopes(runs, epochs, metric, by).assign(metric=metric)
             for metric in metrics]
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values(["panel_rank", "curve_rank", "lr", "decor_lr", "metric", "epoch"])
    return frame.rename(columns={"line": "curve"}).reset_index(drop=True)
