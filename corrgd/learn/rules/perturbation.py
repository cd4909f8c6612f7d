"""Node perturbation and its INP / ANP formulations (NPD paper).

All three compare the per-sample loss of a clean pass with that of passes where
noise is added to the pre-activations, and turn the difference `δℒ` into a
stand-in `δ_l` for `∂ℓ/∂a_l`; the weight update is then `δ_l x̂_{l-1}ᵀ`, with
`x̂` the clean pass's decorrelated input, averaged over the batch:

    NP:   one noisy pass, noise ε_l ~ N(0, σ²I) at every layer:    δ_l = δℒ ε_l / σ²
    INP:  one noisy pass per layer, noise v_l at layer l only:     δ_l = N_l δℒ v_l / ‖v_l‖²
    ANP:  one noisy pass, noise at every layer; δa_l = ã_l − a_l:  δ_l = N δℒ δa_l / ‖δa‖²

(N_l: units in layer l; N = Σ N_l; ‖δa‖² over all layers.) `samples` noisy
draws are averaged per step. With `noisy_baseline` there is no clean pass: a
second noisy pass stands in for it (NPD §3.4). Noisy passes demean every layer
by the clean pass's batch mean, so the noise added to one sample changes no
other sample's activity through the mean, and δℒ_n measures sample n's noise
alone. (The CRGD reference code demeans the clean and noisy samples together,
with one mean over both.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from corrgd.learn import streams
from corrgd.learn.checks import check_integer, check_number
from corrgd.learn.losses import LossFn
from corrgd.learn.nn.network import Net, Trace
from corrgd.learn.rules.base import LearningRule, Step, member_targets


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """Per-member, per-sample values (G, n) shaped (G, n, 1, ...) to scale a batch like
    `like`."""
    return values.view(*values.shape, *([1] * (like.dim() - values.dim())))


def _sq_norms(t: Tensor) -> Tensor:
    """‖t_n‖² of every sample: (G, n)."""
    return t.flatten(2).pow(2).sum(2)


class NodePerturbation(LearningRule):
    """Shared machinery; subclasses define `estimate` for one noise draw.

    sigma2: the noise variance, one for all members or one per member.
    """

    name = "np"
    supports_noisy_baseline = True

    def __init__(self, sigma2: float | Sequence[float] = 1e-6, samples: int = 1,
                 noisy_baseline: bool = False, seed: int | Sequence[int] = 0) -> None:
        super().__init__(seed)
        given = [sigma2] * len(self.seeds) if isinstance(sigma2, int | float | str) \
            else list(sigma2)
        if len(given) != len(self.seeds):
            raise ValueError(f"{len(given)} noise variances for {len(self.seeds)} members")
        for v in given:
            check_number("noise variance sigma2", v, 0, closed="neither")
        variances = [float(v) for v in given]
        check_integer("noise samples", samples)
        if noisy_baseline and not self.supports_noisy_baseline:
            raise ValueError(f"{self.name}: the noisy baseline needs noise at every layer")
        self.variances, self.samples, self.noisy_baseline = variances, samples, noisy_baseline
        self.noise_generators: list[torch.Generator] | None = None
        self._variance_vectors: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    @property
    def sigma2(self) -> float:
        return self.variances[0]

    def reseed(self, *counters: int, stream: str = "noise",
               device: torch.device | str = "cpu") -> None:
        """Draw each member's noise from its run's `stream` at `counters` (the runner: the
        epoch)."""
        self.noise_generators = self.generators(stream, *counters, device=device)

    def reseed_members(self, counters: Sequence[int], stream: str = "noise",
                       device: torch.device | str = "cpu") -> None:
        """As `reseed`, with one counter per member (the runner: each member's own epoch,
        where members at different epochs train together)."""
        if len(counters) != len(self.seeds):
            raise ValueError(f"{len(counters)} counters for {len(self.seeds)} members")
        self.noise_generators = [streams.generator(s, stream, c, device=device)
                                 for s, c in zip(self.seeds, counters, strict=True)]

    def _variances(self, like: Tensor) -> Tensor:
        """σ² per member, shaped to scale a batch like `like` (made once per device: a step
        copies nothing from the host)."""
        key = (like.dtype, like.device)
        if key not in self._variance_vectors:
            self._variance_vectors[key] = torch.tensor(self.variances, dtype=like.dtype,
                                                       device=like.device)
        return self._variance_vectors[key].view(-1, *([1] * (like.dim() - 1)))

    def noise(self, like: Tensor) -> Tensor:
        """N(0, σ²) noise shaped like `like` (G, n, ...), member g's from its own stream."""
        gens = self.noise_generators
        if gens is None or gens[0].device != like.device:
            self.reseed(device=like.device)
            gens = self.noise_generators
        assert gens is not None
        draws = [torch.randn(like.shape[1:], generator=g, device=like.device, dtype=like.dtype)
                 for g in gens]
        return torch.stack(draws) * self._variances(like).sqrt()

    def gradients(self, net: Net, x: Tensor, y: Tensor, loss: LossFn) -> Step:
        baseline_noise = [self.noise(a) for a in self._shapes(net, x)] if self.noisy_baseline \
            else None
        base = net.trace(x, baseline_noise, detach=True)  # graph only from a_l to layer l
        y = member_targets(y, base.output)
        with torch.no_grad():
            base_loss = loss(base.output, y)
            deltas = [torch.zeros_like(a) for a in base.preacts]
            for _ in range(self.samples):
                for d, e in zip(deltas, self.estimate(net, x, y, loss, base, base_loss),
                                strict=True):
                    d.add_(e, alpha=1 / self.samples)
        n = base_loss.shape[1]
        torch.autograd.backward(base.preacts, [d / n for d in deltas])
        return Step(base_loss.mean(1), base)

    def _shapes(self, net: Net, x: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return net.trace(x).preacts

    def estimate(self, net: Net, x: Tensor, y: Tensor, loss: LossFn, base: Trace,
                 base_loss: Tensor) -> list[Tensor]:
        """One draw of every layer's δ_l, per member and sample."""
        raise NotImplementedError

    def select_members(self, index: Tensor) -> None:
        keep = index.tolist()
        super().select_members(index)
        self.variances = [self.variances[i] for i in keep]
        self._variance_vectors.clear()
        if self.noise_generators is not None:
            self.noise_generators = [self.noise_generators[i] for i in keep]

    def extend_members(self, other: LearningRule) -> None:
        super().extend_members(other)
        assert isinstance(other, NodePerturbation)
        self.variances = self.variances + other.variances
        self._variance_vectors.clear()
        mine, theirs = self.noise_generators, other.noise_generators
        self.noise_generators = None if mine is None or theirs is None else mine + theirs


class NP(NodePerturbation):
    name = "np"

    def estimate(self, net: Net, x: Tensor, y: Tensor, loss: LossFn, base: Trace,
                 base_loss: Tensor) -> list[Tensor]:
        eps = [self.noise(a) for a in base.preacts]
        dL = loss(net.trace(x, eps, means=base.means).output, y) - base_loss
        return [_expand(dL, e) * e / self._variances(e) for e in eps]


class INP(NodePerturbation):
    name = "inp"
    supports_noisy_baseline = False

    def estimate(self, net: Net, x: Tensor, y: Tensor, loss: LossFn, base: Trace,
                 base_loss: Tensor) -> list[Tensor]:
        deltas = []
        for layer, a in enumerate(base.preacts):
            v = self.noise(a)
            noise: list[Tensor | None] = [None] * len(base.preacts)
            noise[layer] = v
            dL = loss(net.trace(x, noise, means=base.means).output, y) - base_loss
            deltas.append(a[0, 0].numel() * _expand(dL / _sq_norms(v), v) * v)
        return deltas


class ANP(NodePerturbation):
    name = "anp"

    def estimate(self, net: Net, x: Tensor, y: Tensor, loss: LossFn, base: Trace,
                 base_loss: Tensor) -> list[Tensor]:
        noisy = net.trace(x, [self.noise(a) for a in base.preacts], means=base.means)
        dL = loss(noisy.output, y) - base_loss
        da = [an - a for an, a in zip(noisy.preacts, base.preacts, strict=True)]
        units = sum(a[0, 0].numel() for a in da)
        scale = units * dL / sum(_sq_norms(d) for d in da)
        return [_expand(scale, d) * d for d in da]
