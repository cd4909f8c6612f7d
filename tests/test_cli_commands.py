"""The commands a researcher asks first, on a small real database: runs, show, export,
report --metric / --compare, train --db, cancel, delete, status; and that the CLI
answers without loading torch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_helper import cli
from queue_helper import claim_one
from typer.testing import CliRunner

from corrgd.cli import app
from corrgd.storage import open_db

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = """\
name: small
dataset: digits
network: mlp
hidden: [8]
val_size: 100
algorithm: [bp, fa]
decor: [false, true]
decor_lr: 1.0e-3
lr: 1.0e-3
seed: [0, 1]
epochs: 2
batch_size: 256
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A sweep of 8 runs (BP, FA, with and without decorrelation, 2 seeds), trained."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "small.yaml").write_text(SPEC)
    url = f"sqlite:///{folder / 'results' / 'corrgd.sqlite'}"
    result = cli("sweep", "small.yaml", "--db", url, "--workers", "1", cwd=folder)
    assert result.exit_code == 0, result.output
    return folder, url


def test_runs_lists_every_run_with_its_axes_and_scores(results: tuple[Path, str]) -> None:
    folder, url = results
    result = cli("runs", "--sweep", "small", "--db", url, "--format", "csv", cwd=folder)
    assert result.exit_code == 0
    table = pd.read_csv(io.StringIO(result.stdout))
    assert len(table) == 8
    assert {"run_id", "algorithm", "decor", "seed", "status", "attempts", "epochs_done",
            "val_acc_peak", "val_acc_final", "test_acc_peak", "test_acc_final",
            "error"} <= set(table.columns)
    assert set(table["status"]) == {"done"} and set(table["epochs_done"]) == {2}
    db = open_db(url)
    epochs = db.epochs_frame("small", diagnostics=False)
    for row in table.itertuples():
        test = epochs[(epochs["run_id"] == row.run_id) & (epochs["split"] == "test")]
        assert row.test_acc_peak == pytest.approx(test["accuracy"].max())
        assert row.test_acc_final == pytest.approx(test.sort_values("epoch")["accuracy"]
                                                   .iloc[-1])


def test_runs_filters_sorts_and_formats(results: tuple[Path, str]) -> None:
    folder, url = results
    result = cli("runs", "--db", url, "--where", "algorithm=fa", "--where", "seed=1",
                 "--sort", "test_acc_peak", "--desc", "--format", "json", cwd=folder)
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and {r["algorithm"] for r in rows} == {"fa"}
    assert rows[0]["test_acc_peak"] >= rows[1]["test_acc_peak"]
    table = cli("runs", "--db", url, "--status", "done", cwd=folder)
    assert table.exit_code == 0 and "8 runs" in table.output
    assert "test acc peak (%)" in table.output  # headers wrap between words
    bad = cli("runs", "--db", url, "--sort", "nope", cwd=folder)
    assert bad.exit_code == 2 and "--sort" in bad.stderr
    # a setting every run has but none sweeps (README: --where lr=1e-3) filters, and shows
    for value, count in (("1e-3", 8), ("0.001", 8), ("1e-2", 0)):
        lr = cli("runs", "--db", url, "--where", f"lr={value}", "--format", "json", cwd=folder)
        assert lr.exit_code == 0, lr.output  # was: 'lr' is not a column of the runs
        rows = json.loads(lr.stdout)
        assert len(rows) == count and all(r["lr"] == 0.001 for r in rows)


def test_show_prints_config_life_and_curves(results: tuple[Path, str]) -> None:
    folder, url = results
    runs = open_db(url).runs_frame("small")
    run = int(runs[(runs["algorithm"] == "bp") & runs["decor"] & (runs["seed"] == 0)]
              ["run_id"].iloc[0])
    result = cli("show", str(run), "--db", url, "--figure", "--out", str(folder / "out"),
                 cwd=folder)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"run {run} of sweep small" in out and "decor_lr: 0.001" in out and "attempts" in out
    assert "accuracy (%)" in out and "layer1.offdiag_corr" in out  # curves, diagnostics
    assert (folder / "out" / "figures" / f"run-{run}.png").stat().st_size > 1000
    missing = cli("show", "999", "--db", url, cwd=folder)
    assert missing.exit_code == 2 and "run 999" in missing.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_export_writes_every_epoch_row_with_its_config(results: tuple[Path, str],
                                                       suffix: str) -> None:
    folder, url = results
    path = folder / f"all{suffix}"
    result = cli("export", "--sweep", "small", "--to", str(path), "--db", url, cwd=folder)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(path) if suffix == ".csv" else pd.read_json(path, lines=True)
    assert len(frame) == 8 * 3 * 3  # runs x epochs 0-2 x splits
    assert {"sweep", "run_id", "epoch", "split", "loss", "accuracy", "lr", "decor_lr",
            "hidden", "batch_size", "layer1.offdiag_corr", "layer2.angle_to_bp"} <= \
        set(frame.columns)
    decorrelated = frame[(frame["decor"]) & (frame["split"] == "train")]
    assert decorrelated["layer1.offdiag_corr"].notna().all()


