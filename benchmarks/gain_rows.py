"""Cost of the CRGD gain on every patch row of a conv layer, against the first GAIN_ROWS.

`corrgd.learn.nn.decorrelation.GAIN_ROWS` caps the rows the gain (a mean of per-row
norm ratios) is measured on: a conv layer's subsample holds far more patch rows than
that, and the cap saves decorrelating all of them. This times a training step of the
CRGD conv net (batch 256, synthetic CIFAR- or Tiny-ImageNet-shaped images, decor LR
1e-3) with the cap and without it, alternating step by step on the same network so
that both see the same machine state, and prints the median step and decorrelation
update times.

    python benchmarks/gain_rows.py [--steps 25] [--rule bp] [--size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from corrgd.learn.losses import cross_entropy
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings, decorrelation
from corrgd.learn.rules import make_rule

CAPS = {"first 4096 rows": 4096, "all rows": sys.maxsize}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rule", default="bp")
    parser.add_argument("--size", type=int, default=32, help="image side: 32 CIFAR, 56 Tiny")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    classes = 10 if args.size == 32 else 200
    x = torch.randn(256, 3, args.size, args.size)
    y = torch.randint(0, classes, (256,))
    net = build_network("crgd-conv", (3, args.size, args.size), classes,
                        DecorSettings(lr=1e-3))
    rule = make_rule(args.rule)
    rule.setup(net, x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    steps: dict[str, list[float]] = {name: [] for name in CAPS}
    updates: dict[str, list[float]] = {name: [] for name in CAPS}
    for i in range(args.warmup + args.steps):
        for name, cap in CAPS.items():
            decorrelation.GAIN_ROWS = cap
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            step = rule.gradients(net, x, y, cross_entropy)
            opt.step()
            t1 = time.perf_counter()
            net.update_decorrelation(step.trace.inputs)
            t2 = time.perf_counter()
            if i >= args.warmup:
                steps[name].append(t2 - t0)
                updates[name].append(t2 - t1)
    print(f"CRGD conv net, {args.size}x{args.size} images, batch 256, {args.rule}, "
          f"{torch.get_num_threads()} thread(s), median of {args.steps} alternating steps")
    for name in CAPS:
        step_ms, update_ms = (1e3 * statistics.median(t[name]) for t in (steps, updates))
        print(f"  {name:15s}  step {step_ms:7.1f} ms   decorrelation update {update_ms:6.1f} ms")


if __name__ == "__main__":
    main()
