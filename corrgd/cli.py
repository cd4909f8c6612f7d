"""The `corrgd` command line: a thin layer over sweeps, storage, workers and reports.

    corrgd sweep sweeps/quickstart.yaml      enqueue a spec and work through it
    corrgd status                            runs per sweep and state
    corrgd worker                            drain whatever is queued
    corrgd train --dataset digits ...        one run from flags, printed
    corrgd best-params / corrgd report       tables and figures from the database

Bad input is one line on stderr naming the file, field and allowed values, and
exit code 2, with nothing written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from corrgd.sweeps import SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Decorrelated learning: sweeps, workers and reports.")
console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="CORRGD_DB", help="SQLAlchemy URL of the results database "
    "[default: sqlite:///results/corrgd.sqlite]")]
DataDirOption = Annotated[str | None, typer.Option(
    "--data-dir", envvar="CORRGD_DATA", help="Where data sets live (or are downloaded to).")]


def fail(message: str) -> typer.Exit:
    """Print one line on stderr and exit with code 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _open_db(url: str | None) -> Any:
    from corrgd.storage import StorageError, open_db

    try:
        return open_db(url)
    except (StorageError, ValueError, OSError) as e:
        raise fail(f"--db {url or '(default)'}: {e}") from None
    except Exception as e:  # driver errors: unreachable server, bad URL
        raise fail(f"--db {url or '(default)'}: {type(e).__name__}: "
                   f"{str(e).splitlines()[0]}") from None


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="YAML sweep spec, e.g. sweeps/quickstart.yaml")],
    db: DbOption = None,
    workers: Annotated[int | None, typer.Option(
        help="Local worker processes [default: one per GPU, else one per CPU core]")] = None,
    devices: Annotated[str | None, typer.Option(
        help="Comma-separated devices for local workers, e.g. cpu or cuda:0,cuda:1")] = None,
    executor: Annotated[str, typer.Option(help="Where workers run: local or slurm")] = "local",
    partition: Annotated[str | None, typer.Option(help="SLURM partition")] = None,
    gpus_per_job: Annotated[int, typer.Option(help="SLURM GPUs per array task")] = 0,
    cpus_per_job: Annotated[int, typer.Option(help="SLURM CPUs per array task")] = 1,
    time: Annotated[str, typer.Option(help="SLURM time limit per task (minutes or HH:MM:SS)")]
    = "60",
    array_parallelism: Annotated[int, typer.Option(
        help="SLURM array tasks running at once")] = 16,
    slurm_folder: Annotated[str, typer.Option(help="Where submitit keeps SLURM job files")]
    = "results/slurm",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the number of runs and their cost; write nothing")] = False,
    enqueue_only: Annotated[bool, typer.Option(
        "--enqueue-only", help="Add the runs to the queue and stop")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for SLURM workers and show progress")] = True,
    data_dir: DataDirOption = None,
    checkpoint_dir: Annotated[str, typer.Option(help="Checkpoints, on storage all workers "
                                                     "can read")] = "results/checkpoints",
    lease: Annotated[float, typer.Option(help="Seconds without heartbeat before a run is "
                                              "handed to another worker")] = 120.0,
    group_size: Annotated[int | None, typer.Option(
        help="Most runs a worker trains together as one batched model (runs that differ "
             "only in LRs, seed, noise variance); 1: one run at a time "
             "[default: as many as fit half the device's free memory]")] = None,
) -> None:
    """Enqueue the runs of a sweep spec (only those missing) and work through them."""
    from corrgd import analysis, sweeps

    if executor not in ("local", "slurm"):
        raise fail(f"--executor: {executor!r} is not one of: local, slurm")
    try:  # validate everything before the database is opened (or created)
        parsed = sweeps.load_spec(spec)
        database = _open_db(db) if parsed.select and _db_exists(db) else None
        runs = sweeps.expand(parsed, analysis.selection_lookup(database))
    except SpecError as e:
        raise fail(str(e)) from None
    if group_size is not None and group_size < 1:
        raise fail(f"--group-size: must be >= 1, got {group_size}")
    if dry_run:
        from corrgd.estimate import print_estimate

        device = (devices.split(",")[0] if devices else
                  "cuda" if executor == "slurm" and gpus_per_job else "cpu")
        print_estimate(console, parsed, runs, device=device, group_size=group_size)
        return
    from corrgd.storage import RunSpec

    database = database or _open_db(db)

    specs = [RunSpec(config=r.model_dump(mode="json"), axes=_axes(parsed, r),
                     group_key=r.group_key()) for r in runs]
    _, added = database.add_sweep(parsed.name, parsed.text, specs)
    console.print(f"sweep [bold]{parsed.name}[/]: {len(runs)} runs, {added} new, "
                  f"{len(runs) - added} already in the database")
    if enqueue_only:
        return
    from corrgd.launch import launch_workers

    code = launch_workers(
        database, parsed.name, executor=executor, workers=workers, devices=devices,
        slurm={"partition": partition, "gpus_per_job": gpus_per_job,
               "cpus_per_task": cpus_per_job, "time": time,
               "array_parallelism": array_parallelism, "folder": slurm_folder},
        wait=wait, data_dir=data_dir, checkpoint_dir=checkpoint_dir, lease=lease,
        group_size=group_size, console=console)
    raise typer.Exit(code)


