"""Networks of G members (`corrgd.learn.nn`): runs trained side by side as one batched model.

Every member must be exactly the run it would be alone: its own initialisation,
its own slice of every parameter, buffer and optimizer state, its own
hyperparameters, and losses computed member by member.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from corrgd.learn.losses import LOSSES, cross_entropy, for_evaluation, get_loss
from corrgd.learn.models import build_network
from corrgd.learn.nn import DecorSettings, Net
from corrgd.learn.optim import MemberAdam, MemberSGD
from corrgd.learn.rules import make_rule
from corrgd.learn.rules.base import mean_losses
from corrgd.learn.training import evaluate, train_step

pytestmark = pytest.mark.usefixtures("single_thread")

G = 3
SEEDS = [11, 4, 7]


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def dense(members: int = G, seeds: list[int] | None = None, decor: bool = True) -> Net:
    settings = DecorSettings(lr=1e-2) if decor else None
    return build_network("mlp", (6,), 4, settings, hidden=(8, 5), members=members,
                         generators=None if seeds is None else generators(seeds))


def conv(members: int = G, seeds: list[int] | None = None) -> Net:
    return build_network("convnet", (2, 8, 8), 3, DecorSettings(rule="copi", lr=1e-2),
                         padding=1, channels=(3,), width=6, members=members,
                         generators=None if seeds is None else generators(seeds))


def randomize(net: Net) -> None:
    """Different M and running means in every member."""
    with torch.no_grad():
        for layer in net.layers:
            if layer.decor is not None:
                M = layer.decor.matrix
                M.add_(0.1 * torch.randn_like(M))
                layer.decor.running_mean.normal_()


# --- (a) initialisation is per member --------------------------------------------------------
@pytest.mark.parametrize("build", [dense, conv], ids=["dense", "conv"])
def test_member_g_is_initialised_as_a_network_of_one_from_generator_g(build):
    group = build(G, SEEDS)
    names = set(group.state_dict())
    assert {"blocks.0.layer.weight", "blocks.0.layer.bias",
            "blocks.0.layer.decor.matrix"} <= names
    for g, seed in enumerate(SEEDS):
        alone = build(1, [seed])
        assert set(alone.state_dict()) == names
        for name, tensor in group.state_dict().items():
            single = alone.state_dict()[name]
            assert tensor.shape == (G, *single.shape[1:])
            assert torch.equal(tensor[g], single[0]), (g, name)
    for layer in group.layers:  # the members differ
        assert not torch.equal(layer.weight[0], layer.weight[1])
    # without generators, members are drawn one after the other from torch's generator
    torch.manual_seed(3)
    first = build(2)
    torch.manual_seed(3)
    again = build(2)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    assert not torch.equal(first.layers[0].weight[0], first.layers[0].weight[1])


# --- (b) dropping members --------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(37, 13, 11), (29, 31, 3), (100, 3, 101), (27, 500, 27)])
def test_a_members_product_is_bitwise_the_product_alone_wherever_its_slice_starts(shape):
    """MKL's AVX2 and SSE4.2 paths round some products by the alignment of their operands:
    member g's slice of a (G, n, k) tensor starts at an odd address where a lone tensor
    does not. Importing corrgd turns on MKL's strict mode on such CPUs (`corrgd._strict_mkl`);
    without it, the first two shapes differed on an AVX2 CPU (an AMD EPYC)."""
    n, k, m = shape
    generator = torch.Generator().manual_seed(0)
    for members in (2, 3, 4):
        x = torch.randn(members, n, k, generator=generator)
        w = torch.randn(members, m, k, generator=generator)
        grouped = torch.bmm(x, w.transpose(1, 2))
        for g in range(members):
            alone = torch.bmm(x[g:g + 1].clone(), w[g:g + 1].clone().transpose(1, 2))
            assert torch.equal(grouped[g], alone[0]), (shape, members, g)


def test_select_members_drops_a_member_and_keeps_the_others_tensors():
    net = conv(G, SEEDS)
    randomize(net)
    rule = make_rule("fa", seed=SEEDS)
    x, y = torch.randn(G, 5, 2, 8, 8), torch.randint(0, 3, (G, 5))
    rule.setup(net, x)
    rule.gradients(net, x, y, cross_entropy)
    before = {name: t.detach().clone() for name, t in net.state_dict(keep_vars=True).items()}
    feedback = [layer.feedback.clone() for layer in net.layers]
    with torch.no_grad():
        out = net(x)
    keep = torch.tensor([2, 0])  # drop member 1 and swap the others

    net.select_members(keep)
    rule.select_members(keep)

    assert net.members == 2 and rule.seeds == [SEEDS[2], SEEDS[0]]
    for name, t in net.state_dict().items():
        assert torch.equal(t, before[name][keep]), name
    for layer, B in zip(net.layers, feedback, strict=True):
        assert torch.equal(layer.feedback, B[keep])
    assert all(p.grad is None for p in net.parameters())
    assert all(isinstance(p, torch.nn.Parameter) for p in net.parameters())
    with torch.no_grad():
        torch.testing.assert_close(net(x[keep]), out[keep], rtol=1e-6, atol=1e-6)
    # and it trains on
    opt = MemberAdam(net.parameters(), 2, lr=1e-3)
    train_step(net, rule, opt, x[keep], y[keep], cross_entropy)
    assert all(p.grad is not None and p.grad.shape[0] == 2 for p in net.parameters())


@pytest.mark.parametrize("algorithm", ["bp", "dfa", "np"])
def test_dropped_members_leave_the_others_training_as_before(algorithm):
    """Net, rule and optimizer each drop member 1 after 3 steps; members 0 and 2 then train
    on exactly as in the group that kept all three."""
    x = torch.randn(G, 16, 6)
    y = torch.randint(0, 4, (G, 16))
    runs = []
    for drop in (False, True):
        net = dense(G, SEEDS)
        rule = make_rule(algorithm, seed=SEEDS, **({"sigma2": [1e-4, 1e-3, 1e-2]}
                                                   if algorithm == "np" else {}))
        rule.setup(net, x)
        opt = MemberAdam(net.parameters(), G, lr=[1e-3, 2e-3, 3e-3])
        xs, ys = x, y
        for step in range(6):
            if drop and step == 3:
                keep = torch.tensor([0, 2])
                net.select_members(keep)
                rule.select_members(keep)
                opt.select_members(keep)
                xs, ys = x[keep], y[keep]
            train_step(net, rule, opt, xs, ys, cross_entropy)
        runs.append(net)
    kept, dropped = runs
    assert dropped.members == 2 and opt.hyper["lr"] == [1e-3, 3e-3]
    for (name, a), b in zip(kept.state_dict().items(), dropped.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(b, a[[0, 2]], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("algorithm,optimizer", [("bp", "adam"), ("dfa", "adam"),
                                                  ("np", "adam"), ("copi", "sgd")])
def test_joined_members_train_on_as_each_would_alone(algorithm, optimizer):
    """Members 0 and 1 train an epoch of 3 steps; member 2, fresh, joins them (net, rule and
    optimizer `extend_members`) and the three train two more epochs, member 2 one epoch
    behind: its own Adam step count, its own noise stream per epoch, SGD momentum from its
    own first step. Each ends where it ends alone, and member 2 also where the other two
    members never were (it would differ if it took their step counts)."""
    steps, epochs = 3, 3
    x = torch.randn(G, epochs, steps, 16, 6)
    y = torch.randint(0, 4, (G, epochs, steps, 16))
    lrs, variances, momenta = [1e-2, 2e-2, 3e-2], [1e-4, 1e-3, 1e-2], [0.9, 0.5, 0.9]
    loss = get_loss("sse") if algorithm == "copi" else cross_entropy

    def make(members: list[int]) -> tuple[Net, Any, Any]:
        net = dense(len(members), [SEEDS[g] for g in members])
        options: dict[str, Any] = {"seed": [SEEDS[g] for g in members]}
        if algorithm == "np":
            options["sigma2"] = [variances[g] for g in members]
        rule = make_rule(algorithm, **options)
        rule.setup(net, x[members, 0, 0])
        rates = [lrs[g] for g in members]
        opt = MemberAdam(net.parameters(), len(members), lr=rates) if optimizer == "adam" \
            else MemberSGD(net.parameters(), len(members), lr=rates,
                           momentum=[momenta[g] for g in members])
        return net, rule, opt

    def train_epochs(net: Net, rule: Any, opt: Any, members: list[int],
                     own: list[int]) -> None:
        """One epoch of every member, member members[k] its epoch own[k] (1-based)."""
        if hasattr(rule, "reseed_members"):
            rule.reseed_members(own)
        for step in range(steps):
            batch = [(g, e - 1, step) for g, e in zip(members, own, strict=True)]
            xs = torch.stack([x[i] for i in batch])
            ys = torch.stack([y[i] for i in batch])
            train_step(net, rule, opt, xs, ys, loss)

    net, rule, opt = make([0, 1])
    train_epochs(net, rule, opt, [0, 1], [1, 1])
    late, late_rule, late_opt = make([2])
    net.extend_members(late)
    rule.extend_members(late_rule)
    opt.extend_members(late_opt)
    for epoch in (2, 3):
        train_epochs(net, rule, opt, [0, 1, 2], [epoch, epoch, epoch - 1])
    assert net.members == 3 and opt.members == 3 and opt.steps == [9, 9, 6]
    assert rule.seeds == SEEDS and opt.hyper["lr"] == lrs
    for g, own_epochs in ((0, 3), (1, 3), (2, 2)):
        alone, alone_rule, alone_opt = make([g])
        for epoch in range(1, own_epochs + 1):
            train_epochs(alone, alone_rule, alone_opt, [g], [epoch])
        for name, t in net.state_dict().items():
            torch.testing.assert_close(t[g], alone.state_dict()[name][0], rtol=1e-6,
                                       atol=1e-7, msg=f"member {g}: {name}")
    with pytest.raises(ValueError, match="join"):
        net.extend_members(conv(1, [1]))
    with pytest.raises(ValueError, match="optimizer"):
        opt.extend_members(MemberSGD(dense(1).parameters(), 1) if optimizer == "adam"
                           else MemberAdam(dense(1).parameters(), 1))


# --- (c) a member's state -------------------------------------------------------------------
def test_member_state_round_trip():
    source = conv(G, SEEDS)
    randomize(source)
    target = conv(2, [1, 2])
    state = source.member_state(2)
    assert set(state) == set(source.state_dict())
    for name, t in state.items():
        assert t.shape == source.state_dict()[name].shape[1:]
    other = target.member_state(0)

    target.load_member_state(1, state)

    for name, t in target.state_dict().items():
        assert torch.equal(t[1], source.state_dict()[name][2]), name
        assert torch.equal(t[0], other[name]), name  # the other member is untouched
    assert torch.equal(target.member_state(1)["blocks.0.layer.weight"],
                       state["blocks.0.layer.weight"])
    # a copy: changing it changes neither network
    state["blocks.0.layer.weight"].add_(1.0)
    assert not torch.equal(state["blocks.0.layer.weight"],
                           source.state_dict()["blocks.0.layer.weight"][2])
    assert not torch.equal(state["blocks.0.layer.weight"],
                           target.state_dict()["blocks.0.layer.weight"][1])
    with pytest.raises(KeyError):
        target.load_member_state(0, {"blocks.0.layer.weight": state["blocks.0.layer.weight"]})


def test_optimizer_member_state_round_trip():
    """A member's optimizer state, saved and loaded into another group, gives the same next
    steps there."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(G, 4, 3))]
    opt = MemberAdam(params, G, lr=[1e-2, 2e-2, 3e-2], betas=[(0.9, 0.99)] * G)
    for _ in range(3):
        params[0].grad = torch.randn_like(params[0])
        opt.step()
    saved = opt.member_state(1)
    other = [torch.nn.Parameter(torch.zeros(2, 4, 3))]
    with torch.no_grad():
        other[0][0] = params[0][1]
    opt2 = MemberAdam(other, 2, lr=5.0)
    opt2.load_member_state(0, saved)
    assert opt2.hyper["lr"] == [2e-2, 5.0] and opt2.hyper["beta2"][0] == 0.99
    grad = torch.randn(4, 3)
    params[0].grad = torch.stack([torch.zeros(4, 3), grad, torch.zeros(4, 3)])
    other[0].grad = torch.stack([grad, torch.zeros(4, 3)])
    opt.step()
    opt2.step()
    assert torch.equal(other[0][0], params[0][1])


