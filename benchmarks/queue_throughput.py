"""Throughput of the results queue: enqueue, claim, metric writes, finish, queries.

    python benchmarks/queue_throughput.py                  # SQLite only
    python benchmarks/queue_throughput.py --pg-url postgresql+psycopg://u:pw@host:port/db
    CORRGD_TEST_PG_URL=... python benchmarks/queue_throughput.py

Each phase runs every run through one call at a time from one process (the
worst case: groups of one, one transaction per call), except ``concurrent``, where
``--workers`` processes loop claim -> log epochs -> finish on a second sweep.
PostgreSQL runs in a throwaway schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Barrier
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from corrgd.storage import EpochEntry, MetricRow, ResultsDB, RunOutcome, RunSpec, open_db

LEASE = 600.0


def make_runs(n: int, tag: str) -> list[RunSpec]:
    runs = []
    for i in range(n):
        axes = {"algorithm": ("bp", "fa", "copi")[i % 3], "decor": i % 2 == 0, "seed": i}
        config = {"dataset": "mnist", "network": "mlp", "lr": 1e-3, "tag": tag, **axes}
        runs.append(RunSpec(config=config, axes=axes))
    return runs


def epoch_rows(epoch: int, splits: int) -> list[MetricRow]:
    diagnostics = {f"layer{i}": {"offdiag": 0.01, "angle_bp": 30.0} for i in range(3)}
    return [
        MetricRow(split, 1.0 / (epoch + 1), 0.9, seconds=1.5, top5=0.99, diagnostics=diagnostics)
        for split in ("train", "val", "test")[:splits]
    ]


def claim_one(db: ResultsDB, worker: str, sweep: str | None = None) -> int | None:
    """The id of the next run, claimed alone (a group of one); None when none is left."""
    group = db.claim_group(worker, "cpu", sweep=sweep, lease_seconds=LEASE, max_members=1)
    return group[0].run_id if group else None


def log_epoch(db: ResultsDB, run_id: int, epoch: int, splits: int, worker: str) -> None:
    assert db.log_epochs([EpochEntry(run_id, epoch, epoch_rows(epoch, splits))], worker) == []


def finish(db: ResultsDB, run_id: int, worker: str) -> None:
    assert db.finish_runs([RunOutcome(run_id, "done")], worker) == []


def report(backend: str, phase: str, n: int, unit: str, seconds: float) -> None:
    print(
        f"{backend:<10} {phase:<30} {n:>7} {unit:<7} {seconds:8.2f} s  {n / seconds:9.0f} {unit}/s"
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _concurrent_worker(
    url: str, sweep: str, epochs: int, splits: int, name: str, barrier: Barrier
) -> None:
    db = open_db(url)
    barrier.wait()  # start together, once every process has imported and connected
    while (run_id := claim_one(db, name, sweep)) is not None:
        for epoch in range(epochs):
            log_epoch(db, run_id, epoch, splits, name)
        finish(db, run_id, name)
    db.close()


def bench(backend: str, url: str, args: argparse.Namespace) -> None:
    n, epochs, splits = args.runs, args.epochs, args.splits
    db = open_db(url)
    runs = make_runs(n, "main")
    report(
        backend, "enqueue (1 transaction)", n, "runs", timed(lambda: db.add_sweep("b", "", runs))
    )
    report(backend, "re-enqueue (all dupes)", n, "runs", timed(lambda: db.add_sweep("b", "", runs)))

    claimed: list[int] = []

    def claim_all() -> None:
        while (run_id := claim_one(db, "bench:1")) is not None:
            claimed.append(run_id)

    report(backend, "claim_group (groups of one)", n, "runs", timed(claim_all))
    assert len(claimed) == n

    def log_all() -> None:
        for epoch in range(epochs):
            for run_id in claimed:
                log_epoch(db, run_id, epoch, splits, "bench:1")

    report(backend, f"log_epochs (1 run, {splits} splits)", n * epochs, "epochs",
           timed(log_all))

    def heartbeat_all() -> None:
        for run_id in claimed:
            assert db.heartbeat_runs([run_id], "bench:1") == []

    def finish_all() -> None:
        for run_id in claimed:
            finish(db, run_id, "bench:1")

    report(backend, "heartbeat_runs (1 run)", n, "calls", timed(heartbeat_all))
    report(backend, "finish_runs (1 run)", n, "runs", timed(finish_all))
    report(backend, "runs_frame", n, "rows", timed(lambda: db.runs_frame("b")))
    rows = n * epochs * splits
    report(backend, "epochs_frame", rows, "rows", timed(lambda: db.epochs_frame("b")))
    no_diagnostics = timed(lambda: db.epochs_frame("b", diagnostics=False))
    report(backend, "epochs_frame (no diag.)", rows, "rows", no_diagnostics)

    m = args.concurrent_runs
    db.add_sweep("c", "", make_runs(m, "concurrent"))
    db.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(args.workers + 1)
    procs = [
        ctx.Process(
            target=_concurrent_worker, args=(url, "c", epochs, splits, f"bench:{i + 2}", barrier)
        )
        for i in range(args.workers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    elapsed = time.perf_counter() - start
    report(backend, f"concurrent x{args.workers} claim+log+finish", m, "runs", elapsed)
    with open_db(url) as check:
        counts = check.sweep_counts().set_index("sweep")
        assert counts.loc["c", "done"] == m, counts


@contextmanager
def sqlite_url(path: str | None) -> Iterator[str]:
    if path:
        yield f"sqlite:///{path}"
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.sqlite'}"


@contextmanager
def pg_schema_url(url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs logged per run")
    parser.add_argument("--splits", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--workers", type=int, default=2, help="processes, concurrent phase")
    parser.add_argument("--concurrent-runs", type=int, default=2_000)
    parser.add_argument("--sqlite-path", help="SQLite file to use (default: a temporary one)")
    parser.add_argument("--pg-url", default=os.environ.get("CORRGD_TEST_PG_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(
        f"{args.runs} runs, {args.epochs} epochs x {args.splits} splits each; concurrent phase: "
        f"{args.concurrent_runs} runs, {args.workers} processes; {os.cpu_count()} CPUs"
    )
    if not args.skip_sqlite:
        with sqlite_url(args.sqlite_path) as url:
            bench("sqlite", url, args)
    if args.pg_url:
        with pg_schema_url(args.pg_url) as url:
            bench("postgresql", url, args)
    else:
        print("postgresql: skipped (no --pg-url or CORRGD_TEST_PG_URL)")


if __name__ == "__main__":
    main()
