"""The results as pandas DataFrames, for notebooks.

    from corrgd import api

    api.sweeps()                                  # every sweep and how far it got
    runs = api.runs("quickstart")                 # one row per run
    ep = api.epochs("quickstart")                 # one row per run, epoch and split
    c = api.curves("quickstart", "test_acc")      # mean/min/max/std over seeds per epoch
    api.best_params("table2")                     # CRGD Table 2, long form
    api.peaks("npd-table3")                       # NPD Table 3, long form
    api.diagnostics("quickstart")                 # per-layer decorrelation stats per epoch

``db`` is a URL (``sqlite:///results/corrgd.sqlite``, ``postgresql+psycopg://...``),
an open `corrgd.storage.ResultsDB`, or None for ``$CORRGD_DB`` / the default.
Functions taking a single sweep use the only sweep in the database when it is None.
Accuracies in `curves` and `peaks` are in percent (as in the figures and
tables); `runs`, `epochs` and `best_params` keep the stored fractions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pandas as pd

from corrgd.results import analysis
from corrgd.results.reports import source
from corrgd.results.reports.best_params import best_frame
from corrgd.results.reports.curves import choose_settings, label_runs
from corrgd.results.reports.envelopes import CSV_COLUMNS, curve_frame
from corrgd.results.reports.peaks import peak_frame
from corrgd.spec.config import AXIS_COLUMNS

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB


@contextmanager
def _database(db: ResultsDB | str | None) -> Iterator[ResultsDB]:
    from corrgd.storage import ResultsDB, open_db

    if isinstance(db, ResultsDB):
        yield db
        return
    opened = open_db(db)
    try:
        yield opened
    finally:
        opened.close()


def sweeps(db: ResultsDB | str | None = None) -> pd.DataFrame:
    """One row per sweep: name, created_at, and the number of runs per status."""
    with _database(db) as database:
        listing = database.list_sweeps().drop(columns=["spec_text", "n_runs"])
        return listing.merge(database.sweep_counts(), on="sweep", how="left")


def runs(sweep: str | None = None, db: ResultsDB | str | None = None) -> pd.DataFrame:
    """One row per run of ``sweep`` (all sweeps if None); see `ResultsDB.runs_frame`."""
    with _database(db) as database:
        return database.runs_frame(sweep)


def epochs(sweep: str | None = None, db: ResultsDB | str | None = None, *,
           diagnostics: bool = False) -> pd.DataFrame:
    """One row per run, epoch and split of ``sweep`` (all if None); see `epochs_frame`."""
    with _database(db) as database:
        return database.epochs_frame(sweep, diagnostics=diagnostics)


def curves(sweep: str | None = None, metric: str = "test_acc",
           db: ResultsDB | str | None = None, *, lrs: str = "all") -> pd.DataFrame:
    """Per panel, curve, (lr, decor_lr) and epoch: mean, min, max, std and n_seeds of `metric`.

    ``lrs="all"`` keeps every (lr, decor_lr) of a curve as its own line (labelled
    with its LRs where a curve has several); ``"best"`` keeps the one a figure shows.
    """
    if metric not in analysis.METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(analysis.METRICS)}")
    with _database(db) as database:
        name = source.resolve_sweep(database, sweep)
        run_frame, epoch_frame = source.load(database, name)
    labelled = choose_settings(label_runs(run_frame), epoch_frame, lrs)
    return curve_frame(labelled, epoch_frame, [metric])[CSV_COLUMNS]


def best_params(sweep: str | None = None, metric: str = "val_acc",
                db: ResultsDB | str | None = None) -> pd.DataFrame:
    """Per curve the best run's lr and decor_lr by peak `metric` (CRGD Table 2), long form.

    Columns: panel, curve, the curve's axes, lr, decor_lr, score, peak_epoch,
    run_id, candidates, tied; ties broken by `corrgd.results.analysis.TIE_BREAK`.
    """
    if metric not in analysis.METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(analysis.METRICS)}")
    with _database(db) as database:
        name = source.resolve_sweep(database, sweep)
        run_frame, epoch_frame = source.load(database, name)
    labelled = label_runs(run_frame)
    best = best_frame(labelled, run_frame, epoch_frame, metric)
    keep = ["panel", "curve", *labelled.curve_columns, "lr", "decor_lr", "score", "peak_epoch",
            "run_id", "candidates", "tied"]
    return best[keep]


def peaks(sweep: str | None = None, db: ResultsDB | str | None = None, *,
          lrs: str = "best") -> pd.DataFrame:
    """Peak train / test accuracy (%) per curve: mean, std (ddof 1), min, max, n_seeds."""
    with _database(db) as database:
        name = source.resolve_sweep(database, sweep)
        run_frame, epoch_frame = source.load(database, name)
    return peak_frame(run_frame, epoch_frame, lrs)[0]


def diagnostics(sweep: str | None = None, db: ResultsDB | str | None = None) -> pd.DataFrame:
    """The per-layer diagnostics of training epochs, one row per run, epoch and layer.

    Columns: run_id, epoch, layer, the run's axes, then one column per logged
    statistic (``offdiag_corr``, ``gain``, ``norm_ratio``, ``angle_to_bp``, and for
    feedback alignment ``feedback_angle``, ...).
    """
    with _database(db) as database:
        name = source.resolve_sweep(database, sweep)
        frame = database.epochs_frame(name, diagnostics=True)
    rows = frame[frame["diagnostics"].notna()]
    axes = ["sweep", *AXIS_COLUMNS]
    records = [{"run_id": r.run_id, "epoch": r.epoch, "split": r.split, "layer": i, **stats}
               for r in rows.itertuples(index=False)
               for i, stats in enumerate((r.diagnostics or {}).get("layers", []))]
    long = pd.DataFrame.from_records(records, columns=["run_id", "epoch", "split", "layer"]
                                     if not records else None)
    info = frame[["run_id", *axes]].drop_duplicates("run_id")
    return long.merge(info, on="run_id", how="left")