# --- (d) per-member optimizers = torch's optimizers run on each member alone ---------------
SHAPES = [(4, 3), (5,), (2, 3, 3, 3)]


def max_relative_difference(a: Tensor, b: Tensor) -> float:
    """max |a − b| / max |b| over one tensor. (Element by element the two differ by rounding:
    torch's fused `add_(alpha=)` / `addcmul_` / `addcdiv_` round once where the per-member
    products round twice, so single elements that pass close to 0 can differ by a large
    fraction of themselves.)"""
    return float((a - b).abs().max() / b.abs().max())


def compare(make_member: Any, make_reference: Any, changes: dict[str, list[float]],
            steps: int = 50) -> float:
    """Largest relative difference between the member optimizer's parameters and torch's
    optimizer's on each member alone, over `steps` steps of random gradients; at step 25
    the hyperparameters change to `changes` (as the runner changes LRs per epoch)."""
    gen = torch.Generator().manual_seed(1)
    start = [torch.randn(G, *s, generator=gen) for s in SHAPES]
    params = [torch.nn.Parameter(t.clone()) for t in start]
    members = [[torch.nn.Parameter(t[g].clone()) for t in start] for g in range(G)]
    opt = make_member(params)
    refs = [make_reference(g, members[g]) for g in range(G)]
    worst = 0.0
    for step in range(steps):
        if step == 25:
            opt.set(**changes)
            for g, ref in enumerate(refs):
                for key, values in changes.items():
                    ref.param_groups[0][key] = values[g]
        grads = [torch.randn(G, *s, generator=gen) * 10.0 ** (step % 3 - 1) for s in SHAPES]
        for p, grad in zip(params, grads, strict=True):
            p.grad = grad.clone()
        for g in range(G):
            for p, grad in zip(members[g], grads, strict=True):
                p.grad = grad[g].clone()
        opt.step()
        for ref in refs:
            ref.step()
        for g in range(G):
            for p, q in zip(params, members[g], strict=True):
                worst = max(worst, max_relative_difference(p.detach()[g], q.detach()))
    return worst


