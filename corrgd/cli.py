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

import inspect
import math
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer._click import exceptions as click_errors  # the click that Typer vendors

from corrgd.console import terminal
from corrgd.run import DEFAULT_CHECKPOINT_DIR, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS
from corrgd.spec.sweeps import CONFIRM_ABOVE, SpecError
from corrgd.storage import DEFAULT_URL, ENV_VAR
from corrgd.storage.errors import DamagedDatabase

console = terminal()
err_console = terminal(stderr=True)


def error_line(message: str) -> None:
    """`error: MESSAGE`, one line on stderr (never wrapped: scripts read it)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print one line on stderr and exit with code 2."""
    error_line(message)
    return typer.Exit(2)


class CorrgdGroup(typer.core.TyperGroup):
    """Typer's command group, whose usage errors (a flag's value that is not a number, an
    unknown option, a missing argument) are one line on stderr with exit code 2, like every
    other bad input, instead of a boxed panel under the usage; and whose help shows its
    texts as written (`_literal_help`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            _literal_help(command)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as e:  # `corrgd` alone: the help is printed
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            hint = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
            error_line(" ".join(e.format_message().split()) + hint)
            sys.exit(e.exit_code)
        except click_errors.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            err_console.print("Aborted.", highlight=False)
            sys.exit(1)
        except DamagedDatabase as e:  # found while reading: a run changed by hand
            error_line(f"the results database: {e}")
            sys.exit(2)
        sys.exit(code if isinstance(code, int) else 0)


def _literal_help(command: Any) -> None:
    """Rich reads "[default: ...]" or "corrgd[parquet]" in a help text as markup and drops
    it: escape the brackets. The list of commands shows each one's first paragraph with its
    line breaks: join them, so that it wraps at the terminal's width."""
    if command.help:
        command.help = escape(command.help)
        first = inspect.cleandoc(command.help).split("\n\n")[0]
        command.short_help = " ".join(first.split())
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)


def _out_folder(value: str | Path) -> Path:
    """--out as a Path (Typer passes the default, a Path, through this too); an empty one is
    refused (Path('') would be the current folder)."""
    if not str(value).strip():
        raise typer.BadParameter("give a folder, e.g. --out results (got an empty one)")
    return Path(value)


