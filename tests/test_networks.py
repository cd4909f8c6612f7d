"""Decorrelated layers and networks against the same maths written out by hand.

The hand versions below use nothing from corrgd but the parameter tensors:

    x̂ = M (x − μ)      μ = the batch mean (detached); patches for a conv layer
    a = W x̂ + b
    f = leaky ReLU, slope 0.01

Patches are cut out of the zero-padded image by slicing, one output position
at a time, so that the layers' F.unfold / folded-kernel paths are checked
against an independent computation.

Layers and networks hold G members (`corrgd.learn.nn`): every parameter and buffer has
a leading member axis and inputs are (G, n, ...). The hand versions compute one
member g on its own batch; the formula tests use G = 3 members with different
weights, matrices, feedback and data, and check every member.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from corrgd.learn.losses import cross_entropy
from corrgd.learn.models import ARCHITECTURES, build_network, network_names
from corrgd.learn.nn import Block, DecorConv2d, DecorLinear, DecorSettings, Net
from corrgd.learn.rules import make_rule

SLOPE = 0.01
G = 3  # members of the formula tests

pytestmark = pytest.mark.usefixtures("single_thread")


# --- the maths, by hand, for member g ----------------------------------------------------
def leaky(a: Tensor) -> Tensor:
    return torch.where(a > 0, a, SLOPE * a)


def decorrelate_rows(layer: DecorLinear | DecorConv2d, g: int, rows: Tensor,
                     mean: Tensor | None = None) -> Tensor:
    """x̂ = M_g (x − μ) for sample rows; μ the detached mean of the rows unless given."""
    if layer.decor is None:
        return rows
    if layer.decor.settings.demeans:
        rows = rows - (rows.mean(0).detach() if mean is None else mean)
    return rows @ layer.decor.matrix[g].T


def hand_patches(layer: DecorConv2d, x: Tensor) -> tuple[Tensor, int, int]:
    """Every k × k × C_in patch of the zero-padded x (n, C, H, W) as a row,
    (n · positions, C_in k²)."""
    k, s, p = layer.kernel_size, layer.stride, layer.padding
    xp = F.pad(x, (p, p, p, p))
    out_h = (xp.shape[2] - k) // s + 1
    out_w = (xp.shape[3] - k) // s + 1
    rows = [xp[:, :, i * s:i * s + k, j * s:j * s + k].reshape(x.shape[0], -1)
            for i in range(out_h) for j in range(out_w)]
    return torch.stack(rows, 1).reshape(-1, rows[0].shape[1]), out_h, out_w


def hand_layer(layer: DecorLinear | DecorConv2d, g: int, x: Tensor, mean: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
    """(a, x̂ rows) of member g of one layer, dense or conv, on its batch x (no member axis);
    `mean` replaces the batch mean."""
    W = layer.weight[g].reshape(layer.weight.shape[1], -1)
    b = None if layer.bias is None else layer.bias[g]
    if isinstance(layer, DecorLinear):
        xh = decorrelate_rows(layer, g, x, mean)
        a = xh @ W.T
        return (a if b is None else a + b), xh
    rows, out_h, out_w = hand_patches(layer, x)
    xh = decorrelate_rows(layer, g, rows, mean)
    a = xh @ W.T
    if b is not None:
        a = a + b
    n, c = x.shape[0], W.shape[0]
    return a.reshape(n, out_h * out_w, c).transpose(1, 2).reshape(n, c, out_h, out_w), xh


def hand_forward(net: Net, g: int, x: Tensor) -> Tensor:
    for block in net.blocks:
        if isinstance(block.layer, DecorLinear):
            x = x.flatten(1)
        a, _ = hand_layer(block.layer, g, x)
        x = leaky(a) if block.activation else a
        if block.pool:
            x = F.max_pool2d(x, block.pool)
    return x


def hand_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the last-but-one axis: (...) for logits (..., n, k)."""
    per_sample = torch.logsumexp(logits, -1) - logits.gather(-1, y[..., None])[..., 0]
    return per_sample.mean(-1)


