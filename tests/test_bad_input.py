"""Bad input a new user tries, refused at the edge: one line on stderr naming the file or
flag, the field and what is allowed, exit code 2, nothing written (no database, no
folder). And what the commands print, readable where it is piped or narrow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_integrity import TINY, assert_refused, bad, cli, db_url, enqueue, snapshot

from corrgd.storage import RunOutcome, open_db

BASE = "dataset: digits\nnetwork: mlp\nhidden: [8]\nalgorithm: bp\nepochs: 1\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


@pytest.mark.parametrize("line,needles", [
    ("lr: .inf", ["lr", "finite"]),
    ("decor: true", ["bad.yaml: decor_lr: must be > 0 when decor is true"]),  # was "spec:"
    ("noisy_baseline: true", ["bad.yaml: noisy_baseline: applies to algorithm np or anp"]),
    ("eps: .nan", ["eps", "finite"]),
    ("sigma2: .inf", ["sigma2", "finite"]),
    ("lr: 1.0e400", ["lr", "finite"]),
    ("betas: [.nan, 2]", ["betas", "finite", "[nan, 2]"]),
    ("betas: [0.9, 1.5]", ["betas", "[0, 1)"]),
    ("seed: 1180591620717411303424", ["seed", "less than 9223372036854775808"]),
    ("seed: -1", ["seed", "greater than or equal to 0"]),
    ("batch_size: true", ["batch_size", "a number, not true"]),
    ("np_samples: false", ["np_samples", "a number, not false"]),
    ("np_samples: 1000000000", ["np_samples", "less than or equal to 10000"]),
    ("batch_size: 99999999999999999999999", ["batch_size", "less than or equal to 100000000"]),
    ("grids: [{epochs: 99999999999999999999999}]", ["epochs", "less than or equal to 1000000"]),
    ("padding: 1", ["padding", "no conv layers", "convnet"]),
    ("momentum: 2", ["momentum", "less than 1"]),
    ("seed: '1'", ["seed", "not the text '1'", "remove the quotes"]),
    ("width: '8'", ["width", "not the text '8'"]),
    ("np_samples: ['2', 3]", ["np_samples", "not the text '2'"]),  # an axis
    ("first_epoch_decor_lr: .nan", ["first_epoch_decor_lr", "finite"]),  # unused: decor off
    ("decor: 'true'", ["decor", "must be true or false, not 'true'"]),
    ("diagnostics: 1", ["diagnostics", "must be true or false, not 1"]),
])
def test_a_spec_number_out_of_range_is_refused_before_anything_is_written(
        folder: Path, line: str, needles: list[str]) -> None:
    (folder / "bad.yaml").write_text(BASE + line + "\n")
    for args in (["sweep", "bad.yaml"], ["sweep", "bad.yaml", "--dry-run"]):
        assert_refused(bad(folder, *args), "bad.yaml", *needles)


def test_a_spec_that_is_not_utf8_text_is_refused(folder: Path) -> None:
    (folder / "noise.yaml").write_bytes(bytes(range(256)) * 4)
    assert_refused(bad(folder, "sweep", "noise.yaml"), "noise.yaml", "not UTF-8 text")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("command", [["sweep", "tiny.yaml"], ["worker"]])
def test_a_lease_must_be_a_finite_number(folder: Path, command: list[str], value: str) -> None:
    assert_refused(bad(folder, *command, "--lease", value), "--lease", "finite number > 0")


@pytest.mark.parametrize("command", [["sweep", "tiny.yaml"], ["worker"], ["status"],
                                     ["train", "--epochs", "1"]])
def test_an_in_memory_database_is_refused(folder: Path, command: list[str]) -> None:
    assert_refused(bad(folder, *command, "--db", "sqlite://"), "sqlite://", "in-memory",
                   "PATH")


@pytest.mark.parametrize("command", [["cancel", "nope"], ["delete", "nope", "--yes"],
                                     ["worker", "--sweep", "nope"], ["worker"]])
def test_commands_on_a_missing_database_create_nothing(folder: Path,
                                                      command: list[str]) -> None:
    assert_refused(bad(folder, *command, "--db", db_url(folder)), "no results database")


@pytest.mark.parametrize("command", [["cancel", "nope"], ["delete", "nope", "--yes"],
                                     ["worker", "--sweep", "nope"]])
def test_commands_on_an_unknown_sweep_change_nothing(folder: Path, command: list[str]) -> None:
    enqueue(folder)
    assert_refused(bad(folder, *command, "--db", db_url(folder)), "nope", "tiny")


@pytest.mark.parametrize("args,needles", [
    (["--decor-lr", "-1"], ["decor_lr", "greater than or equal to 0"]),
    (["--db", "r.sqlite", "--sweep", "a/b"], ["--sweep", "'a/b' is not allowed"]),
    (["--db", "r.sqlite", "--sweep", "../../escape"], ["--sweep", "not allowed"]),
    (["--sweep", "alone"], ["--sweep", "give --db too"]),
    (["--set", "hidden=[[8], [16]]"], ["--set hidden", "one value only"]),
    (["--set", "lr=0.1"], ["--set lr: give it with --lr"]),  # one place for each setting
    (["--set", "hidden=[8]", "--set", "hidden=[16]"], ["--set hidden: given twice ([8], [16])"]),
    (["--set", "=1"], ["--set '': unknown field"]),  # it listed name, select, ... too
    (["--set", "hiden=[8]"], ["--set hiden: unknown field; did you mean hidden?"]),
    (["--set", "decor=true"], ["--set decor: give it with --decor-lr"]),
    (["--set", "grids=[{seed: 1}, {seed: 2}]"], ["--set grids", "belong in a spec"]),
    (["--db", "r.sqlite", "--set", "name=foo"], ["--set name", "--sweep"]),
    (["--data-dir", "tiny.yaml"], ["--data-dir", "not a folder"]),
])
def test_train_is_validated_as_a_spec_is(folder: Path, args: list[str],
                                         needles: list[str]) -> None:
    assert_refused(bad(folder, "train", "--epochs", "1", *args), *needles)


def test_train_refuses_a_sweep_of_that_name_with_other_settings(folder: Path) -> None:
    enqueue(folder)
    db = open_db(db_url(folder))
    stored = db.list_sweeps().set_index("sweep").loc["tiny", "spec_text"]
    assert_refused(bad(folder, "train", "--epochs", "1", "--db", db_url(folder), "--sweep",
                       "tiny"), "sweep 'tiny' is in the database with other settings")
    assert db.list_sweeps().set_index("sweep").loc["tiny", "spec_text"] == stored
    assert len(db.runs_frame("tiny")) == 4


def test_readmes_train_example_logs_a_plain_sqlite_file(folder: Path) -> None:
    result = cli("train", "--algorithm", "fa", "--db", "results.sqlite", "--sweep", "try-fa",
                 "--epochs", "2", cwd=folder)
    assert result.exit_code == 0, result.output
    runs = open_db(f"sqlite:///{folder / 'results.sqlite'}").runs_frame("try-fa")
    assert runs["status"].tolist() == ["done"] and runs["algorithm"].tolist() == ["fa"]


def test_text_in_square_brackets_reaches_the_user(folder: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """rich would read "[thing]" or "[parquet]" as markup and drop it."""
    enqueue(folder)
    db = open_db(db_url(folder))
    (claimed,) = db.claim_group("w", "cpu", sweep="tiny", lease_seconds=60, max_members=1)
    db.finish_runs([RunOutcome(claimed.run_id, "failed", "ValueError: bad [thing] here")], "w")
    for args in (["status"], ["status", "--sweep", "tiny"]):
        assert "bad [thing] here" in cli(*args, "--db", db_url(folder), cwd=folder).output
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    result = cli("export", "--to", str(folder / "x.parquet"), "--db", db_url(folder),
                 cwd=folder)
    assert_refused(result, "pip install 'corrgd[parquet]'")


@pytest.mark.parametrize("args,needles", [
    (["runs", "--status", "bogus"], ["--status", "'bogus'", "queued, running"]),
    (["report", "--compare", "tiny", "--compare", "tiny"], ["--compare", "each sweep once"]),
])
def test_report_and_listing_options_are_checked(folder: Path, args: list[str],
                                                needles: list[str]) -> None:
    enqueue(folder)
    assert_refused(bad(folder, *args, "--db", db_url(folder)), *needles)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("listing")
    (folder / "tiny.yaml").write_text(TINY)
    url = db_url(folder)
    done = subprocess.run([sys.executable, "-m", "corrgd", "sweep", "tiny.yaml", "--db", url],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder, url


def _corrgd(folder: Path, *args: str, columns: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    done = subprocess.run([sys.executable, "-m", "corrgd", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_listings_read_well_narrow_piped_and_as_json(trained: tuple[Path, str]) -> None:
    folder, url = trained
    narrow = _corrgd(folder, "runs", "--db", url, columns="120")
    assert max(len(line) for line in narrow.splitlines()) <= 120
    for word in ("decor", "seed", "attempts", "status", "epochs", "peak", "final", "(%)"):
        assert re.search(rf"[┃│ ]{re.escape(word)}[ ┃│]", narrow), word  # never broken up
    piped = _corrgd(folder, "runs", "--db", url)  # no terminal, no COLUMNS: no wrapping
    assert "┃ val acc peak (%) ┃" in piped
    rows = json.loads(_corrgd(folder, "runs", "--db", url, "--format", "json"))
    assert isinstance(rows[0]["seed"], int) and isinstance(rows[0]["decor"], bool)
    assert isinstance(rows[0]["val_acc_peak"], float)
    shown = _corrgd(folder, "show", "1", "--db", url)
    assert not re.search(r"\d\.\d{6,}", shown)  # rounded: no float printed in full


def test_help_wraps_at_the_terminal_and_shows_square_brackets(
        folder: Path) -> None:
    listing = _corrgd(folder, "--help", columns="250")
    worker = next(line for line in listing.splitlines() if "│ worker " in line)
    assert "a line per epoch and run as they are written." in worker  # one line, not two
    # rich would read [default: ...] and corrgd[parquet] as markup and drop them
    sweep = " ".join(_corrgd(folder, "sweep", "--help", columns="250").split())
    assert "[default: sqlite:///results/corrgd.sqlite]" in sweep
    assert "[default: as many as fit half the device's free memory]" in sweep
    assert "(pip install corrgd[parquet])" in _corrgd(folder, "export", "--help", columns="250")


def test_figures_go_to_results_without_out(trained: tuple[Path, str]) -> None:
    folder, url = trained
    _corrgd(folder, "report", "--figure", "tiny", "--db", url)
    _corrgd(folder, "show", "1", "--figure", "--db", url)
    assert (folder / "results/figures/tiny.png").is_file()
    assert (folder / "results/figures/run-1.png").is_file()


def test_a_missing_sweep_names_its_spec_only_where_it_is_here(folder: Path) -> None:
    enqueue(folder)
    (folder / "sweeps").mkdir()
    (folder / "sweeps/figure4.yaml").write_text(TINY)
    url = db_url(folder)
    assert_refused(bad(folder, "report", "--figure", "4", "--db", url),
                   "run `corrgd sweep sweeps/figure4.yaml` first")
    assert_refused(bad(folder, "report", "--figure", "4", "--sweep", "nope", "--db", url),
                   "sweep nope, not in the database", "with a spec named nope")


def test_commands_that_only_read_leave_no_wal_or_shm_files(folder: Path) -> None:
    url = db_url(folder)
    _corrgd(folder, "sweep", "tiny.yaml", "--db", url, "--enqueue-only")
    assert not list(folder.glob("results/corrgd.sqlite-*"))  # SQLite removed them on close
    for args in (["status"], ["runs"], ["show", "1"], ["export", "--to", "x.csv"]):
        _corrgd(folder, *args, "--db", url)
        assert not list(folder.glob("results/corrgd.sqlite-*")), args


def test_an_export_onto_the_database_itself_is_refused(folder: Path) -> None:
    url = f"sqlite:///{folder / 'db.csv'}"  # a database may have any name
    enqueue(folder, url)
    for to in ("db.csv", "sub/../db.csv"):
        assert_refused(cli("export", "--to", to, "--db", url, cwd=folder),
                       f"--to {Path(to)}", "the results database itself")
    assert open_db(url).run_counts("tiny")["total"] == 4


@pytest.mark.parametrize("columns", ["0", "1", "abc"])
def test_a_columns_that_is_no_width_is_ignored(folder: Path, columns: str) -> None:
    assert "sweep tiny: 4 runs" in _corrgd(folder, "sweep", "tiny.yaml", "--dry-run",
                                           columns=columns)
    env = {**os.environ, "COLUMNS": columns}
    done = subprocess.run([sys.executable, "-m", "corrgd", "status", "--db", "nope.sqlite"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no results database at nope.sqlite" in done.stderr


def test_the_figure_of_a_run_without_epochs_is_refused(folder: Path) -> None:
    enqueue(folder)
    assert_refused(bad(folder, "show", "1", "--figure", "--db", db_url(folder)),
                   "run 1 has logged no epochs yet", "status queued")
    assert not (folder / "results/figures").exists()


def test_a_worker_resumes_the_runs_of_a_killed_worker_at_once(folder: Path) -> None:
    """A worker killed here leaves its runs 'running'; the next `corrgd worker` gives them
    back to the queue at start (as `corrgd sweep` does) instead of waiting out the lease."""
    import socket

    enqueue(folder)
    url = db_url(folder)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{int(done.stdout)}"
    open_db(url).claim_group(dead, "cpu", sweep="tiny", lease_seconds=3600, max_members=2)
    result = cli("worker", "--db", url, "--checkpoint-dir", str(folder / "ck"), cwd=folder)
    assert result.exit_code == 0, result.output
    assert "sweep tiny: 2 runs of dead workers back in the queue" in result.output
    assert "4 runs finished" in result.output
    assert set(open_db(url).runs_frame("tiny")["status"]) == {"done"}


def test_selecting_by_a_split_the_runs_lack_says_why(folder: Path) -> None:
    (folder / "nt.yaml").write_text("name: nt\ndataset: synthetic-correlated\n"
                                    "data: {n_train: 200, n_test: 0}\nnetwork: mlp\n"
                                    "hidden: [8]\nalgorithm: bp\nepochs: 1\n")
    url = db_url(folder)
    assert cli("sweep", "nt.yaml", "--db", url, "--workers", "1", cwd=folder).exit_code == 0
    assert_refused(bad(folder, "best-params", "--metric", "test_acc", "--db", url),
                   "no 'test' results", "no test split, e.g. n_test: 0")
    assert_refused(bad(folder, "best-params", "--db", url),
                   "no 'val' results", "val_size > 0")


def test_a_standalone_worker_prints_each_epoch_and_run(folder: Path) -> None:
    enqueue(folder)
    out = _corrgd(folder, "worker", "--db", db_url(folder))
    assert re.search(r"run \d+ epoch +2 +train loss [\d.]+ acc [\d.]+ %", out), out
    assert len(re.findall(r"run \d+ of sweep tiny: done", out)) == 4


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("args,flag", [
    (["export", "--to", "/proc/x/y.csv"], "--to"),
    (["report", "--figure", "tiny", "--out", "/proc/x"], "--out"),
    (["report", "--table", "peak", "--sweep", "tiny", "--out", "/proc/x"], "--out"),
    (["show", "1", "--figure", "--out", "/proc/x"], "--out"),
])
def test_an_output_that_cannot_be_written_is_one_line(trained: tuple[Path, str],
                                                      args: list[str], flag: str) -> None:
    folder, url = trained
    assert_refused(cli(*args, "--db", url, cwd=folder), flag, "cannot write", "/proc/x")


def test_an_export_onto_a_folder_is_one_line(trained: tuple[Path, str]) -> None:
    folder, url = trained
    (folder / "out.csv").mkdir(exist_ok=True)
    assert_refused(cli("export", "--to", str(folder / "out.csv"), "--db", url, cwd=folder),
                   "--to", "out.csv", "is a folder")


def test_a_full_disk_leaves_no_half_written_file(trained: tuple[Path, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import pandas as pd

    folder, url = trained
    written = pd.DataFrame.to_csv

    def full(frame: pd.DataFrame, path: Any = None, **kwargs: Any) -> Any:
        if path is None:
            return written(frame, **kwargs)
        Path(path).write_text("sweep,run_id,sta")  # what fitted before the disk was full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    target = folder / "full" / "all.csv"
    assert_refused(cli("export", "--to", str(target), "--db", url, cwd=folder),
                   "No space left on device")
    assert list(target.parent.iterdir()) == []  # neither the file nor its temporary one
    result = cli("report", "--figure", "tiny", "--db", url, "--out", str(folder / "full"),
                 cwd=folder)
    assert_refused(result, "--out", "No space left on device")
    assert not list((folder / "full").rglob("*.csv")) and \
        not list((folder / "full").rglob(".*"))


@pytest.mark.parametrize("args,needles", [
    (["report", "--table", "peak", "--sweep", "tiny", "--metric", "bogus"],
     ["--metric bogus", "--table 2"]),
    (["report", "--table", "peak", "--sweep", "tiny", "--metric", "val_acc"],
     ["--metric val_acc", "peak table"]),
    (["report", "--figure", "tiny", "--metric", "offdiag_corr@99"],
     ["offdiag_corr@99", "logged no such diagnostic"]),
    (["report", "--table", "2", "--sweep", "tiny", "--lrs", "bogus"],
     ["--lrs", "'bogus'", "best, all"]),
    (["report", "--table", "2", "--sweep", "tiny", "--pruned"], ["--pruned", "figures only"]),
    (["report", "--figure", "tiny", "--sweep", "nope"], ["--sweep nope", "that sweep's own"]),
    (["report", "--figure", "2", "--metric", "val_loss"], ["--metric val_loss", "computed"]),
    (["report", "--figure", "2", "--sweep", "tiny"], ["--sweep tiny", "computed without"]),
])
def test_report_options_that_do_not_apply_are_refused(trained: tuple[Path, str],
                                                      args: list[str],
                                                      needles: list[str]) -> None:
    folder, url = trained
    assert_refused(bad(folder, *args, "--db", url), *needles)


@pytest.mark.parametrize("args", [["report", "--table", "peak", "--sweep", "tiny"],
                                  ["best-params", "--sweep", "tiny"]])
def test_tables_of_a_sweep_without_finished_runs_are_refused(folder: Path,
                                                             args: list[str]) -> None:
    enqueue(folder)
    assert_refused(bad(folder, *args, "--db", db_url(folder)), "no finished runs yet")


@pytest.mark.parametrize("args", [["sweep", "tiny.yaml", "--enqueue-only"], ["status"],
                                  ["worker"]])
def test_another_applications_database_is_refused_and_left_untouched(folder: Path,
                                                                     args: list[str]) -> None:
    other = folder / "notes.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    before = other.read_bytes()
    assert_refused(cli(*args, "--db", str(other), cwd=folder), "--db", "notes.sqlite",
                   "not corrgd's", "(notes)")
    assert other.read_bytes() == before  # not even switched to WAL mode
    assert sorted(p.name for p in folder.iterdir()) == ["notes.sqlite", "tiny.yaml"]


def _on_read_only_fs(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`corrgd ARGS` with `folder` mounted read-only (a private mount namespace)."""
    command = f"mount --bind -o ro {folder} {folder} && exec {sys.executable} -m corrgd " + \
        " ".join(args)
    return subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", command],
                          cwd=folder, capture_output=True, text=True, timeout=120)


