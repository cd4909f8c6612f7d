"""Adam and SGD for networks of G members, each member with its own hyperparameters.

Every parameter has a leading member axis (see `corrgd.learn.nn`). These optimizers take
the same steps as `torch.optim.Adam` / `torch.optim.SGD` would for each member
alone, but with a learning rate (and betas, eps, momentum) per member, applied to
all members in one set of tensor operations:

    Adam:  m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
           p ← p − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    SGD:   b ← μ b + g (b = g at the first step),   p ← p − lr · b

State can be sliced per member for its checkpoint (`member_state`,
`load_member_state`), members can be dropped (`select_members`) and joined
(`extend_members`). Each member counts its own steps (Adam's t): members that joined a
group later, or resumed from a checkpoint of another epoch, train on beside the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.adam import adam

from corrgd.learn.checks import check_integer, check_number
from corrgd.learn.kernels import gpu_kernels

# the values each hyperparameter may take: (low, high, the ends allowed) for `check_number`
_RANGES = {"lr": (0, math.inf, "neither"), "eps": (0, math.inf, "neither"),
           "beta1": (0, 1, "left"), "beta2": (0, 1, "left"), "momentum": (0, 1, "left")}


def _per_member(values: float | Sequence[float], members: int, name: str) -> list[float]:
    given = [values] * members if isinstance(values, int | float | str) else list(values)
    if len(given) != members:
        raise ValueError(f"{name}: {len(given)} values for {members} members")
    for v in given:
        check_number(name, v, *_RANGES[name])
    return [float(v) for v in given]


class MemberOptimizer:
    """Shared plumbing: parameters, per-member hyperparameters, per-member state."""

    def __init__(self, params: Iterable[nn.Parameter], members: int, **hyper: Any) -> None:
        check_integer("members", members)
        self.params = list(params)
        if not self.params:
            raise ValueError("no parameters to optimise")
        if any(p.shape[0] != members for p in self.params):
            raise ValueError(f"every parameter needs a leading axis of {members} members")
        self.members = members
        self.hyper: dict[str, list[float]] = {k: _per_member(v, members, k)
                                              for k, v in hyper.items()}
        self.steps = [0] * members  # each member's steps taken: Adam's t
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]
        self._vectors: dict[tuple[Any, ...], Tensor] = {}

    def set(self, **hyper: float | Sequence[float]) -> None:
        """Change hyperparameters, e.g. `set(lr=[1e-3, 1e-4])` at an epoch boundary."""
        for k, v in hyper.items():
            if k not in self.hyper:
                raise KeyError(f"unknown hyperparameter {k!r}; known: {sorted(self.hyper)}")
            self.hyper[k] = _per_member(v, self.members, k)
        self._vectors.clear()

    def _vector(self, name: str, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Hyperparameter `name` per member, a (G,) tensor on `like`'s device (in `dtype`,
        default `like`'s): made once, kept until the hyperparameters change, so that a step
        copies nothing from the host."""
        dtype = dtype or like.dtype
        key = (name, dtype, like.device)
        vector = self._vectors.get(key)
        if vector is None:
            vector = torch.tensor(self.hyper[name], dtype=dtype, device=like.device)
            self._vectors[key] = vector
        return vector

    def _column(self, name: str, like: Tensor) -> Tensor:
        """Hyperparameter `name` per member, shaped to broadcast over a parameter `like`."""
        return _over_members(self._vector(name, like), like)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        raise NotImplementedError

    # --- members ----------------------------------------------------------------------
    def member_state(self, g: int) -> dict[str, Any]:
        return {"step": self.steps[g], "hyper": {k: v[g] for k, v in self.hyper.items()},
                "state": [{k: t[g].clone() for k, t in s.items()} for s in self.state]}

    @torch.no_grad()
    def load_member_state(self, g: int, saved: dict[str, Any]) -> None:
        """Set member g from a `member_state`."""
        self.steps[g] = saved["step"]
        self._vectors.clear()
        for k, v in saved["hyper"].items():
            self.hyper[k][g] = v
        for p, s, member in zip(self.params, self.state, saved["state"], strict=True):
            for k, value in member.items():
                if k not in s:
                    s[k] = torch.zeros_like(p)
                s[k][g].copy_(value)

    def select_members(self, index: Tensor) -> None:
        self._vectors.clear()
        keep = index.tolist()
        self.members = len(keep)
        self.hyper = {k: [v[i] for i in keep] for k, v in self.hyper.items()}
        self.steps = [self.steps[i] for i in keep]
        self.state = [{k: t[index] for k, t in s.items()} for s in self.state]

    def extend_members(self, other: MemberOptimizer) -> None:
        """Append the members of `other`, an optimizer of the same kind over a network of
        the same architecture, after this one's. State one side lacks (a side that has not
        stepped yet) is zeros there, which is what a first step starts from."""
        if type(other) is not type(self) or len(other.params) != len(self.params):
            raise ValueError("cannot join members of a different optimizer or network")
        self._vectors.clear()
        self.hyper = {k: v + other.hyper[k] for k, v in self.hyper.items()}
        self.steps = self.steps + other.steps
        for p, q, mine, theirs in zip(self.params, other.params, self.state, other.state,
                                      strict=True):
            for k in {*mine, *theirs}:
                mine[k] = torch.cat([mine.get(k, p.new_zeros(self.members, *p.shape[1:])),
                                     theirs.get(k, q.new_zeros(other.members, *q.shape[1:]))])
        self.members += other.members

    def _uniform_steps(self) -> int | None:
        """The step count all members share, None where they differ."""
        first = self.steps[0]
        return first if all(s == first for s in self.steps) else None


