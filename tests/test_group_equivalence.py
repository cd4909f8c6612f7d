"""A run's results do not depend on the group it trained in.

For every rule, dense and conv, with and without decorrelation: four runs that
differ in forward LR, decor LR, seed (and noise variance for the NP family)
train as one group through `train_group`; each member's per-epoch losses and
accuracies over 3 epochs are bitwise those of the same run trained alone (`run`, a
group of one). Also with widths that put members' slices at unaligned addresses
(`odd` cases: a dense net of 33 and 31 units, a conv net on 3-channel images whose
decorrelation sees 27-dimensional patches). A member that diverges leaves the others'
metrics unchanged.

Bitwise needs a BLAS whose results do not depend on where in memory a member's slice
starts: MKL on its AVX-512 path is such a BLAS; on its AVX2 path (AMD, Intel without
AVX-512) it is only with `MKL_CBWR=AUTO,STRICT`, which conftest.py sets (README,
"Groups").
"""

from __future__ import annotations

from typing import Any

import pytest

from corrgd.run.runner import MemberEpoch, load_data, run, train_group
from corrgd.spec.config import RunConfig
from corrgd.storage import MetricRow

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

RULES = ["bp", "fa", "dfa", "copi", "np", "inp", "anp"]
KINDS = ("dense", "conv", "dense-odd", "conv-odd")
CASES = [(rule, kind, decor) for rule in RULES for kind in KINDS
         for decor in (False, True) if not (rule == "copi" and "conv" in kind)
         if "odd" not in kind or decor]
# (lr, decor LR, seed, sigma2) of the four members
MEMBERS = [(1e-3, 1e-3, 0, 1e-6), (3e-4, 1e-4, 1, 1e-4), (1e-3, 1e-4, 2, 1e-5),
           (2e-3, 3e-3, 3, 1e-6)]


def configs(rule: str, kind: str, decor: bool) -> list[RunConfig]:
    base: dict[str, Any] = dict(dataset="digits", algorithm=rule, epochs=3, batch_size=64,
                                val_size=200, decor=decor)
    base |= {"dense": {"network": "mlp", "hidden": [32, 32]},
             "dense-odd": {"network": "mlp", "hidden": [33, 31]},
             "conv": {"network": "convnet", "padding": 1},
             "conv-odd": {"network": "convnet", "padding": 1,
                          "dataset": "synthetic-correlated", "val_size": 100,
                          "data": {"shape": [3, 7, 7], "n_train": 600, "n_test": 200}},
             }[kind]
    if rule == "copi":  # COPI as in its paper: SGD steps, y = f(a), ‖y − y*‖², COPI's R rule
        base |= dict(loss="sse", output_activation=True, optimizer="sgd", bias=False)
        if decor:
            base |= dict(decor_rule="copi", decor_update_order="MC")
    if rule in ("np", "inp", "anp"):
        base["np_samples"] = 2
    out = []
    for lr, decor_lr, seed, sigma2 in MEMBERS:
        # COPI without lateral weights grows W along correlated inputs: small steps
        scale = (0.1 if decor else 0.01) if rule == "copi" else 1
        member = dict(base, lr=lr * scale, seed=seed, sigma2=sigma2)
        if decor:
            member["decor_lr"] = decor_lr
        out.append(RunConfig(**member))
    return out


class Recorder:
    def __init__(self, members: int) -> None:
        self.rows: list[list[list[MetricRow]]] = [[] for _ in range(members)]
        self.status: list[str] = [""] * members

    def epoch_end(self, members: list[MemberEpoch]) -> None:
        for m in members:
            self.rows[m.member].append(m.rows)
            self.status[m.member] = m.status

    def progress(self, epoch: int, step: int, steps: int, losses: list[float]) -> None:
        pass


class Alone:
    def __init__(self) -> None:
        self.rows: list[list[MetricRow]] = []

    def epoch_end(self, epoch: int, rows: list[MetricRow], checkpoint: str | None) -> None:
        self.rows.append(rows)

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        pass


def assert_same_rows(grouped: list[list[MetricRow]], alone: list[list[MetricRow]],
                     label: str) -> None:
    assert len(grouped) == len(alone) == 4, label  # epochs 0-3
    for epoch, (rows_g, rows_a) in enumerate(zip(grouped, alone, strict=True)):
        for g, a in zip(rows_g, rows_a, strict=True):
            assert g.split == a.split
            for key in ("loss", "accuracy"):
                got, want = getattr(g, key), getattr(a, key)
                assert got == want, (label, epoch, g.split, key, got - want)


@pytest.mark.parametrize("rule,kind,decor", CASES,
                         ids=[f"{r}-{k}-{'decor' if d else 'plain'}" for r, k, d in CASES])
def test_each_member_of_a_group_trains_as_it_would_alone(rule: str, kind: str,
                                                         decor: bool) -> None:
    runs = configs(rule, kind, decor)
    assert len({c.group_key() for c in runs}) == 1
    data = load_data(runs[0])
    grouped = Recorder(len(runs))
    results = train_group(runs, data=data, reporter=grouped)
    assert [r.status for r in results] == ["done"] * len(runs)
    for i, config in enumerate(runs):
        alone = Alone()
        assert run(config, data=data, reporter=alone).status == "done"
        assert_same_rows(grouped.rows[i], alone.rows, f"member {i}")


@pytest.mark.parametrize("rule", ["bp", "np"])
def test_a_diverging_member_leaves_the_others_unchanged(rule: str) -> None:
    runs = configs(rule, "dense", True)
    runs[1] = runs[1].model_copy(update={"lr": 1e3})  # diverges in epoch 1
    data = load_data(runs[0])
    grouped = Recorder(len(runs))
    results = train_group(runs, data=data, reporter=grouped)
    assert [r.status for r in results] == ["done", "diverged", "done", "done"]
    assert grouped.status[1] == "diverged" and len(grouped.rows[1]) == 2  # epochs 0 and 1
    for i in (0, 2, 3):
        alone = Alone()
        run(runs[i], data=data, reporter=alone)
        assert_same_rows(grouped.rows[i], alone.rows, f"member {i}")
    alone = Alone()
    assert run(runs[1], data=data, reporter=alone).status == "diverged"
    assert len(alone.rows) == 2