@pytest.mark.parametrize("kernels", ["cpu", "gpu"])
def test_member_adam_equals_torch_adam_on_each_member(kernels, monkeypatch):
    """Both kernel sets (`corrgd.learn.kernels`): torch's fused Adam on member slices, and the
    batched update a GPU runs."""
    monkeypatch.setenv("CORRGD_KERNELS", kernels)
    lrs, betas, eps = [1e-3, 3e-2, 1e-4], [(0.9, 0.999), (0.8, 0.9999), (0.5, 0.99)], \
        [1e-8, 1e-6, 1e-3]
    worst = compare(
        lambda params: MemberAdam(params, G, lr=lrs, betas=betas, eps=eps),
        lambda g, params: torch.optim.Adam(params, lr=lrs[g], betas=betas[g], eps=eps[g],
                                           foreach=False),
        {"lr": [2e-3, 1e-2, 5e-4]})
    assert worst <= 1e-6, worst


@pytest.mark.parametrize("momentum", [[0.0, 0.9, 0.5], [0.0, 0.0, 0.0]])
def test_member_sgd_equals_torch_sgd_on_each_member(momentum):
    lrs = [1e-2, 1e-3, 1e-1]
    worst = compare(
        lambda params: MemberSGD(params, G, lr=lrs, momentum=momentum),
        lambda g, params: torch.optim.SGD(params, lr=lrs[g], momentum=momentum[g],
                                          foreach=False),
        {"lr": [1e-1, 1e-2, 1e-3]})
    assert worst <= 1e-6, worst


