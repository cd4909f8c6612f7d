"""Which runs make up a curve, a panel and a line, and choosing among a curve's LRs.

A *curve* is what CRGD calls one: data set × network × algorithm × decor
(`corrgd.spec.config.CURVE_KEYS`), plus any other setting the sweep varies (e.g.
``depth`` in NPD Table 3, ``np_samples`` in NPD Table 4). Its runs differ in
``lr``, ``decor_lr`` (the *settings*) and ``seed``.

Curves are split into *panels* by the settings that describe the task and the
network (dataset, network, depth, width, ...) and into *lines* within a panel by
the rest (algorithm, decor, np_samples, ...). A line's *family* is the line
without its decor flag: plain and decorrelated variants share it, and a colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from corrgd.results import analysis
from corrgd.results.reports import labels
from corrgd.spec.config import AXIS_COLUMNS, CURVE_KEYS, RunConfig

SETTINGS = ("lr", "decor_lr")
#: Settings that describe the task or the network: they split panels, the others lines.
PANEL_FIELDS = frozenset({"dataset", "data", "val_size", "network", "width", "depth", "hidden",
                          "padding", "bias", "last_hidden_activation", "loss"})
LRS_MODES = ("best", "all")
SELECT_METRIC = "val_acc"


def select_rule(metric: str = SELECT_METRIC) -> str:
    best = "best" if analysis.METRICS[metric][2] else "lowest"
    return (f"the (lr, decor_lr) with the {best} mean over seeds of each run's peak "
            f"{metric}, among those none of whose runs diverged; ties go to the smaller lr, "
            "then the smaller decor_lr")


def logs_accuracy(epochs: pd.DataFrame) -> bool:
    """False for regression runs: they log a loss and no accuracy."""
    return "accuracy" in epochs and bool(epochs["accuracy"].notna().any())


def selection_metric(epochs: pd.DataFrame) -> str:
    """val_acc; val_loss for regression runs, which log no accuracy."""
    return SELECT_METRIC if logs_accuracy(epochs) else "val_loss"


@dataclass
class Curves:
    """The runs of a sweep, labelled: one row per run.

    Columns: ``run_id, status, seed``, ``lr, decor_lr``, the panel and line columns,
    and the labels ``panel, curve, family, line`` (``line`` = ``curve`` plus the
    run's LRs where a curve shows several) with their sort ranks ``panel_rank``
    and ``curve_rank``.
    """

    runs: pd.DataFrame
    panel_columns: list[str]
    line_columns: list[str]
    notes: list[str] = field(default_factory=list)
    lrs_selected: bool = False  # whether some curve's LRs were chosen by `choose_settings`

    @property
    def curve_columns(self) -> list[str]:
        return [*self.panel_columns, *self.line_columns]


def _hashable(value: Any) -> Any:
    value = analysis.setting_values(value)
    return None if labels.is_missing(value) else value


def extra_axes(runs: pd.DataFrame) -> dict[str, list[Any]]:
    """The settings other than the standard axes that tell runs apart or are notable:
    every setting taking several values among the runs (`analysis.varying_settings`: only
    seeds are pooled), and swept axes with a value other than `RunConfig`'s default."""
    values: dict[str, list[Any]] = {n: [_hashable(v) for v in column]
                                    for n, column in analysis.varying_settings(runs).items()}
    for axes in runs.get("axes", pd.Series(dtype=object)):
        for name in axes or {}:
            if name not in AXIS_COLUMNS and name not in values:
                column = [_hashable((a or {}).get(name)) for a in runs["axes"]]
                if any(v != _default(name) for v in column):
                    values[name] = column
    return values


def label_runs(runs: pd.DataFrame) -> Curves:
    """Label the runs of `ResultsDB.runs_frame` with their panel, curve and family."""
    base = ["run_id", "status", "seed", *SETTINGS, *CURVE_KEYS,
            *(["sweep"] if "sweep" in runs else [])]
    frame = runs[base].copy()
    frame["decor"] = [bool(v) if not labels.is_missing(v) else False for v in frame["decor"]]
    frame["decor_lr"] = frame["decor_lr"].fillna(0.0)
    extras = extra_axes(runs)
    for name, column in extras.items():  # object dtype: ints stay ints next to None
        frame[name] = pd.Series(column, index=frame.index, dtype=object)
    panel_extra = [n for n in extras if n in PANEL_FIELDS]
    line_extra = [n for n in extras if n not in PANEL_FIELDS]
    panel_columns = ["dataset", "network", *panel_extra]
    line_columns = ["algorithm", "decor", *line_extra]

    # A line's label names an extra setting where it tells curves apart: where the
    # algorithm is run with several values of it, or with a value other than the default.
    values_per_algorithm = {n: frame.groupby("algorithm")[n].agg(lambda s: len(set(s)))
                            for n in line_extra}

    def panel_extras(row: Any) -> list[tuple[str, Any]]:
        return [(n, getattr(row, n)) for n in panel_extra
                if not labels.is_missing(getattr(row, n))]

    def line_extras(row: Any) -> list[tuple[str, Any]]:
        return [(n, getattr(row, n)) for n in line_extra
                if not labels.is_missing(getattr(row, n))
                and (values_per_algorithm[n][row.algorithm] > 1
                     or getattr(row, n) != _default(n))]

    rows = list(frame.itertuples(index=False))
    frame["panel"] = [labels.panel_label(r.dataset, r.network, panel_extras(r)) for r in rows]
    frame["curve"] = [labels.curve_label(r.algorithm, r.decor, line_extras(r)) for r in rows]
    frame["family"] = [labels.family_label(r.algorithm, line_extras(r)) for r in rows]
    frame["panel_rank"] = _ranks(frame, panel_columns)
    frame["curve_rank"] = _ranks(frame, [c for c in line_columns if c != "decor"] + ["decor"])
    frame["line"] = frame["curve"]
    return Curves(frame.reset_index(drop=True), panel_columns, line_columns)


def by_sweep_lines(curves: Curves) -> Curves:
    """Curves of several sweeps told apart by their sweep: ``quickstart: BP+decor``."""
    runs = curves.runs.copy()
    sweeps = list(runs["sweep"])
    for column in ("curve", "family", "line"):
        runs[column] = [f"{s}: {v}" for s, v in zip(sweeps, runs[column], strict=True)]
    order = {s: i for i, s in enumerate(dict.fromkeys(sweeps))}
    runs["curve_rank"] = [order[s] * 10_000 + r for s, r in
                          zip(sweeps, runs["curve_rank"], strict=True)]
    return Curves(runs, curves.panel_columns, [*curves.line_columns, "sweep"], curves.notes,
                  curves.lrs_selected)


def _default(name: str) -> Any:
    field_info = RunConfig.model_fields.get(name)
    return None if field_info is None else _hashable(field_info.default)


def _ranks(frame: pd.DataFrame, columns: list[str]) -> list[int]:
    keys = [tuple(labels.sort_key(c, v) for c, v in zip(columns, row, strict=True))
            for row in frame[columns].itertuples(index=False)]
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    return [order[k] for k in keys]


def choose_settings(curves: Curves, epochs: pd.DataFrame, lrs: str = "best") -> Curves:
    """Where a curve has runs at several (lr, decor_lr), keep the best or label each.

    ``lrs="best"``: keep, per curve, the setting chosen by ``select_rule(selection_metric(epochs))``
    (failed runs do not count, and a setting with a run that diverged is not eligible; a
    curve without validation results, or whose every setting diverged, keeps all its
    settings, with a note). ``lrs="all"``: keep every run; lines of curves with
    several settings are labelled with their LRs, e.g. ``BP (lr 1e-3)``.
    """
    if lrs not in LRS_MODES:
        raise ValueError(f"lrs must be one of {', '.join(LRS_MODES)}, not {lrs!r}")
    runs = curves.runs
    if runs.empty:
        return curves
    keys = ["panel", "curve"]
    n_settings = runs.groupby(keys, sort=False)[list(SETTINGS)].transform(
        lambda s: s.nunique(dropna=False))
    several = (n_settings > 1).any(axis=1)
    n_settings_before = several
    notes = list(curves.notes)
    if lrs == "best" and several.any():
        metric = selection_metric(epochs)
        larger = analysis.METRICS[metric][2]
        notes.append(f"Curves with several LRs show {select_rule(metric)}.")
        scores = analysis.peak_scores(epochs, metric)[["run_id", "score"]]
        # a run that failed, or that successive halving stopped early, is never chosen
        scored = runs[~runs["status"].isin(("failed", analysis.PRUNED))].merge(
            scores, on="run_id")
        unstable = (scored["status"] == "diverged").groupby(
            [scored[k] for k in (*keys, *SETTINGS)]).transform("any").astype(bool)
        keep = pd.Series(True, index=runs.index)
        for (panel, curve), group in runs[several].groupby(keys, sort=False):
            mine = (scored["panel"] == panel) & (scored["curve"] == curve)
            candidates = scored[mine & ~unstable]
            if candidates.empty:
                why = "every setting has a run that diverged" if unstable[mine].any() \
                    else f"no {metric} to choose among its LRs"
                notes.append(f"{panel} {curve}: {why}; showing all")
                continue
            means = candidates.groupby(list(SETTINGS))["score"].mean().reset_index()
            best = means.sort_values(["score", "lr", "decor_lr"],
                                     ascending=[not larger, True, True]).iloc[0]
            chosen = (group["lr"] == best["lr"]) & (group["decor_lr"] == best["decor_lr"])
            keep[group.index] = chosen
        runs = runs[keep].copy()
        n_settings = runs.groupby(keys, sort=False)[list(SETTINGS)].transform(
            lambda s: s.nunique(dropna=False))
        several = (n_settings > 1).any(axis=1)
    runs = runs.copy()
    runs["line"] = [
        f"{c} ({_lr_text(lr, dlr, decor)})" if s else c
        for c, lr, dlr, decor, s in zip(runs["curve"], runs["lr"], runs["decor_lr"],
                                        runs["decor"], several, strict=True)]
    return Curves(runs.reset_index(drop=True), curves.panel_columns, curves.line_columns, notes,
                  lrs_selected=lrs == "best" and bool(n_settings_before.any()))


def _lr_text(lr: float, decor_lr: float, decor: bool) -> str:
    text = f"lr {labels.format_lr(lr)}"
    return text + (f", decor lr {labels.format_lr(decor_lr)}" if decor else "")
