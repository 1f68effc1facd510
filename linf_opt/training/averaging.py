"""Weight averaging: an exponential moving average of the trained parameters (``training.ema_decay``).

After optimizer step t (and after the projection), the averaged parameters move towards the iterate,

    θ̄_t = θ̄_{t−1} + (1 − β_t)(θ_t − θ̄_{t−1}),    β_t = min(β, (1 + t)/(10 + t)),    θ̄_0 = θ_0,

with β = ``training.ema_decay``. The warm-up β_t lets early averages follow the iterate (without it,
β = 0.999 would keep 55% of the random initial weights after 600 steps); later β_t = β, an average over
about 1/(1 − β) steps. The averaged network, not the last iterate, is then what the run evaluates,
reports and returns, since averaging the iterates of a stochastic gradient method lowers the variance of
the weights (Polyak and Juditsky, 1992).

**Feasibility is kept.** θ̄_t is a convex combination of θ_0, …, θ_t. Under ``enforce = "project"``
every iterate's A lies in the feasible set S (μ∞(A) ≤ γ, the norm ball, the monotone set), and each of
these sets is convex, so the averaged A lies in S too: the average of well-posed networks is well
posed. The trainer still checks it after every step (the invariant is checked, not assumed). Under
``enforce = "reparam"`` the averaged free parameters map into S through the parametrization. Learned
weights η are refused: their set P(γ, η) moves every epoch, and an average of matrices from different
polytopes need not lie in the current one.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["WeightAverage", "ema_factor"]


def ema_factor(decay: float, t: int) -> float:
    """β_t = min(β, (1 + t)/(10 + t)), the weight of the old average at update t ≥ 1."""
    return min(decay, (1.0 + t) / (10.0 + t))


class WeightAverage:
    """The moving average of ``net``'s parameters, held in a frozen copy of ``net`` (:attr:`module`).

    The average accumulates in float64 (:attr:`accumulator`) and :attr:`module` holds it rounded to the
    network's dtype. In float32 the lerp's round-off would otherwise accumulate over the ~1/(1 − β)
    steps the average remembers: on MNIST FC, whose rows sit on the boundary of μ∞ ≤ γ, a float32
    average left the set by 1.6e-5 after 11,000 steps, beyond the check's round-off slack. Rounding
    the float64 average once moves each entry by at most one half-ulp. :meth:`update` costs three fused
    passes over all parameters (cast in, ``lerp``, cast back: about 0.25 ms for the 89,000 parameters of
    the MNIST FC network, with its check 6–8% of that network's 4 ms training step and 0.7% of a
    conv step; ``bench/train_step.py``), with no allocation and no host synchronisation.
    Buffers (fixed weights η, masks) are copied once, at construction.
    """

    def __init__(self, net: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay: expected 0 < β < 1, got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(net).requires_grad_(False)
        self._source = list(net.parameters())
        self._target = list(self.module.parameters())
        self._names = [name for name, _ in self.module.named_parameters()]
        self._wide = any(p.dtype != torch.float64 for p in self._target)
        # float64 parameters are their own accumulator; otherwise a float64 copy
        self.accumulator = ([p.detach().to(torch.float64, copy=True) for p in self._target] if self._wide
                            else self._target)
        # the iterate cast to float64 into these buffers each step (no allocation in the training loop)
        self._cast = [torch.empty_like(a) for a in self.accumulator] if self._wide else None

    @torch.no_grad()
    def update(self) -> None:
        """θ̄ ← θ̄ + (1 − β_t)(θ − θ̄) for the next t (in float64), then :attr:`module` ← θ̄."""
        self.updates += 1
        weight = 1.0 - ema_factor(self.decay, self.updates)
        if self._wide:
            torch._foreach_copy_(self._cast, [p.detach() for p in self._source])
            torch._foreach_lerp_(self.accumulator, self._cast, weight)
            torch._foreach_copy_(self._target, self.accumulator)
        else:
            torch._foreach_lerp_(self.accumulator, [p.detach() for p in self._source], weight)

    def state_dict(self) -> dict[str, Any]:
        state = {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}
        if self._wide:   # float64 parameters are the accumulator, already in "model"
            state["accumulator"] = dict(zip(self._names, (a.clone() for a in self.accumulator)))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        if self._wide:
            acc = state["accumulator"]
            missing = [n for n in self._names if n not in acc]
            if missing:
                raise KeyError(f"the weight average's accumulator lacks {', '.join(missing)}")
            with torch.no_grad():
                for a, n in zip(self.accumulator, self._names):
                    a.copy_(acc[n])
        self.updates = int(state["updates"])
