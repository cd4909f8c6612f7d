"""What the shipped specs take from the papers' text: CRGD Fig. 4 at CRGD Table 2's
published learning rates (figure4-published.yaml), NPD's bias-free networks, and NPD's
claim that ANP equals INP in a single-layer network."""

from __future__ import annotations

import pytest
import torch
from test_specs import CRGD_TABLE2, SWEEPS, curve  # CRGD Table 2 as SPEC.md restates it

from corrgd.learn.losses import cross_entropy
from corrgd.learn.models import build_network
from corrgd.learn.rules import make_rule
from corrgd.spec.sweeps import expand, load_spec


def test_figure4_published_trains_every_curve_at_crgd_table2() -> None:
    runs = expand(load_spec(SWEEPS / "figure4-published.yaml"))
    assert sorted({curve(r) for r in runs}) == sorted(CRGD_TABLE2)
    for r in runs:
        assert (r.lr, r.decor_lr) == CRGD_TABLE2[curve(r)], curve(r)
    # the runs figure4.yaml makes when its grid search selects the published LRs
    chosen = [(dict(zip(("dataset", "network", "algorithm", "decor"), key, strict=True)),
               {"lr": lr, "decor_lr": decor_lr}) for key, (lr, decor_lr) in CRGD_TABLE2.items()]
    figure4 = expand(load_spec(SWEEPS / "figure4.yaml"), lambda source, metric: chosen)
    assert sorted(r.hash() for r in runs) == sorted(r.hash() for r in figure4)


@pytest.mark.parametrize("name", ["npd-table3", "npd-table4", "npd-noisy-baseline",
                                  "npd-sarcos-search", "npd-sarcos"])
def test_npd_networks_have_no_biases(name: str) -> None:
    """NPD Sec. 2.1: a_l = W_l x_{l-1}, no bias term."""
    any_lr = [({}, {"lr": 1e-3, "decor_lr": 1e-4})]  # for npd-sarcos' select: from its search
    runs = expand(load_spec(SWEEPS / f"{name}.yaml"), lambda source, metric: any_lr)
    assert runs and {r.bias for r in runs} == {False}


def test_anp_is_inp_for_a_single_layer() -> None:
    """NPD Sec. 2.1.3: "when we have a single layer, it is equivalent to INP": with the same
    noise, ANP's N = Σ_{l=1..L} N_l (the units whose pre-activations are perturbed, the
    input not among them) and δa_1 = v_1 give INP's N_1 δℒ v_1 / ‖v_1‖²."""
    torch.manual_seed(0)
    x, y = torch.randn(1, 32, 12, dtype=torch.float64), torch.randint(0, 5, (1, 32))
    net = build_network("npd-fc", (12,), 5, depth=0).double()
    noise = torch.randn(1, 32, 5, dtype=torch.float64) * 0.1
    updates = []
    for name in ("anp", "inp"):
        net.zero_grad(set_to_none=True)
        rule = make_rule(name, sigma2=1e-2)
        rule.setup(net, x)
        rule.noise = lambda like: noise
        rule.gradients(net, x, y, cross_entropy)
        updates.append([p.grad.clone() for p in net.parameters()])
    for anp, inp in zip(*updates, strict=True):
        torch.testing.assert_close(anp, inp, rtol=1e-10, atol=1e-12)