app = typer.Typer(cls=CorrgdGroup, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Decorrelated learning: sweeps, workers and reports.")

# Options several commands share, each written once; their defaults belong to the stages.
DbOption = Annotated[str | None, typer.Option(
    "--db", envvar=ENV_VAR, help="Results database: an SQLite file (PATH or sqlite:///PATH) "
    f"or postgresql+psycopg://USER:PW@HOST/DB [default: {DEFAULT_URL}]")]
DataDirOption = Annotated[str | None, typer.Option(
    "--data-dir", envvar="CORRGD_DATA", help="Where data sets live (or are downloaded to).")]
CheckpointDirOption = Annotated[str, typer.Option(
    help="Checkpoints, on storage all workers can read")]
LeaseOption = Annotated[float, typer.Option(
    help="Seconds without heartbeat before a run is handed to another worker")]
GroupSizeOption = Annotated[int | None, typer.Option(
    help="Most runs a worker trains together as one batched model (runs that differ only "
         "in LRs, seed, noise variance); 1: one run at a time [default: as many as fit half "
         "the device's free memory]")]
MaxAttemptsOption = Annotated[int, typer.Option(
    help="Claims of a run whose workers keep dying before it is marked failed")]
ThreadsOption = Annotated[int | None, typer.Option(
    help="Torch threads of each CPU worker [default: the machine's cores shared among the "
         "workers started]")]
RefillOption = Annotated[bool, typer.Option(
    help="Fill a group that has shrunk (runs done, diverged or pruned) with queued runs "
         "like its own, which train beside the others at their own epochs")]


def _db_source(url: str | None) -> str:
    """Where the database URL came from, for error messages."""
    if url is None:
        return f"the default database ({DEFAULT_URL})"
    if _from_env(ENV_VAR, "--db", url):
        return f"{ENV_VAR}={url}"
    return f"--db {url}"


def _from_env(variable: str, flag: str, value: str | None) -> bool:
    """Whether `value` came from the environment `variable`, not from `flag`."""
    return os.environ.get(variable) == value and not any(a.startswith(flag) for a in sys.argv)


def _open_db(url: str | None, *, readonly: bool = False) -> Any:
    """The results database; `readonly` (status, reports) creates and changes nothing. An
    in-memory SQLite database is refused: it would live and die with one process, and each
    worker would get an empty one of its own."""
    from corrgd.storage import StorageError, open_db
    from corrgd.storage.engine import URL_FORMS, driver_error, results_url, sqlite_path

    if url is not None and not url.strip():
        raise fail(f"{_db_source(url)}: empty; {URL_FORMS}")
    try:
        resolved = results_url(url)
    except ValueError as e:  # names what is allowed
        raise fail(f"{_db_source(url)}: {e}") from None

    try:
        return open_db(url, readonly=readonly)
    except (StorageError, ValueError, OSError) as e:
        raise fail(f"{_db_source(url)}: {e}") from None
    except Exception as e:  # driver errors: unreachable server, bad URL, read-only file
        from corrgd.run.faults import DiskFull, full_disk

        if what := full_disk(e, sqlite_path(resolved)):
            raise _disk_full(DiskFull.of(what, e)) from None
        raise fail(f"{_db_source(url)}: {driver_error(e)}") from None


@contextmanager
def _training() -> Iterator[None]:
    """How training in this process may end early, each in one line: Ctrl-C (exit 130), a
    full disk (exit 1; the runs are back in the queue and resume on a rerun)."""
    from corrgd.run.faults import DiskFull

    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except DiskFull as e:
        raise _disk_full(e) from None


def _disk_full(e: Exception) -> typer.Exit:
    """Print the one line of a full disk on stderr; exit code 1 (not bad input)."""
    error_line(str(e))
    return typer.Exit(1)


#: Upper bounds of flags whose larger values are typos that would fail deep inside (an SQL
#: integer, a timestamp, a thread pool): --group-size, --max-attempts, --threads, --lease.
MOST_MEMBERS, MOST_ATTEMPTS, MOST_THREADS, MOST_LEASE = 1_000_000, 1_000_000, 1024, 10**9


def _check_positive(flag: str, value: float | None, *, strict: bool = True,
                    most: int | None = None) -> None:
    """A flag's number: finite and > 0 (`strict`), else an integer >= 1; at most `most`."""
    if value is None:
        return
    if not math.isfinite(value) or (value <= 0 if strict else value < 1):
        raise fail(f"{flag}: must be {'a finite number > 0' if strict else '>= 1'}"
                   f"{f' and at most {most:,}' if most else ''}, got {value:g}")
    if most is not None and value > most:
        raise fail(f"{flag}: must be at most {most:,}, got {value:g}")


def _check_slurm_options(time: str, gpus_per_job: int, cpus_per_job: int,
                         array_parallelism: int) -> None:
    """The SLURM job's settings, checked before anything is enqueued or submitted."""
    from corrgd.run.executors.slurm import parse_time_minutes

    try:
        parse_time_minutes(time)
    except ValueError as e:
        raise fail(f"--time: {e}; give whole minutes or [D-]HH:MM:SS, e.g. 60 or 2:00:00") \
            from None
    if gpus_per_job < 0:
        raise fail(f"--gpus-per-job: must be >= 0, got {gpus_per_job}")
    _check_positive("--cpus-per-job", cpus_per_job, strict=False)
    _check_positive("--array-parallelism", array_parallelism, strict=False)


def _check_devices(flag: str, devices: list[str], *, here: bool = True) -> None:
    """Every device a worker would use is a device name and (`here`) exists here: cpu, or
    a CUDA GPU that is present."""
    from corrgd.run.devices import device_name_problem, device_problem

    for device in devices:
        if problem := (device_problem if here else device_name_problem)(device):
            raise fail(f"{flag}: {problem}")


def _check_fits(source: str, configs: Any, devices: list[str]) -> None:
    """Every run fits, alone, in all the memory of the smallest of `devices` (as
    `corrgd.spec.sizing.member_bytes` sizes it, and `--dry-run` shows): a run that cannot
    would fail in every worker."""
    from corrgd.run.devices import total_bytes
    from corrgd.spec.sizing import member_bytes

    sizes = {d: total_bytes(d) for d in devices}
    device, total = min(((d, t) for d, t in sizes.items() if t), key=lambda dt: dt[1],
                        default=(None, None))
    for config in configs:
        if total is not None and (need := member_bytes(config)) > total:
            network = config.network + (f" {config.hidden}" if config.hidden else "")
            raise fail(f"{source}: a run of {config.dataset} / {network} / "
                       f"{config.algorithm} needs about "
                       f"{need / 2**30:,.0f} GiB, more than the {total / 2**30:,.0f} GiB of "
                       f"{device}: make its network, batch or data smaller (--dry-run shows "
                       "each run's size)")


def _check_data(source: str, configs: Any, data_dir: str | None) -> None:
    """The files of every data set the runs read are here, or can be downloaded now (as a
    worker would): one that is not would fail every run. Sets that need no files (digits,
    diabetes, synthetic-correlated: `corrgd.data.catalog.NO_FILES`) are not looked at."""
    import json

    from corrgd.data.catalog import NO_FILES
    from corrgd.spec.config import canonical_json

    wanted = {(c.dataset, canonical_json(c.data)) for c in configs if c.dataset not in NO_FILES}
    if not wanted:
        return
    from corrgd.data import DataNotFoundError
    from corrgd.data.registry import check_files

    for name, options in sorted(wanted):
        try:
            check_files(name, data_dir=data_dir, **json.loads(options))
        except DataNotFoundError as e:
            raise fail(f"{source}: dataset: {e}") from None


def _check_data_dir(data_dir: str | None) -> None:
    """A data folder that exists must be a folder (a missing one is created on download)."""
    source = "CORRGD_DATA" if _from_env("CORRGD_DATA", "--data-dir", data_dir) else "--data-dir"
    _check_folder(source, data_dir, "data sets live in", expand=True)


def _check_folder(flag: str, folder: str | None, what: str, *, expand: bool = False) -> None:
    """A folder flag's path is a folder where it exists, and where it does not, its nearest
    existing parent is (it is created on first use); `expand`: a leading ~ is a home."""
    if folder is None:
        return
    if not folder.strip():  # Path('') is the current folder
        raise fail(f"{flag}: empty; give the folder {what}")
    try:
        path = Path(folder).expanduser() if expand else Path(folder)
        existing = _nearest_existing(path)
    except RuntimeError as e:  # expanduser: ~name of no user
        raise fail(f"{flag} {folder}: {str(e).rstrip('.').lower()}; give the folder {what}"
                   ) from None
    except OSError as e:  # a name too long, a loop of links
        raise fail(f"{flag} {folder}: {e.strerror or e}; give the folder {what}") from None
    if existing is not None and existing.is_symlink() and not existing.exists():
        raise fail(f"{flag} {folder}: {existing} is a link to {os.readlink(existing)}, which "
                   f"does not exist; give the folder {what}")
    if existing is not None and not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise fail(f"{flag} {folder}: not a folder{where}; give the folder {what}")


def _nearest_existing(path: Path) -> Path | None:
    """`path` or its nearest parent that exists (a link counts, where it points or not)."""
    for candidate in (path, *path.parents):
        try:
            os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):  # missing, or under a file
            continue
        return candidate
    return None