def _can_mount_read_only(folder: Path) -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c",
         f"mount --bind -o ro {folder} {folder}"], capture_output=True).returncode == 0


def test_a_database_on_a_read_only_file_system_is_read_and_never_written(
        folder: Path) -> None:
    if not _can_mount_read_only(folder):
        pytest.skip("needs unshare with user and mount namespaces")
    url = db_url(folder)
    _corrgd(folder, "sweep", "tiny.yaml", "--db", url, "--enqueue-only")
    assert not list(folder.glob("results/*-shm"))  # closed: SQLite cannot make its -shm
    before = snapshot(folder)
    status = _on_read_only_fs(folder, "status", "--db", url)
    assert status.returncode == 0 and "tiny" in status.stdout, status.stderr
    runs = _on_read_only_fs(folder, "runs", "--sweep", "tiny", "--db", url)
    assert runs.returncode == 0 and "queued" in runs.stdout, runs.stderr
    for args in (["sweep", "tiny.yaml", "--enqueue-only"], ["worker"]):
        write = _on_read_only_fs(folder, *args, "--db", url)
        assert write.returncode == 2, write.stderr
        assert write.stderr.strip().splitlines() == [
            f"error: --db {url}: cannot write results to {folder}/results/corrgd.sqlite: "
            "it is on a read-only file system; commands that only read (status, runs, "
            "report) still work"]
    assert snapshot(folder) == before


