"""CRGD Table 2: per curve, the forward and decor LRs of the best grid-search run.

Per curve (data set × network × algorithm × decor, and any other setting the
sweep varies) the run with the best peak validation score over epochs wins
(`corrgd.results.analysis.best_params`, CRGD Appendix E); ties are broken by
`corrgd.results.analysis.TIE_BREAK` and marked † in the table. A run that diverged
is not eligible, however high it peaked first; a curve whose finished runs all
diverged shows "diverged" instead of LRs, and a line says so.
"""

from __future__ import annotations

import pandas as pd

from corrgd.results import analysis
from corrgd.results.reports import labels, progress
from corrgd.results.reports.curves import Curves, label_runs
from corrgd.results.reports.tables import Table
from corrgd.spec.config import CURVE_KEYS

TIE_MARK = "†"


def best_frame(curves: Curves, runs: pd.DataFrame, epochs: pd.DataFrame,
               metric: str) -> pd.DataFrame:
    """`analysis.best_params` per curve, also per extra swept setting, with labels.

    One row per curve that has an eligible (finished, not diverged), scored run: panel,
    curve, family, the curve columns, lr, decor_lr, score, peak_epoch, run_id, candidates,
    tied.
    """
    extras = [c for c in curves.curve_columns if c not in CURVE_KEYS]
    labelled = curves.runs
    parts = []
    if extras:
        groups = labelled.groupby(extras, dropna=False, sort=False)["run_id"]
        id_sets = [set(ids) for _, ids in groups]
    else:
        id_sets = [set(labelled["run_id"])]
    for ids in id_sets:
        sub_runs = runs[runs["run_id"].isin(ids)]
        sub_epochs = epochs[epochs["run_id"].isin(ids)]
        parts.append(analysis.best_params(sub_runs, sub_epochs, metric))
    best = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    info = labelled[["run_id", "panel", "curve", "family", "panel_rank", "curve_rank", *extras]]
    best = best.drop(columns=[c for c in CURVE_KEYS if c in best]).merge(info, on="run_id")
    best = best.merge(labelled[["run_id", *CURVE_KEYS]], on="run_id")
    best = best.sort_values(["panel_rank", "curve_rank"]).reset_index(drop=True)
    return best


def _score_text(metric: str, score: float) -> str:
    return f"{100 * score:.2f}" if metric.endswith("_acc") else f"{score:.4g}"


def best_params_tables(runs: pd.DataFrame, epochs: pd.DataFrame, metric: str,
                       sweep: str) -> tuple[list[Table], list[str]]:
    """Table 2 (wide, as in CRGD) and its detail (scores), plus lines about ties and gaps."""
    if metric not in analysis.METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(analysis.METRICS)}")
    curves = label_runs(runs)
    best = best_frame(curves, runs, epochs, metric)
    lr_name = "Adam LR" if all(c.get("optimizer", "adam") == "adam"
                               for c in runs["config"]) else "LR"
    panels = (curves.runs.sort_values("panel_rank")["panel"].drop_duplicates().tolist())
    by_curve = {(r.panel, r.curve): r for r in best.itertuples(index=False)}
    order = curves.runs.sort_values("curve_rank")[["family", "curve", "decor"]].drop_duplicates()
    counts = progress.curve_counts(curves)
    unstable = counts[(counts["diverged"] > 0) & (counts["finished"] == counts["diverged"])]
    all_diverged = {(r.panel, r.curve) for r in unstable.itertuples()}

    def cells(curve: str, attribute: str) -> list[str]:
        out = []
        for panel in panels:
            row = by_curve.get((panel, curve))
            if row is None:
                text = "diverged" if (panel, curve) in all_diverged else "–"
            else:
                text = labels.format_lr(getattr(row, attribute))
            out.append(text + (TIE_MARK if row is not None and row.tied else ""))
        return out

    rows = []
    for family in order["family"].drop_duplicates():
        members = order[order["family"] == family]
        for curve, decor in zip(members["curve"], members["decor"], strict=True):
            rows.append([curve, lr_name, *cells(curve, "lr")])
            if decor:
                rows.append(["", "decor LR", *cells(curve, "decor_lr")])
    display = pd.DataFrame(rows, columns=["algorithm", "setting", *panels])

    data = counts[["panel", "curve", "finished", "diverged", "total"]].merge(
        best, on=["panel", "curve"], how="left")
    keep = ["panel", "curve", *curves.curve_columns, "lr", "decor_lr", "score", "peak_epoch",
            "run_id", "candidates", "tied", "finished", "diverged", "total"]
    data = data[[c for c in keep if c in data.columns]].assign(metric=metric)

    tied = best[best["tied"] > 0]
    tie_lines = [f"{TIE_MARK} {r.panel} {r.curve}: {r.tied} other run(s) reached the same "
                 f"{metric} ({_score_text(metric, r.score)})" for r in tied.itertuples()]
    diverged_lines = [f"{r.panel} {r.curve}: every finished run diverged ({r.diverged} of "
                      f"{r.total} runs); no LRs selected" for r in unstable.itertuples()]
    notes = [f"Per curve, the run with the best peak {metric} over epochs (CRGD Appendix E); "
             "finished runs that did not diverge only.", f"Ties: {analysis.TIE_BREAK}.",
             *(tie_lines or ["No ties."]), *diverged_lines]
    missing = progress.missing_lines(curves)
    notes += [f"Incomplete: {line}" for line in missing]
    if hint := progress.retry_hint(curves, sweep):
        notes.append(f"Failed: {hint}")
    table2 = Table(f"best-params-{labels.slug(sweep)}",
                   f"Selected learning rates (sweep {sweep}, by {metric})", display, data,
                   notes, label_columns=2)

    detail_rows = [[r.panel, r.curve, labels.format_lr(r.lr),
                    labels.format_lr(r.decor_lr) if r.decor else "–",
                    _score_text(metric, r.score) + (TIE_MARK if r.tied else ""),
                    str(int(r.peak_epoch)), str(int(r.candidates)), str(int(r.tied))]
                   for r in best.itertuples()]
    score_name = f"peak {metric}" + (" (%)" if metric.endswith("_acc") else "")
    detail = Table(f"best-params-{labels.slug(sweep)}-detail",
                   f"Best runs per curve (sweep {sweep})",
                   pd.DataFrame(detail_rows, columns=["panel", "curve", "lr", "decor lr",
                                                      score_name, "epoch", "runs compared",
                                                      "ties"]),
                   data, [f"Ties: {analysis.TIE_BREAK}."], label_columns=2)
    messages = [f"Ties: {analysis.TIE_BREAK}.", *(tie_lines or ["No ties."]), *diverged_lines,
                *missing]
    return [table2, detail], messages