def _check_kernels() -> None:
    """`CORRGD_KERNELS`, which workers inherit, is one of auto, cpu, gpu."""
    from corrgd.learn.kernels import kernel_set

    try:
        kernel_set()
    except ValueError as e:
        raise fail(str(e)) from None


SLURM_FLAGS = ("partition", "gpus_per_job", "cpus_per_job", "time", "array_parallelism",
               "slurm_folder", "wait")
LOCAL_FLAGS = ("devices",)  # a SLURM task's device follows --gpus-per-job


def _check_executor_flags(ctx: typer.Context, executor: str) -> None:
    """A flag given for the other executor is refused: it would be ignored."""
    from typer._click.core import ParameterSource

    other, wanted = (SLURM_FLAGS, "slurm") if executor == "local" else (LOCAL_FLAGS, "local")
    for name in other:
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            flag = "--wait/--no-wait" if name == "wait" else f"--{name.replace('_', '-')}"
            raise fail(f"{flag}: applies with --executor {wanted} only (this sweep runs with "
                       f"--executor {executor})")


def _check_slurm() -> None:
    missing = [c for c in ("sbatch", "squeue", "sacct") if shutil.which(c) is None]
    if missing:
        raise fail(f"--executor slurm: no SLURM client here ({', '.join(missing)} not on "
                   "PATH); use --executor local")


@app.command()
def sweep(
    ctx: typer.Context,
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
    checkpoint_dir: CheckpointDirOption = DEFAULT_CHECKPOINT_DIR,
    lease: LeaseOption = DEFAULT_LEASE,
    group_size: GroupSizeOption = None,
    refill: RefillOption = True,
    threads: ThreadsOption = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Put the sweep's failed runs back in the queue first")] = False,
    max_attempts: MaxAttemptsOption = DEFAULT_MAX_ATTEMPTS,
    extend: Annotated[bool, typer.Option(
        "--extend", help="The sweep exists with other content: add this spec's new runs "
                         "to it (more seeds, epochs, ...) instead of refusing")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help=f"Enqueue grids of more than {CONFIRM_ABOVE:,} runs without asking")]
    = False,
) -> None:
    """Enqueue the runs of a sweep spec (only those missing) and work through them."""
    from corrgd.results import analysis
    from corrgd.spec import sweeps

    if executor not in ("local", "slurm"):
        raise fail(f"--executor: {executor!r} is not one of: local, slurm")
    if dry_run and enqueue_only:
        raise fail("--dry-run and --enqueue-only: give one of them (a dry run writes nothing)")
    _check_executor_flags(ctx, executor)
    _check_positive("--workers", workers, strict=False, most=MOST_THREADS)
    _check_positive("--group-size", group_size, strict=False, most=MOST_MEMBERS)
    _check_positive("--max-attempts", max_attempts, strict=False, most=MOST_ATTEMPTS)
    _check_positive("--lease", lease, most=MOST_LEASE)
    _check_positive("--threads", threads, strict=False, most=MOST_THREADS)
    _check_kernels()
    _check_data_dir(data_dir)
    _check_folder("--checkpoint-dir", checkpoint_dir, "checkpoints are kept in")
    if devices is not None and "" in [d.strip() for d in devices.split(",")]:
        raise fail(f"--devices {devices!r}: an empty device; give cpu, cuda or cuda:N, "
                   "comma-separated")
    if executor == "local" and devices:  # a dry run checks the names, not the GPUs
        _check_devices("--devices", devices.split(","), here=not dry_run)
    if executor == "slurm":
        _check_slurm_options(time, gpus_per_job, cpus_per_job, array_parallelism)
    if executor == "slurm" and not dry_run:
        _check_slurm()
    try:  # validate everything before the database is opened (or created)
        parsed = sweeps.load_spec(spec)
        source = _open_db(db, readonly=True) if parsed.select and _db_exists(db) else None
        lookup = analysis.selection_lookup(source)
        plan = sweeps.plan(parsed, lookup)  # counts and checks without expanding the grid
        if dry_run:
            _dry_run(parsed, plan, device=devices.split(",")[0] if devices else
                     "cuda" if executor == "slurm" and gpus_per_job else "cpu",
                     group_size=group_size)
            if executor == "local":
                from corrgd.run.launch import local_workers

                started = local_workers(devices, workers, threads, plan.runs)[2]
                console.print(f"would start {started}")
            return
        if executor == "local":  # one run per group key: the rest differ only per member
            from corrgd.run.devices import default_devices

            firsts = [group.config for group in plan.groups.values()]
            _check_fits(str(spec), firsts, devices.split(",") if devices else default_devices())
            _check_data(str(spec), firsts, data_dir)
        if sweeps.needs_confirmation(plan.runs) and not yes:
            raise fail(f"{spec}: {plan.runs:,} runs: more than {CONFIRM_ABOVE:,}; check the "
                       "grid with --dry-run, then enqueue it with --yes")
        from corrgd.spec.cost import queue_order

        runs = queue_order(sweeps.expand(parsed, lookup))  # the most work first
    except SpecError as e:
        raise fail(str(e)) from None
    database = _open_db(db)
    text = _check_same_sweep(database, parsed, spec, extend, runs)
    if retry_failed:
        requeued = database.requeue_failed(parsed.name) if _has_sweep(database, parsed.name) \
            else 0
        console.print(f"{requeued} failed runs back in the queue")
    added = _enqueue(database, parsed, runs, text)
    console.print(f"sweep [bold]{escape(parsed.name)}[/]: {len(runs)} runs, {added} new, "
                  f"{len(runs) - added} already in the database")
    if enqueue_only:
        return
    from corrgd.console import SweepProgress, sweep_summary
    from corrgd.run import launch

    released, failed = launch.reclaim_orphans(database, parsed.name, max_attempts)
    if released:
        console.print(f"{released} runs of dead workers given back to the queue")
    if failed:
        console.print(f"{failed} runs failed: their workers died {max_attempts} times")
    left = database.run_counts(parsed.name)
    if left["queued"] + left["running"] == 0:
        console.print("nothing to do: every run of this sweep has finished")
        raise typer.Exit(sweep_summary(console, database, parsed.name))
    from corrgd.run.executors.base import SubmissionFailed

    try:
        started = launch.start_workers(
            database, parsed.name, executor=executor, workers=workers, devices=devices,
            slurm={"partition": partition, "gpus_per_job": gpus_per_job,
                   "cpus_per_task": cpus_per_job, "time": time,
                   "array_parallelism": array_parallelism, "folder": slurm_folder},
            data_dir=data_dir, checkpoint_dir=checkpoint_dir, lease=lease,
            group_size=group_size, max_attempts=max_attempts, threads=threads, refill=refill)
    except SubmissionFailed as e:  # not bad input as such: exit code 1
        error_line(f"--executor slurm: {e}; the runs stay queued: rerun the sweep with other "
                   "SLURM options")
        raise typer.Exit(1) from None
    console.print(started.where)
    if executor == "slurm" and not wait:
        return
    try:
        with _training(), SweepProgress(console, parsed.name) as progress:
            launch.supervise(database, parsed.name, started, max_attempts=max_attempts,
                             lease=lease, on_tick=progress.show)
    except typer.Exit as e:
        if e.exit_code == 130:
            console.print("interrupted: stopping workers; rerun the sweep to resume")
            launch.stop_workers(started)
        raise
    raise typer.Exit(sweep_summary(console, database, parsed.name))