def test_export_to_parquet_says_what_it_needs(results: tuple[Path, str]) -> None:
    folder, url = results
    result = cli("export", "--to", str(folder / "x.parquet"), "--db", url, cwd=folder)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert result.exit_code == 2 and "pyarrow" in result.stderr
    else:
        assert result.exit_code == 0 and len(pd.read_parquet(folder / "x.parquet")) == 72
    bad = cli("export", "--to", str(folder / "x.xlsx"), "--db", url, cwd=folder)
    assert bad.exit_code == 2 and ".csv, .parquet or .jsonl" in bad.stderr


@pytest.mark.parametrize("metric", ["test_loss", "train_acc", "angle_to_bp", "offdiag_corr@1",
                                    "gain"])
def test_report_plots_the_metric_asked_for(results: tuple[Path, str], metric: str) -> None:
    folder, url = results
    out = folder / f"report-{metric}"
    result = cli("report", "--figure", "small", "--metric", metric, "--db", url, "--out",
                 str(out), cwd=folder)
    assert result.exit_code == 0, result.output
    (csv,) = (out / "figures").glob("*.csv")
    frame = pd.read_csv(csv)
    assert set(frame["metric"]) == {metric}
    db = open_db(url)
    epochs = db.epochs_frame("small")
    if metric == "test_loss":  # the plotted mean is the mean over seeds of the logged loss
        bp = frame[(frame["curve"] == "BP") & (frame["epoch"] == 2)]
        runs = db.runs_frame("small")
        ids = runs[(runs["algorithm"] == "bp") & (~runs["decor"])]["run_id"]
        logged = epochs[epochs["run_id"].isin(ids) & (epochs["split"] == "test")
                        & (epochs["epoch"] == 2)]["loss"]
        assert bp["mean"].iloc[0] == pytest.approx(logged.mean())
    if metric.startswith("offdiag"):  # decorrelated curves only
        assert frame["curve"].str.contains("decor").all()
    bad = cli("report", "--figure", "small", "--metric", "nope", "--db", url, "--out",
              str(out), cwd=folder)
    assert bad.exit_code == 2 and "angle_to_bp" in bad.stderr


def test_report_compare_puts_two_sweeps_in_one_figure(results: tuple[Path, str]) -> None:
    folder, url = results
    (folder / "other.yaml").write_text(SPEC.replace("name: small", "name: other")
                                       .replace("lr: 1.0e-3", "lr: 3.0e-3")
                                       .replace("seed: [0, 1]", "seed: 0"))
    assert cli("sweep", "other.yaml", "--db", url, "--workers", "1", cwd=folder).exit_code == 0
    out = folder / "compare"
    result = cli("report", "--compare", "small", "--compare", "other", "--db", url, "--out",
                 str(out), cwd=folder)
    assert result.exit_code == 0, result.output
    (csv,) = (out / "figures").glob("compare-*.csv")
    curves = set(pd.read_csv(csv)["curve"])
    assert {"small: BP", "other: BP", "small: FA+decor", "other: FA+decor"} <= curves
    one = cli("report", "--compare", "small", "--db", url, cwd=folder)
    assert one.exit_code == 2
    with_sweep = cli("report", "--compare", "small", "--compare", "other", "--sweep", "small",
                     "--db", url, cwd=folder)
    assert with_sweep.exit_code == 2 and "--compare names the sweeps" in with_sweep.stderr
    (folder / "later.yaml").write_text(SPEC.replace("name: small", "name: later"))
    assert cli("sweep", "later.yaml", "--db", url, "--enqueue-only", cwd=folder).exit_code == 0
    empty = cli("report", "--compare", "small", "--compare", "later", "--db", url, "--out",
                str(folder / "empty"), cwd=folder)
    assert empty.exit_code == 2 and "sweep later has logged no epochs yet" in empty.stderr
    assert not (folder / "empty").exists()