def _axes(parsed: Any, run: Any) -> dict[str, Any]:
    values = run.model_dump(mode="json")
    return {k: values[k] for k in parsed.axes if k in values}


def _db_exists(url: str | None) -> bool:
    """False for an SQLite file that is not there yet (nothing to read, nothing to create)."""
    from corrgd.storage.engine import resolve_url

    resolved = resolve_url(url)
    return not resolved.drivername.startswith("sqlite") or not resolved.database or \
        Path(resolved.database).exists()


@app.command()
def worker(
    db: DbOption = None,
    sweep: Annotated[str | None, typer.Option(help="Only runs of this sweep")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many runs")] = None,
    data_dir: DataDirOption = None,
    checkpoint_dir: Annotated[str, typer.Option()] = "results/checkpoints",
    lease: Annotated[float, typer.Option()] = 120.0,
    group_size: Annotated[int | None, typer.Option(
        help="Most runs trained together as one batched model; 1: one at a time "
             "[default: as many as fit half the device's free memory]")] = None,
) -> None:
    """Drain the queue in this process: claim a group of runs, train, log, repeat."""
    from corrgd.worker import Worker

    if group_size is not None and group_size < 1:
        raise fail(f"--group-size: must be >= 1, got {group_size}")
    w = Worker(_open_db(db), sweep=sweep, device=device, lease_seconds=lease,
               data_dir=data_dir, checkpoint_dir=checkpoint_dir, group_size=group_size)
    try:
        n = w.run(max_runs)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(f"worker {w.id}: {n} runs finished; queue empty" if max_runs is None
                  else f"worker {w.id}: {n} runs finished")


@app.command()
def status(
    db: DbOption = None,
    sweep: Annotated[str | None, typer.Option(help="Show this sweep's runs")] = None,
) -> None:
    """Runs per sweep and state (and SLURM job states where workers ran there)."""
    from corrgd.launch import status_tables

    database = _open_db(db)
    out = console
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        # Piped or captured (a script, a log): no terminal width to fit. Cut to rich's
        # default 80 columns, run and SLURM job states came out as "runn…", "CANC…".
        out = Console(width=10_000)  # tables keep their natural width: every cell whole
    for table in status_tables(database, sweep):
        out.print(table)


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="Data set name")] = "digits",
    network: Annotated[str, typer.Option(help="Network name")] = "mlp",
    algorithm: Annotated[str, typer.Option(help="bp, fa, dfa, np, inp, anp or copi")] = "bp",
    decor_lr: Annotated[float, typer.Option(help="Decorrelation LR; 0 = no decorrelation")]
    = 0.0,
    lr: Annotated[float, typer.Option(help="Forward learning rate")] = 1e-3,
    epochs: Annotated[int, typer.Option()] = 5,
    batch_size: Annotated[int, typer.Option()] = 64,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option()] = "cpu",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other run setting, KEY=VALUE (YAML value), repeatable")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Train one configuration given by flags and print its metrics per epoch."""
    import yaml

    from corrgd.sweeps import parse_spec, validate

    settings: dict[str, Any] = {"dataset": dataset, "network": network,
                                "algorithm": algorithm, "decor": decor_lr > 0,
                                "decor_lr": decor_lr, "lr": lr, "epochs": epochs,
                                "batch_size": batch_size, "seed": seed}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = yaml.safe_load(value)
    try:
        parsed = parse_spec(yaml.safe_dump(settings), source="corrgd train")
        config = validate(parsed.grids[0].settings, parsed.source)
    except SpecError as e:
        raise fail(str(e)) from None
    from corrgd.data import DataNotFoundError
    from corrgd.launch import train_one

    try:
        status_ = train_one(config, device=device, data_dir=data_dir, console=console)
    except DataNotFoundError as e:
        raise fail(str(e)) from None
    raise typer.Exit(0 if status_ == "done" else 1)


