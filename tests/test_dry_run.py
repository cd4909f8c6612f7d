"""Dry runs: `plan` counts and validates a sweep's runs without building them, exactly as
`expand` would give them, fast and in little memory even for a million runs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from corrgd.console import estimate
from corrgd.spec import sweeps
from corrgd.spec.config import CURVE_KEYS, RunConfig
from corrgd.spec.sizing import CPU_GROUP_STEP_MACS, MAX_GROUP, auto_group_size, step_macs
from corrgd.spec.sweeps import Plan, Sweep, expand, load_spec, needs_confirmation, parse_spec, plan

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
BASE = "dataset: digits\nnetwork: mlp\nhidden: [16]\nepochs: 1\n"


def best_lrs(sweep: str, metric: str) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """A stand-in for the results database: LRs per curve of table2."""
    curves = {tuple(getattr(r, k) for k in CURVE_KEYS)
              for r in expand(load_spec(SWEEPS / f"{sweep}.yaml"))}
    return [(dict(zip(CURVE_KEYS, c, strict=True)),
             {"lr": 1e-4, "decor_lr": 1e-5 if c[3] else 0.0}) for c in sorted(curves, key=str)]


def assert_plan_is_expand(sweep: Sweep, best: Any = None) -> Plan:
    """plan() has expand()'s runs: the same count per group key, exactly."""
    runs = expand(sweep, best)
    counted = plan(sweep, best)
    assert counted.exact
    assert counted.runs == len(runs)
    assert {k: g.runs for k, g in counted.groups.items()} == \
        Counter(r.group_key() for r in runs)
    assert counted.epochs == sum(r.epochs for r in runs)
    return counted


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.stem)
def test_plan_counts_every_shipped_spec(path: Path) -> None:
    sweep = load_spec(path)
    assert_plan_is_expand(sweep, best_lrs if sweep.select else None)


@pytest.mark.parametrize("text", [
    # decor off collapses decor_lr, decor_conv_lr and first_epoch_decor_lr
    "algorithm: [bp, np]\ndecor: [false, true]\ndecor_lr: [1.0e-3, 1.0e-4]\n"
    "decor_conv_lr: [1.0e-5, 1.0e-6]\nfirst_epoch_decor_lr: [1.0e-2, 1.0e-3]\nseed: [0, 1]\n",
    # values equal once validated (1 and 1.0; 0 and 0.0) are one run
    "algorithm: bp\nlr: [1, 1.0, 2]\nseed: [0, 0.0, 1]\n",
    # overlapping grids, per-member and shared settings
    "lr: [1.0e-3, 1.0e-4]\nseed: [0, 1, 2]\ngrids:\n  - {algorithm: [bp, fa]}\n"
    "  - {algorithm: bp, seed: [1, 2, 3]}\n  - {algorithm: bp, lr: [1.0e-4, 1.0e-5]}\n"
    "  - {algorithm: [fa, np], seed: 2, lr: 1.0e-3}\n  - {algorithm: bp}\n",
    # the same group key from different grids with different fixed per-member values
    "algorithm: bp\ngrids:\n  - {lr: 1.0e-3, seed: [0, 1]}\n  - {lr: 1.0e-4, seed: [1, 2]}\n"
    "  - {lr: [1.0e-3, 1.0e-4], seed: [1]}\n",
    # shared axes: many groups
    "algorithm: [bp, np]\nbatch_size: [16, 32]\nnp_samples: [1, 2]\nsigma2: [1.0e-6, 1.0e-4]\n"
    "betas: [[0.9, 0.999], [0.9, 0.99]]\nseed: [0, 1]\n",
], ids=["decor-collapse", "equal-values", "overlapping-grids", "same-key-across-grids",
        "shared-axes"])
def test_plan_counts_distinct_runs(text: str) -> None:
    assert_plan_is_expand(parse_spec(BASE + text, source="s.yaml"))


def test_plan_with_a_selection_that_reads_a_per_member_axis() -> None:
    """A selection whose conditions read sigma2 (swept in its source) picks per value."""
    text = BASE + ("algorithm: np\nsigma2: [1.0e-6, 1.0e-4]\n"
                   "seed: [0, 1, 2]\nselect: {from: grid}\n")
    chosen = [({"dataset": "digits", "network": "mlp", "algorithm": "np", "decor": False,
                "sigma2": s}, {"lr": lr, "decor_lr": 0.0}) for s, lr in ((1e-6, 1e-3),
                                                                         (1e-4, 1e-3))]
    counted = assert_plan_is_expand(parse_spec(text, source="s.yaml"), lambda s, m: chosen)
    assert counted.runs == 2 * 3  # one selected lr per sigma2


