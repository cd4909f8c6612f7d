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

Every function only reads: a database is opened read-only, and one that does not exist
(or an empty file, or an in-memory ``sqlite://``) is refused, never created. Arguments
are checked first: a wrong type is a `TypeError`, a wrong value (an unknown sweep or
metric, a metric the sweep does not log) a `ValueError` (`ReportError` is one); the
message names the argument. A sweep that has logged nothing yet gives an empty frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd

from corrgd.results import analysis
from corrgd.results.reports import ReportError, source
from corrgd.results.reports.best_params import best_frame
from corrgd.results.reports.curves import LRS_MODES, choose_settings, label_runs, logs_accuracy
from corrgd.results.reports.envelopes import CSV_COLUMNS, curve_frame
from corrgd.results.reports.peaks import peak_frame
from corrgd.spec.config import AXIS_COLUMNS

if TYPE_CHECKING:
    from corrgd.storage import ResultsDB


_DB_ALLOWED = ("give an SQLite file (PATH or sqlite:///PATH), "
               "postgresql+psycopg://USER:PW@HOST/DB, an open corrgd.storage.ResultsDB, "
               "or None for $CORRGD_DB / the default")


def _check_db(db: Any) -> ResultsDB | str | None:
    """`db` as `_database` takes it (a path-like as its text); TypeError / ValueError
    naming `db` otherwise."""
    from corrgd.storage import ResultsDB

    if db is None or isinstance(db, ResultsDB):
        return db
    if isinstance(db, os.PathLike):
        db = os.fspath(db)
    if not isinstance(db, str):
        raise TypeError(f"db: got {db!r} (type {type(db).__name__}); {_DB_ALLOWED}")
    if not db.strip():
        raise ValueError(f"db: {db!r} is empty; {_DB_ALLOWED}")
    return db


def _check_sweep(sweep: Any) -> None:
    if sweep is not None and not isinstance(sweep, str):
        raise TypeError(f"sweep: got {sweep!r} (type {type(sweep).__name__}); give a sweep's "
                        "name (a str) or None")
    if sweep is not None and not sweep.strip():
        raise ValueError(f"sweep: {sweep!r} is empty; give a sweep's name or None")


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """`value` of parameter `name` is one of the strings `allowed` (metric, lrs)."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: got {value!r} (type {type(value).__name__}); choose from "
                        f"{', '.join(allowed)}")
    if value not in allowed:
        raise ValueError(f"{name}: unknown {name} {value!r}; choose from {', '.join(allowed)}")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: got {value!r} (type {type(value).__name__}); give True or False")


def _db_label(db: str | None) -> str:
    """Which database an error is about, for its message."""
    from corrgd.storage import DEFAULT_URL, ENV_VAR

    if db is not None:
        return f"db={db!r}"
    if env := os.environ.get(ENV_VAR):
        return f"db=None (${ENV_VAR}={env!r})"
    return f"db=None (the default, {DEFAULT_URL})"


@contextmanager
def _database(db: ResultsDB | str | None) -> Iterator[ResultsDB]:
    """`db` (checked by `_check_db`), opened read-only where it is a URL: a missing or
    empty file, or an in-memory database, is refused and nothing is created."""
    from sqlalchemy.exc import DBAPIError

    from corrgd.storage import ResultsDB, StorageError, open_db
    from corrgd.storage.engine import driver_error, results_url

    if isinstance(db, ResultsDB):
        yield db
        return
    where = _db_label(db)
    try:
        resolved = results_url(db)
    except ValueError as e:  # names what is allowed
        raise ValueError(f"{where}: {e}") from None
    try:
        opened = open_db(resolved, readonly=True)
    except StorageError as e:  # missing, empty, foreign, older or newer schema
        raise type(e)(f"{where}: {e}") from None
    except DBAPIError as e:  # not a database, a server that does not answer
        raise StorageError(f"{where}: {driver_error(e)}") from None
    try:
        yield opened
    finally:
        opened.close()


def _sweep_name(database: ResultsDB, sweep: str | None) -> str:
    """``sweep`` if the database has it; for None, the only sweep."""
    names = source.sweep_names(database)
    listing = ", ".join(names) or "none"
    if sweep is not None and sweep not in names:
        raise ReportError(f"sweep: no sweep {sweep!r} in the database (sweeps: {listing})")
    if sweep is not None:
        return sweep
    if len(names) != 1:
        raise ReportError(f"sweep: None picks the only sweep, but the database has "
                          f"{len(names)} (sweeps: {listing}); give sweep=NAME")
    return names[0]


def _check_logged(epochs: pd.DataFrame, metric: str, sweep: str) -> None:
    """Refuse a `metric` that `epochs` (not empty) show the sweep does not log, as
    `corrgd report` does: an accuracy of a regression sweep, a split it has no rows of."""
    if epochs.empty:
        return
    split, column, _ = analysis.METRICS[metric]
    if column == "accuracy" and not logs_accuracy(epochs):
        raise ReportError(f"metric {metric!r}: sweep {sweep} is a regression: it logs a loss "
                          f"and no accuracy; use {metric.replace('_acc', '_loss')}")
    if not (epochs["split"] == split).any():
        raise ReportError(f"metric {metric!r}: sweep {sweep} logged no {split!r} rows, only "
                          f"{', '.join(sorted(set(epochs['split'])))} (a val split needs "
                          "val_size > 0 in the spec); choose another metric")


def sweeps(db: ResultsDB | str | None = None) -> pd.DataFrame:
    """One row per sweep: name, created_at, and the number of runs per status."""
    db = _check_db(db)
    with _database(db) as database:
        listing = database.list_sweeps().drop(columns=["spec_text", "n_runs"])
        return listing.merge(database.sweep_counts(), on="sweep", how="left")


def runs(sweep: str | None = None, db: ResultsDB | str | None = None) -> pd.DataFrame:
    """One row per run of ``sweep`` (all sweeps if None); see `ResultsDB.runs_frame`."""
    _check_sweep(sweep)
    db = _check_db(db)
    with _database(db) as database:
        if sweep is not None:
            _sweep_name(database, sweep)
        return database.runs_frame(sweep)


def epochs(sweep: str | None = None, db: ResultsDB | str | None = None, *,
           diagnostics: bool = False) -> pd.DataFrame:
    """One row per run, epoch and split of ``sweep`` (all if None); see `epochs_frame`.

    Empty (with its columns) where no epoch is logged yet."""
    _check_sweep(sweep)
    db = _check_db(db)
    _check_flag("diagnostics", diagnostics)
    with _database(db) as database:
        if sweep is not None:
            _sweep_name(database, sweep)
        return database.epochs_frame(sweep, diagnostics=diagnostics)


def curves(sweep: str | None = None, metric: str = "test_acc",
           db: ResultsDB | str | None = None, *, lrs: str = "all") -> pd.DataFrame:
    """Per panel, curve, (lr, decor_lr) and epoch: mean, min, max, std and n_seeds of `metric`.

    ``lrs="all"`` keeps every (lr, decor_lr) of a curve as its own line (labelled
    with its LRs where a curve has several); ``"best"`` keeps the one a figure shows.
    A `metric` the sweep does not log (an accuracy of a regression sweep, a split it has
    no rows of) is a ValueError; a sweep with no epoch logged yet gives an empty frame.
    """
    _check_sweep(sweep)
    _check_choice("metric", metric, list(analysis.METRICS))
    db = _check_db(db)
    _check_choice("lrs", lrs, LRS_MODES)
    with _database(db) as database:
        name = _sweep_name(database, sweep)
        run_frame, epoch_frame = source.load(database, name)
    _check_logged(epoch_frame, metric, name)
    labelled = choose_settings(label_runs(run_frame), epoch_frame, lrs)
    return curve_frame(labelled, epoch_frame, [metric])[CSV_COLUMNS]


def best_params(sweep: str | None = None, metric: str = "val_acc",
                db: ResultsDB | str | None = None) -> pd.DataFrame:
    """Per curve the best run's lr and decor_lr by peak `metric` (CRGD Table 2), long form.

    Columns: panel, curve, the curve's axes, lr, decor_lr, score, peak_epoch,
    run_id, candidates, tied; ties broken by `corrgd.results.analysis.TIE_BREAK`.
    A `metric` the finished runs do not log (an accuracy of a regression sweep, a split
    they have no rows of, e.g. val_acc without val_size) is a ValueError; a sweep with no
    finished run yet gives an empty frame.
    """
    _check_sweep(sweep)
    _check_choice("metric", metric, list(analysis.METRICS))
    db = _check_db(db)
    with _database(db) as database:
        name = _sweep_name(database, sweep)
        run_frame, epoch_frame = source.load(database, name)
    finished = run_frame.loc[run_frame["status"].isin(analysis.FINISHED), "run_id"]
    _check_logged(epoch_frame[epoch_frame["run_id"].isin(finished)], metric, name)
    labelled = label_runs(run_frame)
    best = best_frame(labelled, run_frame, epoch_frame, metric)
    keep = ["panel", "curve", *labelled.curve_columns, "lr", "decor_lr", "score", "peak_epoch",
            "run_id", "candidates", "tied"]
    return best[keep]


def peaks(sweep: str | None = None, db: ResultsDB | str | None = None, *,
          lrs: str = "best") -> pd.DataFrame:
    """Peak train / test accuracy (%) per curve: mean, std (ddof 1), min, max, n_seeds.

    For regression runs (no accuracy) the lowest loss instead. Only finished runs count:
    a sweep with none yet gives an empty frame.
    """
    _check_sweep(sweep)
    db = _check_db(db)
    _check_choice("lrs", lrs, LRS_MODES)
    with _database(db) as database:
        name = _sweep_name(database, sweep)
        run_frame, epoch_frame = source.load(database, name)
    return peak_frame(run_frame, epoch_frame, lrs)[0]


def diagnostics(sweep: str | None = None, db: ResultsDB | str | None = None) -> pd.DataFrame:
    """The per-layer diagnostics of training epochs, one row per run, epoch and layer.

    Columns: run_id, epoch, layer (from 1, as in ``corrgd report --metric NAME@L`` and
    ``corrgd export``), the run's axes, then one column per logged
    statistic (``offdiag_corr``, ``gain``, ``norm_ratio``, ``angle_to_bp``, and for
    feedback alignment ``feedback_angle``, ...). Empty (with the columns run_id, epoch,
    split, layer and the axes) where none are logged: a spec with ``diagnostics: false``,
    or no epoch yet.
    """
    _check_sweep(sweep)
    db = _check_db(db)
    with _database(db) as database:
        name = _sweep_name(database, sweep)
        frame = database.epochs_frame(name, diagnostics=True)
    rows = frame[frame["diagnostics"].notna()]
    axes = ["sweep", *AXIS_COLUMNS]
    records = [{"run_id": r.run_id, "epoch": r.epoch, "split": r.split, "layer": i, **stats}
               for r in rows.itertuples(index=False)
               for i, stats in enumerate((r.diagnostics or {}).get("layers", []), start=1)]
    long = pd.DataFrame.from_records(records, columns=["run_id", "epoch", "split", "layer"]
                                     if not records else None)
    info = frame[["run_id", *axes]].drop_duplicates("run_id")
    return long.merge(info, on="run_id", how="left")