class MemberAdam(MemberOptimizer):
    """Adam (Kingma & Ba), as `torch.optim.Adam` without weight decay or amsgrad."""

    def __init__(self, params: Iterable[nn.Parameter], members: int,
                 lr: float | Sequence[float] = 1e-3,
                 betas: tuple[float, float] | Sequence[tuple[float, float]] = (0.9, 0.999),
                 eps: float | Sequence[float] = 1e-8) -> None:
        pairs = [tuple(betas)] * members if isinstance(betas[0], int | float) else \
            [tuple(b) for b in betas]  # type: ignore[arg-type]
        if any(len(b) != 2 for b in pairs):
            raise ValueError(f"betas must be pairs (beta1, beta2), got {betas!r}")
        super().__init__(params, members, lr=lr, beta1=[b[0] for b in pairs],
                         beta2=[b[1] for b in pairs], eps=eps)
        self._views_key: tuple[Any, ...] | None = None  # see _member_views
        self._views: tuple[list[list[Tensor]], ...] = ()
        self._step_counts = torch.zeros(0)

    @torch.no_grad()
    def step(self) -> None:
        self.steps = [t + 1 for t in self.steps]
        for p, s in zip(self.params, self.state, strict=True):
            if p.grad is not None and not s:
                s["exp_avg"] = torch.zeros_like(p)
                s["exp_avg_sq"] = torch.zeros_like(p)
        live = [(p, s) for p, s in zip(self.params, self.state, strict=True)
                if p.grad is not None]
        if not live:
            return
        if gpu_kernels(live[0][0].device):
            self._batched_step(live)
        else:
            self._fused_step(live)

    def _fused_step(self, live: list[tuple[nn.Parameter, dict[str, Tensor]]]) -> None:
        """CPU kernels, where the update is bound by memory traffic: torch's fused Adam kernel
        (one pass over each tensor, as `torch.optim.Adam(fused=True)`) on each member's
        slices, one call of `torch.optim.adam.adam` for all members that share their
        hyperparameters."""
        params, avgs, squares, steps = self._member_views(live)
        grads = [p.grad.unbind() for p, _ in live]
        # `adam` adds the step it takes
        if (t := self._uniform_steps()) is not None:
            self._step_counts.fill_(t - 1)
        else:
            self._step_counts.copy_(torch.tensor(self.steps, dtype=torch.float32)[:, None] - 1)
        for (lr, beta1, beta2, eps), members in self._alike().items():
            adam([t for g in members for t in params[g]],
                 [grad[g] for g in members for grad in grads],
                 [t for g in members for t in avgs[g]],
                 [t for g in members for t in squares[g]], [],
                 [t for g in members for t in steps[g]], fused=True, amsgrad=False, lr=lr,
                 beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps, maximize=False)

    def _alike(self) -> dict[tuple[float, ...], list[int]]:
        """Members by their (lr, beta1, beta2, eps)."""
        h = self.hyper
        sets: dict[tuple[float, ...], list[int]] = {}
        for g, key in enumerate(zip(h["lr"], h["beta1"], h["beta2"], h["eps"], strict=True)):
            sets.setdefault(key, []).append(g)
        return sets

    def _member_views(self, live: list[tuple[nn.Parameter, dict[str, Tensor]]]
                      ) -> tuple[list[list[Tensor]], ...]:
        """Per member, its slice of every live parameter, exp_avg and exp_avg_sq, and a step
        counter for each (views of `_step_counts`): made once and kept while the tensors
        behind them stay the same."""
        tensors = [t for p, s in live for t in (p.data, s["exp_avg"], s["exp_avg_sq"])]
        key = tuple((t.data_ptr(), t.shape) for t in tensors)
        if self._views_key != key:
            per_tensor = [t.unbind() for t in tensors]
            slices = tuple([list(member) for member in zip(*per_tensor[k::3], strict=True)]
                           for k in range(3))
            self._step_counts = torch.zeros(self.members, len(live), dtype=torch.float32,
                                            device=tensors[0].device)
            self._views = (*slices, [list(counts.unbind()) for counts in self._step_counts])
            self._views_key = key
        return self._views

    def _batched_step(self, live: list[tuple[nn.Parameter, dict[str, Tensor]]]) -> None:
        """GPU kernels, where every kernel launch counts: all members at once, with their
        hyperparameters broadcast over the member axis."""
        like = live[0][0]
        t: int | Tensor | None = self._uniform_steps()
        if t is None:  # members at different steps: a vector (copied from the host)
            t = torch.tensor(self.steps, dtype=torch.float64, device=like.device)
        # factors in double precision, as torch.optim.Adam computes them; on the device,
        # from vectors kept there: no host round trip
        lr, beta1, beta2 = (self._vector(k, like, torch.float64) for k in ("lr", "beta1", "beta2"))
        step_size = (lr / (1 - beta1**t)).to(like.dtype)
        bc2_sqrt = (1 - beta2**t).sqrt().to(like.dtype)
        one_minus_b1, one_minus_b2 = (1 - beta1).to(like.dtype), (1 - beta2).to(like.dtype)
        b2, eps = self._vector("beta2", like), self._vector("eps", like)
        for p, s in live:
            g, m, v = p.grad, s["exp_avg"], s["exp_avg_sq"]
            m.lerp_(g, _over_members(one_minus_b1, p))
            v.mul_(_over_members(b2, p)).add_(g * g * _over_members(one_minus_b2, p))
            denom = (v.sqrt() / _over_members(bc2_sqrt, p)).add_(_over_members(eps, p))
            p.sub_(m / denom * _over_members(step_size, p))


def _over_members(vector: Tensor, like: Tensor) -> Tensor:
    """A (G,) vector shaped to broadcast over a tensor `like` (G, ...)."""
    return vector.view(-1, *([1] * (like.dim() - 1)))


class MemberSGD(MemberOptimizer):
    """Stochastic gradient descent with (heavy-ball) momentum, as `torch.optim.SGD`."""

    def __init__(self, params: Iterable[nn.Parameter], members: int,
                 lr: float | Sequence[float] = 1e-3,
                 momentum: float | Sequence[float] = 0.0) -> None:
        super().__init__(params, members, lr=lr, momentum=momentum)

    @torch.no_grad()
    def step(self) -> None:
        self.steps = [t + 1 for t in self.steps]
        uses_momentum = any(self.hyper["momentum"])
        for p, s in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            d = p.grad
            if uses_momentum:
                if "momentum_buffer" not in s:
                    s["momentum_buffer"] = d.clone()
                else:
                    s["momentum_buffer"].mul_(self._column("momentum", p)).add_(d)
                d = s["momentum_buffer"]
            p.addcmul_(d, -self._column("lr", p))  # as torch's add_(d, alpha=-lr)