# --- helpers -------------------------------------------------------------------------
def randomize_decorrelation(net_or_layer: Net | DecorLinear | DecorConv2d,
                            scale: float = 0.3) -> None:
    """A random, well-conditioned M ≠ I per member, and a running mean that training must
    ignore."""
    layers = net_or_layer.layers if isinstance(net_or_layer, Net) else [net_or_layer]
    for layer in layers:
        assert layer.decor is not None
        d = layer.decor.dim
        for g in range(layer.members):
            M = torch.eye(d) + scale * torch.randn(d, d) / d**0.5
            assert torch.linalg.cond(M) < 10
            layer.decor.matrix[g].copy_(M)
        layer.decor.running_mean.copy_(torch.randn_like(layer.decor.running_mean))


def set_fold(net: Net, fold: bool | None) -> None:
    for layer in net.layers:
        layer.fold = fold


def dense_net(decor: DecorSettings | None, members: int = G) -> Net:
    return Net([Block(DecorLinear(7, 6, decor, members=members)),
                Block(DecorLinear(6, 5, decor, members=members)),
                Block(DecorLinear(5, 4, decor, members=members), activation=False)], (7,))


def conv_net(decor: DecorSettings | None, members: int = G) -> Net:
    """2×8×8 → conv3×3 s1 p1 → pool 2 → conv3×3 s2 p1 → dense 16 → 5 logits."""
    return Net([Block(DecorConv2d(2, 3, 3, stride=1, padding=1, decor=decor, members=members),
                      pool=2),
                Block(DecorConv2d(3, 4, 3, stride=2, padding=1, decor=decor, members=members)),
                Block(DecorLinear(16, 5, decor, members=members), activation=False)],
               (2, 8, 8))


# --- 1. BP through decorrelation = autograd of the hand-written function -------------
@pytest.mark.parametrize("fold", [True, False, None])
@pytest.mark.parametrize("rule", ["crgd", "copi"])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_bp_through_decorrelation_matches_hand_written_autograd(float64, kind, rule, fold):
    decor = DecorSettings(rule=rule, lr=1e-3)
    net = dense_net(decor) if kind == "dense" else conv_net(decor)
    randomize_decorrelation(net)
    set_fold(net, fold)
    if kind == "dense":
        x = torch.randn(G, 9, 7) + 0.5
        y = torch.randint(0, 4, (G, 9))
    else:
        x = torch.randn(G, 6, 2, 8, 8) + 0.5
        y = torch.randint(0, 5, (G, 6))

    step = make_rule("bp").gradients(net, x, y, cross_entropy)
    params = [p for layer in net.layers for p in (layer.weight, layer.bias)]
    hand_losses = torch.stack([hand_cross_entropy(hand_forward(net, g, x[g]), y[g])
                               for g in range(G)])
    # member g's hand loss reaches only member g's parameters: the gradient of the sum
    # holds every member's own gradient in its slice
    expected = torch.autograd.grad(hand_losses.sum(), params)

    torch.testing.assert_close(step.loss, hand_losses.detach(), rtol=1e-12, atol=1e-12)
    hand_outputs = torch.stack([hand_forward(net, g, x[g]) for g in range(G)])
    torch.testing.assert_close(step.trace.output, hand_outputs, rtol=1e-10, atol=1e-12)
    for p, grad in zip(params, expected, strict=True):
        for g in range(G):  # every member's parameter has a non-trivial gradient
            assert grad[g].abs().max() > 1e-6
        torch.testing.assert_close(p.grad, grad, rtol=1e-9, atol=1e-12)


def test_decorrelation_matrix_enters_the_gradient(float64):
    """Guard for the test above: with M ≠ I the BP gradient differs from plain BP's."""
    net = dense_net(DecorSettings(lr=1e-3), members=1)
    randomize_decorrelation(net)
    x, y = torch.randn(9, 7), torch.randint(0, 4, (9,))
    loss = hand_cross_entropy(net(x)[0], y)
    with_m = torch.autograd.grad(loss, net.layers[1].weight)[0]
    for layer in net.layers:
        layer.decor.matrix.copy_(torch.eye(layer.decor.dim))
    loss = hand_cross_entropy(net(x)[0], y)
    without_m = torch.autograd.grad(loss, net.layers[1].weight)[0]
    assert (with_m - without_m).abs().max() > 1e-3