def _enqueue(database: Any, parsed: Any, runs: list[Any], text: str | None = None) -> int:
    """Add the sweep's runs the database lacks (with their swept axes and group keys),
    storing the spec `text` (default: `parsed`'s); how many were new."""
    from corrgd.spec.pruning import prune_key
    from corrgd.storage import RunSpec

    prune = parsed.prune
    specs = [RunSpec(config=r.model_dump(mode="json"), axes=_axes(parsed, r),
                     group_key=r.group_key(), prune_key=prune_key(r) if prune else None)
             for r in runs]
    return database.add_sweep(parsed.name, parsed.text if text is None else text, specs,
                              prune.as_dict() if prune else None)[1]


def _dry_run(parsed: Any, plan: Any, *, device: str, group_size: int | None) -> None:
    """Print what a sweep would cost and how its runs group on `device`; a GPU this
    machine lacks (a login node planning SLURM jobs) is sized as `PLANNING_GPU_BYTES`."""
    from corrgd.console import estimate
    from corrgd.run.devices import device_problem, free_bytes
    from corrgd.spec.sizing import PLANNING_GPU_BYTES

    if device.startswith("cuda") and device_problem(device):
        free, assumed = PLANNING_GPU_BYTES, \
            f"no {device} here: sized for a GPU with {PLANNING_GPU_BYTES / 2**30:.0f} GiB free"
    else:
        free, assumed = free_bytes(device) or 0, ""
    estimate(console, parsed, plan, device=device, group_size=group_size, free=free,
             assumed=assumed)


def _open_for(url: str | None, sweep: str | None, *, named: str = "--sweep ") -> Any:
    """The database for a command that changes an existing sweep (or, `sweep` None, works
    on what is queued): looked at read-only first, so that a missing database or sweep is
    refused without creating anything."""
    probe = _open_db(url, readonly=True)
    try:
        _require_sweep(probe, sweep, named)
    finally:
        probe.close()
    return _open_db(url)


def _has_sweep(database: Any, name: str) -> bool:
    return name in set(database.list_sweeps()["sweep"])


def _require_sweep(database: Any, sweep: str | None, named: str = "--sweep ") -> None:
    """Refuse a `sweep` (given, not None) that the database does not hold."""
    if sweep is not None and not _has_sweep(database, sweep):
        raise _no_such_sweep(database, sweep, named)


def _check_same_sweep(database: Any, parsed: Any, spec: Path, extend: bool,
                      runs: list[Any] | None = None) -> str:
    """A sweep name already in the database must come with the same settings, unless
    `--extend`, or unless the spec adds nothing to it (all of its `runs` are in the sweep,
    with the same pruning: e.g. the first spec again after an `--extend`). Returns the spec
    text to store: the stored one where the spec adds nothing. Else one line naming what
    differs, nothing written."""
    from corrgd.spec.sweeps import load_value

    sweeps = database.list_sweeps()
    stored = sweeps.loc[sweeps["sweep"] == parsed.name, "spec_text"]
    if stored.empty or extend:
        return parsed.text
    old, new = load_value(stored.iloc[0] or "") or {}, load_value(parsed.text) or {}
    if old == new:
        return parsed.text
    if runs is not None and _adds_nothing(database, parsed, stored.iloc[0], runs):
        return str(stored.iloc[0])
    changed = [f"{k} ({_short(old.get(k))} -> {_short(new.get(k))})"
               for k in sorted(set(old) | set(new), key=str) if old.get(k) != new.get(k)]
    raise fail(f"{spec}: sweep {parsed.name!r} is in the database with other settings: "
               f"{'; '.join(changed)}; give the spec another name, or --extend to add its "
               "new runs to the sweep")


