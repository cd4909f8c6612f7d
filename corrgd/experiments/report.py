"""What `corrgd report --figure ID` does: dispatch on the figure registry.

A sweep figure (or any sweep's name) is drawn by
`corrgd.results.reports.commands.sweep_figure`; a computed figure by its experiment.
Prints to ``console``, writes under ``out/figures``, returns the paths written, and
raises `ReportError` (one line) for anything the user can fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from corrgd.experiments.registry import FIGURES, ComputedFigure, SweepFigure
from corrgd.results.reports import ReportError, figures, labels, source
from corrgd.results.reports.commands import check_lrs, check_plot_metric, sweep_figure

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB


def report_figure(figure_id: str, open_db: Callable[[], ResultsDB], *, sweep: str | None,
                  lrs: str, out: Path, console: Console, metric: str | None = None,
                  pruned: bool = False) -> list[Path]:
    """Draw figure ``figure_id`` (a registry id or a sweep name) under ``out/figures``;
    ``metric`` replaces a sweep figure's (default: test accuracy); ``pruned``: draw the
    runs successive halving stopped too."""
    check_lrs(lrs)
    if metric is not None:
        check_plot_metric(metric)
    spec = FIGURES.get(figure_id)
    out_dir = out / "figures"
    if isinstance(spec, ComputedFigure):
        if metric is not None:
            raise ReportError(f"--metric {metric}: figure {figure_id} is computed, from no "
                              "logged metric; --metric applies to sweep figures")
        if sweep is not None and not spec.needs_db:
            raise ReportError(f"--sweep {sweep}: figure {figure_id} is computed without "
                              "the results database")
        return _computed(spec, open_db, sweep, out, console)
    db = open_db()
    if isinstance(spec, SweepFigure):
        sweeps = (sweep,) if sweep else spec.sweeps
        title = f"{spec.paper} (reproduction): mean and {figures.BANDS[spec.band]}"
        return sweep_figure(db, list(sweeps), metrics=(metric,) if metric else spec.metrics,
                            band=spec.band, stem=spec.file_stem, title=title, lrs=lrs,
                            out_dir=out_dir, console=console, figure_id=spec.id,
                            pruned=pruned)
    names = source.sweep_names(db)
    if sweep is not None and figure_id in names:
        raise ReportError(f"--sweep {sweep}: figure {figure_id} is that sweep's own; --sweep "
                          "replaces the sweeps of a paper's figure (`corrgd report --list`)")
    if figure_id not in names:
        raise ReportError(f"unknown figure {figure_id!r}: choose an id ({', '.join(FIGURES)}) "
                          f"or a sweep in the database ({', '.join(names) or 'none'}); "
                          "see `corrgd report --list`")
    title = f"Sweep {figure_id}: mean and {figures.BANDS['minmax']}"
    stem = labels.slug(figure_id) + (f"-{labels.slug(metric)}" if metric else "")
    return sweep_figure(db, [figure_id], metrics=(metric,) if metric else None, band="minmax",
                        stem=stem, title=title, lrs=lrs, out_dir=out_dir, console=console,
                        figure_id=figure_id, pruned=pruned)


def _computed(spec: ComputedFigure, open_db: Callable[[], ResultsDB], sweep: str | None,
              out: Path, console: Console) -> list[Path]:
    """Make a computed figure; it writes under ``out/figures`` like the others."""
    if spec.needs_db:
        db = open_db()
        name = sweep or spec.sweeps[0]
        source.resolve_sweep(db, name)  # a clear error if it is not there
        paths = spec.make(db, out, name)
    else:
        paths = spec.make(out)
    for path in paths:
        console.print(f"wrote {path}", highlight=False)
    return paths
