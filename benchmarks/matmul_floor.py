"""How fast could a grouped grid go at best on this machine? Its matrix products alone.

Trains the grid's groups in this process (one thread, as a worker per core has), once
grouped and once one run at a time, and records every matrix product and convolution
the grouped training makes: training steps, evaluation and diagnostics. Then it replays
each distinct product (same shapes, strides and scalars) in a tight loop, with its
operands warm in cache, and adds the times up. No grouped code can do the same products
in less time, whatever else it saves: the sum is a lower bound on grouped training.

It prints the measured times and, for W workers on as many cores that each first pay
the start of a worker process (`python -c "import corrgd.run.runner"`, measured here), the
most runs per hour grouping could reach over one run at a time:

    (start + alone / W) / (start + products / W)

which is generous: it counts no evaluation, optimizer, loss, noise, checkpoint or
database work for the groups at all.

    python benchmarks/matmul_floor.py                  # sweeps/quickstart.yaml, 2 workers
    python benchmarks/matmul_floor.py --spec sweeps/other.yaml --workers 4
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrgd.run.malloc import keep_freed_memory  # noqa: E402
from corrgd.run.runner import load_data, train_group  # noqa: E402
from corrgd.spec.sweeps import expand, load_spec  # noqa: E402

aten = torch.ops.aten
PRODUCTS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
            aten.baddbmm_.default, aten.convolution.default,
            aten.convolution_backward.default}

Call = tuple[Any, tuple[Any, ...], tuple[tuple[str, Any], ...]]


def _describe(value: Any) -> Any:
    """A hashable stand-in: a tensor becomes its layout, anything else stays."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, list | tuple):
        return tuple(_describe(v) for v in value)
    return value


def _rebuild(value: Any) -> Any:
    if isinstance(value, tuple) and value[:1] == ("tensor",):
        _, shape, stride, dtype = value
        size = 1 + sum((n - 1) * st for n, st in zip(shape, stride, strict=True))
        return torch.randn(size, dtype=dtype).as_strided(shape, stride)  # broadcasts too
    if isinstance(value, tuple):
        return [_rebuild(v) for v in value]
    return value


class RecordProducts(TorchDispatchMode):
    """Counts every matrix product and convolution by its operands' layout."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[Call] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        if func in PRODUCTS:
            self.calls[(func, _describe(args), tuple(sorted((kwargs or {}).items())))] += 1
        return func(*args, **(kwargs or {}))


def replay_seconds(calls: Counter[Call], budget: float = 0.05) -> float:
    """Seconds the recorded products take, each distinct one timed warm in a loop."""
    total = 0.0
    for (func, args, kwargs), count in calls.items():
        call = functools.partial(func, *[_rebuild(a) for a in args], **dict(kwargs))
        call()
        reps, start = 0, time.perf_counter()
        while reps < 3 or (time.perf_counter() - start < budget and reps < count):
            call()
            reps += 1
        total += (time.perf_counter() - start) / reps * count
    return total


def train_grid(groups: list[list[Any]], data: Any, alone: bool) -> float:
    """Seconds to train every group (or every run of it alone) in this process."""
    folder = tempfile.mkdtemp()
    start = time.perf_counter()
    for group in groups:
        for members in ([[c] for c in group] if alone else [group]):
            train_group(members, data=data,
                        checkpoints=[f"{folder}/{c.hash()}.pt" for c in members])
    return time.perf_counter() - start


def worker_start() -> float:
    """Best of three: a fresh interpreter importing what a worker needs to train."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import corrgd.run.runner"], check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "sweeps" / "quickstart.yaml"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as every worker does

    runs = expand(load_spec(args.spec))
    by_key: dict[str, list[Any]] = {}
    for r in runs:
        by_key.setdefault(r.group_key(), []).append(r)
    groups = list(by_key.values())
    data = load_data(runs[0])
    train_grid(groups[:1], data, alone=False)  # warm up

    grouped = train_grid(groups, data, alone=False)
    alone = train_grid(groups, data, alone=True)
    recorder = RecordProducts()
    with recorder:
        train_grid(groups, data, alone=False)
    products = replay_seconds(recorder.calls)
    start = worker_start()

    w = args.workers
    print(f"{args.spec}: {len(runs)} runs in {len(groups)} groups, one thread")
    print(f"  grouped, in process              {grouped:6.2f} s")
    print(f"  one run at a time, in process    {alone:6.2f} s   ({alone / grouped:.2f}x)")
    print(f"  grouped, its matrix products only {products:5.2f} s   "
          f"({sum(recorder.calls.values())} products, {len(recorder.calls)} distinct)")
    print(f"  worker start                     {start:6.2f} s")
    now = (start + alone / w) / (start + grouped / w)
    best = (start + alone / w) / (start + products / w)
    print(f"with {w} workers: runs per hour grouped / one at a time, in process: "
          f"{now:.2f}x now, at most {best:.2f}x (products only)")


if __name__ == "__main__":
    main()
