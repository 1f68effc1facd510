"""The block operator of interval systems: Â = [[P, N], [N, P]] on pairs of states (docs/mathematics.md §8).

The embedded (mixed-monotone) network and interval bound propagation both iterate a box (x̲, x̄) of
hidden states through a matrix of this form:

    embedded network:  P = A_up (diagonal and non-negative off-diagonal part), N = A_dn (the rest)
    interval bounds:   P = A⁺, N = A⁻ (entrywise)

Writing the box as s = x̲ + x̄ and d = x̄ − x̲, the two halves of Â(x̲, x̄) are

    P x̲ + N x̄ = ½ S s − ½ M d,   P x̄ + N x̲ = ½ S s + ½ M d,   with S = P + N and M = P − N,

so one step costs two products of the size of A (not four), for any weight operator. For the
embedded network S = A and M is the Metzler majorant (diagonal, |off-diagonal|); for IBP S = A and
M = |A|. The row values of Â are those of M (Pᵢᵢ + Σ_{j≠i}|Pᵢⱼ| + Σⱼ|Nᵢⱼ| with P ≥ 0 ≥ N off the
diagonal), so μ_{∞,(η,η)}(Â) = μ_{∞,η}(M), and the diagonal of Â is that of P = (S + M)/2.

States have shape (batch, 2, *state_shape): index 0 is the lower end x̲, index 1 the upper end x̄.

    >>> E = BlockOperator.embedded(DenseOperator(A))     # the embedded network's Â
    >>> E.as_matrix()                                     # [[A_up, A_dn], [A_dn, A_up]]
"""
from __future__ import annotations

import torch

from linf_opt.operators.base import ConstraintRows, WeightOperator

__all__ = ["BlockOperator"]


class BlockOperator(WeightOperator):
    """Â = [[P, N], [N, P]] given S = P + N and M = P − N (two operators of the same structure).

    The weight is the stack (S.weight, M.weight), so gradients reach the parameters that S and M were
    built from (robust training differentiates through the embedded network).
    """

    def __init__(self, S: WeightOperator, M: WeightOperator):
        if type(S) is not type(M) or tuple(S.state_shape) != tuple(M.state_shape):
            raise TypeError(f"S, M: expected two operators of the same kind and state shape, got {S!r} and {M!r}")
        self.S, self.M = S, M
        self.state_shape = (2, *S.state_shape)
        self._weight = None

    @classmethod
    def embedded(cls, op: WeightOperator) -> "BlockOperator":
        """The embedded network's Â for A = ``op``: S = A, M = the majorant (diagonal, |off-diagonal|)."""
        return cls(op, op.majorant_operator())

    @classmethod
    def interval(cls, op: WeightOperator) -> "BlockOperator":
        """The interval-propagation matrix [[A⁺, A⁻], [A⁻, A⁺]]: S = A, M = |A| (entrywise)."""
        return cls(op, op.with_weight(op.weight.abs()))

    @property
    def weight(self) -> torch.Tensor:
        if self._weight is None:
            self._weight = torch.stack([self.S.weight, self.M.weight])
        return self._weight

    def with_weight(self, weight: torch.Tensor) -> "BlockOperator":
        out = BlockOperator(self.S.with_weight(weight[0]), self.M.with_weight(weight[1]))
        out._weight = weight
        return out

    @staticmethod
    def _halves(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return X[:, 0] + X[:, 1], X[:, 1] - X[:, 0]

    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        s, d = self._halves(X)
        a, g = self.S.matvec(s).mul_(0.5), self.M.matvec(d).mul_(0.5)
        return torch.stack([a - g, a + g], 1)

    def affine(self, X: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        return self.matvec(X).add_(Q) if not torch.is_grad_enabled() else self.matvec(X) + Q

    def rmatvec(self, Y: torch.Tensor) -> torch.Tensor:
        # Âᵀ = [[Pᵀ, Nᵀ], [Nᵀ, Pᵀ]]: the same form with the adjoints
        s, d = self._halves(Y)
        a, g = self.S.rmatvec(s).mul_(0.5), self.M.rmatvec(d).mul_(0.5)
        return torch.stack([a - g, a + g], 1)

    def diagonal(self) -> torch.Tensor:
        p = (self.S.diagonal() + self.M.diagonal()) / 2
        return torch.stack([p, p])

    def row_measures(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        e = None if eta is None else eta[0]
        r = self.M.row_measures(e)
        return torch.stack([r, r])

    def metzler_split(self):
        raise NotImplementedError("BlockOperator: the block operator is already a split system")

    def sign_split(self):
        raise NotImplementedError("BlockOperator: the block operator is already a split system")

    def majorant_operator(self) -> "BlockOperator":
        raise NotImplementedError("BlockOperator: the block operator is already a split system")

    def as_matrix(self) -> torch.Tensor:
        S, M = self.S.as_matrix(), self.M.as_matrix()
        P, N = (S + M) / 2, (S - M) / 2
        return torch.cat([torch.cat([P, N], 1), torch.cat([N, P], 1)], 0)

    def constraint_rows(self, eta=None) -> ConstraintRows:
        raise NotImplementedError("BlockOperator: interval systems are not projected; project the operator A")

    def weight_grad(self, V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        # ⟨V, ÂX⟩ = ½⟨v̲ + v̄, S s⟩ + ½⟨v̄ − v̲, M d⟩
        s, d = self._halves(X)
        vs, vd = self._halves(V)
        return torch.stack([self.S.weight_grad(vs * 0.5, s), self.M.weight_grad(vd * 0.5, d)])
