"""The numbers behind the figures of `corrgd.experiments.computed`, without any plotting.

- `regression_paths`: gradient descent on a linear regression with correlated inputs,
  with and without decorrelated inputs (CRGD Fig. 2);
- `decorrelation_dynamics`: the CRGD rule against an anti-Hebbian rule without gain,
  from decorrelating matrices of different scales (CRGD Fig. 3);
- `alignment_angles`: angles of NP / ANP / INP updates to BP's against the number of
  noise samples (NPD Fig. 2);
- `noise_variance_angles`: the same angles against the noise variance σ², in float32 and
  float64 (NPD Fig. 7);
- `layer_statistics`, `receptive_fields`, `replaced_layer_accuracy`: linear maps
  inferred from decorrelated activities of a trained network (COPI Fig. 3).

Networks hold G members (`corrgd.learn.nn`); the functions that look at one network's
activities or updates take the `member` to look at (a network of one member: 0).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from corrgd.learn.diagnostics import angle, bp_gradients, layer_updates
from corrgd.learn.losses import LossFn
from corrgd.learn.nn import Decorrelation, DecorSettings, Net
from corrgd.learn.rules import make_rule

# -- CRGD Fig. 2: gradient descent on correlated inputs --------------------------------


def equicorrelated(dim: int, rho: float) -> np.ndarray:
    """Covariance with unit variances and correlation `rho` between every pair."""
    return (1 - rho) * np.eye(dim) + rho * np.ones((dim, dim))


def gd_path(hessian: np.ndarray, optimum: np.ndarray, start: np.ndarray, lr: float,
            steps: int) -> np.ndarray:
    """Gradient descent on ½ (p − p*)ᵀ H (p − p*): the `steps + 1` iterates, one per row."""
    path = [np.asarray(start, dtype=float)]
    for _ in range(steps):
        p = path[-1]
        path.append(p - lr * hessian @ (p - optimum))
    return np.stack(path)


def quadratic_loss(hessian: np.ndarray, optimum: np.ndarray, points: np.ndarray) -> np.ndarray:
    """½ (p − p*)ᵀ H (p − p*) for every row p of `points` (any leading shape)."""
    diff = points - optimum
    return 0.5 * np.einsum("...i,ij,...j->...", diff, hessian, diff)


def learn_crgd_decorrelator(cov: np.ndarray, *, lr: float = 1e-2, steps: int = 2000,
                            batch: int = 256, seed: int = 0) -> np.ndarray:
    """The CRGD rule (`corrgd.learn.nn.Decorrelation`, rule "crgd") trained on samples of
    N(0, cov), started from the identity; returns the learned matrix M."""
    dim = cov.shape[0]
    generator = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))
    decor = Decorrelation(dim, DecorSettings(rule="crgd", lr=lr, sample_frac=1.0)).double()
    for _ in range(steps):
        x = torch.randn(batch, dim, generator=generator, dtype=torch.float64) @ chol.T
        decor.update((x - x.mean(0))[None], x[None])  # one member
    return decor.matrix[0].numpy().copy()


def whitening(cov: np.ndarray) -> np.ndarray:
    """Exact (ZCA) whitening scaled to keep the total variance: M Σ Mᵀ = (tr Σ / d) I."""
    values, vectors = np.linalg.eigh(cov)
    scale = math.sqrt(np.trace(cov) / cov.shape[0])
    return scale * vectors @ np.diag(values**-0.5) @ vectors.T


@dataclass
class RegressionPaths:
    """GD paths of y = wᵀx (inputs x ~ N(0, Σ)) and of y = vᵀ(M x) for decorrelating M.

    Parameters of the decorrelated model map to the plain model's by w = Mᵀ v, so every
    path is also given in w-coordinates. Losses are population losses ½⟨(ŷ − y)²⟩.
    """

    cov: np.ndarray
    optimum: np.ndarray  # w*
    lr: float
    paths_w: dict[str, np.ndarray]  # method -> (steps + 1, 2) iterates in w-coordinates
    paths_own: dict[str, np.ndarray]  # in each model's own parameters (w, or v)
    hessians: dict[str, np.ndarray]  # each model's loss Hessian in its own parameters
    optima: dict[str, np.ndarray]  # each model's optimum in its own parameters
    matrices: dict[str, np.ndarray]  # the decorrelating matrices M
    losses: dict[str, np.ndarray] = field(default_factory=dict)

    def steps_to(self, method: str, loss: float) -> int:
        """First step whose loss is below `loss` (len(path) if never)."""
        below = np.nonzero(self.losses[method] < loss)[0]
        return int(below[0]) if below.size else len(self.losses[method])


def regression_paths(*, rho: float = 0.9, optimum: Sequence[float] = (1.0, 0.5),
                     start: Sequence[float] = (-1.0, 1.1), lr: float | None = None,
                     steps: int = 100, decor_lr: float = 1e-2, decor_steps: int = 2000,
                     seed: int = 0) -> RegressionPaths:
    """GD on a 2-D linear regression with correlated inputs (correlation `rho`), and on the
    same regression with inputs decorrelated by the CRGD rule and by exact whitening.

    All three start from the same function (w0 = `start`) and use the same step size,
    by default half the largest stable one of the correlated problem (1 / λmax(Σ)).
    """
    cov = equicorrelated(2, rho)
    w_star, w0 = np.asarray(optimum, dtype=float), np.asarray(start, dtype=float)
    lr = 1.0 / np.linalg.eigvalsh(cov).max() if lr is None else lr
    matrices = {"crgd": learn_crgd_decorrelator(cov, lr=decor_lr, steps=decor_steps,
                                                seed=seed),
                "whitened": whitening(cov)}
    result = RegressionPaths(cov, w_star, lr, {}, {}, {}, {}, matrices)
    result.hessians["correlated"], result.optima["correlated"] = cov, w_star
    result.paths_own["correlated"] = result.paths_w["correlated"] = gd_path(
        cov, w_star, w0, lr, steps)
    for method, m in matrices.items():
        hessian = m @ cov @ m.T  # the decorrelated inputs' second moment
        v_star, v0 = np.linalg.solve(m.T, w_star), np.linalg.solve(m.T, w0)
        path_v = gd_path(hessian, v_star, v0, lr, steps)
        result.hessians[method], result.optima[method] = hessian, v_star
        result.paths_own[method], result.paths_w[method] = path_v, path_v @ m
    for method, path in result.paths_own.items():
        result.losses[method] = quadratic_loss(result.hessians[method], result.optima[method],
                                               path)
    return result


# -- CRGD Fig. 3: decorrelation rules from matrices of different scales ---------------


def random_correlation(dim: int, *, condition: float = 20.0, seed: int = 0) -> np.ndarray:
    """A correlation matrix (unit diagonal) with eigenvalues spread over `condition`."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    cov = q @ np.diag(np.geomspace(1.0, 1.0 / condition, dim)) @ q.T
    std = np.sqrt(np.diag(cov))
    return cov / np.outer(std, std)