def test_optimizer_hyperparameters_are_validated():
    params = [torch.nn.Parameter(torch.zeros(G, 2))]
    with pytest.raises(ValueError, match="members"):
        MemberAdam(params, 2)
    with pytest.raises(ValueError, match="lr"):
        MemberSGD(params, G, lr=[1e-3, 1e-2])
    opt = MemberSGD(params, G, lr=1e-3)
    assert opt.hyper["lr"] == [1e-3] * G
    with pytest.raises(KeyError):
        opt.set(beta1=0.5)


# --- (e) losses with member axes ------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_with_member_axes_are_the_per_sample_losses_member_by_member(float64, name):
    fn = get_loss(name)
    out = torch.randn(G, 7, 5, requires_grad=True)
    labels = torch.randint(0, 5, (G, 7))
    targets = [labels]
    if name != "ce":
        targets.append(torch.randn(G, 7, 5))  # regression: float targets
    for y in targets:
        per_sample = fn(out, y)
        assert per_sample.shape == (G, 7)
        for g in range(G):
            torch.testing.assert_close(per_sample[g], fn(out[g], y[g]), rtol=0, atol=0)
            for n in range(7):  # and sample by sample
                torch.testing.assert_close(per_sample[g, n], fn(out[g, n:n + 1], y[g, n:n + 1])[0])
        (grad,) = torch.autograd.grad(per_sample[1].sum(), out)
        assert grad[0].abs().max() == 0 and grad[2].abs().max() == 0  # no mixing
    if name == "ce":  # the formula itself
        expected = torch.logsumexp(out, -1) - out.gather(-1, labels[..., None])[..., 0]
    else:
        onehot = F.one_hot(labels, 5).to(out.dtype)
        scale = {"mse": 1 / 5, "sse": 1.0, "half_sse": 0.5}[name]
        expected = scale * (out - onehot).pow(2).sum(-1)
    torch.testing.assert_close(fn(out, labels), expected)


