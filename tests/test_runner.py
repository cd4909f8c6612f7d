"""The runner: epochs, checkpoints, deterministic resume, divergence."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from corrgd.learn.losses import get_loss
from corrgd.learn.rules import NodePerturbation
from corrgd.learn.training import evaluate
from corrgd.run.runner import (
    MemberEpoch,
    build,
    learning_rates,
    load_data,
    load_trained,
    run,
    train_group,
)
from corrgd.spec.config import RunConfig
from corrgd.storage import MetricRow

pytestmark = pytest.mark.usefixtures("single_thread")  # bitwise comparisons (conftest)

CONFIG = dict(dataset="digits", network="mlp", hidden=[32], algorithm="bp", decor=True,
              decor_lr=1e-3, lr=1e-3, epochs=4, batch_size=64, val_size=200, seed=3)


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.epochs: list[tuple[int, list[MetricRow]]] = []
        self.stop_after = stop_after

    def epoch_end(self, epoch: int, rows: list[MetricRow], checkpoint: str | None) -> None:
        self.epochs.append((epoch, rows))
        if self.stop_after is not None and epoch == self.stop_after:
            raise KeyboardInterrupt  # as if the process died right after this epoch

    def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
        pass


def test_epoch_zero_then_every_epoch_with_all_splits() -> None:
    rec = Recorder()
    result = run(RunConfig(**CONFIG), reporter=rec)
    assert result.status == "done"
    assert [e for e, _ in rec.epochs] == [0, 1, 2, 3, 4]
    for epoch, rows in rec.epochs:
        assert [r.split for r in rows] == ["train", "val", "test"]
        assert (rows[0].seconds > 0) == (epoch > 0)
        assert rows[0].diagnostics is not None and rows[1].diagnostics is None
        layers = rows[0].diagnostics["layers"]
        assert len(layers) == 2 and {"offdiag_corr", "gain", "norm_ratio"} <= set(layers[0])
    first, last = rec.epochs[0][1][0], rec.epochs[-1][1][0]
    assert last.loss < first.loss


def test_fa_run_logs_the_angle_between_forward_and_feedback_weights() -> None:
    """feedback_angle@L: the angle between W_l and B_l as the network holds them after the
    epoch; epoch 0's (evaluated before training) checked by hand against the network as
    built; absent for BP."""
    config = RunConfig(**{**CONFIG, "algorithm": "fa", "epochs": 2})
    rec = Recorder()
    run(config, reporter=rec)
    logged = [layer.get("feedback_angle") for layer in rec.epochs[-1][1][0].diagnostics["layers"]]
    first = rec.epochs[0][1][0].diagnostics["layers"]
    assert any(a is not None for a in logged)
    assert all(0.0 < a < 180.0 for a in logged if a is not None)
    # by hand, on a network of the same config after its epochs: cos = <W, B> / |W||B|
    net, _, _ = build([config], load_data(config), "cpu")
    for layer, a0 in zip(net.layers, first, strict=True):
        if layer.feedback is None:
            assert "feedback_angle" not in a0
            continue
        w, b = layer.weight[0].detach().flatten().double(), layer.feedback[0].flatten().double()
        by_hand = math.degrees(math.acos(float(w @ b / (w.norm() * b.norm()))))
        assert a0["feedback_angle"] == pytest.approx(by_hand, abs=1e-3)  # epoch 0: as built
    bp = Recorder()
    run(RunConfig(**{**CONFIG, "epochs": 1}), reporter=bp)
    assert all("feedback_angle" not in layer
               for layer in bp.epochs[-1][1][0].diagnostics["layers"])


@pytest.mark.parametrize("layout", ["json", "pickled", "last rows"])
def test_resume_after_kill_continues_where_it_stopped_and_matches(tmp_path: Path,
                                                                  layout: str) -> None:
    """Checkpoints of older layouts resume too, their rows being dicts: `pickled`, written
    before the rows were kept as JSON text; `last rows`, before checkpoints kept every
    epoch's rows (only the last epoch is reported again)."""
    config = RunConfig(**CONFIG)
    straight = Recorder()
    run(config, reporter=straight)

    ckpt = tmp_path / "run.pt"
    killed = Recorder(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(config, reporter=killed, checkpoint=ckpt)
    if layout != "json":
        state = torch.load(ckpt, weights_only=False)
        history = json.loads(state.pop("history_json"))
        state["rows"] = history[-1]["rows"]
        if layout == "pickled":
            state["history"] = history
        torch.save(state, ckpt)
    resumed = Recorder()
    result = run(config, reporter=resumed, checkpoint=ckpt)
    assert result.status == "done"
    # every epoch the checkpoint holds is reported again (reporters upsert), with the very
    # numbers first reported, diagnostics included; then training goes on
    first = 2 if layout == "last rows" else 0
    assert [e for e, _ in resumed.epochs] == list(range(first, 5))
    assert resumed.epochs[:3 - first] == killed.epochs[first:]
    for (e1, rows1), (e2, rows2) in zip(straight.epochs[first:], resumed.epochs, strict=True):
        assert e1 == e2
        for r1, r2 in zip(rows1, rows2, strict=True):
            assert r1.loss == pytest.approx(r2.loss, rel=1e-5)
            assert r1.accuracy == r2.accuracy


@pytest.mark.parametrize("damage", ["other config", "truncated", "not a checkpoint"])
def test_a_checkpoint_it_cannot_use_is_set_aside_and_the_run_starts_afresh(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    ckpt = tmp_path / "run.pt"
    config = RunConfig(**{**CONFIG, "epochs": 2})
    if damage == "other config":
        run(RunConfig(**{**CONFIG, "epochs": 1}), checkpoint=ckpt)
    elif damage == "truncated":
        run(config, checkpoint=ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    else:
        ckpt.write_text("hello")
    straight, again = Recorder(), Recorder()
    run(config, reporter=straight)
    with caplog.at_level("WARNING", logger="corrgd.run.runner"):
        result = run(config, reporter=again, checkpoint=ckpt)
    assert result.status == "done"
    assert [e for e, _ in again.epochs] == [0, 1, 2]  # from scratch
    assert [r.loss for _, rows in again.epochs for r in rows] == \
        [r.loss for _, rows in straight.epochs for r in rows]
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.pt.")]
    message = caplog.records[-1].getMessage()
    assert str(ckpt) in message and aside.name in message and "\n" not in message
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2  # a sound checkpoint again


def test_load_trained_gives_the_network_a_checkpoint_holds(tmp_path: Path) -> None:
    config = RunConfig(**{**CONFIG, "epochs": 2})
    ckpt = tmp_path / "run.pt"
    result = run(config, checkpoint=ckpt)
    data = load_data(config)
    net, epoch = load_trained(config, data, ckpt)
    assert epoch == 2
    assert data.test is not None
    (test,) = evaluate(net, [(data.eval_transform(data.test.x), data.test.y)],
                       get_loss(config.loss))
    final = {r.split: r for r in result.final}["test"]
    assert (test["loss"], test["accuracy"]) == (pytest.approx(final.loss), final.accuracy)
    with pytest.raises(ValueError, match="another config"):
        load_trained(RunConfig(**{**CONFIG, "epochs": 3}), data, ckpt)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # only read, not set aside


def test_nan_loss_marks_run_diverged_and_stops() -> None:
    rec = Recorder()
    result = run(RunConfig(**{**CONFIG, "decor": False, "lr": 1e6, "epochs": 30,
                              "optimizer": "sgd"}), reporter=rec)
    assert result.status == "diverged"
    assert result.epochs < 30
    assert rec.epochs[-1][0] == result.epochs


def test_first_epoch_lrs_then_the_main_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from corrgd.run import runner

    built: dict[str, Any] = {}
    original = runner.build

    def build(*args: Any, **kwargs: Any) -> Any:  # keep hold of the net and optimizer
        built["net"], built["rule"], built["opt"] = original(*args, **kwargs)
        return built["net"], built["rule"], built["opt"]

    seen: list[tuple[float, float]] = []

    class Spy(Recorder):
        def progress(self, epoch: int, step: int, steps: int, loss: float) -> None:
            if step == 1:
                seen.append((built["opt"].hyper["lr"][0],
                             float(built["net"].layers[0].decor.lr[0])))

    monkeypatch.setattr(runner, "build", build)
    run(RunConfig(**{**CONFIG, "epochs": 3, "first_epoch_lr": 1e-2,
                     "first_epoch_decor_lr": 1e-2}), reporter=Spy())
    assert seen == [pytest.approx((1e-2, 1e-2)), pytest.approx((1e-3, 1e-3)),
                    pytest.approx((1e-3, 1e-3))]


def test_learning_rates_forward_dense_decor_and_conv_decor() -> None:
    """(forward, decor, conv decor) LR per epoch: the first-epoch values in epoch 1; conv
    decorrelators follow the dense decor LR unless they have their own (which then holds in
    every epoch, as the CRGD reference code's fixed 1e-5)."""
    config = RunConfig(**{**CONFIG, "first_epoch_lr": 1e-2, "first_epoch_decor_lr": 2e-2})
    assert learning_rates(config, 1) == (1e-2, 2e-2, 2e-2)
    assert learning_rates(config, 2) == (1e-3, 1e-3, 1e-3)
    own = config.model_copy(update={"decor_conv_lr": 1e-5})
    assert learning_rates(own, 1) == (1e-2, 2e-2, 1e-5)
    assert learning_rates(own, 3) == (1e-3, 1e-3, 1e-5)
    plain = RunConfig(**CONFIG)
    assert learning_rates(plain, 1) == learning_rates(plain, 2) == (1e-3, 1e-3, 1e-3)


def test_np_rules_draw_each_epochs_noise_from_its_own_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The NP family is reseeded at the start of every training epoch (stream 'noise') and
    before every epoch's diagnostics (stream 'diagnostics'), so that any epoch's noise can
    be reproduced on its own (one counter per member: its epoch)."""
    calls: list[tuple[tuple[int, ...], str]] = []
    original = NodePerturbation.reseed_members

    def reseed(self: NodePerturbation, counters: Any, stream: str = "noise",
               device: Any = "cpu") -> None:
        calls.append((tuple(counters), stream))
        original(self, counters, stream=stream, device=device)

    monkeypatch.setattr(NodePerturbation, "reseed_members", reseed)
    run(RunConfig(**{**CONFIG, "algorithm": "np", "epochs": 2}))
    assert [c for c in calls if c[1] == "noise"] == [((1,), "noise"), ((2,), "noise")]
    assert [c for c in calls if c[1] == "diagnostics"] == [((0,), "diagnostics"),
                                                           ((1,), "diagnostics"),
                                                           ((2,), "diagnostics")]


class GroupRecorder:
    def __init__(self) -> None:
        self.epochs: dict[int, list[tuple[int, list[MetricRow], str]]] = {}

    def epoch_end(self, members: list[MemberEpoch]) -> None:
        for m in members:
            self.epochs.setdefault(m.member, []).append((m.epoch, m.rows, m.status))

    def progress(self, epoch: int, step: int, steps: int, losses: list[float]) -> None:
        pass


def test_a_group_trains_each_member_as_it_would_train_alone() -> None:
    """Runs that differ in per-member settings (seed, LRs) train as one group; each member's
    rows are those of its run alone, and a member that diverges leaves the group while the
    others go on."""
    base = {**CONFIG, "epochs": 3, "optimizer": "sgd", "lr": 1e-2}
    configs = [RunConfig(**{**base, "seed": 3}),
               RunConfig(**{**base, "seed": 4, "lr": 3e-2, "decor_lr": 5e-4}),
               RunConfig(**{**base, "seed": 5, "lr": 1e6})]  # diverges
    rec = GroupRecorder()
    results = train_group(configs, reporter=rec)
    assert [r.status for r in results] == ["done", "done", "diverged"]
    assert results[2].epochs < 3
    for i, config in enumerate(configs[:2]):
        alone = Recorder()
        run(config, reporter=alone)
        grouped = rec.epochs[i]
        assert [e for e, _, _ in grouped] == [e for e, _ in alone.epochs] == [0, 1, 2, 3]
        for (_, rows1, _), (_, rows2) in zip(grouped, alone.epochs, strict=True):
            for r1, r2 in zip(rows1, rows2, strict=True):
                assert r1.split == r2.split
                assert r1.loss == pytest.approx(r2.loss, rel=1e-5)
                assert r1.accuracy == r2.accuracy
    assert rec.epochs[2][-1][2] == "diverged"


def untimed(rows: list[MetricRow]) -> list[MetricRow]:
    """Rows without their wall-clock seconds: everything else is the same bit for bit."""
    return [replace(r, seconds=0.0) for r in rows]


class Pruner(GroupRecorder):
    """Stops the listed members at the listed epochs, as a pruning reporter would."""

    def __init__(self, stops: dict[int, int]) -> None:
        super().__init__()
        self.stops = stops
        self.calls: list[list[tuple[int, int]]] = []  # (member, epoch) per call

    def epoch_end(self, members: list[MemberEpoch]) -> list[int]:
        super().epoch_end(members)
        self.calls.append([(m.member, m.epoch) for m in members])
        return [m.member for m in members if self.stops.get(m.member) == m.epoch]


@pytest.mark.parametrize("algorithm,optimizer", [("fa", "adam"), ("np", "sgd")])
def test_runs_that_refill_a_shrunk_group_train_at_their_own_epochs_as_alone(
        tmp_path: Path, algorithm: str, optimizer: str) -> None:
    """A group of two loses both members at epoch 1 (pruned); `refill` gives a fresh run and
    a run resumed from its checkpoint of epoch 2, which train at their own epochs beside
    each other, reported together; when the resumed one is done, the queue is empty and the
    fresh one trains on alone. Every run's rows are bit for bit those of the run trained
    alone, up to where it stopped."""
    base = {**CONFIG, "algorithm": algorithm, "optimizer": optimizer, "epochs": 4,
            "momentum": 0.9 if optimizer == "sgd" else 0.0}
    if algorithm == "np":
        base |= {"decor": False, "sigma2": 1e-4, "lr": 1e-2}
    configs = [RunConfig(**{**base, "seed": 3}),
               RunConfig(**{**base, "seed": 4, "lr": base["lr"] * 3}),
               RunConfig(**{**base, "seed": 5, "lr": base["lr"] * 2}),
               RunConfig(**{**base, "seed": 6})]
    resumed = tmp_path / "resumed.pt"
    with pytest.raises(KeyboardInterrupt):  # run 3 stopped after epoch 2: its checkpoint
        run(configs[3], checkpoint=resumed, reporter=Recorder(stop_after=2))
    asked: list[int] = []
    queue = [[(configs[2], None), (configs[3], resumed)], []]

    def refill(count: int) -> list[tuple[RunConfig, Path | None]]:
        asked.append(count)
        return queue.pop(0)

    rec = Pruner({0: 1, 1: 1})
    results = train_group(configs[:2], reporter=rec, refill=refill)
    assert [r.status for r in results] == ["pruned", "pruned", "done", "done"]
    assert [r.epochs for r in results] == [1, 1, 4, 4]
    assert asked == [2, 1]  # the group had shrunk to none, then to one
    steps = [sorted(call) for call in rec.calls]
    assert [(2, 1), (3, 3)] in steps and [(2, 2), (3, 4)] in steps  # at their own epochs
    assert steps[-2:] == [[(2, 3)], [(2, 4)]]
    for i, config in enumerate(configs):
        alone = Recorder()
        result = run(config, reporter=alone)
        mine = rec.epochs[i]
        if i == 3:  # its replayed epochs 0..2, then those it trained in the group
            assert [e for e, _, _ in mine] == [0, 1, 2, 3, 4]
        assert [e for e, _, _ in mine] == [e for e, _ in alone.epochs][:len(mine)]
        assert [untimed(rows) for _, rows, _ in mine] == \
            [untimed(rows) for _, rows in alone.epochs][:len(mine)]
        if i >= 2:
            assert (results[i].status, results[i].epochs) == (result.status, result.epochs)