# -- reports (corrgd.reports): tables and figures from the database ---------------------
OutOption = Annotated[Path, typer.Option(
    "--out", help="Output folder: tables under OUT/tables, figures under OUT/figures")]
MetricOption = Annotated[str, typer.Option(
    "--metric", help="Score to select by: val_acc, val_loss, test_acc, ... (peak over epochs)")]


def _reporting(action: Any) -> None:
    """Run a report action; a ReportError becomes one line on stderr and exit 2."""
    from corrgd.reports import ReportError

    try:
        action()
    except ReportError as e:
        raise fail(str(e)) from None


@app.command("best-params")
def best_params(
    sweep: Annotated[str | None, typer.Option(
        help="Grid-search sweep [default: the only sweep, else table2]")] = None,
    metric: MetricOption = "val_acc",
    db: DbOption = None,
    out: OutOption = Path("results"),
) -> None:
    """Per curve, the forward and decor LRs with the best peak validation score (CRGD Table 2)."""
    from corrgd.reports import commands

    database = _open_db(db)
    _reporting(lambda: commands.best_params(database, sweep=sweep, metric=metric, out=out,
                                            console=console))


@app.command()
def report(
    figure: Annotated[str | None, typer.Option(
        "--figure", help="Figure id (see --list) or a sweep name")] = None,
    table: Annotated[str | None, typer.Option(
        "--table", help="peak (NPD Tables 3-4) or 2 (CRGD Table 2)")] = None,
    list_: Annotated[bool, typer.Option(
        "--list", help="List figure ids and tables, with the sweeps they need")] = False,
    sweep: Annotated[str | None, typer.Option(
        help="Sweep to report on (tables; overrides a figure's own sweep)")] = None,
    metric: MetricOption = "val_acc",
    lrs: Annotated[str, typer.Option(
        help="Curves with several LRs: best (by mean peak val_acc over seeds) or all")]
    = "best",
    db: DbOption = None,
    out: OutOption = Path("results"),
) -> None:
    """Figures and tables of the papers from the results database."""
    from corrgd.reports import commands

    chosen = [name for name, given in (("--figure", figure is not None),
                                       ("--table", table is not None), ("--list", list_))
              if given]
    if len(chosen) != 1:
        raise fail("give exactly one of --figure ID, --table peak|2, --list"
                   + (f" (got {', '.join(chosen)})" if chosen else ""))
    if list_:
        database = _open_db(db)
        _reporting(lambda: commands.report_list(database, console))
    elif table is not None:
        database = _open_db(db)
        _reporting(lambda: commands.report_table(database, table, sweep=sweep, metric=metric,
                                                 lrs=lrs, out=out, console=console))
    else:
        _reporting(lambda: commands.report_figure(str(figure), lambda: _open_db(db),
                                                  sweep=sweep, lrs=lrs, out=out,
                                                  console=console))