def _adds_nothing(database: Any, parsed: Any, stored_text: str, runs: list[Any]) -> bool:
    """Whether every run of `runs` is in sweep `parsed.name` already and the stored spec
    prunes as `parsed` does."""
    from corrgd.spec.sweeps import SpecError, parse_spec

    try:
        if parse_spec(stored_text, default_name=parsed.name).prune != parsed.prune:
            return False
    except SpecError:  # written by an older corrgd that allowed what this one does not
        return False
    have = set(database.runs_frame(parsed.name)["config_hash"])
    return all(run.hash() in have for run in runs)


def _short(value: Any, width: int = 40) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _axes(parsed: Any, run: Any) -> dict[str, Any]:
    values = run.model_dump(mode="json")
    return {k: values[k] for k in parsed.axes if k in values}


def _db_exists(url: str | None) -> bool:
    """False for an SQLite file that is not there yet (nothing to read, nothing to create)."""
    from corrgd.storage.engine import resolve_url

    try:
        resolved = resolve_url(url)
    except Exception:  # not a database URL: opening it says so (`_open_db`)
        return True
    return not resolved.drivername.startswith("sqlite") or not resolved.database or \
        Path(resolved.database).exists()


@app.command()
def worker(
    db: DbOption = None,
    sweep: Annotated[str | None, typer.Option(help="Only runs of this sweep")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many runs")] = None,
    data_dir: DataDirOption = None,
    checkpoint_dir: CheckpointDirOption = DEFAULT_CHECKPOINT_DIR,
    lease: LeaseOption = DEFAULT_LEASE,
    group_size: GroupSizeOption = None,
    refill: RefillOption = True,
    threads: ThreadsOption = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Put failed runs (of --sweep, or of every sweep) back in "
                               "the queue first")] = False,
    max_attempts: MaxAttemptsOption = DEFAULT_MAX_ATTEMPTS,
) -> None:
    """Drain the queue in this process: claim a group of runs, train, log, repeat; a line
    per epoch and run as they are written."""
    _check_positive("--group-size", group_size, strict=False, most=MOST_MEMBERS)
    _check_positive("--max-runs", max_runs, strict=False)
    _check_positive("--max-attempts", max_attempts, strict=False, most=MOST_ATTEMPTS)
    _check_positive("--lease", lease, most=MOST_LEASE)
    _check_positive("--threads", threads, strict=False, most=MOST_THREADS)
    _check_kernels()
    _check_devices("--device", [device])
    _check_data_dir(data_dir)
    _check_folder("--checkpoint-dir", checkpoint_dir, "checkpoints are kept in")
    database = _open_for(db, sweep)
    if retry_failed:
        names = [sweep] if sweep else list(database.list_sweeps()["sweep"])
        console.print(f"{sum(database.requeue_failed(n) for n in names)} failed runs back "
                      "in the queue")
    from corrgd.console import EpochLines
    from corrgd.run.launch import reclaim_orphans
    from corrgd.run.worker import Worker

    # runs of workers that are gone (killed here, or a SLURM job that ended) are resumed
    # now, not after their lease
    for name in [sweep] if sweep else list(database.list_sweeps()["sweep"]):
        released, failed = reclaim_orphans(database, name, max_attempts)
        if released or failed:
            console.print(f"sweep {name}: {released} runs of dead workers back in the queue"
                          + (f", {failed} failed: their workers died {max_attempts} times"
                             if failed else ""))
    w = Worker(database, sweep=sweep, device=device, lease_seconds=lease,
               data_dir=data_dir, checkpoint_dir=checkpoint_dir, group_size=group_size,
               max_attempts=max_attempts, events=EpochLines(console), threads=threads,
               refill=refill)
    with _training():
        n = w.run(max_runs)
    console.print(f"worker {w.id}: {n} runs finished; queue empty" if max_runs is None
                  else f"worker {w.id}: {n} runs finished")


def _no_such_sweep(database: Any, sweep: str, named: str = "--sweep ") -> typer.Exit:
    """`named`: what came before the name where the user gave it ("--sweep ", "sweep " for
    an argument, "--where sweep=")."""
    shown = sweep if sweep and sweep.strip() == sweep and sweep.isprintable() else repr(sweep)
    return fail(f"{named}{shown}: no such sweep; sweeps: "
                f"{', '.join(database.list_sweeps()['sweep']) or 'none yet'}")


@app.command()
def status(
    db: DbOption = None,
    sweep: Annotated[str | None, typer.Option(
        help="Show this sweep's runs, their swept settings and the best score so far")]
    = None,
) -> None:
    """Runs per sweep and state, groups training now, failures (and SLURM job states)."""
    from corrgd.console import print_status

    database = _open_db(db, readonly=True)
    _require_sweep(database, sweep)
    print_status(console, database, sweep)


FORMATS = ("table", "csv", "json")
SHOWN_STATUSES = ("queued", "running", "done", "diverged", "pruned", "failed", "cancelled",
                  "orphaned")