@pytest.mark.parametrize("classes", [2, 10, 15, 16, 100])
def test_the_evaluation_cross_entropy_is_torchs_row_wise_loss_and_the_formula(classes):
    """Evaluation takes torch's kernel along the sample axis for few classes (a CPU speed
    path): the values are torch's usual per-row loss to float32 rounding (a few ulps of the
    row's largest logit: its log-softmax subtracts numbers of that size; measured up to 3.8
    on an AVX2 CPU, where the two kernels take other exp and log approximations), and the
    float64 formula; each member's values are bitwise those of the member alone (an axis of
    its own)."""
    out = 3 * torch.randn(4, 300, classes)
    labels = torch.randint(0, classes, (4, 300))
    with torch.no_grad():
        loss = for_evaluation(cross_entropy)(out, labels)
        for g in range(4):
            alone = for_evaluation(cross_entropy)(out[g:g + 1].clone(), labels[g:g + 1])
            assert torch.equal(loss[g], alone[0])
    usual = F.cross_entropy(out.reshape(-1, classes), labels.reshape(-1), reduction="none")
    spacing = torch.finfo(torch.float32).eps * out.abs().amax(-1).clamp(min=1)
    assert ((loss - usual.view(4, 300)).abs() <= 8 * spacing).all()
    x = out.double()
    formula = torch.logsumexp(x, -1) - x.gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(loss.double(), formula, rtol=1e-6, atol=1e-6)
    assert for_evaluation(get_loss("mse")) is get_loss("mse")


