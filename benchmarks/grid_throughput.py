"""Runs per hour of a grid trained as groups vs one run per worker, measured side by side.

Each panel's runs go into a fresh SQLite results database and are drained by local
worker processes (the code path of `corrgd sweep`): once with `--group-size 1` (one
run at a time per worker) and once grouped (automatic group size), each with 1 worker
and with one worker per core (threads split between them), best of those per mode.
Where the automatic size is 1 (a network whose step alone keeps a CPU core busy,
`corrgd.spec.sizing.CPU_GROUP_STEP_MACS`), groups of 8 are measured too, to show why.

    python benchmarks/grid_throughput.py                 # 2-core CPU: quickstart grid in
                                                         # full, dense and conv panels cut
    python benchmarks/grid_throughput.py --device cuda --runs 42 --steps 200
    python benchmarks/grid_throughput.py --cli           # also `corrgd sweep` end to end

Panels: the quickstart grid (sweeps/quickstart.yaml); CRGD Table 2's CIFAR-10 dense
panel (BP, 6 forward LRs without decorrelation + 6 x 6 with: 42 runs of
3072-1000x4-10) and its CIFAR-10 conv panel (same grid, CRGD conv net), both on
CIFAR-shaped synthetic data (`synthetic-correlated` with shape [3, 32, 32]), `--steps`
training steps per run. `--runs` keeps the first N runs of a panel (spread over both
decor settings) to fit a CPU's time budget; runs per hour are measured on those.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrgd.run.devices import free_bytes  # noqa: E402
from corrgd.run.executors import LocalExecutor  # noqa: E402
from corrgd.run.worker import WorkerTask  # noqa: E402
from corrgd.spec.config import RunConfig  # noqa: E402
from corrgd.spec.cost import queue_order  # noqa: E402
from corrgd.spec.sizing import auto_group_size  # noqa: E402
from corrgd.spec.sweeps import expand, load_spec  # noqa: E402
from corrgd.storage import RunSpec, open_db  # noqa: E402

LRS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7]


def table2_panel(network: str, steps: int, batch: int = 256) -> list[RunConfig]:
    """CRGD Table 2, CIFAR-10, BP: 6 LRs without decorrelation, 6 x 6 with (42 runs)."""
    data = {"shape": [3, 32, 32], "n_train": steps * batch, "n_test": 1000}
    base = dict(dataset="synthetic-correlated", data=data, network=network, algorithm="bp",
                epochs=1, batch_size=batch, val_size=0, eval_batch_size=1000)
    plain = [RunConfig(**base, lr=lr) for lr in LRS]
    decor = [RunConfig(**base, lr=lr, decor=True, decor_lr=d)
             for lr, d in itertools.product(LRS, LRS)]
    return plain + decor


def quickstart() -> list[RunConfig]:
    return expand(load_spec(ROOT / "sweeps" / "quickstart.yaml"))


def subset(runs: list[RunConfig], n: int | None) -> list[RunConfig]:
    """The first n runs, alternating between runs with and without decorrelation."""
    if n is None or n >= len(runs):
        return runs
    plain = [r for r in runs if not r.decor]
    decor = [r for r in runs if r.decor]
    mixed = [r for pair in itertools.zip_longest(plain, decor) for r in pair if r is not None]
    return mixed[:n]


class GpuMonitor(threading.Thread):
    """Samples `nvidia-smi` utilisation every half second while a mode runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def drain(runs: list[RunConfig], *, device: str, workers: int, group_size: int | None
          ) -> tuple[float, float | None]:
    """Seconds for `workers` local worker processes to train every run, and the mean GPU
    utilisation meanwhile (None on a CPU)."""
    folder = Path(tempfile.mkdtemp(prefix="corrgd-bench-"))
    try:
        db = open_db(f"sqlite:///{folder}/bench.sqlite")
        db.add_sweep("bench", "", [RunSpec(config=r.model_dump(mode="json"),  # as `sweep` does
                                           group_key=r.group_key()) for r in queue_order(runs)])
        threads = max(1, (os.cpu_count() or 1) // workers) if device == "cpu" else None
        kwargs = {"db_url": db.url, "sweep": "bench", "device": device, "lease_seconds": 600.0,
                  "checkpoint_dir": str(folder / "checkpoints"), "threads": threads,
                  "group_size": group_size}
        monitor = GpuMonitor() if device.startswith("cuda") else None
        if monitor:
            monitor.start()
        t0 = time.perf_counter()
        handles = LocalExecutor([device]).launch(WorkerTask(), [kwargs] * workers)
        for h in handles:
            h.wait()
        seconds = time.perf_counter() - t0
        if monitor:
            monitor.done.set()
        counts = db.sweep_counts()
        done = int(counts["done"].iloc[0]) + int(counts["diverged"].iloc[0])
        if done != len(runs):
            raise RuntimeError(f"{done} of {len(runs)} runs finished: {counts.to_dict()}")
        return seconds, monitor.mean() if monitor else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(name: str, runs: list[RunConfig], device: str, worker_counts: list[int]) -> None:
    free = free_bytes(device) or 0
    auto = sorted({auto_group_size(r, device, free) for r in runs})
    print(f"\n{name}: {len(runs)} runs on {device}, automatic group size "
          f"{', '.join(map(str, auto))}", flush=True)
    modes: list[tuple[str, int | None]] = [("one run per worker", 1), ("grouped", None)]
    if auto == [1]:  # the automatic size trains them alone; show what groups would do
        modes.append(("groups of 8 (forced)", 8))
    best: dict[str, tuple[float, int, float | None]] = {}
    for mode, group_size in modes:
        for workers in worker_counts:
            seconds, gpu = drain(runs, device=device, workers=workers, group_size=group_size)
            per_hour = len(runs) / seconds * 3600
            util = "" if gpu is None else f", GPU busy {gpu:.0f} %"
            print(f"  {mode:20s} {workers} worker(s): {seconds:7.1f} s  "
                  f"{per_hour:9.0f} runs/h{util}", flush=True)
            if mode not in best or per_hour > best[mode][0]:
                best[mode] = (per_hour, workers, gpu)
    alone = best.pop("one run per worker")
    for mode, (per_hour, workers, _) in best.items():
        print(f"  => {mode} {per_hour:.0f} runs/h ({workers} worker(s)) vs one run per "
              f"worker {alone[0]:.0f} runs/h ({alone[1]} worker(s)): "
              f"{per_hour / alone[0]:.1f}x", flush=True)


def cli_end_to_end() -> None:
    """`corrgd sweep sweeps/quickstart.yaml` on a fresh database: grouped vs --group-size 1."""
    print("\ncorrgd sweep sweeps/quickstart.yaml, fresh database each time", flush=True)
    times = {}
    for label, extra in (("--group-size 1", ["--group-size", "1"]), ("grouped", [])):
        folder = Path(tempfile.mkdtemp(prefix="corrgd-cli-"))
        try:
            cmd = [sys.executable, "-m", "corrgd", "sweep", str(ROOT / "sweeps/quickstart.yaml"),
                   "--db", f"sqlite:///{folder}/r.sqlite", "--checkpoint-dir",
                   str(folder / "ck"), *extra]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=folder)
            times[label] = time.perf_counter() - t0
            print(f"  {label:15s} {times[label]:6.1f} s", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"  => {times['--group-size 1'] / times['grouped']:.1f}x faster grouped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--panels", default="quickstart,dense,conv")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per CIFAR panel [default: 42 on a GPU, 8 on a CPU]")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per CIFAR-panel run [default: 200 GPU, 4 CPU]")
    parser.add_argument("--workers", default=None,
                        help="worker counts to try, e.g. 1,2 [default: 1 and one per core "
                             "on a CPU; 1 and 2 on a GPU]")
    parser.add_argument("--cli", action="store_true", help="also time `corrgd sweep` itself")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    runs = args.runs or (42 if gpu else 8)
    steps = args.steps or (200 if gpu else 4)
    counts = [int(w) for w in args.workers.split(",")] if args.workers else \
        sorted({1, 2} if gpu else {1, os.cpu_count() or 1})
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores"
          + (f", {torch.cuda.get_device_name(0)}" if gpu else ""), flush=True)
    for panel in args.panels.split(","):  # in the order given
        if panel == "quickstart":
            measure("quickstart grid", quickstart(), args.device, counts)
        elif panel in ("dense", "conv"):
            measure(f"CRGD Table 2 CIFAR-10 {panel} panel ({steps} steps per run)",
                    subset(table2_panel(f"crgd-{panel}", steps), runs), args.device, counts)
        else:
            parser.error(f"--panels: unknown panel {panel!r}; choose from quickstart, dense, "
                         "conv")
    if args.cli:
        cli_end_to_end()


if __name__ == "__main__":
    main()
