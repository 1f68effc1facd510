"""The weight operator: the linear map x ↦ Ax of an implicit layer, as one object (docs/mathematics.md §2, §10).

Everything above this layer (solvers, implicit gradients, α*, Lipschitz bounds, certificates, the
trainer) asks the operator for what it needs and never looks inside it:

=====================  ==============================================================================
``matvec(X)``           A x for every sample; X has shape (batch, *state_shape)
``affine(X, Q)``        A x + q (fused where the operator can: one ``addmm`` for a dense A)
``rmatvec(Y)``          Aᵀ y for every sample (the adjoint, for implicit differentiation)
``raffine(Y, G)``       Aᵀ y + g (fused where the operator can)
``diagonal()``          the diagonal aᵢᵢ, shape ``state_shape``
``row_measures(η)``     rᵢ = aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ, shape ``state_shape``; μ_{∞,η}(A) = maxᵢ rᵢ
``mu_inf(η)``           the exact measure μ_{∞,η}(A), accumulated in float64
``average_step()``      α* = 1 / (1 − minᵢ min(aᵢᵢ, 0))
``metzler_split()``     (A_up, A_dn): diagonal + non-negative off-diagonal part, and the negative rest
``sign_split()``        (A⁺, A⁻) entrywise, for interval bound propagation
``as_matrix()``         the dense n × n matrix in the row-major flattening of ``state_shape``
``constraint_rows(η)``  the rows of the polytope P(γ, η) in the weight's own coordinates (see below)
=====================  ==============================================================================

**Constraint rows.** A projection acts on the parameter (``weight``), not on the n × n matrix. Each
operator states its polytope as independent rows over a reshaped view V of its weight: row i with
diagonal position dᵢ and off-diagonal weights wᵢⱼ reads

    V[i, dᵢ] + Σ_{j≠dᵢ} wᵢⱼ |V[i, j]| ≤ γ.

For a dense A the rows are A's rows (dᵢ = i, wᵢⱼ = ηⱼ/ηᵢ) and the set is exactly μ_{∞,η}(A) ≤ γ. For a
convolution the rows are the output channels' kernel slices; the set implies μ∞(A) ≤ γ and equals it
when every operator row holds every tap (docs/mathematics.md §10). The projections in
:mod:`linf_opt.sets` project any operator through these rows, so a new operator needs no new projection
code.

A new operator is one subclass: implement the abstract methods; ``weight_grad`` (the gradient of
⟨V, A X⟩ with respect to the weight) has a generic autograd default.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch

__all__ = ["WeightOperator", "ConstraintRows"]


@dataclass
class ConstraintRows:
    """The polytope rows of an operator's weight: V[i, dᵢ] + Σ_{j≠dᵢ} wᵢⱼ |V[i, j]| ≤ γ.

    Attributes:
        values: V, a (rows, m) view of the weight (writing into it writes the weight).
        diagonal: dᵢ, a long tensor of shape (rows,).
        weights: wᵢⱼ of shape (rows, m), or None for all ones (the entry at dᵢ is ignored).
    """

    values: torch.Tensor
    diagonal: torch.Tensor
    weights: torch.Tensor | None = None


class WeightOperator(abc.ABC):
    """A linear map x ↦ Ax on hidden states of shape ``state_shape`` with one parameter tensor ``weight``.

    Operators are light views of their weight: building one per forward call costs nothing, and
    ``with_weight`` rebuilds the same structure around another tensor (implicit differentiation uses it).
    """

    state_shape: tuple[int, ...]

    # ---- what a subclass implements --------------------------------------------------------------
    @property
    @abc.abstractmethod
    def weight(self) -> torch.Tensor:
        """The parameter tensor that defines A (A itself for a dense operator, the kernel for a convolution)."""

    @abc.abstractmethod
    def with_weight(self, weight: torch.Tensor) -> "WeightOperator":
        """The same operator structure around another weight tensor of the same shape."""

    @abc.abstractmethod
    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        """A x for every sample x of X (shape (batch, *state_shape))."""

    @abc.abstractmethod
    def rmatvec(self, Y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y for every sample y of Y (shape (batch, *state_shape))."""

    @abc.abstractmethod
    def diagonal(self) -> torch.Tensor:
        """The diagonal aᵢᵢ of A, shape ``state_shape`` (differentiable in the weight)."""

    @abc.abstractmethod
    def row_measures(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        """rᵢ = aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ for every row i, shape ``state_shape`` (differentiable)."""

    @abc.abstractmethod
    def metzler_split(self) -> tuple["WeightOperator", "WeightOperator"]:
        """(A_up, A_dn) with A = A_up + A_dn: A_up holds the diagonal and the non-negative off-diagonal
        entries, A_dn the negative off-diagonal ones (the embedded network of docs/mathematics.md §8)."""

    @abc.abstractmethod
    def sign_split(self) -> tuple["WeightOperator", "WeightOperator"]:
        """(A⁺, A⁻) = (max(A, 0), min(A, 0)) entrywise, diagonal included (interval bound propagation)."""

    @abc.abstractmethod
    def as_matrix(self) -> torch.Tensor:
        """The dense (n, n) matrix of A in the row-major flattening of ``state_shape``."""

    @abc.abstractmethod
    def constraint_rows(self, eta: torch.Tensor | None = None) -> ConstraintRows:
        """The rows of the polytope P(γ, η) in the weight's coordinates (see the module docstring)."""

    # ---- derived quantities ----------------------------------------------------------------------
    @property
    def n(self) -> int:
        """State dimension n = prod(state_shape)."""
        return math.prod(self.state_shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def affine(self, X: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """A x + q for every sample (subclasses fuse this where they can)."""
        return self.matvec(X).add_(Q) if not torch.is_grad_enabled() else self.matvec(X) + Q

    def raffine(self, Y: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """Aᵀ y + g for every sample (the adjoint iteration's step; subclasses fuse it where they can)."""
        return self.rmatvec(Y).add_(G) if not torch.is_grad_enabled() else self.rmatvec(Y) + G

    def mu_inf(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        """μ_{∞,η}(A) = maxᵢ rᵢ, accumulated in float64 (a 0-dim float64 tensor)."""
        w = self.weight
        op = self if w.dtype == torch.float64 else self.with_weight(w.detach().to(torch.float64))
        e = None if eta is None else eta.detach().to(torch.float64)
        return op.row_measures(e).detach().amax()

    def average_step(self) -> float:
        """α* = 1 / (1 − minᵢ min(aᵢᵢ, 0)) ∈ (0, 1], the largest step of the average iteration."""
        d = self.diagonal().detach()
        low = float(d.amin().clamp(max=0)) if d.numel() else 0.0
        return 1.0 / (1.0 - low)

    def contraction_factor(self, alpha: float | None = None, eta: torch.Tensor | None = None) -> float:
        """ρ(α) = 1 − α(1 − μ⁺) with μ⁺ = max(μ_{∞,η}(A), 0), α default α*; ≥ 1 means no guarantee."""
        a = self.average_step() if alpha is None else float(alpha)
        return 1.0 - a * (1.0 - max(float(self.mu_inf(eta)), 0.0))

    def weight_grad(self, V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """∂/∂weight of Σ_batch ⟨v, A x⟩ (the weight's share of the implicit gradient ∂L/∂A = Σ v xᵀ)."""
        with torch.enable_grad():
            w = self.weight.detach().requires_grad_(True)
            out = self.with_weight(w).matvec(X.detach())
            (g,) = torch.autograd.grad(out, w, V)
        return g

    def check_state(self, X: torch.Tensor, name: str = "x") -> None:
        """Raise ``ShapeError`` naming ``name`` unless X has shape (batch, *state_shape)."""
        from linf_opt.errors import ShapeError
        if tuple(X.shape[1:]) != tuple(self.state_shape):
            raise ShapeError(f"{name}: expected shape (batch, {', '.join(map(str, self.state_shape))}), "
                             f"got {tuple(X.shape)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state_shape={tuple(self.state_shape)}, dtype={self.dtype})"