@pytest.mark.parametrize("extra,needles", [
    ("prune: {metric: [val_acc]}", ["prune.metric", "['val_acc']", "val_acc, val_loss"]),
    ("prune: {metric: 0}", ["prune.metric", "0 is not one of"]),
    ("select: {from: grid, params: [lr, [x]]}", ["select.params", "lr, decor_lr"]),
    ("select: {from: {a: 1}}", ["select.from", "name of a sweep"]),
    ("select: {from: 5}", ["select.from", "name of a sweep", "got 5"]),
    ("select: {from: grid, metric: [val_acc]}", ["select.metric", "val_acc, val_loss"]),
    ("select: {from: grid}\nlr: [0.1, 0.01]", ["lr: select takes lr from sweep 'grid'"]),
    ("select: {from: grid, params: [decor_lr]}\ngrids: [{decor_lr: 0.1}]",
     ["grids[0].decor_lr (or decor_lr): select takes decor_lr"]),
    ("description: {a: 1}", ["description", "must be text"]),
    ("name: off", ["name", "the bool false", "in quotes"]),
    ("true: 1", ["bad.yaml: true: unknown field"]),  # as YAML writes it, not Python's True
    ("grids: [{dataset: synthetic-correlated, data: {n_train: 1000000000000}}]",
     ["n_train", "[1, 100000000]"]),
    ("description: [&a [x, x], *a]", ["description", "must be text"]),
])
def test_spec_values_of_the_wrong_kind_are_one_line(folder: Path, extra: str,
                                                    needles: list[str]) -> None:
    (folder / "bad.yaml").write_text(BASE + "val_size: 100\n" + extra + "\n")
    for args in (["sweep", "bad.yaml"], ["sweep", "bad.yaml", "--dry-run"]):
        assert_refused(bad(folder, *args), "bad.yaml", *needles)