# --- 6. folded W M and unfolded M-then-W give the same outputs and gradients ---------
def _run(layer: DecorLinear | DecorConv2d, x: Tensor, grad_out: Tensor, fold: bool
         ) -> list[Tensor]:
    layer.fold = fold
    layer.zero_grad(set_to_none=True)
    xg = x.detach().clone().requires_grad_(True)
    out = layer(xg)
    out.backward(grad_out)
    return [out.detach(), layer.weight.grad, layer.bias.grad, xg.grad]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("rule", ["crgd", "copi"])
@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_folded_and_unfolded_conv_agree(float64, stride, padding, rule, feedback, mode):
    layer = DecorConv2d(3, 4, 3, stride=stride, padding=padding,
                        decor=DecorSettings(rule=rule, lr=1e-3), members=G)
    randomize_decorrelation(layer)
    if feedback:
        layer.feedback = torch.randn_like(layer.weight)
    layer.train(mode == "train")
    x = torch.randn(G, 5, 3, 9, 9) + 1.0
    with torch.no_grad():
        grad_out = torch.randn_like(layer(x))
    folded = _run(layer, x, grad_out, fold=True)
    unfolded = _run(layer, x, grad_out, fold=False)
    for a, b in zip(folded, unfolded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

    # Both equal the hand-written layer: batch mean in training, running mean in eval.
    for g in range(G):
        mean = None if mode == "train" else layer.decor.running_mean[g]
        a_hand, _ = hand_layer(layer, g, x[g], mean)
        torch.testing.assert_close(folded[0][g], a_hand, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("feedback", [False, True])
@pytest.mark.parametrize("rule", ["crgd", "copi"])
def test_folded_and_unfolded_dense_agree(float64, rule, feedback, mode):
    layer = DecorLinear(8, 5, decor=DecorSettings(rule=rule, lr=1e-3), members=G)
    randomize_decorrelation(layer)
    if feedback:
        layer.feedback = torch.randn_like(layer.weight)
    layer.train(mode == "train")
    x = torch.randn(G, 11, 8) + 1.0
    grad_out = torch.randn(G, 11, 5)
    folded = _run(layer, x, grad_out, fold=True)
    unfolded = _run(layer, x, grad_out, fold=False)
    for a, b in zip(folded, unfolded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for g in range(G):
        mean = None if mode == "train" else layer.decor.running_mean[g]
        a_hand, _ = hand_layer(layer, g, x[g], mean)
        torch.testing.assert_close(folded[0][g], a_hand, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fold", [True, False])
def test_feedback_sends_the_error_through_B_M(float64, fold):
    """FA layer: ∂ℓ/∂x = δ B M (rows), while ∂ℓ/∂W stays δᵀ x̂ as without feedback."""
    layer = DecorLinear(6, 4, decor=DecorSettings(lr=1e-3), members=G)
    randomize_decorrelation(layer)
    x = torch.randn(G, 7, 6)
    grad_out = torch.randn(G, 7, 4)
    plain = _run(layer, x, grad_out, fold)
    B = torch.randn_like(layer.weight)
    layer.feedback = B
    fa = _run(layer, x, grad_out, fold)
    for g in range(G):
        M = layer.decor.matrix[g]
        torch.testing.assert_close(fa[3][g], grad_out[g] @ B[g] @ M, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(plain[3][g], grad_out[g] @ layer.weight[g].detach() @ M,
                                   rtol=1e-10, atol=1e-12)
        xh = (x[g] - x[g].mean(0)) @ M.T
        torch.testing.assert_close(fa[1][g], grad_out[g].T @ xh, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fa[1], plain[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fold", [True, False])
def test_conv_feedback_sends_the_error_through_B_M(float64, fold):
    layer = DecorConv2d(2, 3, 3, stride=2, padding=1, decor=DecorSettings(lr=1e-3), members=G)
    randomize_decorrelation(layer)
    layer.feedback = torch.randn_like(layer.weight)
    x = torch.randn(G, 4, 2, 7, 7)
    with torch.no_grad():
        grad_out = torch.randn_like(layer(x))
    fa = _run(layer, x, grad_out, fold)
    for g in range(G):
        BM = (layer.feedback[g].reshape(3, -1) @ layer.decor.matrix[g]).view_as(
            layer.weight[g])
        xg = x[g].clone().requires_grad_(True)
        expected = torch.autograd.grad(F.conv2d(xg, BM, None, 2, 1), xg, grad_out[g])[0]
        torch.testing.assert_close(fa[3][g], expected, rtol=1e-10, atol=1e-12)


def test_grouped_convolution_layout_of_the_gpu_path(float64):
    """On a GPU a conv layer runs all members as one grouped convolution (member g's channels
    form group g), its feedback version through `_FeedbackConv2d` with groups. Checked here
    on the CPU against each member's own convolution: output, ∂ℓ/∂W, ∂ℓ/∂b as plain
    autograd, and ∂ℓ/∂x through the member's B."""
    from corrgd.learn.nn import feedback as ops

    x = torch.randn(G, 4, 2, 7, 7, requires_grad=True)
    W = torch.randn(G, 5, 2, 3, 3, requires_grad=True)
    B = torch.randn(G, 5, 2, 3, 3)
    b = torch.randn(G, 5, requires_grad=True)
    assert torch.equal(ops.from_groups(ops.to_groups(x), G), x)
    grouped = ops.to_groups(x)
    plain = ops.from_groups(F.conv2d(grouped, W.flatten(0, 1), b.flatten(), 2, 1, groups=G), G)
    fa = ops.from_groups(ops._FeedbackConv2d.apply(grouped, W.flatten(0, 1), B.flatten(0, 1),
                                                   b.flatten(), 2, 1, G), G)
    grad_out = torch.randn_like(fa)
    gx, gW, gb = torch.autograd.grad(fa, (x, W, b), grad_out)
    for g in range(G):
        xg, Wg, bg = (t[g].detach().requires_grad_() for t in (x, W, b))
        out = F.conv2d(xg, Wg, bg, 2, 1)
        torch.testing.assert_close(plain[g], out, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fa[g], out, rtol=1e-12, atol=1e-12)
        ew, eb = torch.autograd.grad(out, (Wg, bg), grad_out[g])
        (ex,) = torch.autograd.grad(F.conv2d(xg, B[g], None, 2, 1), xg, grad_out[g])
        torch.testing.assert_close(gW[g], ew, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gb[g], eb, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(gx[g], ex, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("fold", [True, False])
def test_conv_layer_on_the_gpu_matches_the_hand_written_layer(float64, fold):
    layer = DecorConv2d(2, 3, 3, stride=2, padding=1, decor=DecorSettings(lr=1e-3), members=G)
    randomize_decorrelation(layer)
    layer.feedback = torch.randn_like(layer.weight)
    x = torch.randn(G, 4, 2, 7, 7)
    grad_out = torch.randn(G, 4, 3, 4, 4)
    cpu = _run(layer, x, grad_out, fold)
    gpu = _run(layer.cuda(), x.cuda(), grad_out.cuda(), fold)
    for a, b in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-11)


# --- the network's trace -------------------------------------------------------------
def pool(t: Tensor, k: int) -> Tensor:
    """Max-pool of (G, n, C, H, W)."""
    y = F.max_pool2d(t.flatten(0, 1), k)
    return y.view(*t.shape[:2], *y.shape[1:])


def test_trace_records_inputs_preactivations_and_noise(float64):
    members = 2
    net = conv_net(DecorSettings(lr=1e-3), members=members)
    randomize_decorrelation(net)
    x = torch.randn(members, 4, 2, 8, 8)
    clean = net.trace(x)
    torch.testing.assert_close(clean.output, net(x))
    assert clean.inputs[0] is x
    assert clean.inputs[2].shape == (members, 4, 16)  # the dense block's flattened input
    torch.testing.assert_close(clean.inputs[1], pool(leaky(clean.preacts[0]), 2))
    torch.testing.assert_close(clean.inputs[2], leaky(clean.preacts[1]).flatten(2))
    assert all(m.shape[0] == members for m in clean.means)

    noise = [None, torch.randn_like(clean.preacts[1]), None]
    noisy = net.trace(x, noise)
    torch.testing.assert_close(noisy.preacts[0], clean.preacts[0])
    torch.testing.assert_close(noisy.preacts[1], clean.preacts[1] + noise[1])
    assert not torch.allclose(noisy.output, clean.output)

    # a batch without the member axis goes to every member
    shared = net.trace(x[0])
    assert shared.output.shape == (members, 4, 5)
    torch.testing.assert_close(shared.output[0], clean.output[0])


def test_detached_trace_reaches_only_each_layers_own_weights(float64):
    net = dense_net(None)
    trace = net.trace(torch.randn(5, 7), detach=True)
    trace.preacts[1].sum().backward()
    assert net.layers[0].weight.grad is None
    assert net.layers[1].weight.grad is not None
    assert net.layers[1].weight.grad.abs().flatten(1).sum(1).min() > 0


# --- the papers' architectures -------------------------------------------------------
def _structure(net: Net) -> list[tuple]:
    out = []
    for block in net.blocks:
        layer = block.layer
        if isinstance(layer, DecorConv2d):
            out.append(("conv", layer.in_channels, layer.out_channels, layer.kernel_size,
                        layer.stride, layer.padding, block.pool))
        else:
            out.append(("dense", layer.in_features, layer.out_features))
    return out


ARCH_CASES = {
    "crgd-dense": ((3, 32, 32), 10, {}, [("dense", 3072, 1000), ("dense", 1000, 1000),
                                         ("dense", 1000, 1000), ("dense", 1000, 1000),
                                         ("dense", 1000, 10)]),
    "crgd-conv": ((3, 32, 32), 10, {}, [("conv", 3, 32, 3, 1, 0, 0), ("conv", 32, 32, 3, 1, 0, 2),
                                        ("conv", 32, 64, 3, 1, 0, 0), ("conv", 64, 64, 3, 1, 0, 2),
                                        ("dense", 64 * 5 * 5, 1000), ("dense", 1000, 10)]),
    "npd-fc": ((3, 32, 32), 10, {}, [("dense", 3072, 1024), ("dense", 1024, 1024),
                                     ("dense", 1024, 1024), ("dense", 1024, 10)]),
    "npd-conv": ((3, 32, 32), 10, {}, [("conv", 3, 16, 3, 2, 0, 0), ("conv", 16, 32, 3, 2, 0, 0),
                                       ("conv", 32, 64, 3, 1, 0, 0), ("dense", 64 * 5 * 5, 1024),
                                       ("dense", 1024, 10)]),
    "npd-tiny-conv": ((3, 56, 56), 200, {}, [("conv", 3, 32, 5, 2, 0, 0),
                                             ("conv", 32, 64, 3, 2, 0, 0),
                                             ("conv", 64, 128, 5, 1, 0, 0),
                                             ("dense", 128 * 8 * 8, 512), ("dense", 512, 512),
                                             ("dense", 512, 200)]),
    "copi-mnist": ((784,), 10, {}, [("dense", 784, 500), ("dense", 500, 500),
                                    ("dense", 500, 500), ("dense", 500, 10)]),
    "copi-cifar": ((3072,), 10, {}, [("dense", 3072, 1000), ("dense", 1000, 1000),
                                     ("dense", 1000, 10)]),
    "mlp": ((64,), 10, {"hidden": (32, 16)}, [("dense", 64, 32), ("dense", 32, 16),
                                              ("dense", 16, 10)]),
    "convnet": ((1, 28, 28), 10, {"channels": (4, 8), "width": 32},
                [("conv", 1, 4, 3, 1, 0, 2), ("conv", 4, 8, 3, 1, 0, 2),
                 ("dense", 8 * 5 * 5, 32), ("dense", 32, 10)]),
}


def test_every_architecture_has_a_case():
    assert set(ARCH_CASES) == set(network_names()) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(ARCH_CASES))
def test_build_network_structure_and_forward(name):
    input_shape, classes, options, expected = ARCH_CASES[name]
    net = build_network(name, input_shape, classes, **options)
    assert _structure(net) == expected
    assert [b.activation for b in net.blocks] == [True] * (len(expected) - 1) + [False]
    has_bias = not name.startswith("copi")
    assert all((layer.bias is not None) == has_bias for layer in net.layers)
    assert not net.decorrelated
    with torch.no_grad():
        out = net(torch.randn(2, *input_shape))
    assert out.shape == (1, 2, classes)  # one member
    assert torch.isfinite(out).all()


def test_crgd_conv_on_tiny_imagenet_crops():
    net = build_network("crgd-conv", (3, 56, 56), 200)
    # 56 → 54 → 52 → pool 26 → 24 → 22 → pool 11
    assert _structure(net)[-2:] == [("dense", 64 * 11 * 11, 1000), ("dense", 1000, 200)]
    with torch.no_grad():
        assert net(torch.randn(2, 3, 56, 56)).shape == (1, 2, 200)


def test_decorrelated_network_dimensions():
    net = build_network("npd-conv", (3, 32, 32), 10, DecorSettings(rule="copi", lr=1e-3))
    dims = [layer.decor.dim for layer in net.layers]
    assert dims == [3 * 9, 16 * 9, 32 * 9, 64 * 5 * 5, 1024]
    assert net.decorrelated
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (1, 2, 10)


def test_npd_fc_depth_zero_is_a_single_layer():
    net = build_network("npd-fc", (3, 32, 32), 10, depth=0)
    assert _structure(net) == [("dense", 3072, 10)]


def test_reference_padding_keeps_the_image_size():
    net = build_network("crgd-conv", (3, 32, 32), 10, padding=1)
    structure = _structure(net)
    assert all(s[5] == 1 for s in structure if s[0] == "conv")
    # 32 → 32 → 32 → pool 16 → 16 → 16 → pool 8
    assert structure[4] == ("dense", 64 * 8 * 8, 1000)
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (1, 2, 10)


@pytest.mark.parametrize("last_hidden_activation", [True, False])
def test_last_hidden_activation_option(float64, last_hidden_activation):
    net = build_network("crgd-dense", (12,), 3, width=8,
                        last_hidden_activation=last_hidden_activation)
    assert [b.activation for b in net.blocks] == [True, True, True, last_hidden_activation,
                                                  False]
    trace = net.trace(torch.randn(6, 12))
    expected = leaky(trace.preacts[3]) if last_hidden_activation else trace.preacts[3]
    torch.testing.assert_close(trace.inputs[4], expected, rtol=0, atol=0)
    # Earlier hidden layers keep their activation either way.
    torch.testing.assert_close(trace.inputs[3], leaky(trace.preacts[2]), rtol=0, atol=0)
    assert (trace.preacts[3] < 0).any()  # so that the two cases really differ


def test_build_network_errors():
    with pytest.raises(ValueError, match="unknown network"):
        build_network("resnet", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="too small"):
        build_network("crgd-conv", (3, 8, 8), 10)
    with pytest.raises(ValueError, match="image inputs"):
        build_network("convnet", (64,), 10)


@pytest.mark.parametrize("name", [n for n in sorted(ARCH_CASES) if len(ARCH_CASES[n][0]) == 3])
def test_a_network_the_shape_check_passes_runs_and_one_it_refuses_would_not(name: str) -> None:
    """`layer_shapes`, which specs are checked by before anything runs, agrees with the
    torch network on every small image size and padding: where it passes, a forward pass
    gives finite outputs; where it refuses, building or running the network fails."""
    from corrgd.learn.architectures import layer_shapes

    channels = ARCH_CASES[name][0][0]
    for padding in (0, 1):
        for size in range(1, 25):
            shape = (channels, size, size)
            try:
                layer_shapes(name, shape, 10, padding=padding)
            except ValueError:
                with pytest.raises((RuntimeError, ValueError, ZeroDivisionError)):
                    build_network(name, shape, 10, padding=padding)(torch.randn(1, *shape))
                continue
            with torch.no_grad():
                out = build_network(name, shape, 10, padding=padding)(torch.randn(1, *shape))
            assert out.shape == (1, 1, 10) and torch.isfinite(out).all(), (padding, size)
