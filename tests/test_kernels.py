"""The two kernel sets (`corrgd.learn.kernels`) train the same runs.

`CORRGD_KERNELS=gpu` runs on the CPU the code a GPU takes: one grouped convolution for
all members (with feedback matrices through `conv2d_input`/`conv2d_weight` with groups),
the batched Adam update, the row-wise evaluation cross-entropy. For every rule, dense
and conv, with and without decorrelation, three members with their own LRs, decor LRs,
seeds and noise variances train 2 epochs with each set.

The comparison is in float64. The sets differ only in the order of their roundings, and
in float64 those stay below 1e-10 relative over 2 epochs even for node perturbation,
whose updates divide a loss difference by σ² and so amplify a rounding by up to 1/σ²
(measured: at most 6e-12). In float32 the same roundings start at 1e-7 and grow with the
step sizes: with FA on the conv net at decor LR 1e-3 they reach 2e-4 in the loss after 2
epochs, the NP family 5e-3 — the dynamics amplifying float32 noise, which says nothing
about the code. So float64 tests the maths of the GPU path, and `test_cli_e2e` checks
float32 sweeps end to end at the settings of a typical grid.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_group_equivalence import CASES, Recorder, configs

from corrgd.learn.kernels import gpu_kernels, kernel_set
from corrgd.learn.optim import MemberAdam
from corrgd.run.runner import load_data, train_group

pytestmark = pytest.mark.usefixtures("single_thread")

BASE_CASES = [case for case in CASES if "odd" not in case[1]]  # dense and conv


def test_the_setting_picks_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU
    for value, on_cpu, on_gpu in [("", False, True), ("auto", False, True),
                                  ("cpu", False, False), ("GPU", True, True)]:
        monkeypatch.setenv("CORRGD_KERNELS", value)
        assert (gpu_kernels(cpu), gpu_kernels(gpu)) == (on_cpu, on_gpu), value
    monkeypatch.delenv("CORRGD_KERNELS")
    assert kernel_set() == "auto"
    monkeypatch.setenv("CORRGD_KERNELS", "tpu")
    with pytest.raises(ValueError, match="CORRGD_KERNELS='tpu' is not one of: auto, cpu, gpu"):
        gpu_kernels(cpu)


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Counts the kernels a training takes: grouped convolutions, each Adam step,
    cross-entropies along the sample axis."""
    calls: Counter = Counter()
    conv2d, cross_entropy = F.conv2d, F.cross_entropy
    batched, fused = MemberAdam._batched_step, MemberAdam._fused_step

    def spy_conv2d(*args: Any, **kwargs: Any) -> torch.Tensor:
        groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
        calls["grouped conv" if groups > 1 else "member conv"] += 1
        return conv2d(*args, **kwargs)

    def spy_cross_entropy(logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls["sample-axis ce" if logits.dim() == 3 else "row-wise ce"] += 1
        return cross_entropy(logits, *args, **kwargs)

    def spy(name: str, method: Any) -> Any:
        def step(self: MemberAdam, live: Any) -> None:
            calls[name] += 1
            method(self, live)
        return step

    monkeypatch.setattr(F, "conv2d", spy_conv2d)
    monkeypatch.setattr(F, "cross_entropy", spy_cross_entropy)
    monkeypatch.setattr(MemberAdam, "_batched_step", spy("batched adam", batched))
    monkeypatch.setattr(MemberAdam, "_fused_step", spy("fused adam", fused))
    yield calls


def _float64(split: Any) -> Any:
    return None if split is None else dataclasses.replace(split, x=split.x.double())


@pytest.mark.slow
@pytest.mark.parametrize("rule,kind,decor", BASE_CASES,
                         ids=[f"{r}-{k}-{'decor' if d else 'plain'}" for r, k, d in BASE_CASES])
def test_gpu_kernels_train_as_the_cpu_kernels(rule: str, kind: str, decor: bool, float64: None,
                                              kernel_calls: Counter,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [c.model_copy(update={"epochs": 2}) for c in configs(rule, kind, decor)[:3]]
    data = load_data(runs[0])
    data = dataclasses.replace(data, train=_float64(data.train), test=_float64(data.test))
    rows, used = {}, {}
    for kernels in ("cpu", "gpu"):
        monkeypatch.setenv("CORRGD_KERNELS", kernels)
        kernel_calls.clear()
        recorder = Recorder(len(runs))
        train_group(runs, data=data, reporter=recorder)
        rows[kernels], used[kernels] = recorder.rows, dict(kernel_calls)
    for member in range(len(runs)):
        for epoch, (cpu, gpu) in enumerate(zip(rows["cpu"][member], rows["gpu"][member],
                                               strict=True)):
            for a, b in zip(cpu, gpu, strict=True):
                where = (member, epoch, a.split)
                assert b.loss == pytest.approx(a.loss, rel=1e-10, abs=0), where
                assert b.accuracy == a.accuracy, where
    cpu, gpu = used["cpu"], used["gpu"]
    if "conv" in kind:
        assert gpu.get("grouped conv") and not cpu.get("grouped conv")
    if runs[0].optimizer == "adam":
        assert gpu.get("batched adam") and not gpu.get("fused adam")
        assert cpu.get("fused adam") and not cpu.get("batched adam")
    if runs[0].loss == "ce":
        assert cpu.get("sample-axis ce") and not gpu.get("sample-axis ce")
