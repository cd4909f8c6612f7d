"""What `corrgd best-params` and `corrgd report --table/--compare` do, and the sweep
figures `corrgd report --figure` draws (`corrgd.experiments.report` dispatches figure ids);
`corrgd/cli.py` only parses options.

Each function prints to ``console``, writes under ``out`` (``tables/``,
``figures/``), returns the paths written, and raises `ReportError` (one line)
for anything the user can fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

from corrgd.results.analysis import FINISHED, METRICS, PRUNED
from corrgd.results.listings import RunDetails
from corrgd.results.reports import ReportError, figures, labels, progress, source
from corrgd.results.reports.best_params import best_params_tables
from corrgd.results.reports.curves import (
    LRS_MODES,
    by_sweep_lines,
    choose_settings,
    label_runs,
    logs_accuracy,
    selection_metric,
)
from corrgd.results.reports.envelopes import (
    CSV_COLUMNS,
    check_metric,
    curve_frame,
    is_diagnostic,
)
from corrgd.results.reports.peaks import peak_table
from corrgd.results.reports.registry import TABLES
from corrgd.results.reports.tables import Table, to_rich, write_table
from corrgd.storage.files import write_atomic

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB

TABLE2_SWEEP = "table2"


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ReportError(f"--metric: {metric!r} is not one of: {', '.join(METRICS)}")


def check_lrs(lrs: str) -> None:
    if lrs not in LRS_MODES:
        raise ReportError(f"--lrs: {lrs!r} is not one of: {', '.join(LRS_MODES)}")


def _show(tables: list[Table], out: Path, console: Console) -> list[Path]:
    paths = []
    for table in tables:
        console.print(to_rich(table))
        written = write_table(table, out / "tables")
        paths += written
        console.print(f"wrote {_stems(written)}", highlight=False)
    return paths


def _stems(paths: list[Path]) -> str:
    stem = paths[0].with_suffix("")
    return f"{stem}.{{{','.join(p.suffix[1:] for p in paths)}}}"


def _regression_aware(metrics: tuple[str, ...] | None, epochs: pd.DataFrame, sweep: str
                      ) -> tuple[str, ...]:
    """The metrics to use: accuracies by default, losses for regression runs (which log
    no accuracy); asking a regression sweep for an accuracy is an error."""
    if logs_accuracy(epochs) or epochs.empty:
        return metrics or ("test_acc",)
    if metrics is None:
        return ("test_loss",)
    asked = [m for m in metrics if m.endswith("_acc")]
    if asked:
        raise ReportError(f"--metric {asked[0]}: sweep {sweep} is a regression: it logs a "
                          f"loss and no accuracy; use {asked[0].replace('_acc', '_loss')}")
    return metrics


def best_params(db: ResultsDB, *, sweep: str | None, metric: str | None, out: Path,
                console: Console) -> list[Path]:
    """CRGD Table 2 for a grid-search sweep, with ties and gaps said (by val_acc, or for
    regression runs val_loss, unless `metric`)."""
    if metric is not None:
        _check_metric(metric)
    name = source.resolve_sweep(db, sweep, preferred=TABLE2_SWEEP)
    if sweep is None:
        console.print(f"sweep: {name}", highlight=False)
    runs, epochs = source.load(db, name)
    _check_finished(runs, name)
    metric = _regression_aware((metric or ("val_acc" if logs_accuracy(epochs) or epochs.empty
                                           else "val_loss"),), epochs, name)[0]
    split = METRICS[metric][0]
    finished_ids = runs.loc[runs["status"].isin(FINISHED), "run_id"]
    if not finished_ids.empty and not (epochs["run_id"].isin(finished_ids)
                                       & (epochs["split"] == split)).any():
        why = {"val": "a val split needs val_size > 0 in the spec",
               "test": "its runs have no test split, e.g. n_test: 0"}.get(split, "")
        raise ReportError(f"sweep {name} has no {split!r} results to select by ({why}); pick "
                          "another --metric")
    tables, messages = best_params_tables(runs, epochs, metric, name)
    paths = _show(tables, out, console)
    for line in messages:
        console.print(line, highlight=False)
    return paths


def _logged_diagnostics(epochs: pd.DataFrame) -> list[str]:
    """Every diagnostic the epochs hold, as `--metric` names them (NAME@L)."""
    names = {f"{name}@{layer}"
             for diag in epochs.get("diagnostics", pd.Series(dtype=object)).dropna()
             for layer, stats in enumerate(diag.get("layers", []), start=1)
             for name in stats or {}}
    return sorted(names, key=lambda n: (n.partition("@")[0], int(n.partition("@")[2])))


def _check_finished(runs: pd.DataFrame, sweep: str) -> None:
    """A table needs finished runs: an empty one would say nothing (nor its kind of
    sweep)."""
    if not runs["status"].isin(FINISHED).any():
        raise ReportError(f"sweep {sweep} has no finished runs yet, so no table to make; "
                          f"see corrgd status --sweep {sweep}")


def report_table(db: ResultsDB, which: str, *, sweep: str | None, metric: str | None,
                 lrs: str, out: Path, console: Console) -> list[Path]:
    if which not in TABLES:
        raise ReportError(f"--table: {which!r} is not one of: {', '.join(TABLES)}")
    check_lrs(lrs)
    if which == "2":
        return best_params(db, sweep=sweep, metric=metric, out=out, console=console)
    if metric is not None:
        raise ReportError(f"--metric {metric}: the peak table shows peak train and test "
                          "accuracy (loss for regression); --metric applies to --table 2 "
                          "and to figures")
    name = source.resolve_sweep(db, sweep)
    runs, epochs = source.load(db, name)
    _check_finished(runs, name)
    table = peak_table(runs, epochs, name, lrs)
    paths = _show([table], out, console)
    for note in table.notes:
        console.print(note, highlight=False)
    return paths


def report_compare(names: list[str], db: ResultsDB, *, metric: str | None, lrs: str,
                   out: Path, console: Console, pruned: bool = False) -> list[Path]:
    """The curves of several sweeps in one figure, each line named by its sweep."""
    check_lrs(lrs)
    if metric is not None:
        check_plot_metric(metric)
    known = source.sweep_names(db)
    for name in names:
        if name not in known:
            raise ReportError(f"--compare: no sweep {name!r} in the database (sweeps: "
                              f"{', '.join(known) or 'none'})")
    title = f"{' vs '.join(names)}: mean and {figures.BANDS['minmax']}"
    stem = "compare-" + "-".join(labels.slug(n) for n in names) + \
        (f"-{labels.slug(metric)}" if metric else "")
    return sweep_figure(db, names, metrics=(metric,) if metric else None, band="minmax",
                        stem=stem, title=title,
                        lrs=lrs, out_dir=out / "figures", console=console,
                        figure_id="compare", by_sweep=True, pruned=pruned)


def check_plot_metric(metric: str) -> None:
    try:
        check_metric(metric)
    except ValueError as e:
        raise ReportError(f"--metric: {e}") from None


def sweep_figure(db: ResultsDB, sweeps: list[str], *, metrics: tuple[str, ...] | None,
                 band: str, stem: str, title: str, lrs: str, out_dir: Path, console: Console,
                 figure_id: str, by_sweep: bool = False, pruned: bool = False) -> list[Path]:
    """An envelope figure of the curves of ``sweeps``; what is missing is said, not fatal.
    ``metrics`` None: test accuracy (test loss for regression runs, which log no
    accuracy). ``by_sweep``: lines are named by their sweep too (never pooled across
    sweeps). ``pruned``: draw the runs successive halving stopped too (a note says how
    many are left out otherwise)."""
    names = source.sweep_names(db)
    present = [s for s in sweeps if s in names]
    absent = [s for s in sweeps if s not in names]
    if not present:
        raise ReportError(
            f"figure {figure_id} needs sweep {', '.join(absent)}, not in the database "
            f"(sweeps: {', '.join(names) or 'none'}); {source.run_first(absent)}")
    diagnostics = any(is_diagnostic(m) for m in metrics or ())
    loaded = [source.load(db, s, diagnostics=diagnostics) for s in present]
    runs = pd.concat([r for r, _ in loaded], ignore_index=True)
    epochs = pd.concat([e for _, e in loaded], ignore_index=True)
    stopped = runs["status"] == PRUNED
    if stopped.any() and not pruned:
        console.print(f"{int(stopped.sum())} runs pruned by successive halving are not "
                      "drawn (--pruned draws them)", highlight=False)
        runs = runs[~stopped]
        epochs = epochs[epochs["run_id"].isin(runs["run_id"])]
    metrics = _regression_aware(metrics, epochs, ", ".join(present))
    labelled = label_runs(runs)
    if by_sweep:
        labelled = by_sweep_lines(labelled)
    curves = choose_settings(labelled, epochs, lrs)
    for name in absent:
        console.print(f"[yellow]missing:[/] sweep {name} is not in the database; its panels "
                      "are left out", highlight=False)
    for name in present:
        part = label_runs(runs[runs["sweep"] == name])
        console.print(progress.summary(part, name), highlight=False)
        for line in progress.missing_lines(part):
            console.print(f"  [yellow]incomplete:[/] {line}", highlight=False)
        if hint := progress.retry_hint(part, name):
            console.print(f"  [yellow]failed:[/] {hint}", highlight=False)
    for note in curves.notes:
        console.print(note, highlight=False)
    frame = curve_frame(curves, epochs, metrics)
    if frame.empty and epochs.empty:
        raise ReportError(f"figure {figure_id}: no epochs logged yet in sweep "
                          f"{', '.join(present)}; see `corrgd status --sweep "
                          f"{present[0]}`")
    silent = sorted(set(present) - set(runs.loc[runs["run_id"].isin(epochs["run_id"]),
                                                 "sweep"]))
    if by_sweep and silent:
        raise ReportError(f"--compare: sweep {', '.join(silent)} has logged no epochs yet, so "
                          f"there is nothing to compare; see `corrgd status --sweep "
                          f"{silent[0]}`")
    if frame.empty and not any(is_diagnostic(m) for m in metrics):
        raise ReportError(f"--metric {', '.join(metrics)}: sweep {', '.join(present)} logged "
                          f"no such rows, only the splits {', '.join(sorted(set(epochs['split'])))}"
                          " (a val split needs val_size > 0 in the spec)")
    if frame.empty:
        logged = _logged_diagnostics(epochs)
        raise ReportError(f"--metric {', '.join(metrics)}: sweep {', '.join(present)} logged "
                          f"no such diagnostic; it logged {', '.join(logged) or 'none'}")
    panels = curves.runs.sort_values("panel_rank")["panel"].drop_duplicates().tolist()
    if curves.lrs_selected:
        title += f"; LRs: best by {selection_metric(epochs)}"
    fig = figures.draw(frame, panels, metrics, title=title, band=band)
    paths = figures.save(fig, frame[CSV_COLUMNS], out_dir, stem)
    console.print(f"wrote {_stems(paths[:-1])} and {paths[-1]}", highlight=False)
    return paths


def run_figure(details: RunDetails, out_dir: Path) -> Path:
    """One run's loss and accuracy per epoch and split, as a PNG; ReportError for a run
    without epochs."""
    if details.curves.empty:
        raise ReportError(f"run {details.run_id} has logged no epochs yet, so no figure to "
                          f"draw (status {details.life['status']})")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = details.curves
    has_accuracy = curves["accuracy"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(9 if has_accuracy else 5, 3.5),
                             squeeze=False)
    for split, part in curves.groupby("split", sort=False):
        part = part.sort_values("epoch")
        axes[0][0].plot(part["epoch"], part["loss"], marker=".", label=split)
        if has_accuracy:
            axes[0][1].plot(part["epoch"], 100 * part["accuracy"], marker=".", label=split)
    axes[0][0].set(xlabel="epoch", ylabel="loss")
    if has_accuracy:
        axes[0][1].set(xlabel="epoch", ylabel="accuracy (%)")
    axes[0][0].legend(frameon=False)
    fig.suptitle(f"run {details.run_id} of sweep {details.sweep}")
    fig.tight_layout()
    path = write_atomic(out_dir / f"run-{details.run_id}.png",
                        lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return path