def test_train_with_db_logs_a_sweep_of_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    args = ("train", "--epochs", "1", "--set", "hidden=[8]", "--db", url, "--sweep", "one",
            "--checkpoint-dir", str(tmp_path / "ck"))
    result = cli(*args, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "acc" in result.output and "%" in result.output  # accuracy in percent
    db = open_db(url)
    runs = db.runs_frame("one")
    assert len(runs) == 1 and runs["status"].iloc[0] == "done"
    assert len(db.epochs_frame("one")) == 2 * 2  # epochs 0, 1 x train, test
    again = cli(*args, cwd=tmp_path)
    assert again.exit_code == 0 and "finished already" in again.output
    assert len(db.runs_frame("one")) == 1


def test_cancel_stops_a_sweep_and_sweep_resumes_it(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert cli("sweep", "small.yaml", "--db", url, "--enqueue-only", cwd=tmp_path).exit_code \
        == 0
    result = cli("cancel", "small", "--db", url, cwd=tmp_path)
    assert result.exit_code == 0 and "8 queued runs left the queue" in result.output
    again = cli("cancel", "small", "--db", url, cwd=tmp_path)
    assert again.exit_code == 0 and "cancelled already" in again.output
    assert "8 queued runs wait" in again.output and "left the queue" not in again.output
    db = open_db(url)
    assert set(db.runs_frame("small")["status"]) == {"cancelled"}
    assert claim_one(db, "w") is None  # nothing handed out
    status = cli("status", "--db", url, cwd=tmp_path)
    assert "cancelled" in status.output
    resumed = cli("sweep", "small.yaml", "--db", url, "--workers", "1", "--checkpoint-dir",
                  str(tmp_path / "ck"), cwd=tmp_path)
    assert resumed.exit_code == 0
    assert set(db.runs_frame("small")["status"]) == {"done"}


def test_a_running_group_stops_at_its_next_epoch_end_when_cancelled(tmp_path: Path) -> None:
    from corrgd.run.worker import Worker

    (tmp_path / "small.yaml").write_text(SPEC.replace("epochs: 2", "epochs: 5"))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    cli("sweep", "small.yaml", "--db", url, "--enqueue-only", cwd=tmp_path)
    db = open_db(url)
    worker = Worker(url, sweep="small", checkpoint_dir=tmp_path / "ck", group_size=2)
    original = db.log_epochs

    def cancel_after_epoch_2(entries, owner):  # cancel while the first group trains
        lost = original(entries, owner)
        if entries[0].epoch == 2:
            db.cancel_sweep("small")
        return lost

    worker.db.log_epochs = cancel_after_epoch_2  # type: ignore[method-assign]
    worker.run()
    runs = db.runs_frame("small")
    assert set(runs["status"]) == {"cancelled"}
    stopped = runs[runs["last_epoch"] > 0]
    assert len(stopped) == 2 and set(stopped["last_epoch"]) == {2}  # kept what they wrote
    assert len(db.epochs_frame("small", run_ids=stopped["run_id"])) == 2 * 3 * 3


def test_delete_asks_then_removes_a_sweep(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SPEC)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    cli("sweep", "small.yaml", "--db", url, "--enqueue-only", cwd=tmp_path)
    no = cli("delete", "small", "--db", url, cwd=tmp_path, input="n\n")
    assert no.exit_code == 1 and "small" in set(open_db(url).list_sweeps()["sweep"])
    closed = cli("delete", "small", "--db", url, cwd=tmp_path, input="")  # was 'Aborted.'
    assert closed.exit_code == 2 and "give --yes" in closed.stderr
    assert "small" in set(open_db(url).list_sweeps()["sweep"])
    yes = cli("delete", "small", "--db", url, "--yes", cwd=tmp_path)
    assert yes.exit_code == 0 and "deleted sweep small and its 8 runs" in yes.output
    assert open_db(url).list_sweeps().empty
    missing = cli("delete", "small", "--db", url, "--yes", cwd=tmp_path)
    assert missing.exit_code == 2


def test_status_shows_swept_axes_best_score_and_orphaned_runs(
        results: tuple[Path, str]) -> None:
    folder, url = results
    result = cli("status", "--sweep", "small", "--db", url, cwd=folder)
    assert result.exit_code == 0
    assert "best so far" in result.output
    for axis in ("algorithm", "decor", "seed"):
        assert axis in result.output
    # a run whose worker process is gone is not shown as running
    db = open_db(url)
    (folder / "orphan.yaml").write_text(SPEC.replace("name: small", "name: orphan")
                                        .replace("seed: [0, 1]", "seed: 7"))
    cli("sweep", "orphan.yaml", "--db", url, "--enqueue-only", cwd=folder)
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    claim_one(db, f"{socket.gethostname()}:{dead}", sweep="orphan")
    status = cli("status", "--sweep", "orphan", "--db", url, cwd=folder)
    assert "orphaned" in status.output


def test_non_terminal_progress_is_a_plain_line_per_tenth(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(SPEC)
    proc = subprocess.run([sys.executable, "-m", "corrgd", "sweep", "small.yaml", "--db",
                           f"sqlite:///{tmp_path / 'r.sqlite'}", "--workers", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "small: epochs" in line]
    assert lines and lines[-1].split("epochs ")[1].startswith("24/24 (100 %)")


def test_the_cli_does_not_import_torch_to_answer() -> None:
    """Parsing arguments, --help, status and reports' listing need no torch (it takes
    seconds to import): only commands that train or evaluate load it."""
    code = ("import sys, corrgd.cli, corrgd.results.listings, corrgd.storage, corrgd.spec.sweeps, "
            "corrgd.experiments.listing; "
            "bad = [m for m in ('torch', 'torchvision', 'sklearn', 'matplotlib') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_default_devices_needs_torch_only_where_a_gpu_driver_is() -> None:
    """`corrgd sweep` picks its devices before it starts workers: on a machine without a
    GPU driver it answers ["cpu"] without importing torch; elsewhere it asks torch."""
    from corrgd.run.devices import GPU_DRIVER_NODES

    code = ("import json, sys; from corrgd.run.devices import default_devices; "
            "print(json.dumps([default_devices(), 'torch' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    devices, imported = json.loads(out)
    if not any(os.path.exists(node) for node in GPU_DRIVER_NODES):
        assert (devices, imported) == (["cpu"], False)
    else:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        assert devices == ([f"cuda:{i}" for i in range(gpus)] or ["cpu"])


def test_a_worker_imports_only_what_training_needs() -> None:
    """Every worker process pays its imports: torchvision (downloads), scikit-learn (the
    digits' first load), scipy (SARCOS .mat files), pandas and matplotlib (reports) each
    take up to a second, so the worker loads none of them."""
    code = ("import sys, corrgd.run.worker, corrgd.run.runner, corrgd.data; "
            "bad = [m for m in ('torchvision', 'sklearn', 'scipy', 'pandas', 'matplotlib') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


MALLOC_PROBE = """
import ctypes, resource, sys, torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2

def mmapped_for_a_new_tensor():  # bytes glibc mmaps for a tensor larger than any before
    before = mallinfo2().hblkhd
    tensor = torch.empty(30 * 2**20, dtype=torch.uint8)
    return mallinfo2().hblkhd - before

def faults():  # minor page faults per round of six 4 MB tensors made and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        tensors = [torch.ones(8, 1000, 128) for _ in range(6)]
        del tensors
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10

SETUP
faults()
print(mmapped_for_a_new_tensor(), faults())
"""


def _malloc_probe(setup: str, folder: Path) -> tuple[float, float]:
    """(bytes mmapped for a new 30 MB tensor, page faults per round of tensors) in a fresh
    process after `setup`."""
    code = MALLOC_PROBE.replace("SETUP", setup)
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.parametrize("setup", ["from corrgd.run.malloc import keep_freed_memory; "
                                   "assert keep_freed_memory()",
                                   "from corrgd.run.worker import WorkerTask; "
                                   "WorkerTask()('sqlite:///' + sys.argv[1] + '/q.sqlite')"],
                         ids=["keep_freed_memory", "worker"])
def test_a_worker_keeps_freed_memory_for_the_next_tensors(setup: str, tmp_path: Path) -> None:
    """glibc serves large blocks with mmap and gives them back when freed, so each new
    tensor of a grouped step can page-fault its memory in again; a worker has them served
    from its heap and kept there (corrgd.run.malloc)."""
    mmapped, _ = _malloc_probe("pass", tmp_path)
    assert mmapped >= 30 * 2**20  # glibc's default: a new large block is mmapped
    mmapped, faults = _malloc_probe(setup, tmp_path)
    assert mmapped == 0
    assert faults < 50  # memory freed by a round is reused by the next one


def test_every_option_has_help_and_shows_its_default() -> None:
    import typer

    group = typer.main.get_command(app)  # typer's click command (typer vendors click now)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            assert param.help, f"corrgd {name} {param.opts[0]} has no help text"
            if not param.is_flag and not param.required:  # shown as [default: ...]
                assert param.show_default is not False, f"corrgd {name} {param.opts[0]}"
    sweep_help = CliRunner().invoke(app, ["sweep", "--help"], env={"COLUMNS": "250"}).output
    assert "[default: local]" in sweep_help and "[default: 3]" in sweep_help
