"""Conv2dOperator against dense oracles built independently from torch's conv2d, and the μ∞ polytope on operators."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import linf_opt
from linf_opt import (Conv2dOperator, DenseOperator, MonotoneSet, MuInfPolytope, NormInfBall, WeightedMuInf,
                      as_operator, mu_inf, project_conv_kernel, project_operator)
from linf_opt.errors import NonFiniteError, ShapeError

D = torch.float64

# (C, kh, kw, H, W): channels 1-4, k = 1, 3, 5, one kh ≠ kw, images 1×1 … 9×7 (small ones alias)
GRID = [
    (1, 1, 1, 1, 1), (1, 3, 3, 1, 1), (2, 3, 3, 2, 2), (2, 3, 3, 3, 3), (3, 3, 3, 4, 5), (1, 5, 5, 2, 3),
    (2, 5, 5, 3, 4), (2, 5, 5, 5, 5), (4, 3, 3, 9, 7), (2, 3, 5, 4, 3), (3, 5, 3, 6, 2), (2, 1, 1, 3, 2),
    (1, 5, 5, 9, 7), (3, 3, 3, 1, 6),
]
PADDINGS = ("zeros", "circular")


def _random_cases(count: int, seed: int):
    g = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        out.append((int(g.integers(1, 5)), int(g.choice([1, 3, 5])), int(g.choice([1, 3, 5])),
                    int(g.integers(1, 10)), int(g.integers(1, 8))))
    return out


CASES = [pytest.param(*c, pad, id=f"C{c[0]}-k{c[1]}x{c[2]}-{c[3]}x{c[4]}-{pad}") for c in GRID + _random_cases(8, 7)
         for pad in PADDINGS]


def _kernel(C, kh, kw, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed * 1000 + C * 100 + kh * 10 + kw)
    return scale * torch.randn(C, C, kh, kw, generator=g, dtype=D)


def _wrap_oracle(X, p, q):
    """Circular padding by tiling the image (3 or more copies per side) and cropping: no index arithmetic."""
    H, W = X.shape[-2:]
    m = max(1, math.ceil(p / H))
    X = torch.cat([X] * (2 * m + 1), dim=-2)
    X = X[..., m * H - p:m * H + H + p, :]
    m = max(1, math.ceil(q / W))
    X = torch.cat([X] * (2 * m + 1), dim=-1)
    return X[..., m * W - q:m * W + W + q]


def _dense_oracle(K, H, W, padding):
    """The n × n matrix from conv2d applied to every basis image."""
    C, _, kh, kw = K.shape
    n = C * H * W
    basis = torch.eye(n, dtype=K.dtype).reshape(n, C, H, W)
    p, q = kh // 2, kw // 2
    if padding == "zeros":
        cols = F.conv2d(basis, K, padding=(p, q))
    else:
        cols = F.conv2d(_wrap_oracle(basis, p, q), K)
    return cols.reshape(n, n).t()


def _dense_rows(A, eta=None):
    if eta is not None:
        A = A * eta[None, :] / eta[:, None]
    d = torch.diagonal(A)
    return d + A.abs().sum(1) - d.abs()


# ---------------------------------------------------------------------------------------------------
# the operator against its dense matrix
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("C,kh,kw,H,W,padding", CASES)
def test_against_dense_oracle(C, kh, kw, H, W, padding):
    K = _kernel(C, kh, kw)
    op = Conv2dOperator(K, (H, W), padding)
    assert op.state_shape == (C, H, W) and op.n == C * H * W
    A = _dense_oracle(K, H, W, padding)
    torch.testing.assert_close(op.as_matrix(), A, rtol=0, atol=1e-14)
    n = A.shape[0]
    # measures: plain and weighted (per-pixel random η and per-channel η)
    g = torch.Generator().manual_seed(1)
    eta_px = torch.rand(C, H, W, generator=g, dtype=D) + 0.2
    eta_ch = (torch.rand(C, 1, 1, generator=g, dtype=D) + 0.2).expand(C, H, W)
    assert abs(float(op.mu_inf()) - float(mu_inf(A))) <= 1e-12
    for eta in (eta_px, eta_ch):
        assert abs(float(op.mu_inf(eta)) - float(mu_inf(A, eta.reshape(-1)))) <= 1e-12
        torch.testing.assert_close(op.row_measures(eta).reshape(-1), _dense_rows(A, eta.reshape(-1)),
                                   rtol=0, atol=1e-12)
    torch.testing.assert_close(op.row_measures().reshape(-1), _dense_rows(A), rtol=0, atol=1e-12)
    torch.testing.assert_close(op.diagonal().reshape(-1), torch.diagonal(A), rtol=0, atol=1e-14)
    assert op.diagonal().shape == (C, H, W)
    # kernel-level value: an upper bound, exact when the image holds the kernel
    assert op.kernel_mu_inf() >= float(mu_inf(A)) - 1e-12
    if H >= kh and W >= kw:
        assert abs(op.kernel_mu_inf() - float(mu_inf(A))) <= 1e-12
    # products
    X = torch.randn(3, C, H, W, generator=g, dtype=D)
    Y = torch.randn(3, C, H, W, generator=g, dtype=D)
    torch.testing.assert_close(op.matvec(X).reshape(3, n), X.reshape(3, n) @ A.t(), rtol=0, atol=1e-12)
    torch.testing.assert_close(op.rmatvec(Y).reshape(3, n), Y.reshape(3, n) @ A, rtol=0, atol=1e-12)
    Q = torch.randn(3, C, H, W, generator=g, dtype=D)
    torch.testing.assert_close(op.affine(X, Q), op.matvec(X) + Q, rtol=0, atol=1e-14)
    # |A| row and column sums
    rows, cols = op.abs_sums()
    torch.testing.assert_close(rows.reshape(-1), A.abs().sum(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(cols.reshape(-1), A.abs().sum(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("C,kh,kw,H,W,padding", CASES[::3])
def test_weight_grad_matches_autograd(C, kh, kw, H, W, padding):
    K = _kernel(C, kh, kw, seed=2)
    g = torch.Generator().manual_seed(3)
    X = torch.randn(2, C, H, W, generator=g, dtype=D)
    V = torch.randn(2, C, H, W, generator=g, dtype=D)
    Kp = K.clone().requires_grad_(True)
    (gK,) = torch.autograd.grad((_dense_oracle(Kp, H, W, padding) @ X.reshape(2, -1).t()).t().reshape(V.shape)
                                .mul(V).sum(), Kp)
    op = Conv2dOperator(K, (H, W), padding)
    torch.testing.assert_close(op.weight_grad(V, X), gK, rtol=0, atol=1e-12)
    # the base's generic autograd route agrees too
    torch.testing.assert_close(linf_opt.WeightOperator.weight_grad(op, V, X), gK, rtol=0, atol=1e-12)


@pytest.mark.parametrize("C,kh,kw,H,W,padding", CASES[1::3])
def test_splits_and_majorant(C, kh, kw, H, W, padding):
    K = _kernel(C, kh, kw, seed=4)
    op = Conv2dOperator(K, (H, W), padding)
    A = op.as_matrix()
    eye = torch.eye(A.shape[0], dtype=torch.bool)
    up, dn = op.metzler_split()
    assert isinstance(up, Conv2dOperator) and isinstance(dn, Conv2dOperator)
    assert up.image_size == (H, W) and up.padding == padding
    Au, Ad = up.as_matrix(), dn.as_matrix()
    torch.testing.assert_close(Au + Ad, A, rtol=0, atol=1e-14)
    assert bool((Au[~eye] >= 0).all()) and bool((Ad <= 0).all())
    if not (padding == "circular" and (H < kh or W < kw)):  # no aliasing: the tightest split
        assert bool((Ad[eye] == 0).all())
        torch.testing.assert_close(op.majorant_operator().as_matrix(), linf_opt.metzler_majorant(A), rtol=0, atol=1e-14)
    else:  # an entrywise upper bound of M(A)
        assert bool((op.majorant_operator().as_matrix() >= linf_opt.metzler_majorant(A) - 1e-14).all())
    pos, neg = op.sign_split()
    Ap, An = pos.as_matrix(), neg.as_matrix()
    torch.testing.assert_close(Ap + An, A, rtol=0, atol=1e-14)
    assert bool((Ap >= 0).all()) and bool((An <= 0).all())
    # the dense operator's majorant operator
    dop = DenseOperator(A)
    torch.testing.assert_close(dop.majorant_operator().as_matrix(), dop.metzler_majorant())


def test_gradients_flow_through_parameter_kernel():
    K = torch.nn.Parameter(_kernel(2, 3, 3))
    op = Conv2dOperator(K, (4, 4), "circular")
    assert op.weight is K
    op.row_measures().amax().backward()
    assert K.grad is not None and bool(torch.isfinite(K.grad).all())
    K2 = torch.nn.Parameter(_kernel(2, 3, 3))
    op2 = Conv2dOperator(K2, (2, 2), "circular")  # folded kernel: still differentiable
    op2.row_measures().sum().backward()
    assert K2.grad is not None


def test_float32_and_float64_mu_inf():
    K = _kernel(3, 3, 3).float()
    op = Conv2dOperator(K, (5, 5))
    assert op.mu_inf().dtype == torch.float64
    A = _dense_oracle(K.double(), 5, 5, "zeros")
    assert abs(float(op.mu_inf()) - float(mu_inf(A))) <= 1e-12
    assert abs(op.average_step() - float(DenseOperator(A).average_step())) <= 1e-6


def test_seeded_random_sweep():
    g = np.random.default_rng(11)
    for _ in range(20):
        C, kh, kw = int(g.integers(1, 4)), int(g.choice([1, 3, 5])), int(g.choice([1, 3, 5]))
        H, W = int(g.integers(1, 8)), int(g.integers(1, 8))
        padding = PADDINGS[int(g.integers(0, 2))]
        K = torch.as_tensor(g.standard_normal((C, C, kh, kw)))
        op = Conv2dOperator(K, (H, W), padding)
        A = _dense_oracle(K, H, W, padding)
        torch.testing.assert_close(op.as_matrix(), A, rtol=0, atol=1e-13)
        assert abs(float(op.mu_inf()) - float(mu_inf(A))) <= 1e-12
        Y = torch.as_tensor(g.standard_normal((2, C, H, W)))
        torch.testing.assert_close(op.rmatvec(Y).reshape(2, -1), Y.reshape(2, -1) @ A, rtol=0, atol=1e-12)
        P = project_operator(op, 0.1)
        assert float(mu_inf(_dense_oracle(P.weight, H, W, padding))) <= 0.1 + 1e-12


try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=25, deadline=None)
    @given(C=st.integers(1, 3), kh=st.sampled_from([1, 3, 5]), kw=st.sampled_from([1, 3, 5]),
           H=st.integers(1, 6), W=st.integers(1, 6), padding=st.sampled_from(PADDINGS), seed=st.integers(0, 10 ** 6))
    def test_hypothesis_measures(C, kh, kw, H, W, padding, seed):
        K = torch.randn(C, C, kh, kw, generator=torch.Generator().manual_seed(seed), dtype=D)
        op = Conv2dOperator(K, (H, W), padding)
        A = _dense_oracle(K, H, W, padding)
        torch.testing.assert_close(op.row_measures().reshape(-1), _dense_rows(A), rtol=0, atol=1e-12)
        torch.testing.assert_close(op.diagonal().reshape(-1), torch.diagonal(A), rtol=0, atol=1e-14)
        Kp = project_operator(op, 0.5).weight
        assert float(mu_inf(_dense_oracle(Kp, H, W, padding))) <= 0.5 + 1e-12


# ---------------------------------------------------------------------------------------------------
# projection and the μ∞ polytope on operators
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("C,kh,kw,H,W,padding", CASES)
def test_projection_guarantees_mu_inf(C, kh, kw, H, W, padding):
    K = _kernel(C, kh, kw, seed=5, scale=1.0)
    op = Conv2dOperator(K, (H, W), padding)
    gamma = 0.3
    P = project_operator(op, gamma)
    assert isinstance(P, Conv2dOperator) and P.image_size == (H, W) and P.padding == padding
    assert float(mu_inf(_dense_oracle(P.weight, H, W, padding))) <= gamma + 1e-12
    assert P.kernel_mu_inf() <= gamma + 1e-12
    # the same as project_conv_kernel, and projecting twice is the identity (bit for bit)
    assert torch.equal(P.weight, project_conv_kernel(K, gamma))
    assert torch.equal(project_operator(P, gamma).weight, P.weight)
    S = MuInfPolytope(gamma)
    assert S.contains(P)
    assert torch.equal(S.project(op).weight, P.weight)
    if H >= kh and W >= kw:  # the kernel set is exactly {μ∞(A) ≤ γ}: membership agrees with the dense test
        for Kt in (K, P.weight, 0.05 * K):
            opt = Conv2dOperator(Kt, (H, W), padding)
            assert S.contains(opt) == S.contains(opt.as_matrix())
            assert abs(float(S.value(opt)) - float(S.value(opt.as_matrix()))) <= 1e-12


@pytest.mark.parametrize("case", [(1, 3, 3, 3, 3, "zeros"), (2, 3, 3, 4, 4, "circular"), (2, 1, 1, 2, 2, "zeros"),
                                  (2, 3, 5, 2, 2, "circular")])
def test_projection_matches_cvxpy(case):
    pytest.importorskip("cvxpy")
    C, kh, kw, H, W, padding = case
    K = _kernel(C, kh, kw, seed=6, scale=1.0)
    op = Conv2dOperator(K, (H, W), padding)
    exact = project_operator(op, 0.4).weight
    ref = project_operator(op, 0.4, method="cvxpy").weight
    torch.testing.assert_close(exact, ref, rtol=0, atol=1e-6)


def test_projection_with_channel_weights():
    C, H, W = 3, 4, 4
    K = _kernel(C, 3, 3, seed=7, scale=1.0)
    op = Conv2dOperator(K, (H, W), "circular")
    eta = torch.tensor([1.0, 0.5, 2.0], dtype=D)[:, None, None].expand(C, H, W)
    P = project_operator(op, 0.2, eta=eta)
    assert float(P.mu_inf(eta)) <= 0.2 + 1e-12
    assert float(mu_inf(P.as_matrix(), eta.reshape(-1))) <= 0.2 + 1e-12
    S = MuInfPolytope(0.2, eta=eta.reshape(-1))
    assert S.contains(P) and not S.contains(op)
    torch.testing.assert_close(S.project(op).weight, P.weight, rtol=0, atol=0)
    with pytest.raises(NotImplementedError, match="eta"):
        op.constraint_rows(torch.rand(C, H, W, dtype=D) + 0.5)


def test_float32_projection_margin_distance():
    K = _kernel(3, 3, 3, seed=12, scale=1.0).float()
    for H, W, padding in [(5, 5, "zeros"), (2, 2, "circular"), (4, 6, "circular")]:
        op = Conv2dOperator(K, (H, W), padding)
        S = MuInfPolytope(0.7)
        P = S.project(op)
        assert P.dtype == torch.float32 and S.contains(P)
        assert float(mu_inf(_dense_oracle(P.weight.double(), H, W, padding))) <= 0.7 + 1e-6
        assert float(S.margin(P)) >= -1e-6 and float(S.margin(op)) < 0
        d = float(S.distance(op))
        assert abs(d - float(torch.linalg.vector_norm(K - P.weight))) <= 1e-6 and d > 0
        assert float(S.distance(P)) == 0.0


def test_project_in_place_writes_the_parameter():
    K = torch.nn.Parameter(_kernel(2, 3, 3, seed=8, scale=1.0))
    op = Conv2dOperator(K, (5, 5))
    expected = project_conv_kernel(K.detach(), 0.5)
    S = MuInfPolytope(0.5)
    ptr = K.data_ptr()
    assert S.project_(op) is op
    assert op.weight is K and K.data_ptr() == ptr and isinstance(K, torch.nn.Parameter)
    assert torch.equal(K.detach(), expected)
    # a non-contiguous kernel is projected too (out of place, copied back)
    base = _kernel(2, 3, 3, seed=9, scale=1.0).permute(1, 0, 2, 3)
    opn = Conv2dOperator(base, (4, 4), "circular")
    S.project_(opn)
    assert torch.equal(opn.weight, project_conv_kernel(_kernel(2, 3, 3, seed=9, scale=1.0).permute(1, 0, 2, 3), 0.5))


def test_dense_operator_in_sets():
    g = torch.Generator().manual_seed(10)
    A = torch.randn(6, 6, generator=g, dtype=D)
    op = DenseOperator(A.clone())
    S = MuInfPolytope(0.5)
    assert abs(float(S.value(op)) - float(mu_inf(A))) <= 1e-12
    P = S.project(op)
    assert isinstance(P, DenseOperator) and torch.equal(P.weight, torch.as_tensor(S.project(A)))
    assert S.project_(op) is op and torch.equal(op.weight, P.weight) and S.contains(op)
    assert torch.equal(project_operator(DenseOperator(A), 0.5).weight, P.weight)
    N = NormInfBall(0.5)
    assert float(N.value(DenseOperator(A))) == float(N.value(A))
    assert torch.equal(N.project(DenseOperator(A)).weight, torch.as_tensor(N.project(A)))
    assert N.contains(DenseOperator(N.project(A)))
    Md = MonotoneSet(0.1)
    assert Md.contains(DenseOperator(A)) == Md.contains(A)
    assert as_operator(op) is op
    conv = Conv2dOperator(_kernel(1, 3, 3), (3, 3))
    assert as_operator(conv) is conv


@pytest.mark.parametrize("S", [NormInfBall(0.5), MonotoneSet(0.1), WeightedMuInf(0.5)], ids=lambda s: s.name)
def test_dense_only_sets_refuse_conv_operators(S):
    op = Conv2dOperator(_kernel(2, 3, 3), (3, 3))
    for call in (lambda: S.value(op), lambda: S.contains(op), lambda: S.margin(op)):
        with pytest.raises(TypeError, match=type(S).__name__) as info:
            call()
        assert "Conv2dOperator" in str(info.value)
    if S.has_projection:
        with pytest.raises(TypeError, match="Conv2dOperator"):
            S.project(op)
        with pytest.raises(TypeError, match="Conv2dOperator"):
            S.project_(op)


# ---------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------

def test_bad_construction():
    K = _kernel(2, 3, 3)
    with pytest.raises(ShapeError, match="kernel.*odd"):
        Conv2dOperator(torch.zeros(2, 2, 2, 3, dtype=D), (4, 4))
    with pytest.raises(ShapeError, match="kernel.*channels"):
        Conv2dOperator(torch.zeros(2, 3, 3, 3, dtype=D), (4, 4))
    with pytest.raises(ShapeError, match="kernel.*shape"):
        Conv2dOperator(torch.zeros(2, 2, 3, dtype=D), (4, 4))
    with pytest.raises(TypeError, match="kernel"):
        Conv2dOperator(torch.zeros(2, 2, 3, 3, dtype=torch.int64), (4, 4))
    with pytest.raises(TypeError, match="kernel"):
        Conv2dOperator(torch.zeros(2, 2, 3, 3, dtype=torch.complex128), (4, 4))
    for bad in [(0, 4), (4,), (4, 4, 4), (4.0, 4), 4, "44", (True, 4), (-1, 3), None]:
        with pytest.raises(ValueError, match="image_size"):
            Conv2dOperator(K, bad)
    Conv2dOperator(K, (np.int64(3), 4))  # numpy ints are ints
    for bad in ["reflect", "same", None, 0]:
        with pytest.raises(ValueError, match="padding"):
            Conv2dOperator(K, (4, 4), bad)


def test_bad_products_and_weights():
    op = Conv2dOperator(_kernel(2, 3, 3), (4, 5), "circular")
    with pytest.raises(ShapeError, match="x"):
        op.matvec(torch.zeros(1, 2, 5, 4, dtype=D))
    with pytest.raises(TypeError, match="x.*dtype"):
        op.matvec(torch.zeros(1, 2, 4, 5, dtype=torch.float32))
    with pytest.raises(ShapeError, match="y"):
        op.rmatvec(torch.zeros(1, 3, 4, 5, dtype=D))
    with pytest.raises(TypeError, match="y.*dtype"):
        op.rmatvec(torch.zeros(1, 2, 4, 5, dtype=torch.float32))
    with pytest.raises(ShapeError, match="eta"):
        op.row_measures(torch.ones(2, 5, 4, dtype=D))
    with pytest.raises(ValueError, match="eta"):
        op.row_measures(-torch.ones(2, 4, 5, dtype=D))
    with pytest.raises(ShapeError, match="weight"):
        op.with_weight(torch.zeros(2, 2, 5, 5, dtype=D))


def test_bad_projection_input():
    K = _kernel(2, 3, 3)
    K[0, 1, 0, 0] = math.nan
    op = Conv2dOperator(K, (4, 4))
    with pytest.raises(NonFiniteError, match="kernel"):
        project_operator(op, 0.5)
    with pytest.raises(NonFiniteError, match="kernel"):
        MuInfPolytope(0.5).project_(op)
    good = Conv2dOperator(_kernel(2, 3, 3), (4, 4))
    with pytest.raises(TypeError, match="op"):
        project_operator(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="method"):
        project_operator(good, 0.5, method="nope")
    with pytest.raises(ValueError, match="gamma"):
        project_operator(good, math.nan)
    with pytest.raises(ShapeError, match="eta"):
        MuInfPolytope(0.5, eta=np.ones(7)).value(good)
    with pytest.raises(TypeError, match="kernel"):
        project_operator(Conv2dOperator(_kernel(2, 3, 3).half(), (4, 4)), 0.5)
