"""Parameter validation at the edge of `corrgd.learn`'s public classes: nonsense is refused at
construction with an error that names the parameter; valid edge values still construct."""

from __future__ import annotations

import math

import pytest
import torch

from corrgd.learn.nn import Block, DecorConv2d, DecorLinear, Decorrelation, DecorSettings, Net
from corrgd.learn.optim import MemberAdam, MemberSGD
from corrgd.learn.rules import ANP, BP, COPI, DFA, FA, INP, NP, make_rule

NAN, INF = math.nan, math.inf
ON = DecorSettings(lr=0.1)


def params(members: int = 2) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(members, 3))]


# (what is built, the error, a word its message must hold: the parameter)
BAD = {
    "decor lr nan": (lambda: DecorSettings(lr=NAN), ValueError, "lr"),
    "decor lr inf": (lambda: DecorSettings(lr=INF), ValueError, "lr"),
    "decor lr negative": (lambda: DecorSettings(lr=-1e-3), ValueError, "lr"),
    "decor lr string": (lambda: DecorSettings(lr="0.1"), TypeError, "lr"),
    "decor momentum nan": (lambda: DecorSettings(momentum=NAN), ValueError, "momentum"),
    "decor momentum negative": (lambda: DecorSettings(momentum=-5), ValueError, "momentum"),
    "decor momentum 2": (lambda: DecorSettings(momentum=2), ValueError, "momentum"),
    "decor sample_frac nan": (lambda: DecorSettings(sample_frac=NAN), ValueError, "sample_frac"),
    "decor sample_frac 0": (lambda: DecorSettings(sample_frac=0.0), ValueError, "sample_frac"),
    "np sigma2 nan": (lambda: NP(sigma2=NAN), ValueError, "sigma2"),
    "np sigma2 inf": (lambda: NP(sigma2=INF), ValueError, "sigma2"),
    "np sigma2 per member": (lambda: NP(sigma2=[1e-3, NAN], seed=[0, 1]), ValueError,
                             "sigma2"),
    "inp sigma2 0": (lambda: INP(sigma2=0.0), ValueError, "sigma2"),
    "anp sigma2 bool": (lambda: ANP(sigma2=True), TypeError, "sigma2"),
    "np samples nan": (lambda: NP(samples=NAN), TypeError, "samples"),
    "np samples 0": (lambda: make_rule("np", samples=0), ValueError, "samples"),
    "np samples float": (lambda: NP(samples=2.0), TypeError, "samples"),
    "adam lr nan": (lambda: MemberAdam(params(), 2, lr=NAN), ValueError, "lr"),
    "adam lr negative": (lambda: MemberAdam(params(), 2, lr=-1), ValueError, "lr"),
    "adam lr 0": (lambda: MemberAdam(params(), 2, lr=0.0), ValueError, "lr"),
    "adam lr per member": (lambda: MemberAdam(params(), 2, lr=[1e-3, INF]), ValueError, "lr"),
    "adam lr tensor": (lambda: MemberAdam(params(), 2, lr=torch.tensor([1e-3, NAN])),
                       ValueError, "lr"),
    "adam lr bool": (lambda: MemberAdam(params(), 2, lr=True), TypeError, "lr"),
    "adam betas above 1": (lambda: MemberAdam(params(), 2, betas=(2, 3)), ValueError, "beta1"),
    "adam beta2 1": (lambda: MemberAdam(params(), 2, betas=(0.9, 1.0)), ValueError, "beta2"),
    "adam betas triple": (lambda: MemberAdam(params(), 2, betas=(0.9, 0.99, 0.5)), ValueError,
                          "betas"),
    "adam eps 0": (lambda: MemberAdam(params(), 2, eps=0), ValueError, "eps"),
    "adam members 0": (lambda: MemberAdam(params(), 0), ValueError, "members"),
    "adam members bool": (lambda: MemberAdam(params(1), True), TypeError, "members"),
    "sgd momentum 5": (lambda: MemberSGD(params(), 2, momentum=5), ValueError, "momentum"),
    "sgd momentum 1": (lambda: MemberSGD(params(), 2, momentum=1.0), ValueError, "momentum"),
    "sgd lr inf": (lambda: MemberSGD(params(), 2, lr=INF), ValueError, "lr"),
    "sgd set lr nan": (lambda: MemberSGD(params(), 2).set(lr=NAN), ValueError, "lr"),
    "conv stride 0": (lambda: DecorConv2d(3, 4, 3, stride=0), ValueError, "stride"),
    "conv padding -1": (lambda: DecorConv2d(3, 4, 3, padding=-1), ValueError, "padding"),
    "conv kernel 0": (lambda: DecorConv2d(3, 4, 0), ValueError, "kernel_size"),
    "conv in_channels float": (lambda: DecorConv2d(3.0, 4, 3), TypeError, "in_channels"),
    "conv decor string": (lambda: DecorConv2d(3, 4, 3, decor="x"), TypeError, "decor"),
    "linear in 0": (lambda: DecorLinear(0, 3), ValueError, "in_features"),
    "linear in -1": (lambda: DecorLinear(-1, 3), ValueError, "in_features"),
    "linear out bool": (lambda: DecorLinear(4, True), TypeError, "out_features"),
    "linear members 0": (lambda: DecorLinear(4, 3, members=0), ValueError, "members"),
    "linear decor string": (lambda: DecorLinear(4, 3, decor="x"), TypeError, "decor"),
    "linear generators": (lambda: DecorLinear(4, 3, members=2, generators=[None]), ValueError,
                          "generators"),
    "decorrelation members 0": (lambda: Decorrelation(4, ON, members=0), ValueError,
                                "members"),
    "decorrelation dim 0": (lambda: Decorrelation(0, ON), ValueError, "dim"),
    "decorrelation settings": (lambda: Decorrelation(4, 0.1), TypeError, "settings"),
    "bp seed []": (lambda: BP(seed=[]), ValueError, "seed"),
    "fa seed negative": (lambda: FA(seed=-1), ValueError, "seed"),
    "dfa seed float": (lambda: DFA(seed=[0, 1.5]), TypeError, "seed"),
    "copi seed None": (lambda: COPI(seed=None), TypeError, "seed"),
    "block pool -1": (lambda: Block(DecorLinear(4, 3), pool=-1), ValueError, "pool"),
    "block layer": (lambda: Block(torch.nn.Linear(4, 3)), TypeError, "layer"),
    "net no blocks": (lambda: Net([], (4,)), ValueError, "block"),
    "net input_shape 0": (lambda: Net([Block(DecorLinear(4, 3))], (0,)), ValueError,
                          "input_shape"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_nonsense_is_refused_naming_the_parameter(case):
    build, error, name = BAD[case]
    with pytest.raises(error, match=name):
        build()


def test_valid_edge_values_still_construct():
    assert not DecorSettings(lr=0).enabled  # lr 0: no decorrelation layer, not an error
    DecorSettings(lr=1e-3, momentum=0.0, sample_frac=1.0)
    DecorSettings(lr=1e-3, momentum=1.0, sample_frac=1e-6)
    DecorSettings(lr=torch.tensor(1e-3))  # a one-element tensor is its value
    MemberAdam(params(), 2, lr=[1e-3, 1e-2], betas=(0.0, 0.999), eps=1e-12)
    MemberAdam(params(), 2, lr=torch.tensor([1e-3, 1e-2]), betas=[(0.9, 0.99), (0, 0)])
    MemberSGD(params(), 2, lr=1, momentum=0)
    MemberSGD(params(), 2, lr=0.1, momentum=[0.0, 0.9]).set(lr=[1e-2, 1e-3])
    layer = DecorConv2d(1, 1, 1, stride=1, padding=0, decor=ON)
    assert layer.padding == 0
    DecorLinear(1, 1, None, members=3, generators=[None] * 3)
    Decorrelation(1, ON, mean_dim=1, members=1)
    NP(sigma2=[1e-12, 1.0], samples=1, seed=[0, 2**62])
    make_rule("inp", sigma2=1, seed=torch.tensor([3, 4]))
    Net([Block(DecorLinear(4, 3), pool=0)], torch.Size([4]))


def test_wrong_input_shape_names_the_expected_one():
    layer = DecorLinear(4, 3, ON, members=2)
    with pytest.raises(ValueError, match=r"in_features=4\), got \(2, 5, 3\)"):
        layer(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="members=2"):
        layer(torch.zeros(1, 5, 4))
    net = Net([Block(DecorLinear(4, 3, members=2))], (4,))
    with pytest.raises(ValueError, match="in_features=4"):
        net(torch.zeros(5, 6))
    assert net(torch.zeros(5, 4)).shape == (2, 5, 3)


@pytest.mark.parametrize("shape,needle", [
    ((2, 2, 1, 5, 5), "members=1"),  # a member the layer lacks was dropped without a word
    ((2, 1, 5, 5), r"got \(2, 1, 5, 5\)"),  # no member axis
    ((1, 2, 3, 5, 5), "in_channels=1"),
    ((1, 2, 1, 2, 5), "H and W at least 3"),  # smaller than the kernel
])
def test_a_conv_layer_names_the_input_shape_it_expects(shape, needle):
    for decor in (None, ON):
        with pytest.raises(ValueError, match=needle):
            DecorConv2d(1, 2, 3, decor=decor)(torch.randn(shape))
    assert DecorConv2d(1, 2, 3, padding=1)(torch.randn(1, 2, 1, 1, 1)).shape == (1, 2, 2, 1, 1)


def test_a_decorrelation_update_on_an_empty_batch_is_refused_and_changes_nothing():
    """It divided by the rows: the matrix turned NaN for good, without an error."""
    for layer, empty in ((DecorLinear(4, 3, ON), torch.zeros(1, 0, 4)),
                         (DecorConv2d(1, 2, 3, decor=ON), torch.zeros(1, 0, 1, 5, 5))):
        before = layer.decor.matrix.clone()
        with pytest.raises(ValueError, match="at least one sample"):
            layer.update_decorrelation(empty)
        assert torch.equal(layer.decor.matrix, before)


@pytest.mark.parametrize("make,needle", [
    (lambda: DecorLinear(4, 3, bias="no"), "bias must be True or False"),  # 'no' gave a bias
    (lambda: DecorConv2d(1, 2, 3, bias=1), "bias must be True or False"),
    (lambda: Block(DecorLinear(4, 3), activation="off"), "activation must be True or False"),
    (lambda: DecorSettings(lr=0.1, demean="no"), "demean must be True, False or None"),
    (lambda: DecorSettings(lr=0.1, channel_mean=1), "channel_mean must be True or False"),
])
def test_a_flag_takes_true_or_false_only(make, needle):
    with pytest.raises(TypeError, match=needle):
        make()


def test_a_pool_after_a_dense_layer_is_refused_when_built():
    """It failed at the first forward pass, deep in max_pool2d."""
    with pytest.raises(ValueError, match="a pool follows a conv layer"):
        Block(DecorLinear(4, 3), pool=2)


@pytest.mark.parametrize("x,needle", [
    (torch.zeros(1, 5, 4, dtype=torch.float64), "dtype torch.float32, got torch.float64"),
    (torch.zeros(1, 5, 4, dtype=torch.int64), "got torch.int64"),  # mean(): could not infer
    ([[0.0] * 4] * 5, "got list"),  # 'list' object has no attribute 'dim'
])
def test_a_layer_names_the_dtype_it_expects(x, needle):
    with pytest.raises(TypeError, match=needle):
        DecorLinear(4, 3, ON)(x)
