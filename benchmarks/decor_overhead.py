"""Cost of decorrelation: median training-step time with and without it.

For the CRGD dense net (3072-1000x4-10) and the CRGD CIFAR conv net, batch 256,
each rule (BP, FA, NP) is timed with and without decorrelation. The two variants
are timed in alternation, step by step, so that both see the same machine state,
and the ratio decorrelated / plain is printed.

    python benchmarks/decor_overhead.py [--steps 20] [--device cpu] [--nets dense conv]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table

from corrgd.learn.losses import cross_entropy
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings
from corrgd.learn.rules import make_rule
from corrgd.learn.training import train_step

NETS = {"dense": ("crgd-dense", True), "conv": ("crgd-conv", False)}


def make_step(net_name: str, flatten: bool, rule_name: str, decor_lr: float, device: str):
    torch.manual_seed(0)
    shape = (3072,) if flatten else (3, 32, 32)
    x = torch.randn(256, *shape, device=device)
    y = torch.randint(0, 10, (256,), device=device)
    net = build_network(net_name, shape, 10, DecorSettings(lr=decor_lr)).to(device)
    rule = make_rule(rule_name)
    rule.setup(net, x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(net, rule, opt, x, y, cross_entropy)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--rules", nargs="+", default=["bp", "fa", "np"])
    args = parser.parse_args()

    console = Console()
    table = Table(title=f"median step time, batch 256, {args.device}, "
                        f"{torch.get_num_threads()} threads, {args.steps} steps")
    for col in ("net", "rule", "plain ms", "decorrelated ms", "ratio"):
        table.add_column(col, justify="right" if col.endswith(("ms", "ratio")) else "left")
    for net_key in args.nets:
        net_name, flatten = NETS[net_key]
        for rule_name in args.rules:
            plain = make_step(net_name, flatten, rule_name, 0.0, args.device)
            decor = make_step(net_name, flatten, rule_name, 1e-5, args.device)
            for _ in range(args.warmup):
                plain(), decor()
            times_plain, times_decor = [], []
            for _ in range(args.steps):
                times_plain.append(plain())
                times_decor.append(decor())
            tp, td = statistics.median(times_plain), statistics.median(times_decor)
            table.add_row(net_key, rule_name, f"{tp * 1e3:.1f}", f"{td * 1e3:.1f}",
                          f"{td / tp:.2f}x")
            console.print(f"{net_key:5s} {rule_name:3s} plain {tp * 1e3:8.1f} ms  "
                          f"decor {td * 1e3:8.1f} ms  ratio {td / tp:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