@pytest.mark.parametrize("extra", ["prune: {}", "prune: {metric: val_loss}",
                                   "val_size: [0, 100]\nprune: {}",
                                   "grids: [{val_size: 100}, {}]\nprune: {}"])
def test_pruning_by_a_validation_metric_needs_a_validation_split(folder: Path,
                                                                 extra: str) -> None:
    """val_size defaults to 0: such runs log no val rows, so no rung could be judged."""
    (folder / "bad.yaml").write_text(BASE + "lr: [1.0e-3, 1.0e-2]\n" + extra + "\n")
    for args in (["sweep", "bad.yaml"], ["sweep", "bad.yaml", "--dry-run"]):
        assert_refused(bad(folder, *args), "bad.yaml", "prune.metric", "validation split",
                       "val_size")
    assert_refused(bad(folder, "train", "--epochs", "3", "--set", "prune={}"),
                   "--set prune", "train runs one configuration")
    (folder / "ok.yaml").write_text(BASE + "lr: [1.0e-3, 1.0e-2]\nprune: {metric: "
                                    "test_acc}\n")
    assert cli("sweep", "ok.yaml", "--dry-run", cwd=folder).exit_code == 0


@pytest.mark.parametrize("args,needles", [
    (["sweep", "tiny.yaml", "--workers", "abc"], ["--workers", "sweep --help)"]),
    (["sweep", "tiny.yaml", "--frobnicate"], ["No such option: --frobnicate"]),
    (["sweep"], ["Missing argument 'spec'"]),
    (["show", "abc"], ["'run'", "integer"]),
    (["train", "--epochs", "abc"], ["--epochs"]),
    (["nosuch"], ["No such command 'nosuch'"]),
])
def test_flags_typer_cannot_parse_are_one_line(folder: Path, args: list[str],
                                               needles: list[str]) -> None:
    assert_refused(bad(folder, *args), "error:", *needles)


