"""A dense n × n weight matrix as a :class:`~linf_opt.operators.base.WeightOperator` (docs/mathematics.md §2).

States are rows: X has shape (batch, n) and ``matvec(X) = X Aᵀ``. The polytope rows are A's rows with
diagonal position i and weights ηⱼ/ηᵢ, so the constraint set is exactly μ_{∞,η}(A) ≤ γ.

    >>> op = DenseOperator(torch.tensor([[-2.0, 1.0], [0.5, 0.1]]))
    >>> float(op.mu_inf()), op.average_step()        # (0.6, 1/3)
"""
from __future__ import annotations

import torch

from linf_opt._tensor import check_finite
from linf_opt.errors import ShapeError
from linf_opt.operators.base import ConstraintRows, WeightOperator
from linf_opt.operators.measures import _metzler, _row_measures, _scaled

__all__ = ["DenseOperator", "as_operator"]


class DenseOperator(WeightOperator):
    """x ↦ A x for a square matrix A of shape (n, n) (float32 or float64, any device).

    ``A`` is kept as given (a parameter stays a parameter: gradients flow through the operator).
    Raises ``ShapeError`` for a non-square or non-2-D ``A`` and ``TypeError`` for a non-floating or
    complex dtype.
    """

    def __init__(self, A: torch.Tensor):
        if not isinstance(A, torch.Tensor):
            A = torch.as_tensor(A)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ShapeError(f"A: expected a square matrix of shape (n, n), got shape {tuple(A.shape)}")
        if A.is_complex() or not A.is_floating_point():
            raise TypeError(f"A: expected a real floating-point tensor (float32 or float64), got {A.dtype}")
        self._A = A
        self.state_shape = (A.shape[0],)

    @property
    def weight(self) -> torch.Tensor:
        return self._A

    def with_weight(self, weight: torch.Tensor) -> "DenseOperator":
        return DenseOperator(weight)

    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self._A.t()

    def affine(self, X: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        return torch.addmm(Q, X, self._A.t())

    def rmatvec(self, Y: torch.Tensor) -> torch.Tensor:
        return Y @ self._A

    def raffine(self, Y: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return torch.addmm(G, Y, self._A)

    def diagonal(self) -> torch.Tensor:
        return torch.diagonal(self._A)

    def row_measures(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        return _row_measures(_scaled(self._A, eta))

    def metzler_split(self) -> tuple["DenseOperator", "DenseOperator"]:
        A = self._A
        eye = torch.eye(A.shape[0], dtype=torch.bool, device=A.device)
        up = torch.where(eye | (A > 0), A, torch.zeros((), dtype=A.dtype, device=A.device))
        return DenseOperator(up), DenseOperator(A - up)

    def sign_split(self) -> tuple["DenseOperator", "DenseOperator"]:
        return DenseOperator(self._A.clamp(min=0)), DenseOperator(self._A.clamp(max=0))

    def as_matrix(self) -> torch.Tensor:
        return self._A

    def metzler_majorant(self) -> torch.Tensor:
        """M(A): the diagonal of A and |aᵢⱼ| off it."""
        return _metzler(self._A)

    def majorant_operator(self) -> "DenseOperator":
        """M(A) as an operator (the same matrix as :meth:`metzler_majorant`)."""
        return DenseOperator(_metzler(self._A))

    def constraint_rows(self, eta: torch.Tensor | None = None) -> ConstraintRows:
        n = self._A.shape[0]
        idx = torch.arange(n, device=self._A.device)
        w = None if eta is None else (eta.unsqueeze(0) / eta.unsqueeze(1)).to(self._A.dtype)
        return ConstraintRows(self._A, idx, w)

    def weight_grad(self, V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return V.t() @ X


def as_operator(A, name: str = "A") -> WeightOperator:
    """``A`` itself when it is a :class:`WeightOperator`, else a :class:`DenseOperator` of the (finite) matrix A."""
    if isinstance(A, WeightOperator):
        return A
    if not isinstance(A, torch.Tensor):
        A = torch.as_tensor(A)
    op = DenseOperator(A)
    check_finite(A.detach(), name)
    return op