def random_spec(rng: random.Random) -> str:
    """A spec of a few grids drawn from small pools, so that they overlap often."""
    pools = {"algorithm": ["bp", "fa", "np"], "decor": [False, True],
             "decor_lr": [1e-3, 1e-4], "lr": [1e-3, 1e-4, 1e-5], "seed": [0, 1, 2, 3],
             "batch_size": [16, 32], "sigma2": [1e-6, 1e-5]}

    def entry() -> str:
        keys = rng.sample(sorted(pools), rng.randint(1, 4))
        parts = []
        for key in keys:
            values = rng.sample(pools[key], rng.randint(1, len(pools[key])))
            text = ", ".join(str(v).lower() for v in values)
            parts.append(f"{key}: [{text}]" if rng.random() < 0.7 else f"{key}: {values[0]}"
                         .lower())
        return "{" + ", ".join(parts) + "}"

    grids = "\n".join(f"  - {entry()}" for _ in range(rng.randint(1, 5)))
    return BASE + "algorithm: bp\ndecor_lr: 1.0e-3\ngrids:\n" + grids + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_plan_counts_random_overlapping_grids(seed: int) -> None:
    assert_plan_is_expand(parse_spec(random_spec(random.Random(seed)), source="s.yaml"))


def test_too_intricate_overlaps_are_bounded_and_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = parse_spec(BASE + "lr: [1.0e-3, 1.0e-4]\nseed: [0, 1, 2]\ngrids:\n"
                       "  - {algorithm: bp}\n  - {algorithm: bp, seed: [1, 2, 3]}\n",
                       source="s.yaml")
    monkeypatch.setattr(sweeps, "MAX_CUTS", 0)
    bounded = plan(sweep)
    assert not bounded.exact and bounded.runs == 12 > len(expand(sweep)) == 8
    console = Console(record=True, width=200)
    estimate(console, sweep, bounded, device="cpu", group_size=None, free=2**34)
    text = console.export_text()
    assert "at most 12 runs" in text and "upper bounds" in text


def test_estimate_from_a_plan_is_the_estimate_from_the_runs() -> None:
    sweep = load_spec(SWEEPS / "table2.yaml")
    outputs = []
    for what in (plan(sweep), Plan.of_runs(sweep, expand(sweep))):
        console = Console(record=True, width=200)
        estimate(console, sweep, what, device="cpu", group_size=8, free=2**34)
        outputs.append(console.export_text())
    assert outputs[0] == outputs[1]
    assert "378 runs" in outputs[0] and "54 groups" in outputs[0]


def test_needs_confirmation_above_ten_thousand_runs() -> None:
    assert not needs_confirmation(10_000)
    assert needs_confirmation(10_001)