def test_mean_losses_give_every_member_a_shared_batch_and_average_per_member():
    out = torch.randn(G, 6, 4)
    y = torch.randint(0, 4, (6,))  # one batch for every member
    expected = torch.stack([cross_entropy(out[g], y).mean() for g in range(G)])
    torch.testing.assert_close(mean_losses(cross_entropy, out, y), expected)
    targets = torch.randn(6, 4)  # regression targets without the member axis
    expected = torch.stack([get_loss("mse")(out[g], targets).mean() for g in range(G)])
    torch.testing.assert_close(mean_losses(get_loss("mse"), out, targets), expected)


# --- a group trains each member as it would train alone -------------------------------------
GROUP_CASES = [(a, "dense") for a in ("bp", "fa", "dfa", "np", "inp", "anp", "copi")] + \
    [(a, "conv") for a in ("bp", "fa", "dfa", "np")]


@pytest.mark.parametrize("algorithm,kind", GROUP_CASES)
def test_training_in_a_group_equals_training_each_member_alone(algorithm, kind):
    """Five steps of `train_step` (rule gradients, per-member Adam, decorrelation updates)
    on G members with their own seeds, learning rates, decor LRs, noise variances and
    batches; each member ends where a network of one member trained alone ends (on a CPU
    today bit for bit; the test allows rounding)."""
    lrs, decor_lrs, variances = [1e-2, 3e-3, 2e-2], [1e-2, 3e-2, 1e-3], [1e-4, 1e-3, 1e-2]
    decor = DecorSettings(rule="copi" if algorithm == "copi" else "crgd", lr=1e-2)
    shape = (6,) if kind == "dense" else (2, 8, 8)
    x = torch.randn(G, 5, 16, *shape) + 0.5
    y = torch.randint(0, 4, (G, 5, 16))
    loss = get_loss("sse") if algorithm == "copi" else cross_entropy

    def build(members: list[int]) -> Net:
        gens = generators([SEEDS[g] for g in members])
        if kind == "dense":
            return build_network("mlp", shape, 4, decor, hidden=(8, 5), members=len(members),
                                 generators=gens)
        return build_network("convnet", shape, 4, decor, padding=1, channels=(3,), width=6,
                             members=len(members), generators=gens)

    def train(members: list[int]) -> Net:
        net = build(members)
        net.set_decorrelation_lr(torch.tensor([decor_lrs[g] for g in members]))
        options: dict[str, Any] = {"seed": [SEEDS[g] for g in members]}
        if algorithm in ("np", "inp", "anp"):
            options |= {"sigma2": [variances[g] for g in members], "samples": 2}
        rule = make_rule(algorithm, **options)
        rule.setup(net, x[members, 0])
        opt = MemberAdam(net.parameters(), len(members), lr=[lrs[g] for g in members])
        for step in range(5):
            losses = train_step(net, rule, opt, x[members, step], y[members, step], loss)
            assert losses.shape == (len(members),)
        return net

    group = train([0, 1, 2])
    start = build([0, 1, 2])
    rows = evaluate(group, [(x[:, 0], y[:, 0])], loss)
    assert len(rows) == G
    for g in range(G):
        alone = train([g])
        for name, t in group.state_dict().items():
            torch.testing.assert_close(t[g], alone.state_dict()[name][0], rtol=1e-5,
                                       atol=1e-6, msg=f"member {g}: {name}")
            if name.endswith("weight"):
                assert not torch.equal(t[g], start.state_dict()[name][g])  # it trained
        (single,) = evaluate(alone, [(x[g:g + 1, 0], y[g:g + 1, 0])], loss)
        assert rows[g]["loss"] == pytest.approx(single["loss"], rel=1e-5)
        assert rows[g]["accuracy"] == single["accuracy"]
