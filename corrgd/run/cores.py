"""Sharing a machine's cores among the CPU workers that run on it, whichever sweep or
command started them.

Each CPU worker holds a lock on a file named after its process in a folder of this
user's (`REGISTRY`) while it lives; the kernel drops the lock when the process ends,
however it ends. A worker's fair share of torch threads is the machine's cores divided
among the live ones, so that two sweeps started side by side do not each size torch's
thread pool for the whole machine (oversubscribed threads spin and crawl).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

REGISTRY = Path(tempfile.gettempdir()) / f"corrgd-{os.getuid()}" / "cpu-workers"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_workers_running(registry: Path = REGISTRY) -> int:
    """Live CPU workers on this machine (files of ended ones are removed on the way)."""
    live = 0
    for path in registry.glob("*.lock") if registry.is_dir() else []:
        try:
            with path.open("rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # its worker holds it: alive
                    live += 1
                    continue
                path.unlink(missing_ok=True)  # we got the lock: its worker has ended
        except FileNotFoundError:  # removed meanwhile
            continue
    return live


def fair_threads(workers: int = 0, registry: Path = REGISTRY) -> int:
    """Torch threads for each of `workers` CPU workers about to start here (0: for one
    that is registered already): the cores shared among them and those running."""
    return max(1, cores() // max(1, workers + cpu_workers_running(registry)))


@contextlib.contextmanager
def registered(registry: Path = REGISTRY) -> Iterator[None]:
    """Count this process as a live CPU worker while the block runs."""
    registry.mkdir(parents=True, exist_ok=True)
    path = registry / f"{os.getpid()}.lock"
    with path.open("wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
