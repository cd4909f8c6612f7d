"""The CUDA path: every rule trains grouped and alone on a GPU, with the same results.

Skipped without a GPU. On a GPU, conv layers run as one grouped convolution
(`corrgd.learn.nn.feedback.conv2d`) and Adam updates all members at once, so a member
is not bitwise what it is alone (cuBLAS and cuDNN pick other kernels for other
shapes); the metrics must still agree to 1e-4 relative over 3 epochs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_group_equivalence import Alone, Recorder, assert_same_rows, configs

from corrgd.learn.nn import feedback as ops
from corrgd.run.runner import load_data, run, train_group

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CASES = [("bp", "dense"), ("fa", "dense"), ("dfa", "dense"), ("copi", "dense"),
         ("np", "dense"), ("inp", "dense"), ("anp", "dense"),
         ("bp", "conv"), ("fa", "conv"), ("dfa", "conv"), ("np", "conv")]


@pytest.mark.parametrize("rule,kind", CASES, ids=[f"{r}-{k}" for r, k in CASES])
@pytest.mark.parametrize("decor", [False, True], ids=["plain", "decor"])
def test_group_and_alone_agree_on_cuda(rule: str, kind: str, decor: bool) -> None:
    runs = configs(rule, kind, decor)
    data = load_data(runs[0])
    grouped = Recorder(len(runs))
    results = train_group(runs, device="cuda", data=data, reporter=grouped)
    assert [r.status for r in results] == ["done"] * len(runs)
    for i, config in enumerate(runs):
        alone = Alone()
        assert run(config, device="cuda", data=data, reporter=alone).status == "done"
        assert_same_rows(grouped.rows[i], alone.rows, f"member {i}")


@pytest.mark.parametrize("with_feedback", [False, True])
def test_grouped_convolution_equals_each_members_convolution(with_feedback: bool) -> None:
    torch.manual_seed(0)
    G = 3
    x = torch.randn(G, 5, 2, 9, 9, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.randn(G, 4, 2, 3, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    b = torch.randn(G, 4, device="cuda", dtype=torch.float64, requires_grad=True)
    B = torch.randn_like(w) if with_feedback else None
    out = ops.conv2d(x, w, b, 2, 1, B)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, w, b), grad)
    for g in range(G):
        xg, wg, bg = (t.detach()[g].clone().requires_grad_() for t in (x, w, b))
        Bg: Any = None if B is None else B[g]
        alone = ops.conv2d(xg[None], wg[None], bg[None], 2, 1, None if Bg is None else Bg[None])
        torch.testing.assert_close(out[g], alone[0])
        expected = torch.autograd.grad(alone, (xg, wg, bg), grad[g][None])
        for a, e in zip(got, expected, strict=True):
            torch.testing.assert_close(a[g], e)
