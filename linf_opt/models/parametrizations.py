"""Reparametrizations that make A well-posed by construction (docs/mathematics.md §6, "alternative parametrizations").

They trade the projection for a map from free parameters onto the set, and plug into
``torch.nn.utils.parametrize`` so that ``net.A`` is computed from the free parameters on every access:

- :class:`MuInfParametrization`: A = diag(η) (γI + T − diag(|T| 1)) diag(η)⁻¹ with T free. Row i of
  the inner matrix has measure tᵢᵢ − |tᵢᵢ| + γ ≤ γ, so μ_{∞,η}(A) ≤ γ; every A in P(γ, η) is reached
  (this is the paper authors' construction, written in this library's weight convention).
- :class:`MonotoneParametrization`: A = (1 − m)I − WᵀW + S − Sᵀ (monotone networks), μ₂(A) ≤ 1 − m;
  the free parameter stacks W and S, shape (2, n, n).

Both implement ``right_inverse`` for feasible A, so the current (feasible) A is kept when they are
registered:

    >>> apply_parametrization(net, MuInfParametrization(gamma=0.9))
    >>> float(net.mu()) <= 0.9
    True
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from linf_opt._tensor import check_scalar

__all__ = ["MuInfParametrization", "MonotoneParametrization", "apply_parametrization"]


class MuInfParametrization(nn.Module):
    """T ↦ diag(η)(γI + T − diag(|T|1))diag(η)⁻¹: onto P(γ, η) = {A : μ_{∞,η}(A) ≤ γ}."""

    def __init__(self, gamma: float, eta: torch.Tensor | None = None):
        super().__init__()
        self.gamma = check_scalar(gamma, "gamma")
        if eta is not None:
            self.register_buffer("eta", torch.as_tensor(eta).clone())
        else:
            self.eta = None

    def forward(self, T: torch.Tensor) -> torch.Tensor:
        inner = T - torch.diag(T.abs().sum(1)) + self.gamma * torch.eye(T.shape[0], dtype=T.dtype, device=T.device)
        if self.eta is None:
            return inner
        return inner * self.eta.unsqueeze(1) / self.eta.unsqueeze(0)

    def right_inverse(self, A: torch.Tensor) -> torch.Tensor:
        """A T with forward(T) = A, for A in P(γ, η): off-diagonal tᵢⱼ = aᵢⱼ, tᵢᵢ = min(sᵢ, 0)/2."""
        inner = A if self.eta is None else A * self.eta.unsqueeze(0) / self.eta.unsqueeze(1)
        T = inner.clone()
        off = inner.abs().sum(1) - inner.diagonal().abs()
        s = inner.diagonal() - self.gamma + off          # = tᵢᵢ − |tᵢᵢ| must be ≤ 0
        if bool((s > 1e-6 * (1 + off)).any()):
            raise ValueError("A: right_inverse needs μ∞,η(A) ≤ γ; project A onto the polytope first")
        T.diagonal().copy_(s.clamp(max=0) / 2)
        return T


class MonotoneParametrization(nn.Module):
    """(W, S) ↦ (1 − m)I − WᵀW + S − Sᵀ: onto {A : μ₂(A) ≤ 1 − m}; the free tensor stacks W and S."""

    def __init__(self, m: float):
        super().__init__()
        self.m = check_scalar(m, "m", low=0.0, high=1.0, low_open=True)

    def forward(self, WS: torch.Tensor) -> torch.Tensor:
        W, S = WS[0], WS[1]
        n = W.shape[0]
        return (1 - self.m) * torch.eye(n, dtype=W.dtype, device=W.device) - W.t() @ W + S - S.t()

    def right_inverse(self, A: torch.Tensor) -> torch.Tensor:
        """S = (A − Aᵀ)/4 and W = (max(λ, 0))^{1/2} Vᵀ from (1 − m)I − (A + Aᵀ)/2 = V diag(λ) Vᵀ."""
        n = A.shape[0]
        sym = (1 - self.m) * torch.eye(n, dtype=A.dtype, device=A.device) - (A + A.t()) / 2
        lam, V = torch.linalg.eigh(sym)
        if float(lam.min()) < -1e-6 * (1 + float(lam.abs().max())):
            raise ValueError("A: right_inverse needs μ₂(A) ≤ 1 − m; project A onto the monotone set first")
        W = lam.clamp(min=0).sqrt().unsqueeze(1) * V.t()
        return torch.stack([W, (A - A.t()) / 4])


def apply_parametrization(net: nn.Module, parametrization: nn.Module, name: str = "A") -> nn.Module:
    """Register ``parametrization`` on ``net.<name>`` (torch.nn.utils.parametrize), keeping its value."""
    parametrize.register_parametrization(net, name, parametrization)
    return net