@app.command()
def runs(
    db: DbOption = None,
    sweep: Annotated[str | None, typer.Option(help="Only this sweep's runs")] = None,
    status_: Annotated[list[str] | None, typer.Option(
        "--status", help=f"Only runs in this state (repeatable): "
                         f"{', '.join(SHOWN_STATUSES)}")] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="Only runs with AXIS=VALUE, e.g. --where lr=1e-3 (repeatable: "
                        "several values of one axis match any of them)")]
    = None,
    sort: Annotated[str, typer.Option(help="Column to sort by, e.g. val_acc_peak")]
    = "run_id",
    descending: Annotated[bool, typer.Option("--desc", help="Sort descending")] = False,
    format_: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """One row per run: swept settings, status, attempts, epochs done, peak and final
    val/test accuracy, and the first line of a failure."""
    from corrgd.console import frame_table
    from corrgd.results.listings import runs_table

    if format_ not in FORMATS:
        raise fail(f"--format: {format_!r} is not one of: {', '.join(FORMATS)}")
    for state in status_ or []:
        if state not in SHOWN_STATUSES:
            raise fail(f"--status: {state!r} is not one of: {', '.join(SHOWN_STATUSES)}")
    filters: dict[str, list[str]] = {}
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--where {item!r}: expected AXIS=VALUE")
        filters.setdefault(key.strip(), []).append(value.strip())
    for state in filters.get("status", []):
        if state not in SHOWN_STATUSES:
            raise fail(f"--where status: {state!r} is not one of: {', '.join(SHOWN_STATUSES)}")
    database = _open_db(db, readonly=True)
    _require_sweep(database, sweep)
    for name in filters.get("sweep", []):
        _require_sweep(database, name, "--where sweep=")
    try:
        table = runs_table(database, sweep, status_, filters)
    except ValueError as e:
        raise fail(f"--where {e}" if filters else str(e)) from None
    except KeyError as e:
        columns = runs_table(database, sweep, status_, {}).columns
        raise fail(f"--where: {e.args[0]!r} is not a column of the runs; columns: "
                   f"{', '.join(columns)}") from None
    if sort not in table:
        raise fail(f"--sort: {sort!r} is not one of: {', '.join(table.columns)}")
    table = table.sort_values(sort, ascending=not descending, kind="stable")
    if format_ == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif format_ == "json":
        sys.stdout.write(table.to_json(orient="records", indent=1) + "\n")
    else:
        console.print(frame_table(table, f"{len(table)} runs" + (f" of {sweep}" if sweep
                                                                  else ""), console.width))


@app.command()
def show(
    run: Annotated[int, typer.Argument(help="Run id (see corrgd runs)")],
    db: DbOption = None,
    figure: Annotated[bool, typer.Option(
        "--figure", help="Also draw its loss and accuracy curves to OUT/figures")] = False,
    out: Annotated[Path, typer.Option("--out", parser=_out_folder, metavar="<path>",
                                      help="Folder of --figure")] = Path("results"),
) -> None:
    """One run: its resolved config, its life (status, attempts, worker, group, times,
    error) and its curves per epoch and split, with the logged diagnostics."""
    from corrgd.console import print_run
    from corrgd.results.listings import run_details

    database = _open_db(db, readonly=True)
    try:
        details = run_details(database, run)
    except KeyError:
        raise fail(f"run {run}: no such run; see corrgd runs") from None
    print_run(console, details)
    if figure:
        from corrgd.results.reports.commands import run_figure

        _reporting(lambda: console.print(f"wrote {run_figure(details, out / 'figures')}"))


@app.command()
def export(
    to: Annotated[Path, typer.Option("--to", help="FILE.csv, FILE.parquet or FILE.jsonl")],
    db: DbOption = None,
    sweep: Annotated[str | None, typer.Option(help="Only this sweep [default: all]")] = None,
) -> None:
    """Every epoch row of every run with its config columns: one row per run x epoch x
    split, diagnostics flattened per layer (layer<l>.<name>). Parquet needs pyarrow
    (pip install corrgd[parquet])."""
    from corrgd.results.listings import export_frame

    suffix = to.suffix.lower()
    if suffix not in (".csv", ".parquet", ".jsonl") or to.name.startswith("."):
        raise fail(f"--to {to}: give a file name ending in .csv, .parquet or .jsonl, e.g. "
                   "all.csv")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise fail(f"--to {to}: Parquet needs pyarrow: pip install 'corrgd[parquet]'") \
                from None
    database = _open_db(db, readonly=True)
    from corrgd.storage.engine import resolve_url, sqlite_path

    stored = sqlite_path(resolve_url(db))
    if stored is not None and to.resolve() == stored.resolve():
        raise fail(f"--to {to}: that is the results database itself; give another file, "
                   "e.g. all.csv")
    _require_sweep(database, sweep)
    from corrgd.storage.files import write_atomic

    frame = export_frame(database, sweep)
    with _writing("--to"):
        write_atomic(to, {".csv": lambda p: frame.to_csv(p, index=False),
                          ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True),
                          ".parquet": lambda p: frame.to_parquet(p, index=False)}[suffix])
    console.print(f"wrote {len(frame)} rows ({frame['run_id'].nunique()} runs) to {to}")


@app.command()
def cancel(
    sweep: Annotated[str, typer.Argument(help="Sweep to cancel")],
    db: DbOption = None,
) -> None:
    """Stop a sweep: its queued runs leave the queue, running ones stop at their next epoch
    end keeping what they wrote. `corrgd sweep SPEC` again resumes it."""
    database = _open_for(db, sweep, named="sweep ")
    cancelled = database.cancel_sweep(sweep)
    queued, running = (cancelled.counts.get(s, 0) for s in ("queued", "running"))
    if cancelled.earlier is not None:
        when = f"{cancelled.earlier:%Y-%m-%d %H:%M:%S}"
        console.print(f"sweep {sweep} was cancelled already, at {when} UTC: {queued} queued "
                      f"runs wait, {running} running runs stop at their next epoch end; "
                      "`corrgd sweep SPEC` resumes it")
        return
    console.print(f"sweep {sweep} cancelled: {queued} queued runs left the queue, {running} "
                  "running runs stop at their next epoch end; `corrgd sweep SPEC` resumes it")