def mean_abs_offdiag_correlation(second_moment: Tensor | np.ndarray) -> float:
    """Mean |correlation coefficient| over the off-diagonal of a (zero-mean) second moment."""
    p = torch.as_tensor(second_moment, dtype=torch.float64)
    std = p.diagonal().clamp_min(1e-300).sqrt()
    r = p / torch.outer(std, std)
    d = p.shape[0]
    return float((r.abs().sum() - r.diagonal().abs().sum()) / (d * (d - 1)))


@dataclass
class DecorrelationDynamics:
    """Per rule and initial scale s (M0 = s I): residual correlation and activity norm of
    x̂ = M x after each recorded step, measured on the population covariance."""

    steps: np.ndarray  # recorded step numbers (0 = before any update)
    correlation: dict[tuple[str, float], np.ndarray]  # mean |off-diagonal corr| of x̂
    norm: dict[tuple[str, float], np.ndarray]  # RMS ‖x̂‖ / RMS ‖x‖
    input_correlation: float


RULE_NAMES = {"crgd": "CRGD rule (with gain)",
              "antihebbian": "anti-Hebbian, no gain (Földiák-style)"}


def decorrelation_dynamics(*, dim: int = 16, scales: Sequence[float] = (0.3, 1.0, 3.0),
                           lr: float = 1e-2, steps: int = 2000, batch: int = 256,
                           condition: float = 20.0, seed: int = 0) -> DecorrelationDynamics:
    """Train decorrelating matrices M0 = s I on minibatches of correlated Gaussian inputs
    with two rules, from the same batches:

        CRGD:         M ← g (M − η ⟨x̂x̂ᵀ⟩ M),  g = ⟨‖x‖ / ‖x̂‖⟩   (corrgd.learn.nn.Decorrelation)
        anti-Hebbian: M ← M − η ⟨x̂x̂ᵀ⟩ M                       (the same without the gain)

    The anti-Hebbian update is the matrix form of Földiák's lateral anti-Hebbian learning
    (ΔW ∝ −y yᵀ); its step on M scales with s², and its diagonal part shrinks activity.
    """
    cov = torch.as_tensor(random_correlation(dim, condition=condition, seed=seed),
                          dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    recorded = np.unique(np.concatenate([[0], np.geomspace(1, steps, 60).astype(int)]))
    correlation: dict[tuple[str, float], np.ndarray] = {}
    norm: dict[tuple[str, float], np.ndarray] = {}
    for scale in scales:
        crgd = Decorrelation(dim, DecorSettings(rule="crgd", lr=lr, sample_frac=1.0,
                                                demean=False)).double()
        crgd.matrix.mul_(scale)
        plain = scale * torch.eye(dim, dtype=torch.float64)
        generator = torch.Generator().manual_seed(seed + 1)  # the same batches for every s
        stats: dict[str, list[tuple[float, float]]] = {"crgd": [], "antihebbian": []}
        for step in range(steps + 1):
            if step in recorded:
                for name, m in (("crgd", crgd.matrix[0]), ("antihebbian", plain)):
                    moment = m @ cov @ m.T
                    stats[name].append((mean_abs_offdiag_correlation(moment),
                                        math.sqrt(float(moment.trace() / cov.trace()))))
            if step == steps:
                break
            x = torch.randn(batch, dim, generator=generator, dtype=torch.float64) @ chol.T
            crgd.update(x[None])  # one member
            xh = x @ plain.T
            plain = plain - lr * (xh.T @ xh / batch) @ plain
        for name, rows in stats.items():
            values = np.array(rows)
            correlation[(name, scale)], norm[(name, scale)] = values[:, 0], values[:, 1]
    return DecorrelationDynamics(recorded, correlation, norm, mean_abs_offdiag_correlation(cov))


# -- NPD Fig. 2: alignment of node-perturbation updates with BP -----------------------

PERTURBATION_RULES = ("np", "anp", "inp")


def forward_passes(rule: str, samples: int, layers: int) -> int:
    """Forward passes per update: one clean pass plus one noisy pass per noise sample
    (NP, ANP), or one per layer and noise sample (INP)."""
    return 1 + samples * (layers if rule == "inp" else 1)


def averaged_updates(net: Net, rule: str, x: Tensor, y: Tensor, loss: LossFn, *,
                     samples: Sequence[int], sigma2: float = 1e-6,
                     seed: int = 0) -> dict[int, list[Tensor]]:
    """Per K in `samples`: each layer's update of `rule` averaged over K noise samples, as
    rows (members, weights + biases) (`corrgd.learn.diagnostics.layer_updates`); every member
    draws its noise from run seed `seed`.

    The rules average their per-sample error estimates before the (linear) weight update,
    so the K-sample update is assembled from increments of k noise samples weighted by k;
    one rule draws them all from its noise stream, so they are the noise that one call
    with samples=K would draw.
    """
    perturbation = make_rule(rule, sigma2=sigma2, samples=1, seed=[seed] * net.members)
    perturbation.reseed(device=x.device)
    result: dict[int, list[Tensor]] = {}
    total: list[Tensor] = []
    done = 0
    for k in sorted({int(k) for k in samples}):
        perturbation.samples = k - done
        update = layer_updates(net, perturbation, x, y, loss)
        weighted = [u * (k - done) for u in update]
        total = [t + w for t, w in zip(total, weighted, strict=True)] if total else weighted
        done = k
        result[k] = [t / k for t in total]
    return result


def alignment_angles(net: Net, x: Tensor, y: Tensor, loss: LossFn, *,
                     samples: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
                     rules: Sequence[str] = PERTURBATION_RULES, sigma2: float = 1e-6,
                     seed: int = 0, member: int = 0) -> list[dict[str, float | int | str]]:
    """Angle (degrees) between each rule's update averaged over K noise samples and the BP
    gradient, per layer and over all layers together, for every K in `samples`, of one
    member of `net`."""
    true = [g[member] for g in bp_gradients(net, x, y, loss)]
    true_all = torch.cat(true)
    rows: list[dict[str, float | int | str]] = []
    for rule in rules:
        updates = averaged_updates(net, rule, x, y, loss, samples=samples, sigma2=sigma2,
                                   seed=seed)
        for k, update in updates.items():
            mean = [u[member] for u in update]
            base = {"rule": rule, "samples": k,
                    "forward_passes": forward_passes(rule, k, len(mean))}
            for layer, (u, g) in enumerate(zip(mean, true, strict=True), start=1):
                rows.append({**base, "layer": str(layer), "angle": angle(u, g)})
            rows.append({**base, "layer": "all", "angle": angle(torch.cat(mean), true_all)})
    return rows


def noise_variance_angles(net: Net, x: Tensor, y: Tensor, loss: LossFn, *,
                          sigma2s: Sequence[float], samples: int = 10,
                          rules: Sequence[str] = PERTURBATION_RULES,
                          dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
                          seed: int = 0, member: int = 0) -> list[dict[str, float | int | str]]:
    """Angle (degrees) between each rule's update, averaged over `samples` noise samples,
    and the BP gradient, per layer and over all layers together, for every noise variance
    in `sigma2s` and every floating-point type in `dtypes` (NPD Fig. 7), of one member of
    `net`.

    That member is copied once per σ² into a network of len(sigma2s) identical members
    (member g perturbed with variance sigma2s[g]), run in each dtype (weights, inputs and
    every pass). All members draw their noise from run seed `seed`, so every σ² sees the
    same standard-normal draws scaled by its own σ: differences between σ² are the effect
    of the scale alone, not of another noise realisation. (torch draws other numbers in
    float32 than in float64 from the same generator, so the two dtypes' noise differs.)
    Rows: dtype, rule, sigma2, samples, layer ("1".."L" or "all"), angle. `net` is left
    unchanged."""
    variances = [float(v) for v in sigma2s]
    replicas = copy.deepcopy(net)
    replicas.select_members(torch.full((len(variances),), member, dtype=torch.long,
                                       device=x.device))
    rows: list[dict[str, float | int | str]] = []
    for dtype in dtypes:
        model = copy.deepcopy(replicas).to(dtype)
        xs = x.to(dtype)
        ys = y.to(dtype) if y.is_floating_point() else y
        true = bp_gradients(model, xs, ys, loss)
        name = str(dtype).removeprefix("torch.")
        for rule in rules:
            perturbation = make_rule(rule, sigma2=variances, samples=samples,
                                     seed=[seed] * len(variances))
            perturbation.reseed(device=x.device)
            update = layer_updates(model, perturbation, xs, ys, loss)
            for g, sigma2 in enumerate(variances):
                base = {"dtype": name, "rule": rule, "sigma2": sigma2, "samples": samples}
                for layer, (u, t) in enumerate(zip(update, true, strict=True), start=1):
                    rows.append({**base, "layer": str(layer), "angle": angle(u[g], t[g])})
                rows.append({**base, "layer": "all",
                             "angle": angle(torch.cat([u[g] for u in update]),
                                            torch.cat([t[g] for t in true]))})
    return rows


# -- COPI Fig. 3: linear maps from decorrelated activities -----------------------------


def block_outputs(net: Net, x: Tensor, member: int = 0) -> tuple[list[Tensor], list[Tensor]]:
    """(decorrelated input x̂_{l−1} of every layer, output of every block) of one member of
    `net` on inputs x, without the member axis."""
    trace = net.trace(x)
    inputs = [layer.decorrelated_input(inp)[member] for layer, inp in
              zip(net.layers, trace.inputs, strict=True)]
    outputs = [block.finish(a)[member]
               for block, a in zip(net.blocks, trace.preacts, strict=True)]
    return inputs, outputs


def batches(x: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, len(x), size):
        yield x[i:i + size]


@dataclass
class LayerStatistics:
    """Sums over a data set, for linear maps Z Xᵀ D from decorrelated activities X.

    `input_cross[l]`:  Σ_n y_l xᵀ0  (output of layer l against decorrelated network input)
    `hidden_cross[k]`: Σ_n y_k xᵀ1  (output of layer k ≥ 2 against the decorrelated input of
                       layer 2), 1-based layer numbers
    `input_power`, `hidden_power`: Σ_n x̂² of the two decorrelated inputs (D⁻¹).
    """

    input_cross: dict[int, Tensor]
    hidden_cross: dict[int, Tensor]
    input_power: Tensor
    hidden_power: Tensor
    samples: int


@torch.no_grad()
def layer_statistics(net: Net, x: Tensor, *, batch_size: int = 5000,
                     member: int = 0) -> LayerStatistics:
    """One pass over `x` (rows: flattened inputs), in float64 sums, of one member of `net`."""
    net.eval()
    layers = len(net.layers)
    input_cross = {}
    hidden_cross = {}
    input_power = hidden_power = torch.zeros(0)
    for xb in batches(x, batch_size):
        inputs, outputs = block_outputs(net, xb, member)
        x0, x1 = inputs[0].double(), inputs[1].double()
        for l in range(1, layers + 1):
            part = outputs[l - 1].double().T @ x0
            input_cross[l] = input_cross[l] + part if l in input_cross else part
            if l >= 2:
                part = outputs[l - 1].double().T @ x1
                hidden_cross[l] = hidden_cross[l] + part if l in hidden_cross else part
        p0, p1 = x0.pow(2).sum(0), x1.pow(2).sum(0)
        input_power = p0 if input_power.numel() == 0 else input_power + p0
        hidden_power = p1 if hidden_power.numel() == 0 else hidden_power + p1
    return LayerStatistics(input_cross, hidden_cross, input_power, hidden_power, len(x))


def inferred_map(cross: Tensor, power: Tensor, ridge: float = 0.0) -> Tensor:
    """W = Z Xᵀ D with D = diag(1 / (Σ_n x² + λ)), λ = `ridge` × mean Σ_n x²; inputs that
    are always zero get weight 0. With ridge 0 this is COPI's exact map for decorrelated X."""
    keep = power > 1e-12 * power.max().clamp_min(1e-300)
    damped = (power + ridge * power.mean()).clamp_min(1e-300)
    return cross * torch.where(keep, 1.0 / damped, torch.zeros_like(power))


def receptive_fields(stats: LayerStatistics, ridge: float = 0.1) -> dict[int, Tensor]:
    """Per layer (1-based), each unit's linear feature in decorrelated-input space: rows of
    Y X̂0ᵀ D0 (COPI Fig. 3B). The small ridge keeps inputs that are almost never active
    (e.g. border pixels) from dominating through 1 / Σ x̂²."""
    return {l: inferred_map(c, stats.input_power, ridge) for l, c in stats.input_cross.items()}


@torch.no_grad()
def replaced_layer_accuracy(net: Net, stats: LayerStatistics, x: Tensor, y: Tensor,
                            replaced: int, *, batch_size: int = 5000, member: int = 0) -> float:
    """Accuracy of one member of `net` on (x, y) when its layers 2 .. 1 + `replaced` are
    replaced by the linear map Z Xᵀ D from layer 2's decorrelated input X to layer
    (1 + replaced)'s output Z, inferred from `stats` (that member's) without retraining
    (COPI Fig. 3C; the first layer is never replaced). `replaced` = 0 is the intact
    network."""
    net.eval()
    blocks = list(net.blocks)
    if not 0 <= replaced < len(blocks):
        raise ValueError(f"can replace 0 to {len(blocks) - 1} layers, not {replaced}")
    weight = None
    if replaced:
        weight = inferred_map(stats.hidden_cross[1 + replaced], stats.hidden_power)
    correct = 0
    for xb, yb in zip(batches(x, batch_size), batches(y, batch_size), strict=True):
        if weight is None:
            out = net(xb)[member]
        else:  # every member goes through the map; only `member`'s output is read
            first = blocks[0]
            h = first.finish(first.layer(first.prepare(net.per_member(xb))))
            h = (blocks[1].layer.decorrelated_input(blocks[1].prepare(h)).double()
                 @ weight.T).to(xb.dtype)
            for block in blocks[1 + replaced:]:
                h = block.finish(block.layer(block.prepare(h)))
            out = h[member]
        correct += int((out.argmax(1) == yb).sum())
    return correct / len(y)
