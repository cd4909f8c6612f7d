"""The notebook API (`corrgd.api`): it only reads, checks its arguments at the edge, and
refuses what `corrgd report` refuses.

The database is filled by hand through the storage API (add_sweep, then each run claimed,
logged and finished as a group of one), without training: a complete classification sweep,
one that logged only a train split, one without a val split, a regression sweep (no
accuracy) and one whose run is still queued.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from queue_helper import claim_one, record

from corrgd import api
from corrgd.results.reports import ReportError, source
from corrgd.results.reports.best_params import best_frame
from corrgd.results.reports.curves import choose_settings, label_runs
from corrgd.results.reports.envelopes import CSV_COLUMNS, curve_frame
from corrgd.results.reports.peaks import peak_frame
from corrgd.spec.config import RunConfig
from corrgd.storage import (
    ENV_VAR,
    MetricRow,
    MissingDatabase,
    ResultsDB,
    RunSpec,
    SchemaTooOld,
    StorageError,
    open_db,
)

SWEEPS = ("full", "trainonly", "noval", "reg", "queued")
DIAGNOSTICS = {"layers": [{"offdiag_corr": 0.5, "gain": 1.0}, {"offdiag_corr": 0.25}]}


def config(**settings: Any) -> dict[str, Any]:
    settings = {"dataset": "digits", "network": "mlp", "algorithm": "bp", "lr": 1e-3,
                "seed": 0, **settings}
    return RunConfig(epochs=2, **settings).model_dump(mode="json")


def fill(db: ResultsDB, sweep: str, configs: list[dict[str, Any]], splits: tuple[str, ...],
         *, accuracy: bool = True) -> None:
    """Enqueue `configs` and play them: 3 epochs of rows of `splits` (the train rows with
    diagnostics), then done."""
    db.add_sweep(sweep, "hand-made",
                 [RunSpec(config=c, axes={"lr": c["lr"], "seed": c["seed"]}) for c in configs])
    while (run := claim_one(db, "tests:1", sweep=sweep, lease_seconds=3600)) is not None:
        bump = 0.01 * run.config["seed"] + (0.05 if run.config["lr"] == 1e-3 else 0.0)
        epochs = [[MetricRow(split, 1.0 - 0.1 * epoch - bump,
                             0.5 + 0.1 * epoch + bump if accuracy else None, seconds=0.1,
                             diagnostics=DIAGNOSTICS if split == "train" else None)
                   for split in splits] for epoch in range(3)]
        record(db, run, epochs, "done")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'r.sqlite'}"
    with open_db(url) as db:
        fill(db, "full", [config(lr=lr, seed=seed) for lr in (1e-3, 1e-4) for seed in (0, 1)],
             ("train", "val", "test"))
        fill(db, "trainonly", [config()], ("train",))
        fill(db, "noval", [config()], ("train", "test"))
        fill(db, "reg", [config(dataset="diabetes", loss="mse")], ("train", "val", "test"),
             accuracy=False)
        db.add_sweep("queued", "hand-made", [RunSpec(config=config(), axes={"seed": 0})])
    return url


def listing(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every file under `folder` with its size and modification time (folders by name)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else
            (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def db_folder(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///")).parent


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, and no $CORRGD_DB: the default database would be made here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path


# Every function, called with one argument replaced.
CALLS: dict[str, Callable[..., pd.DataFrame]] = {
    "sweeps": api.sweeps, "runs": api.runs, "epochs": api.epochs, "curves": api.curves,
    "best_params": api.best_params, "peaks": api.peaks, "diagnostics": api.diagnostics}
WITH_SWEEP = [name for name in CALLS if name != "sweeps"]
ONE_SWEEP = [name for name in WITH_SWEEP if name not in ("runs", "epochs")]


def bad_arguments() -> list[Any]:
    cases = []
    for name in CALLS:
        cases += [pytest.param(name, {"db": 5}, TypeError, r"db: got 5 \(type int\)",
                               id=f"{name}-db-int"),
                  pytest.param(name, {"db": ["x.sqlite"]}, TypeError, r"db: got \['x.sqlite'\]",
                               id=f"{name}-db-list"),
                  pytest.param(name, {"db": ""}, ValueError, r"db: '' is empty; give an SQLite",
                               id=f"{name}-db-empty"),
                  pytest.param(name, {"db": "  "}, ValueError, r"db: '  ' is empty",
                               id=f"{name}-db-blank")]
    for name in WITH_SWEEP:
        cases += [pytest.param(name, {"sweep": ["full"]}, TypeError,
                               r"sweep: got \['full'\] \(type list\)", id=f"{name}-sweep-list"),
                  pytest.param(name, {"sweep": 3}, TypeError, r"sweep: got 3",
                               id=f"{name}-sweep-int"),
                  pytest.param(name, {"sweep": ""}, ValueError, r"sweep: '' is empty",
                               id=f"{name}-sweep-empty")]
    for name in ("curves", "best_params"):
        cases += [pytest.param(name, {"sweep": "full", "metric": ["test_acc"]}, TypeError,
                               r"metric: got \['test_acc'\].*choose from train_acc",
                               id=f"{name}-metric-list"),
                  pytest.param(name, {"sweep": "full", "metric": None}, TypeError,
                               r"metric: got None", id=f"{name}-metric-none"),
                  pytest.param(name, {"sweep": "full", "metric": "accuracy"}, ValueError,
                               r"metric: unknown metric 'accuracy'; choose from train_acc",
                               id=f"{name}-metric-unknown")]
    for name in ("curves", "peaks"):
        cases += [pytest.param(name, {"sweep": "full", "lrs": "some"}, ValueError,
                               r"lrs: unknown lrs 'some'; choose from best, all",
                               id=f"{name}-lrs-unknown"),
                  pytest.param(name, {"sweep": "full", "lrs": None}, TypeError, r"lrs: got None",
                               id=f"{name}-lrs-none")]
    cases += [pytest.param("epochs", {"diagnostics": "yes"}, TypeError,
                           r"diagnostics: got 'yes' \(type str\); give True or False",
                           id="epochs-diagnostics-str"),
              pytest.param("epochs", {"diagnostics": 1}, TypeError, r"diagnostics: got 1",
                           id="epochs-diagnostics-int")]
    return cases


@pytest.mark.parametrize(("name", "arguments", "error", "message"), bad_arguments())
def test_a_bad_argument_is_refused_naming_it(url: str, empty_cwd: Path, name: str,
                                             arguments: dict[str, Any], error: type,
                                             message: str) -> None:
    before, db_before = listing(empty_cwd), listing(db_folder(url))
    with pytest.raises(error, match=message):
        CALLS[name](**{"db": url, **arguments})
    assert listing(empty_cwd) == before == {}
    assert listing(db_folder(url)) == db_before


def refused_databases() -> list[Any]:
    return [
        pytest.param("sqlite:///{cwd}/new/sub/x.sqlite", MissingDatabase,
                     r"db='sqlite:///.*/new/sub/x.sqlite': no results database at", id="missing"),
        pytest.param("new/sub/x.sqlite", MissingDatabase, r"db='new/sub/x.sqlite': no results",
                     id="missing-path"),
        pytest.param("zero.sqlite", SchemaTooOld,
                     r"db='zero.sqlite': it holds no corrgd results", id="zero-bytes"),
        pytest.param("sqlite:///zero.sqlite", SchemaTooOld, r"db='sqlite:///zero.sqlite': it holds",
                     id="zero-bytes-url"),
        pytest.param(".", MissingDatabase, r"db='.': . is a folder", id="folder"),
        pytest.param("text.sqlite", StorageError, r"db='text.sqlite': not an SQLite database",
                     id="not-a-database"),  # was SQLAlchemy's error, its SQL and a link
        pytest.param("sqlite://", ValueError, r"db='sqlite://': an in-memory database",
                     id="in-memory"),
        pytest.param("sqlite:///:memory:", ValueError, r"db='sqlite:///:memory:': an in-memory",
                     id="in-memory-named"),
        pytest.param("http://host/x", ValueError, r"db='http://host/x': unsupported database",
                     id="unsupported"),
        pytest.param("zero.sqlite?mode=ro", ValueError, r"db='zero.sqlite\?mode=ro': an SQLite "
                     "database takes no options", id="options"),
        pytest.param(None, MissingDatabase, r"db=None \(the default, sqlite:///results/"
                     r"corrgd.sqlite\): no results database at results/corrgd.sqlite",
                     id="default"),
    ]


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize(("db", "error", "message"), refused_databases())
def test_a_database_that_is_not_there_is_refused_and_nothing_made(
        empty_cwd: Path, name: str, db: str | None, error: type, message: str) -> None:
    (empty_cwd / "zero.sqlite").touch()
    (empty_cwd / "text.sqlite").write_text("not a database\n" * 100)
    before = listing(empty_cwd)
    with pytest.raises(error, match=message):
        CALLS[name](db=None if db is None else db.format(cwd=empty_cwd))
    assert listing(empty_cwd) == before
    assert (empty_cwd / "zero.sqlite").stat().st_size == 0


def test_the_database_of_the_environment_is_named_when_refused(
        empty_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "sqlite://")
    with pytest.raises(ValueError, match=r"db=None \(\$CORRGD_DB='sqlite://'\): an in-memory"):
        api.sweeps()
    monkeypatch.setenv(ENV_VAR, "gone.sqlite")
    with pytest.raises(MissingDatabase, match=r"\$CORRGD_DB='gone.sqlite'\): no results"):
        api.runs()
    assert listing(empty_cwd) == {}


@pytest.mark.parametrize("name", WITH_SWEEP)
def test_an_unknown_sweep_is_a_value_error_listing_the_sweeps(url: str, name: str) -> None:
    with pytest.raises(ReportError, match=r"sweep: no sweep 'nosuch' in the database "
                                          r"\(sweeps: full, trainonly, noval, reg, queued\)"):
        CALLS[name]("nosuch", db=url)
    assert issubclass(ReportError, ValueError)


@pytest.mark.parametrize("name", ONE_SWEEP)
def test_no_sweep_named_needs_a_database_of_one_sweep(url: str, tmp_path: Path,
                                                      name: str) -> None:
    with pytest.raises(ValueError, match=r"sweep: None picks the only sweep, but the database "
                                         r"has 5 \(sweeps: full, .*\); give sweep=NAME"):
        CALLS[name](db=url)
    empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    open_db(empty).close()
    with pytest.raises(ValueError, match=r"has 0 \(sweeps: none\)"):
        CALLS[name](db=empty)


@pytest.mark.parametrize(("call", "message"), [
    pytest.param(lambda url: api.curves("trainonly", "test_acc", db=url),
                 r"metric 'test_acc': sweep trainonly logged no 'test' rows, only train "
                 r"\(a val split needs val_size > 0", id="curves-no-test-split"),
    pytest.param(lambda url: api.curves("noval", "val_loss", db=url),
                 r"metric 'val_loss': sweep noval logged no 'val' rows, only test, train",
                 id="curves-no-val-split"),
    pytest.param(lambda url: api.curves("reg", "test_acc", db=url),
                 r"metric 'test_acc': sweep reg is a regression: it logs a loss and no "
                 r"accuracy; use test_loss", id="curves-regression"),
    pytest.param(lambda url: api.curves("reg", db=url), r"sweep reg is a regression",
                 id="curves-regression-default"),
    pytest.param(lambda url: api.best_params("noval", db=url),
                 r"metric 'val_acc': sweep noval logged no 'val' rows", id="best-no-val-split"),
    pytest.param(lambda url: api.best_params("trainonly", "test_loss", db=url),
                 r"metric 'test_loss': sweep trainonly logged no 'test' rows",
                 id="best-no-test-split"),
    pytest.param(lambda url: api.best_params("reg", db=url),
                 r"metric 'val_acc': sweep reg is a regression: .*; use val_loss",
                 id="best-regression"),
])
def test_a_metric_the_sweep_does_not_log_is_refused(url: str, call: Callable[[str], Any],
                                                    message: str) -> None:
    with pytest.raises(ReportError, match=message):
        call(url)


@pytest.mark.parametrize("name", [name for name in WITH_SWEEP if name != "runs"])
def test_a_sweep_with_nothing_logged_yet_gives_an_empty_frame(url: str, name: str) -> None:
    frame = CALLS[name]("queued", db=url)
    assert frame.empty and len(frame.columns) > 0
    columns = list(CALLS[name]("full", db=url).columns)
    if name == "diagnostics":  # one column per statistic logged: none here
        columns = [c for c in columns if c not in DIAGNOSTICS["layers"][0]]
    assert list(frame.columns) == columns


def test_reading_changes_nothing_on_disk(url: str) -> None:
    folder = db_folder(url)
    before = listing(folder)
    assert before and set(before) == {"r.sqlite"}
    api.sweeps(url)
    for name in WITH_SWEEP:
        CALLS[name]("full", db=url)
    api.epochs(db=url, diagnostics=True)
    api.curves("reg", "test_loss", db=url)
    api.best_params("reg", "val_loss", db=url)
    api.peaks("reg", db=url)
    assert listing(folder) == before


# -- valid calls: the frames the building blocks give, as before ----------------------------

def reference(name: str, db: ResultsDB, sweep: str | None, **options: Any) -> pd.DataFrame:
    """What `corrgd.api` returned before it checked anything, from the same building blocks
    on a database opened for writing."""
    if name == "sweeps":
        listed = db.list_sweeps().drop(columns=["spec_text", "n_runs"])
        return listed.merge(db.sweep_counts(), on="sweep", how="left")
    if name == "runs":
        return db.runs_frame(sweep)
    if name == "epochs":
        return db.epochs_frame(sweep, diagnostics=options.get("diagnostics", False))
    assert sweep is not None
    runs, epochs = source.load(db, sweep)
    if name == "curves":
        labelled = choose_settings(label_runs(runs), epochs, options.get("lrs", "all"))
        return curve_frame(labelled, epochs, [options.get("metric", "test_acc")])[CSV_COLUMNS]
    if name == "best_params":
        labelled = label_runs(runs)
        best = best_frame(labelled, runs, epochs, options.get("metric", "val_acc"))
        return best[["panel", "curve", *labelled.curve_columns, "lr", "decor_lr", "score",
                     "peak_epoch", "run_id", "candidates", "tied"]]
    if name == "peaks":
        return peak_frame(runs, epochs, options.get("lrs", "best"))[0]
    raise AssertionError(name)


VALID = [("sweeps", None, {}), ("runs", None, {}), ("runs", "full", {}),
         ("epochs", "full", {}), ("epochs", None, {"diagnostics": True}),
         ("curves", "full", {}), ("curves", "full", {"metric": "val_loss", "lrs": "best"}),
         ("curves", "reg", {"metric": "test_loss"}), ("best_params", "full", {}),
         ("best_params", "full", {"metric": "test_loss"}),
         ("best_params", "reg", {"metric": "val_loss"}), ("peaks", "full", {}),
         ("peaks", "full", {"lrs": "all"}), ("peaks", "reg", {}), ("peaks", "trainonly", {})]


def test_valid_calls_return_the_frames_they_did(url: str) -> None:
    with open_db(url) as db:
        for name, sweep, options in VALID:
            expected = reference(name, db, sweep, **options)
            call = functools.partial(CALLS[name], **options) if name == "sweeps" else \
                functools.partial(CALLS[name], sweep, **options)
            assert not expected.empty, (name, sweep, options)
            pd.testing.assert_frame_equal(call(db=url), expected)
            pd.testing.assert_frame_equal(call(db=db), expected)  # an open ResultsDB
        pd.testing.assert_frame_equal(api.runs("full", db=Path(url.removeprefix("sqlite:///"))),
                                      db.runs_frame("full"))
    curves = api.curves("full", "test_acc", db=url, lrs="best")
    assert set(curves["lr"]) == {1e-3} and curves["mean"].max() == pytest.approx(100 * 0.755)
    best = api.best_params("full", db=url)
    assert best[["lr", "score", "peak_epoch"]].values.tolist() == [[1e-3, pytest.approx(0.76), 2]]
    diagnostics = api.diagnostics("full", db=url)
    assert len(diagnostics) == 4 * 3 * 2  # runs x epochs x layers (train rows only)
    first = diagnostics[diagnostics["layer"] == 1]  # layers count from 1, as in export
    assert set(diagnostics["layer"]) == {1, 2} and set(first["offdiag_corr"]) == {0.5}
    assert set(diagnostics["offdiag_corr"]) == {0.5, 0.25}
