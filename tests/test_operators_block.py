"""BlockOperator (linf_opt/operators/block.py): the embedded and interval systems over any operator equal
their dense block matrices, built independently (robustness.certify.embedded_matrix / ibp_matrix)."""
import pytest
import torch

from linf_opt import BlockOperator, Conv2dOperator, DenseOperator, mu_inf
from linf_opt.robustness.certify import embedded_matrix, ibp_matrix
from helpers import well_posed_matrix

F64 = torch.float64


def operators():
    g = torch.Generator().manual_seed(0)
    yield DenseOperator(well_posed_matrix(7, 0.8, offdiag=2.0, neg_diag=1.0, seed=1))
    yield Conv2dOperator(torch.randn(2, 2, 3, 3, generator=g, dtype=F64), (4, 5))


@pytest.mark.parametrize("kind", ["embedded", "interval"])
@pytest.mark.parametrize("op", list(operators()), ids=["dense", "conv"])
def test_block_operator_equals_its_dense_block_matrix(op, kind):
    block = getattr(BlockOperator, kind)(op)
    A = op.as_matrix()
    ref = embedded_matrix(A) if kind == "embedded" else ibp_matrix(A)
    M = block.as_matrix()
    torch.testing.assert_close(M, ref, rtol=0, atol=1e-14)
    n = op.n
    g = torch.Generator().manual_seed(2)
    X = torch.randn(5, 2, *op.state_shape, generator=g, dtype=F64)
    flat = X.reshape(5, 2 * n)
    torch.testing.assert_close(block.matvec(X).reshape(5, -1), flat @ ref.t(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.rmatvec(X).reshape(5, -1), flat @ ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.diagonal().reshape(-1), torch.diagonal(ref), rtol=0, atol=1e-14)
    assert float(block.mu_inf()) == pytest.approx(float(mu_inf(ref)), abs=1e-12)
    if kind == "interval":
        assert float(block.mu_inf()) == pytest.approx(float(A.abs().sum(1).max()), abs=1e-12)


def test_block_weight_gradient_matches_autograd():
    op = DenseOperator(well_posed_matrix(5, 0.5, seed=3))
    block = BlockOperator.embedded(op)
    g = torch.Generator().manual_seed(4)
    X = torch.randn(3, 2, 5, generator=g, dtype=F64)
    V = torch.randn(3, 2, 5, generator=g, dtype=F64)
    w = block.weight.detach().clone().requires_grad_(True)
    out = (block.with_weight(w).matvec(X) * V).sum()
    (ref,) = torch.autograd.grad(out, w)
    torch.testing.assert_close(block.weight_grad(V, X), ref, rtol=1e-12, atol=1e-12)


def test_block_operator_refuses_mismatched_parts_and_projection():
    with pytest.raises(TypeError, match="S, M"):
        BlockOperator(DenseOperator(torch.eye(3)), DenseOperator(torch.eye(4)))
    block = BlockOperator.embedded(DenseOperator(torch.eye(3)))
    with pytest.raises(NotImplementedError):
        block.constraint_rows()
