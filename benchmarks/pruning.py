"""A CRGD-style learning-rate grid in full against the same grid pruned by successive
halving, side by side: epochs trained, wall time, and for every curve the full grid's
peak validation accuracy at the pruned grid's choice against the full grid's best.

    python benchmarks/pruning.py                  # digits (scikit-learn, offline)
    python benchmarks/pruning.py --seeds 0,1,2    # 3 seeds: groups shrink and are refilled
    python benchmarks/pruning.py --dataset fashion-mnist --epochs 9 --val-size 10000

The grid: BP and FA, each without decorrelation (6 forward LRs) and with it (6 forward x
3 decorrelation LRs): 48 runs per seed, `mlp` [64], batch 64, 27 epochs; pruned with
`prune: {metric: val_acc, min_epochs: 1, reduction: 3}` (rungs at epochs 1, 3, 9). Three
sweeps through `corrgd sweep` with the same workers, one after the other, into one fresh
SQLite database: the full grid, the pruned grid with `--no-refill`, and the pruned grid
as a sweep runs it by default (a group that pruning has shrunk takes on queued runs of its
group key: the runs of other seeds, where a group cannot hold them all). What must hold
on digits (issue 20): the pruned grid trains at most 40 % of the full grid's epochs, and
each curve's choice is within 1 point of its best.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrgd.results.analysis import best_params  # noqa: E402
from corrgd.spec.config import canonical_json  # noqa: E402
from corrgd.storage import open_db  # noqa: E402

GRID = """\
name: {name}
dataset: {dataset}
network: mlp
hidden: [64]
val_size: {val_size}
algorithm: [bp, fa]
decor: [false, true]
decor_lr: [1.0e-5, 1.0e-4, 1.0e-3]
lr: [1.0e-1, 1.0e-2, 1.0e-3, 1.0e-4, 1.0e-5, 1.0e-6]
seed: {seeds}
epochs: {epochs}
batch_size: 64
diagnostics: false
"""
PRUNE = "prune: {metric: val_acc, min_epochs: 1, reduction: 3}\n"


SWEEPS = {"full": [], "pruned": ["--no-refill"], "refilled": []}  # name: sweep options


def sweep(folder: Path, name: str, workers: int, options: list[str]) -> float:
    """Run `corrgd sweep NAME.yaml` in `folder`; its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "corrgd", "sweep", f"{name}.yaml", "--db",
                           "r.sqlite", "--workers", str(workers), *options], cwd=folder,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"corrgd sweep {name} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", default="0", help="the grid's seeds, e.g. 0,1,2")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = dict(dataset=args.dataset, epochs=args.epochs, val_size=args.val_size,
                    seeds=[int(s) for s in args.seeds.split(",")])
        for name in SWEEPS:
            (folder / f"{name}.yaml").write_text(GRID.format(name=name, **spec) +
                                                 ("" if name == "full" else PRUNE))
        seconds = {name: sweep(folder, name, args.workers, options)
                   for name, options in SWEEPS.items()}
        db = open_db(f"sqlite:///{folder / 'r.sqlite'}")
        runs = {name: db.runs_frame(name) for name in seconds}
        epochs = {name: db.epochs_frame(name, diagnostics=False) for name in seconds}
        db.close()

    trained = {name: int(r["last_epoch"].clip(lower=0).sum()) for name, r in runs.items()}
    print(f"{args.dataset}: {len(runs['full'])} runs (seeds {args.seeds}), {args.epochs} "
          f"epochs, {args.workers} workers")
    print(f"{'':9} {'epochs trained':>15} {'wall time (s)':>14} {'of the full grid':>17}")
    for name in seconds:
        print(f"{name:9} {trained[name]:>15} {seconds[name]:>14.1f} "
              f"{trained[name] / trained['full']:>8.2f} {seconds[name] / seconds['full']:>8.2f}")
    for name in ("pruned", "refilled"):
        choices(name, runs, epochs)


def choices(name: str, runs: dict, epochs: dict) -> None:
    """Print, per curve (and seed), the full grid's best peak val_acc against the full
    grid's peak at the choice of the pruned sweep `name`."""
    # per curve: the full grid's peak val_acc at each setting; the pruned grid's choice
    full_best = best_params(runs["full"], epochs["full"], "val_acc")
    pruned_best = best_params(runs[name], epochs[name], "val_acc")
    val = epochs["full"][epochs["full"]["split"] == "val"]
    peak = val.groupby("run_id")["accuracy"].max()
    # the same config in the full grid (runs of both grids differ only in their sweep)
    same = {canonical_json(c): i for c, i in zip(runs["full"]["config"], runs["full"]["run_id"],
                                                  strict=True)}
    twin = {i: same[canonical_json(c)] for c, i in zip(runs[name]["config"],
                                                       runs[name]["run_id"], strict=True)}
    print(f"\n{'curve':12} {'full best (%)':>14} {name + ' choice':>24} "
          f"{'its full peak (%)':>18} {'gap':>6}")
    worst = 0.0
    for full_row, pruned_row in zip(full_best.itertuples(), pruned_best.itertuples(),
                                    strict=True):
        chosen = 100 * peak[twin[pruned_row.run_id]]
        best = 100 * full_row.score
        worst = max(worst, best - chosen)
        curve = f"{full_row.algorithm}{'+decor' if full_row.decor else ''}" + (
            f" s{full_row.seed}" if "seed" in full_best.columns else "")
        choice = f"lr {pruned_row.lr:g}" + (f", decor {pruned_row.decor_lr:g}"
                                            if pruned_row.decor else "")
        print(f"{curve:12} {best:>14.2f} {choice:>24} {chosen:>18.2f} {best - chosen:>6.2f}")
    print(f"{name}: largest gap {worst:.2f} points")


if __name__ == "__main__":
    main()