@pytest.mark.parametrize("args,needles", [
    (["sweep", "tiny.yaml", "--group-size", "99999999999999999999999"],
     ["--group-size", "at most 1,000,000"]),
    (["sweep", "tiny.yaml", "--max-attempts", "99999999999999999999999"],
     ["--max-attempts", "at most 1,000,000"]),
    (["sweep", "tiny.yaml", "--lease", "1e300"], ["--lease", "at most 1,000,000,000"]),
    (["worker", "--lease", "1e300"], ["--lease", "at most 1,000,000,000"]),
    (["sweep", "tiny.yaml", "--threads", "100000000"], ["--threads", "at most 1,024"]),
    (["sweep", "tiny.yaml", "--checkpoint-dir", "tiny.yaml"], ["--checkpoint-dir", "not a folder"]),
    (["sweep", "tiny.yaml", "--checkpoint-dir", "tiny.yaml/sub"],
     ["--checkpoint-dir", "tiny.yaml is a file"]),
    (["worker", "--checkpoint-dir", "tiny.yaml"], ["--checkpoint-dir", "not a folder"]),
    (["train", "--epochs", "1", "--checkpoint-dir", "tiny.yaml"],
     ["--checkpoint-dir", "not a folder"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--time", "forever"],
     ["--time: not a SLURM time limit: 'forever'", "HH:MM:SS"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--time", "inf", "--dry-run"],
     ["--time: not a SLURM time limit: 'inf'"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--time=-5"], ["'-5'"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--time", "1-99:99:99"], ["below 60"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--time", "400-00"], ["more than a year"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--gpus-per-job", "-1", "--dry-run"],
     ["--gpus-per-job", ">= 0"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--cpus-per-job", "0"],
     ["--cpus-per-job", ">= 1"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--array-parallelism", "0"],
     ["--array-parallelism", ">= 1"]),
    (["sweep", "tiny.yaml", "--db", ""], ["--db", "empty"]),
    (["status", "--db", ""], ["--db", "empty"]),
    (["sweep", "tiny.yaml", "--devices", ""], ["--devices", "empty device", "cpu, cuda"]),
    (["sweep", "tiny.yaml", "--partition", "gpu"], ["--partition: applies with --executor slurm"]),
    (["sweep", "tiny.yaml", "--no-wait", "--dry-run"], ["--wait/--no-wait: applies with"]),
    (["sweep", "tiny.yaml", "--executor", "slurm", "--devices", "cpu", "--dry-run"],
     ["--devices: applies with --executor local only"]),
    (["sweep", "tiny.yaml", "--workers", "99999999999999"], ["--workers", "at most 1,024"]),
    (["sweep", "tiny.yaml", "--devices", "cpu,", "--dry-run"], ["--devices", "empty device"]),
    (["sweep", "tiny.yaml", "--devices", "bogus", "--dry-run"], ["--devices", "not a device"]),
    (["sweep", "tiny.yaml", "--devices", "cuda:", "--dry-run"], ["--devices", "not a device"]),
    (["train", "--epochs", "1", "--db", "r.sqlite", "--sweep", ""],
     ["corrgd train --sweep", "name", "non-empty"]),
    # an empty folder would be the current one: checkpoints, data or reports written there
    (["sweep", "tiny.yaml", "--checkpoint-dir", ""], ["--checkpoint-dir: empty"]),
    (["worker", "--data-dir", " "], ["--data-dir: empty"]),
    (["train", "--epochs", "1", "--data-dir", ""], ["--data-dir: empty"]),
    (["report", "--figure", "tiny", "--out", ""], ["--out", "got an empty one"]),
    (["best-params", "--out", ""], ["--out", "got an empty one"]),
    (["show", "1", "--figure", "--out", ""], ["--out", "got an empty one"]),
])
def test_flag_values_that_would_fail_deep_inside_are_refused_first(
        folder: Path, args: list[str], needles: list[str]) -> None:
    before = sorted(p.name for p in folder.iterdir())
    assert_refused(bad(folder, *args), *needles)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_folder_flag_through_a_dangling_link_or_a_name_too_long_is_refused(
        folder: Path) -> None:
    """The folder check looked for the nearest parent that exists: a link to nothing, or a
    loop of links, does not 'exist', so it passed, and every run then failed in the worker
    (FileExistsError), after the database was made; a name too long was a traceback."""
    (folder / "gone").symlink_to(folder / "nowhere" / "x")
    (folder / "loop1").symlink_to(folder / "loop2")
    (folder / "loop2").symlink_to(folder / "loop1")
    long = "x" * 300
    cases = [
        (["sweep", "tiny.yaml", "--checkpoint-dir", "gone"], ["gone is a link to", "nowhere"]),
        (["sweep", "tiny.yaml", "--checkpoint-dir", "gone/sub"], ["gone is a link to"]),
        (["worker", "--checkpoint-dir", "gone"], ["gone is a link to"]),
        (["train", "--epochs", "1", "--data-dir", "gone"], ["--data-dir gone", "a link to"]),
        (["sweep", "tiny.yaml", "--checkpoint-dir", "loop1/sub"],
         ["--checkpoint-dir loop1/sub", "Too many levels of symbolic links"]),
        (["sweep", "tiny.yaml", "--checkpoint-dir", long], ["File name too long"]),
        (["sweep", "tiny.yaml", "--data-dir", long, "--dry-run"], ["File name too long"]),
        (["train", "--epochs", "1", "--data-dir", "~nosuchuser/x"],
         ["--data-dir ~nosuchuser/x", "home directory"]),
    ]
    before = sorted(p.name for p in folder.iterdir())
    for args, needles in cases:
        assert_refused(bad(folder, *args), *needles)
    assert sorted(p.name for p in folder.iterdir()) == before  # no database, no folder


def test_a_database_under_a_home_folder_is_there_not_in_a_folder_named_tilde(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(folder / "home"))
    (folder / "home").mkdir()
    for url in ("~/a.sqlite", "sqlite:///~/b.sqlite"):
        assert cli("sweep", "tiny.yaml", "--enqueue-only", "--db", url, cwd=folder
                   ).exit_code == 0
    assert sorted(p.name for p in (folder / "home").glob("*.sqlite")) == ["a.sqlite", "b.sqlite"]
    assert not (folder / "~").exists()


def test_an_unsupported_database_url_is_one_line_where_a_spec_selects(folder: Path) -> None:
    (folder / "sel.yaml").write_text(BASE + "select: {from: grid}\n")
    for args in (["sweep", "sel.yaml", "--enqueue-only"], ["sweep", "sel.yaml", "--dry-run"],
                 ["report", "--list"]):
        assert_refused(bad(folder, *args, "--db", "foo://bar"), "--db foo://bar",
                       "unsupported database 'foo'")


def test_select_from_a_sweep_that_is_not_there_says_so(folder: Path) -> None:
    enqueue(folder)
    (folder / "sel.yaml").write_text(BASE + "select: {from: nosuch}\n")
    for url in (db_url(folder), "sqlite:///none.sqlite"):
        assert_refused(bad(folder, "sweep", "sel.yaml", "--dry-run", "--db", url),
                       "select.from: no sweep 'nosuch' in the results database",
                       "(sweeps: tiny)" if url == db_url(folder) else "(sweeps: none)")


def damage(folder: Path, sql: str) -> None:
    """Enqueue the tiny sweep, then change its database as no corrgd command would."""
    enqueue(folder)
    with sqlite3.connect(folder / "results" / "corrgd.sqlite") as conn:
        conn.execute(sql)
    conn.close()


@pytest.mark.parametrize("args", [["status"], ["runs"], ["report", "--figure", "tiny"],
                                  ["best-params"], ["sweep", "tiny.yaml", "--enqueue-only"],
                                  ["worker"]])
@pytest.mark.parametrize("sql,missing", [("DROP TABLE epoch_metrics", "no table epoch_metrics"),
                                         ("ALTER TABLE runs DROP COLUMN attempts",
                                          "no column runs.attempts")])  # was a traceback
def test_a_database_missing_part_of_corrgds_schema_is_refused(folder: Path, args: list[str],
                                                              sql: str, missing: str) -> None:
    damage(folder, sql)
    assert_refused(bad(folder, *args, "--db", db_url(folder)), "--db",
                   "schema is incomplete", missing)


@pytest.mark.parametrize("args", [["status"], ["runs"], ["show", "1"], ["export", "--to", "x.csv"],
                                  ["report", "--figure", "tiny"]])
def test_a_run_whose_stored_config_is_not_json_is_named(folder: Path, args: list[str]) -> None:
    """It was a JSONDecodeError traceback, and `runs` blamed a --where it was not given."""
    damage(folder, "UPDATE runs SET config = 'not json' WHERE id = 1")
    assert_refused(bad(folder, *args, "--db", db_url(folder)),
                   "run 1: its stored config is not valid JSON")


def test_a_job_array_sbatch_refuses_is_one_line_and_its_runs_stay_queued(folder: Path) -> None:
    tools = folder / "bin"  # a SLURM client whose sbatch says no, as for a bad partition
    tools.mkdir()
    for name, body in (("squeue", "exit 0"), ("sacct", "exit 0"), ("sbatch", (
            "echo 'sbatch: error: invalid partition specified: nosuch' >&2\n"
            "echo 'sbatch: error: Batch job submission failed: Invalid partition name "
            "specified' >&2\nexit 1"))):
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    result = cli("sweep", "tiny.yaml", "--db", db_url(folder), "--executor", "slurm",
                 "--partition", "nosuch", "--slurm-folder", str(folder / "slurm"), cwd=folder,
                 env={"PATH": f"{tools}:{os.environ['PATH']}"})
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "error: --executor slurm: sbatch: error: Batch job submission failed: Invalid "
        "partition name specified; the runs stay queued: rerun the sweep with other SLURM "
        "options"]
    assert set(open_db(db_url(folder)).runs_frame("tiny")["status"]) == {"queued"}


@pytest.mark.parametrize("args,needles", [
    (["cancel", ""], ["sweep ''", "no such sweep", "tiny"]),
    (["cancel", "tiny "], ["sweep 'tiny '", "no such sweep"]),  # a space one cannot see
    (["delete", "", "--yes"], ["sweep ''", "no such sweep"]),
    (["runs", "--where", "bogus=1"], ["--where", "'bogus'", "columns: run_id, sweep"]),
    (["runs", "--where", "seed=abc"], ["--where seed", "'abc' is not a finite number"]),
    # values no run can have matched nothing, without a word
    (["runs", "--where", "seed=1e400"], ["--where seed", "'1e400' is not a finite number"]),
    (["runs", "--where", "decor=maybe"], ["--where decor", "'maybe' is not true or false"]),
    (["runs", "--where", "status=bogus"], ["--where status", "'bogus' is not one of"]),
    (["runs", "--where", "sweep=nope"], ["--where sweep=nope: no such sweep", "tiny"]),
    (["export", "--to", ".csv"], ["--to .csv", "a file name ending in .csv"]),
    (["status", "--db", "sqlite:///r.sqlite?mode=ro"], ["takes no options (mode)"]),
    (["sweep", "tiny.yaml", "--enqueue-only", "--db", "."], ["--db .", "it is a folder"]),
    (["status", "--db", "."], ["--db .", "is a folder, not a results database"]),
    (["export", "--to", "tiny.yaml/x.csv"], ["--to", "tiny.yaml is a file, not a folder"]),
    (["sweep", "tiny.yaml", "--enqueue-only", "--db", "tiny.yaml/r.sqlite"],
     ["tiny.yaml/r.sqlite", "tiny.yaml is a file, not a folder"]),
    # a URL typed without '//' made a file named 'sqlite:x.sqlite' (file: read as in-memory)
    (["sweep", "tiny.yaml", "--enqueue-only", "--db", "sqlite:x.sqlite"],
     ["--db sqlite:x.sqlite", "a URL without '//'", "sqlite:///PATH"]),
    (["status", "--db", "file:x.sqlite"], ["--db file:x.sqlite", "a URL without '//'"]),
    (["status", "--db", "tiny.yaml"], ["--db tiny.yaml", "not an SQLite database"]),  # no SQL
    (["status", "--db", "postgresql+psycopg2://u@h/d"],  # was ModuleNotFoundError: psycopg2
     ["driver 'psycopg2' is not supported", "postgresql+psycopg://"]),
    (["sweep", "tiny.yaml", "--enqueue-only", "--db", "sqlite:///~nosuchuser/r.sqlite"],
     ["no home folder for ~nosuchuser"]),  # it made a folder named ~nosuchuser
])
def test_messages_name_what_the_user_gave(folder: Path, args: list[str],
                                          needles: list[str]) -> None:
    enqueue(folder)
    if "--db" not in args:
        args = [*args, "--db", db_url(folder)]
    assert_refused(bad(folder, *args), *needles)


def test_an_empty_file_as_database_is_named_as_given(folder: Path) -> None:
    (folder / "zero.sqlite").touch()
    result = bad(folder, "status", "--db", "zero.sqlite")
    assert_refused(result, "--db zero.sqlite: it holds no corrgd results")
    assert "file%3A" not in result.stderr


def test_a_figure_of_a_split_the_sweep_never_logged(folder: Path) -> None:
    (folder / "noval.yaml").write_text(TINY.replace("name: tiny", "name: noval").replace(
        "val_size: 100", "val_size: 0").replace("seed: [0, 1]", "seed: 0"))
    url = db_url(folder)
    done = subprocess.run([sys.executable, "-m", "corrgd", "sweep", "noval.yaml", "--db", url],
                          cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_refused(bad(folder, "report", "--figure", "noval", "--metric", "val_acc", "--db",
                       url), "--metric val_acc", "only the splits test, train", "val_size")


def test_a_run_larger_than_all_the_memory_here_is_refused(folder: Path) -> None:
    """digits through an MLP of 10^8 units: ~857 GiB as `spec.sizing` counts, more than any
    machine this runs on; every worker would fail it after loading the data."""
    (folder / "big.yaml").write_text(BASE.replace("hidden: [8]", "hidden: [[8], [100000000]]"))
    assert_refused(bad(folder, "sweep", "big.yaml"), "big.yaml", "mlp [100000000]", "GiB",
                   "more than the")
    assert_refused(bad(folder, "train", "--epochs", "1", "--set", "hidden=[100000000]"),
                   "corrgd train", "GiB")
    assert cli("sweep", "big.yaml", "--dry-run", cwd=folder).exit_code == 0  # it sizes them


def test_a_data_set_that_is_not_here_is_refused_before_the_sweep_is_enqueued(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline and without a local copy every run would fail; with the files (a small
    CIFAR-10 in its own format) the sweep goes ahead."""
    import numpy as np
    from test_data import write_cifar10

    from corrgd.data import cifar

    monkeypatch.setattr(cifar, "try_download", lambda fetch, url: "download failed: offline")
    (folder / "c.yaml").write_text(BASE.replace("digits", "cifar10") + "val_size: 5\n")
    data = folder / "data"
    data.mkdir()
    assert_refused(bad(folder, "sweep", "c.yaml", "--data-dir", str(data)), "c.yaml",
                   "dataset: cifar10: expected", "download failed: offline", "--data-dir")
    write_cifar10(data, np.random.default_rng(0))
    done = cli("sweep", "c.yaml", "--data-dir", str(data), "--enqueue-only", cwd=folder)
    assert done.exit_code == 0, done.output


def test_runs_where_compares_numbers_by_value_and_repeats_as_or(folder: Path) -> None:
    enqueue(folder)

    def shown(*where: str) -> list[tuple[bool, int]]:
        result = cli("runs", "--db", db_url(folder), "--format", "json",
                     *[a for w in where for a in ("--where", w)], cwd=folder)
        assert result.exit_code == 0, result.output
        return sorted((r["decor"], r["seed"]) for r in json.loads(result.stdout))

    assert shown("seed=0") == shown("seed=0.0") == [(False, 0), (True, 0)]
    assert shown("seed=0", "seed=1") == shown()  # one axis twice: either value
    assert shown("seed=1", "decor=true") == [(True, 1)]