# The dry run of a spec, in a fresh process: its runs, whether counted exactly, its seconds
# and its peak memory in MiB (VmHWM: getrusage's maxrss would include pytest's from before
# the exec).
MILLION = textwrap.dedent("""\
    import re, sys, time
    start = time.perf_counter()
    from rich.console import Console
    from corrgd.console import estimate
    from corrgd.spec.sweeps import load_spec, plan
    sweep = load_spec(sys.argv[1])
    counted = plan(sweep)
    estimate(Console(width=200), sweep, counted, device="cpu", group_size=None, free=2**34)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as f:
        peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1)) / 1024
    print(counted.runs, counted.exact, seconds, peak)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_million_run_dry_run_takes_seconds_and_little_memory(tmp_path: Path) -> None:
    seeds = ", ".join(str(s) for s in range(1000))
    lrs = ", ".join(f"{1e-6 * (i + 1):.6e}" for i in range(1000))
    path = tmp_path / "million.yaml"
    path.write_text(BASE + f"algorithm: bp\nseed: [{seeds}]\nlr: [{lrs}]\n")
    result = subprocess.run([sys.executable, "-c", MILLION, str(path)], capture_output=True,
                            text=True, check=True, timeout=120)
    runs, exact, seconds, mib = result.stdout.split()[-4:]
    assert (int(runs), exact) == (1_000_000, "True")
    assert "1000000 runs" in result.stdout
    assert float(seconds) < 20  # measured: 0.3 s
    assert float(mib) < 500  # measured: 40 MiB


def test_runs_are_queued_most_work_first() -> None:
    """Workers claim the oldest queued run, so `sweep` enqueues the groups with the most
    work first (longest job first: no worker is left with a long group at the end).
    Quickstart by hand: each decor group has 8 runs and each plain group 4, NP makes
    3 + np_samples passes per sample where BP and FA make 3, and BP and FA tie."""
    from corrgd.spec.cost import queue_order

    runs = expand(load_spec(SWEEPS / "quickstart.yaml"))
    assert runs[0].np_samples >= 1
    ordered = queue_order(runs)
    assert sorted(r.hash() for r in ordered) == sorted(r.hash() for r in runs)
    curves = [(r.algorithm, r.decor) for r in ordered]
    assert curves == [("np", True)] * 8 + [("bp", True)] * 8 + [("fa", True)] * 8 + [
        ("np", False)] * 4 + [("bp", False)] * 4 + [("fa", False)] * 4
    for curve in set(curves):  # grid order within a group
        assert [r for r in ordered if (r.algorithm, r.decor) == curve] == \
            [r for r in runs if (r.algorithm, r.decor) == curve]


# --- group sizes -----------------------------------------------------------------------------
def digits_mlp(width: int, **options: Any) -> RunConfig:
    return RunConfig(dataset="digits", network="mlp", hidden=[width, width], algorithm="bp",
                     batch_size=64, **options)


def test_a_step_counts_each_layer_once_per_pass() -> None:
    # 64 → 128 → 128 → 10 by hand: 64·128 + 128·128 + 128·10 MACs a sample, 3 passes (BP)
    assert step_macs(digits_mlp(128)) == 64 * 3 * (64 * 128 + 128 * 128 + 128 * 10)
    # decorrelated: each layer's input also goes through its d × d matrix
    assert step_macs(digits_mlp(128, decor=True, decor_lr=1e-4)) == \
        64 * 3 * (64 * 128 + 128 * 128 + 128 * 10 + 64**2 + 2 * 128**2)


def test_a_cpu_groups_only_networks_whose_step_leaves_a_core_idle() -> None:
    """The automatic group size: memory on a GPU; on a CPU also at most a step of
    CPU_GROUP_STEP_MACS per group (grouping bigger networks made them slower there,
    benchmarks/grid_throughput.py)."""
    plenty = 2**40
    small, wide, wider = (digits_mlp(w, decor=True, decor_lr=1e-4) for w in (128, 512, 1024))
    assert auto_group_size(small, "cpu", plenty) == MAX_GROUP["cpu"]
    assert auto_group_size(wide, "cpu", plenty) == int(CPU_GROUP_STEP_MACS // step_macs(wide))
    assert auto_group_size(wide, "cpu", plenty) == 3
    assert auto_group_size(wider, "cpu", plenty) == 1
    assert auto_group_size(wider, "cuda", plenty) == MAX_GROUP["cuda"]
    table2 = expand(load_spec(SWEEPS / "table2.yaml"))
    assert {auto_group_size(r, "cpu", plenty) for r in table2} == {1}
    # and memory still caps both
    assert auto_group_size(small, "cpu", 0) == auto_group_size(small, "cuda", 0) == 1


@pytest.mark.parametrize("flags", [["--devices", "cuda:0"],
                                   ["--executor", "slurm", "--gpus-per-job", "1"]])
def test_a_dry_run_for_a_gpu_this_machine_lacks_sizes_groups_for_a_stated_gpu(
        tmp_path: Path, flags: list[str]) -> None:
    """A login node plans GPU jobs it cannot run: the estimate, then the groups as an 80 GiB
    GPU would form them, said so; no traceback, nothing written."""
    from corrgd.run.devices import gpu_count

    if gpu_count():
        pytest.skip("this machine has a GPU")
    spec = tmp_path / "s.yaml"
    spec.write_text(BASE + "algorithm: bp\nlr: [1.0e-3, 1.0e-4]\n")
    done = subprocess.run([sys.executable, "-m", "corrgd", "sweep", str(spec), "--dry-run",
                           *flags], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    assert "2 runs" in done.stdout and "here: sized for a GPU with 80 GiB free" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


@pytest.mark.parametrize("seconds,text", [(0.2, "under 1 s"), (4.4, "4 s"), (59, "59 s"),
                                          (60, "1 min"), (725, "12 min"), (3600, "1.0 h"),
                                          (9.5e6, "2,638.9 h")])
def test_an_estimate_reads_in_hours_minutes_or_seconds(seconds: float, text: str) -> None:
    from corrgd.console import _duration

    assert _duration(seconds) == text


def test_a_batch_larger_than_the_training_split_is_sized_as_the_whole_split() -> None:
    """digits: 1437 training samples, 100 held out: a batch of 5000 is all 1337 of them (it
    was sized as 5000, and 10**23 as quadrillions of GiB)."""
    from corrgd.spec.sizing import member_bytes

    def config(batch: int) -> RunConfig:
        return RunConfig(dataset="digits", network="mlp", algorithm="bp", hidden=[8], val_size=100,
                         batch_size=batch)
    assert member_bytes(config(5000)) == member_bytes(config(1337)) > member_bytes(config(64))
    assert step_macs(config(5000)) == step_macs(config(1337)) > step_macs(config(1336))
