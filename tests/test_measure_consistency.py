"""The projections against the library's own measure: ``mu_inf(project_mu_inf(A, γ)) <= γ`` as computed.

Before: ``mu_inf(project_mu_inf(A, 0.9))`` read 0.9000000000000008 (float64) / 0.90000057 (float32) on
ordinary matrices, and float32 ``mu_inf`` of 1e6-sized entries read 1.5 where float64 read 0.949.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from linf_opt import mu_inf, project_mu_inf
from linf_opt.operators.conv import Conv2dOperator
from linf_opt.operators.dense import DenseOperator
from linf_opt.operators.measures import row_measures
from linf_opt.sets.feasible import MuInfPolytope
from linf_opt.sets.projections import MuInfProjector, project_operator

DTYPES = (torch.float32, torch.float64)
METHODS = ("exact", "pivot", "sort")


def _below(value, gamma):
    """Every way a user might compare: the tensor itself, and as a Python float."""
    return bool(torch.as_tensor(value <= gamma).all()) and float(torch.as_tensor(value).max()) <= gamma


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 60), dtype=st.sampled_from(DTYPES), log_scale=st.floats(-3, 6),
       weighted=st.booleans(), gamma=st.sampled_from([0.9, 0.95, 0.5, 0.0, -0.3, 1 / 3]),
       method=st.sampled_from(METHODS), seed=st.integers(0, 2 ** 31 - 1))
def test_projection_is_inside_by_mu_inf(n, dtype, log_scale, weighted, gamma, method, seed):
    g = torch.Generator().manual_seed(seed)
    A = (torch.randn(n, n, generator=g, dtype=torch.float64) * 10 ** log_scale).to(dtype)
    eta = (torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.1) if weighted else None
    P = project_mu_inf(A, gamma, eta=eta, method=method)
    assert _below(mu_inf(P, eta), gamma)
    assert _below(row_measures(P, eta), gamma)
    S = MuInfPolytope(gamma, eta=eta)
    assert S.contains(P, tol=0)
    assert torch.equal(project_mu_inf(P, gamma, eta=eta, method=method), P)  # projecting twice: identity
    # in place (the compiled kernel writing into the tensor), twice: the second call changes nothing
    B = A.clone()
    S.project_(B)
    assert _below(mu_inf(B, eta), gamma) and S.contains(B, tol=0)
    C = B.clone()
    S.project_(C)
    assert torch.equal(B, C)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_issue_examples_read_at_most_gamma(dtype, method):
    for seed in range(20):
        A = torch.randn(100, 100, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        P = project_mu_inf(A, 0.9, method=method)
        assert _below(mu_inf(P), 0.9), (seed, float(mu_inf(P)))
        assert MuInfPolytope(0.9).contains(P, tol=0)
        assert _below(mu_inf(P.numpy()), 0.9)  # numpy in, Python float out


def test_projector_in_place_cached_path_and_weights():
    eta = np.linspace(0.5, 2.0, 50)
    for dtype in DTYPES:
        proj = MuInfProjector(0.9, eta=eta, warm_start=True)
        A = torch.randn(50, 50, generator=torch.Generator().manual_seed(1), dtype=dtype)
        for step in range(30):  # the cached in-place route of training steps
            A.add_(torch.randn(50, 50, generator=torch.Generator().manual_seed(100 + step), dtype=dtype) * 0.1)
            proj.project_(A)
            assert _below(mu_inf(A, eta), 0.9)
            assert MuInfPolytope(0.9, eta=eta).contains(A, tol=0)


def test_feasible_rows_unchanged_by_the_measure():
    for dtype in DTYPES:
        A = torch.randn(30, 30, generator=torch.Generator().manual_seed(2), dtype=dtype) * 100
        P = project_mu_inf(A, 0.9)
        # rows of P sit on the boundary by the measure; replace half of A's rows with them
        B = A.clone()
        B[::2] = P[::2]
        for method in METHODS:
            Q = project_mu_inf(B, 0.9, method=method)
            assert torch.equal(Q[::2], P[::2]), method
            assert _below(mu_inf(Q), 0.9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mu_inf_float32_accumulates_in_float64(dtype):
    A = torch.randn(40, 40, generator=torch.Generator().manual_seed(0)) * 1e6
    P = project_mu_inf(A, 0.95).to(dtype)
    exact = float(mu_inf(P.double()))
    assert abs(float(mu_inf(P)) - exact) <= 1e-6 and float(mu_inf(P)) <= 0.95
    # against an exact (fsum) reference, row by row
    Pn = P.double().numpy()
    ref = max(Pn[i, i] + math.fsum(abs(Pn[i, j]) for j in range(40) if j != i) for i in range(40))
    assert abs(float(mu_inf(P)) - ref) <= 1e-7 * max(1.0, abs(ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", ["zeros", "circular"])
def test_conv_operator_projection_reads_at_most_gamma(dtype, padding):
    S = MuInfPolytope(0.9)
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        K = (torch.randn(4, 4, 3, 3, generator=g, dtype=torch.float64) * 10 ** (seed % 5)).to(dtype)
        op = Conv2dOperator(K, (6, 6), padding)
        P = project_operator(op, 0.9)
        assert float(P.mu_inf()) <= 0.9 and S.contains(P, tol=0)
        assert torch.equal(project_operator(P, 0.9).weight, P.weight)
        Q = Conv2dOperator(K.clone(), (6, 6), padding)
        S.project_(Q)  # in place, through the compiled kernel
        assert float(Q.mu_inf()) <= 0.9 and torch.equal(Q.weight, P.weight)
        D = project_operator(DenseOperator(K.reshape(4, 36)[:, :4].contiguous() * 10), 0.9)
        assert float(D.mu_inf()) <= 0.9 and _below(mu_inf(D.weight), 0.9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_decides_without_the_measure_and_defers_boundary_rows(dtype, monkeypatch):
    """The compiled kernel's measure mode: in a training-like sequence it never needs the measure (no
    pass of ``_lower_diagonal``); rows that the torch forms put on the boundary (within the kernel's
    summation-order bound δ of γ) are left to the measure, which keeps them unchanged."""
    import linf_opt.sets.projections as projections
    g = torch.Generator().manual_seed(5)
    A = torch.randn(100, 100, generator=g, dtype=dtype) / 10
    P = project_mu_inf(A, 0.9, method="pivot")  # on the boundary by the measure, within round-off
    Q = project_mu_inf(P, 0.9)  # the kernel: ambiguous rows go to the measure, which finds them ≤ γ
    assert torch.equal(Q, P) and MuInfPolytope(0.9).contains(Q, tol=0)
    proj = MuInfProjector(0.9)
    B = P.clone()
    proj.project_(B)
    assert torch.equal(B, P)
    if dtype == torch.float64:
        assert proj.info["ambiguous"] > 0
    calls = []
    real = projections._lower_diagonal
    monkeypatch.setattr(projections, "_lower_diagonal", lambda *a, **k: calls.append(1) or real(*a, **k))
    S = MuInfPolytope(0.9)
    C = A.clone()
    for step in range(30):
        C.add_(torch.randn(100, 100, generator=g, dtype=dtype) * 1e-3)
        S.project_(C)
        assert _below(mu_inf(C), 0.9) and S.contains(C, tol=0) and S._certified_inside(C)
        D = C.clone()
        S.project_(D)
        assert torch.equal(C, D)
    assert not calls


def test_kernel_exact_rows_keep_exact_values():
    """Rows whose sum is exact in every order (one off-diagonal term; float32 within range) get δ = 0."""
    X = project_mu_inf(np.array([[1.0, 2.0], [0.5, -3.0]]), 0.5)
    assert X.tolist() == [[-0.25, 0.75], [0.5, -3.0]] and mu_inf(X) == 0.5
    assert project_mu_inf([[2.0]], 0.5).tolist() == [[0.5]]
    A = torch.tensor([[2.0, 1.0, -1.0], [0.5, 0.25, 0.25], [1.0, 1.0, 1.0]], dtype=torch.float32)
    P = project_mu_inf(A, 1.0)
    assert float(mu_inf(P)) == 1.0 and torch.equal(project_mu_inf(P, 1.0), P)