@app.command()
def delete(
    sweep: Annotated[str, typer.Argument(help="Sweep to delete")],
    db: DbOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Delete a sweep with its runs and their metrics (its checkpoints stay on disk)."""
    from corrgd.storage import SweepBusy

    database = _open_for(db, sweep, named="sweep ")
    n = int(database.list_sweeps().set_index("sweep").loc[sweep, "n_runs"])
    try:
        if not yes and not typer.confirm(f"delete sweep {sweep} and its {n} runs?"):
            raise typer.Exit(1)
    except typer.Abort:  # no answer: stdin is closed (a script, a pipe)
        raise fail(f"delete {sweep}: no answer to the question (stdin closed); give --yes "
                   "to delete without asking") from None
    try:
        deleted = database.delete_sweep(sweep)
    except SweepBusy as e:
        raise fail(str(e)) from None
    console.print(f"deleted sweep {sweep} and its {deleted} runs")


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="Data set name")] = "digits",
    network: Annotated[str, typer.Option(help="Network name")] = "mlp",
    algorithm: Annotated[str, typer.Option(help="bp, fa, dfa, np, inp, anp or copi")] = "bp",
    decor_lr: Annotated[float, typer.Option(help="Decorrelation LR; 0 = no decorrelation")]
    = 0.0,
    lr: Annotated[float, typer.Option(help="Forward learning rate")] = 1e-3,
    epochs: Annotated[int, typer.Option(help="Training epochs")] = 5,
    batch_size: Annotated[int, typer.Option(help="Samples per training step")] = 64,
    seed: Annotated[int, typer.Option(help="Run seed: weights, data order, noise, ...")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any other run setting, KEY=VALUE (YAML value), repeatable")] = None,
    data_dir: DataDirOption = None,
    db: Annotated[str | None, typer.Option(
        "--db", help="Also log the run to this results database (a file or URL, as for "
                     "sweep), as a sweep of one; rerunning the command resumes it "
                     "[default: not logged]")] = None,
    sweep: Annotated[str | None, typer.Option(
        help="Name of that sweep of one (needs --db) [default: train-<config hash>]")] = None,
    checkpoint_dir: CheckpointDirOption = DEFAULT_CHECKPOINT_DIR,
) -> None:
    """Train one configuration given by flags and print its metrics per epoch: a sweep of
    one run, validated, queued and trained as `corrgd sweep` would."""
    import tempfile

    import yaml

    from corrgd.spec.config import field_names
    from corrgd.spec.sweeps import RESERVED, expand, load_value, parse_spec, unknown_field

    _check_kernels()
    _check_devices("--device", [device])
    _check_data_dir(data_dir)
    _check_folder("--checkpoint-dir", checkpoint_dir, "checkpoints are kept in")
    if sweep is not None and db is None:
        raise fail("--sweep names the sweep a run is logged as: give --db too")
    settings: dict[str, Any] = {"dataset": dataset, "network": network,
                                "algorithm": algorithm, "decor": decor_lr != 0,
                                "decor_lr": decor_lr, "lr": lr, "epochs": epochs,
                                "batch_size": batch_size, "seed": seed}
    flags = {k: f"--{k.replace('_', '-')}" for k in settings} | {"decor": "--decor-lr"}
    given: dict[str, str] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--set {item!r}: expected KEY=VALUE")
        if key.strip() in given:
            raise fail(f"--set {key.strip()}: given twice ({given[key.strip()]}, {value}); "
                       "give it once")
        given[key.strip()] = value
        if key.strip() in flags:  # one place for each setting: its flag
            raise fail(f"--set {key.strip()}: give it with {flags[key.strip()]}")
        if key.strip() in RESERVED:
            raise fail(f"--set {key.strip()}: train runs one configuration; name, description, "
                       "select, prune and grids belong in a spec (corrgd sweep SPEC); name "
                       "its sweep with --sweep")
        if key.strip() not in field_names():  # the spec's message would list fields --set
            settable = [f for f in field_names() if f not in flags]  # does not take
            raise fail(f"--set {key.strip() or repr(key)}: {unknown_field(key.strip(), settable)}")
        try:
            settings[key.strip()] = load_value(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise fail(f"--set {item!r}: the value is not YAML ({problem})") from None
    try:
        parsed = parse_spec(yaml.safe_dump(settings), source="corrgd train")
        if parsed.axes:
            raise SpecError("corrgd train", f"--set {parsed.axes[0]}",
                            "one value only: train runs one configuration; a list of values "
                            "is a sweep spec's axis (corrgd sweep)")
        (config,) = expand(parsed)
        _check_fits("corrgd train", [config], [device])
        name = f"train-{config.hash()[:8]}" if sweep is None else sweep
        parsed = parse_spec(yaml.safe_dump({"name": name, **settings}),
                            source="corrgd train --sweep")
    except SpecError as e:
        raise fail(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="corrgd-train-") as scratch:
        if db is None:  # a database of its own, gone afterwards
            database, checkpoint_dir = _open_db(f"{scratch}/train.sqlite"), f"{scratch}/ckpt"
        else:
            database = _open_db(db)
            _check_same_sweep(database, parsed, Path("corrgd train --sweep"), extend=False)
        raise typer.Exit(_train_one(database, parsed, config, device=device,
                                    data_dir=data_dir, checkpoint_dir=checkpoint_dir,
                                    logged=db is not None))


def _train_one(database: Any, parsed: Any, config: Any, *, device: str, data_dir: str | None,
               checkpoint_dir: str, logged: bool) -> int:
    """Queue `config` as the one run of sweep `parsed` and train it in this process, a line
    per epoch: exit code 0 when it ends done."""
    from corrgd.console import EpochLines
    from corrgd.data import DataNotFoundError
    from corrgd.run.worker import Worker
    from corrgd.storage import FINAL_STATUSES

    console.print(f"[bold]{config.label}[/] on {config.dataset}/{config.network}, "
                  f"lr {config.lr:g}" + (f", decor lr {config.decor_lr:g}" if config.decor else ""))
    worker = Worker(database, sweep=parsed.name, device=device, data_dir=data_dir,
                    checkpoint_dir=checkpoint_dir, events=EpochLines(console))
    try:
        worker.load_data(config)
    except DataNotFoundError as e:
        raise fail(str(e)) from None
    _enqueue(database, parsed, [config])
    run = database.runs_frame(parsed.name).iloc[0]
    if run["status"] in FINAL_STATUSES:
        console.print(f"sweep {escape(parsed.name)}: its run has finished already, "
                      f"{run['status']} (corrgd show {run['run_id']})", highlight=False)
        return 0 if run["status"] == "done" else 1
    with _training():
        worker.run()
    run = database.runs_frame(parsed.name).iloc[0]
    if logged:
        console.print(f"run {run['run_id']} of sweep {escape(parsed.name)} in {database.url}: "
                      f"{run['status']} (corrgd show {run['run_id']})", highlight=False)
    return 0 if run["status"] == "done" else 1


# -- reports (corrgd.results.reports): tables and figures from the database ---------------------
OutOption = Annotated[Path, typer.Option(
    "--out", parser=_out_folder, metavar="<path>",
    help="Output folder: tables under OUT/tables, figures under OUT/figures")]
MetricOption = Annotated[str | None, typer.Option(
    "--metric", help="Score to select by: val_acc, val_loss, test_acc, ... (peak over epochs) "
                     "[default: val_acc; val_loss for regression sweeps]")]


def _reporting(action: Any) -> None:
    """Run a report action; a ReportError, or a file it cannot write, becomes one line on
    stderr and exit 2."""
    from corrgd.results.reports import ReportError

    try:
        with _writing("--out"):
            action()
    except ReportError as e:
        raise fail(str(e)) from None


@contextmanager
def _writing(flag: str) -> Iterator[None]:
    """A file that cannot be written (no such folder, no permission, a full disk) is one
    line naming it; nothing half written is left (`corrgd.storage.files.write_atomic`)."""
    import errno

    try:
        yield
    except OSError as e:
        why = {errno.EEXIST: f"{e.filename} is a file, not a folder",
               errno.ENOTDIR: "a part of that path is a file, not a folder"}.get(
            e.errno or 0, e.strerror or type(e).__name__)
        raise fail(f"{flag}: cannot write {e.filename or 'a file'}: {why}") from None


@app.command("best-params")
def best_params(
    sweep: Annotated[str | None, typer.Option(
        help="Grid-search sweep [default: the only sweep, else table2]")] = None,
    metric: MetricOption = None,
    db: DbOption = None,
    out: OutOption = Path("results"),
) -> None:
    """Per curve, the forward and decor LRs with the best peak validation score (CRGD Table 2)."""
    from corrgd.results.reports import commands

    database = _open_db(db, readonly=True)
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
    compare: Annotated[list[str] | None, typer.Option(
        "--compare", help="Two (or more) sweeps whose curves share one figure: --compare A "
                          "--compare B")] = None,
    sweep: Annotated[str | None, typer.Option(
        help="Sweep to report on (tables; overrides a figure's own sweep)")] = None,
    metric: Annotated[str | None, typer.Option(
        "--metric", help="Figures: what to plot, mean and min-max over seeds: train/val/test "
                         "_acc or _loss, or a diagnostic (offdiag_corr, input_offdiag_corr, "
                         "gain, norm_ratio, angle_to_bp, feedback_angle; NAME@L for layer L) "
                         "[default: test_acc]. Tables: the score to select by [default: "
                         "val_acc]")]
    = None,
    lrs: Annotated[str, typer.Option(
        help="Curves with several LRs: best (by mean peak val_acc over seeds; val_loss for "
             "regression) or all")]
    = "best",
    pruned: Annotated[bool, typer.Option(
        "--pruned", help="Figures: draw the runs successive halving stopped too (they are "
                         "never chosen as a curve's best LRs)")] = False,
    db: DbOption = None,
    out: OutOption = Path("results"),
) -> None:
    """Figures and tables of the papers from the results database."""
    chosen = [name for name, given in (("--figure", figure is not None),
                                       ("--table", table is not None), ("--list", list_),
                                       ("--compare", bool(compare))) if given]
    if len(chosen) != 1:
        raise fail("give exactly one of --figure ID, --table peak|2, --list, --compare A "
                   "--compare B" + (f" (got {', '.join(chosen)})" if chosen else ""))
    if pruned and (table is not None or list_):
        raise fail("--pruned: figures only (a table never chooses a pruned run)")
    if compare and len(set(compare)) < len(compare):
        raise fail(f"--compare: {', '.join(compare)}: each sweep once")
    if compare and sweep is not None:
        raise fail("--sweep: --compare names the sweeps of its figure itself")
    if compare and len(compare) < 2:
        raise fail("--compare: give two sweeps or more, e.g. --compare A --compare B")
    if list_:  # works before any sweep ran: every sweep is then "not in database"
        from corrgd.experiments.listing import report_list  # no plotting code: at once

        listed = _open_db(db, readonly=True) if _db_exists(db) else None
        _reporting(lambda: report_list(listed, console))
        return
    from corrgd.experiments.report import report_figure
    from corrgd.results.reports import commands

    if compare:
        database = _open_db(db, readonly=True)
        _reporting(lambda: commands.report_compare(list(compare), database, metric=metric,
                                                   lrs=lrs, out=out, console=console,
                                                   pruned=pruned))
    elif table is not None:
        database = _open_db(db, readonly=True)
        _reporting(lambda: commands.report_table(database, table, sweep=sweep, metric=metric,
                                                 lrs=lrs, out=out, console=console))
    else:
        _reporting(lambda: report_figure(str(figure), lambda: _open_db(db, readonly=True),
                                         sweep=sweep, lrs=lrs, out=out, console=console,
                                         metric=metric, pruned=pruned))
