"""Projections onto the well-posedness sets (linf_opt.sets.projections).

Oracles: an independent numpy/scipy root finder for the row multiplier (brentq on g(λ)), the CVXPY +
Clarabel backend at tight tolerances, the variational inequality ⟨v − x, y − x⟩ ≤ 0 over feasible y,
and, for kernels, the explicit circular-convolution operator.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy.optimize import brentq

from linf_opt import NonFiniteError, ProjectionError, ShapeError, mu_2, mu_inf
from linf_opt.sets.projections import (MuInfProjector, _project_mu_inf, project_conv_kernel, project_mu_2,
                                       project_mu_inf, project_norm_inf)
from linf_opt.sets.rows import _project_rows

FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------------
# test problems: hypothesis draws the structure, numpy fills in the entries (fast for n up to 60)
# ---------------------------------------------------------------------------------------------------

@st.composite
def problems(draw, max_n=60, dtypes=(np.float64, np.float32), weighted=None):
    n = draw(st.integers(1, max_n))
    dtype = draw(st.sampled_from(dtypes))
    big = 30 if dtype == np.float32 else 150
    exponent = draw(st.sampled_from([0, 0, 0, -3, 3, -big // 2, big // 2, -big, big]))
    kind = draw(st.sampled_from(["gauss", "ties", "sparse", "feasible", "mixed"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "ties":  # many equal |aᵢⱼ| and zeros
        A = rng.integers(-3, 4, (n, n)).astype(float)
    elif kind == "sparse":  # zero rows and mostly-zero rows
        A = rng.standard_normal((n, n)) * (rng.random((n, n)) < 0.15)
        A[rng.random(n) < 0.3] = 0.0
    else:
        A = rng.standard_normal((n, n)) * rng.choice([0.1, 1.0, 10.0])
    is_weighted = draw(st.booleans()) if weighted is None else weighted
    eta = None
    if is_weighted:
        eta = rng.uniform(0.2, 5.0, n) if draw(st.booleans()) else rng.integers(1, 4, n).astype(float)
    gamma = float(draw(st.sampled_from([0.9, 0.5, 0.0, -0.5, -3.0, 2.0, 20.0])))
    if kind in ("feasible", "mixed"):  # make (some) rows strictly feasible through their diagonal
        w = np.ones((n, n)) if eta is None else eta[None, :] / eta[:, None]
        off = (np.abs(A) * w).sum(1) - np.abs(np.diag(A))
        rows = np.arange(n) if kind == "feasible" else np.flatnonzero(rng.random(n) < 0.5)
        A[rows, rows] = gamma - off[rows] - rng.uniform(0.0, 1.0, len(rows))
    scale = 10.0 ** exponent
    return (A * scale).astype(dtype), gamma * scale, eta


def row_values(X, eta):
    """xᵢᵢ + Σ_{j≠i} |xᵢⱼ| ηⱼ/ηᵢ and the row mass |xᵢᵢ| + Σ_{j≠i} |xᵢⱼ| ηⱼ/ηᵢ, in float64."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[-1]
    w = np.ones((n, n)) if eta is None else eta[None, :] / eta[:, None]
    off = (np.abs(X) * w).sum(-1) - np.abs(np.diagonal(X, axis1=-2, axis2=-1))
    d = np.diagonal(X, axis1=-2, axis2=-1)
    return d + off, np.abs(d) + off


def oracle_mu_inf(A, gamma, eta):
    """Row projections with λ from scipy's brentq on g(λ), in float64 (independent of the library)."""
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    X = A.copy()
    for i in range(n):
        w = np.ones(n) if eta is None else eta / eta[i]
        off = np.arange(n) != i
        v, a, ww = A[i, i], np.abs(A[i, off]), w[off]

        def g(lam):
            return v - lam + np.sum(ww * np.maximum(a - lam * ww, 0.0)) - gamma

        if g(0.0) <= 0:
            continue
        hi = 2 * g(0.0)  # g(λ) ≤ g(0) − λ
        lam = brentq(g, 0.0, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
        X[i, i] = v - lam
        X[i, off] = np.sign(A[i, off]) * np.maximum(a - lam * ww, 0.0)
    return X


def feasible_points(n, gamma, eta, rng, count=4, scale=1.0):
    """Random matrices inside P(γ, η): random off-diagonals, diagonal pushed below the boundary."""
    w = np.ones((n, n)) if eta is None else eta[None, :] / eta[:, None]
    for _ in range(count):
        Y = rng.standard_normal((n, n)) * scale
        off = (np.abs(Y) * w).sum(1) - np.abs(np.diag(Y))
        np.fill_diagonal(Y, gamma - off - rng.uniform(0, scale, n) * rng.integers(0, 2))
        yield Y


def round_off(A, gamma, eta, eps):
    """Allowed violation per row: round-off scaled by the row's magnitude."""
    _, mass = row_values(A, eta)
    n = A.shape[-1]
    return 4 * (n + 2) * eps * (mass + abs(gamma))


# ---------------------------------------------------------------------------------------------------
# the ℓ∞ polytope
# ---------------------------------------------------------------------------------------------------

@settings(max_examples=120, **FAST)
@given(problems())
def test_mu_inf_projection_properties(prob):
    A, gamma, eta = prob
    eps = np.finfo(A.dtype).eps
    X = project_mu_inf(A, gamma, eta)
    assert isinstance(X, np.ndarray) and X.dtype == A.dtype and X.shape == A.shape
    # feasible, up to round-off scaled by the row's magnitude
    r, _ = row_values(X, eta)
    assert np.all(r - gamma <= round_off(A, gamma, eta, eps))
    # projecting twice changes nothing, bit for bit; feasible rows come back bit-identical
    assert np.array_equal(project_mu_inf(X, gamma, eta), X)
    rA, massA = row_values(A, eta)
    clearly_inside = rA <= gamma - 1e-3 * (massA + abs(gamma))
    assert np.array_equal(X[clearly_inside], A[clearly_inside])
    # the two closed forms ("exact" is one of them) agree to round-off, and each is idempotent
    tol = round_off(A, gamma, eta, eps)[:, None]
    for method in ("sort", "pivot"):
        Xm = project_mu_inf(A, gamma, eta, method=method)
        assert np.all(np.abs(Xm.astype(float) - X) <= tol)
        assert np.array_equal(project_mu_inf(Xm, gamma, eta, method=method), Xm)
        assert np.all(row_values(Xm, eta)[0] - gamma <= tol[:, 0])
    # optimality: ⟨v − x, y − x⟩ ≤ 0 for feasible y (in float64 on the float64 values)
    # (at unit scale; the |γ|·n term covers γ rounded down to the dtype)
    n = A.shape[0]
    scale = max(float(np.abs(A).max()), abs(gamma), 1e-300)
    Af, Xf, g1 = A.astype(float) / scale, X.astype(float) / scale, gamma / scale
    rng = np.random.default_rng(0)
    for Y in feasible_points(n, g1, eta, rng):
        lhs = np.sum((Af - Xf) * (Y - Xf))
        assert lhs <= 1e3 * eps * np.linalg.norm(Af - Xf) * (np.linalg.norm(Y - Xf) + np.linalg.norm(Af) + abs(g1) * n)


@settings(max_examples=60, **FAST)
@given(problems(dtypes=(np.float64,)))
def test_mu_inf_matches_brentq_oracle(prob):
    A, gamma, eta = prob
    O = oracle_mu_inf(A, gamma, eta)
    scale = np.maximum(np.abs(A).max(1), abs(gamma))[:, None]
    for method in ("exact", "sort", "pivot"):
        X = project_mu_inf(A, gamma, eta, method=method)
        assert np.all(np.abs(X - O) <= 1e-11 * scale + 1e-300)


@settings(max_examples=12, **FAST)
@given(problems(max_n=60, dtypes=(np.float64,)))
def test_mu_inf_matches_cvxpy_reference(prob):
    A, gamma, eta = prob
    X = project_mu_inf(A, gamma, eta)
    C = project_mu_inf(A, gamma, eta, method="cvxpy")
    scale = np.maximum(np.abs(A).max(1), abs(gamma))[:, None]
    assert np.all(np.abs(X - C) <= 1e-7 * scale)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 40))
    X64 = project_mu_inf(A, 0.5)
    X32 = project_mu_inf(torch.tensor(A, dtype=torch.float32), 0.5)
    assert X32.dtype == torch.float32
    assert np.abs(X32.double().numpy() - X64).max() < 1e-5


def test_pivot_fallback_and_warm_start_are_exact():
    rng = np.random.default_rng(5)
    V = torch.tensor(rng.standard_normal((50, 80)) * np.exp(rng.uniform(-8, 8, (50, 80))))
    idx = torch.randint(0, 80, (50, 1))
    X_sort, lam_sort = _project_rows(V, None, idx, 0.3, "sort")
    X_one, _ = _project_rows(V, None, idx, 0.3, "pivot", max_iter=1)  # forces the sorting safety net
    X_piv, lam_piv = _project_rows(V, None, idx, 0.3, "pivot")
    for lam0 in (lam_piv, 2 * lam_piv + 1, torch.zeros_like(lam_piv)):  # any start gives the root
        X_warm, _ = _project_rows(V, None, idx, 0.3, "pivot", lam0=lam0)
        torch.testing.assert_close(X_warm, X_sort, rtol=0, atol=1e-12 * float(V.abs().max()))
    torch.testing.assert_close(X_one, X_sort, rtol=0, atol=1e-12 * float(V.abs().max()))
    torch.testing.assert_close(lam_piv, lam_sort, rtol=1e-12, atol=0)
    # large enough for the pivoting to drop finished rows between passes; weighted rows too
    V = torch.tensor(rng.standard_normal((400, 300)) * np.exp(rng.uniform(-3, 3, (400, 1))))
    W = torch.tensor(rng.uniform(0.2, 5, (400, 300)))
    idx = torch.randint(0, 300, (400, 1))
    for Wm in (None, W):
        X_sort, _ = _project_rows(V, Wm, idx, 0.3, "sort")
        info = {}
        X_piv, _ = _project_rows(V, Wm, idx, 0.3, "pivot", info=info)
        assert info["projected"] > 300 and info["passes"] >= 3
        torch.testing.assert_close(X_piv, X_sort, rtol=0, atol=1e-12 * float(V.abs().max()))


def test_compiled_kernel_is_the_cpu_exact_path_and_matches_the_torch_closed_forms(monkeypatch):
    """method="exact" on CPU runs the numba kernel: Newton passes, its sorting safety net, warm starts,
    weights, the ℓ1 ball (no linear coordinate) and float32 all agree with the torch closed forms."""
    import linf_opt.sets.rows as row_module
    assert row_module._cpu_kernel() is not None
    calls = []
    real = row_module._project_rows_compiled
    monkeypatch.setattr(row_module, "_project_rows_compiled", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(11)
    V = torch.tensor(rng.standard_normal((60, 90)) * np.exp(rng.uniform(-6, 6, (60, 90))))
    W = torch.tensor(rng.uniform(0.2, 5, (60, 90)))
    idx = torch.randint(0, 90, (60, 1))
    for Wm in (None, W):
        for ids in (idx, None):
            X_sort, lam_sort = _project_rows(V, Wm, ids, 0.3, "sort")
            info = {}
            X, lam = _project_rows(V, Wm, ids, 0.3, "exact", info=info)
            assert info["projected"] == int((lam_sort > 0).sum()) and info["passes"] >= 2
            X_one, _ = _project_rows(V, Wm, ids, 0.3, "exact", max_iter=1)  # the sorting safety net
            atol = 1e-12 * float(V.abs().max())
            for Y in (X, X_one):
                torch.testing.assert_close(Y, X_sort, rtol=0, atol=atol)
            torch.testing.assert_close(lam.to(lam_sort), lam_sort, rtol=1e-12, atol=0)
            for lam0 in (lam, 2 * lam + 1, torch.zeros_like(lam)):  # any warm start gives the root
                X_warm, _ = _project_rows(V, Wm, ids, 0.3, "exact", lam0=lam0)
                torch.testing.assert_close(X_warm, X_sort, rtol=0, atol=atol)
            # float32 rows: the same projection to float32 round-off, and exactly feasible in float64
            X32, _ = _project_rows(V.float(), None if Wm is None else Wm.float(), ids, 0.3, "exact")
            assert X32.dtype == torch.float32
            torch.testing.assert_close(X32.double(), X_sort, rtol=0, atol=1e-5 * float(V.abs().max()))
    assert len(calls) >= 24
    # the ℓ1 ball at γ = 0 zeroes every row
    Z, _ = _project_rows(V, None, None, 0.0, "exact")
    assert not Z.any()


def test_exact_falls_back_to_the_torch_closed_forms_without_the_kernel(monkeypatch):
    import linf_opt.sets.rows as row_module
    rng = np.random.default_rng(2)
    A = torch.tensor(rng.standard_normal((70, 70)))
    X = project_mu_inf(A, 0.4)
    monkeypatch.setattr(row_module, "_cpu_kernel", lambda: None)  # the dispatch of project_mu_inf lives in rows
    Y = project_mu_inf(A, 0.4)
    # the kernel sits inside γ by δ = 2(n + 2)·2⁻⁵³ of the row mass (on the diagonal), the torch forms on it
    delta = 2 * (70 + 2) * 2.0 ** -53 * float((X.abs().sum(-1)).max())
    torch.testing.assert_close(Y, X, rtol=0, atol=2 * delta + 1e-14)
    torch.testing.assert_close(Y, project_mu_inf(A, 0.4, method="pivot"), rtol=0, atol=0)


def test_projector_object_reuses_state_and_matches_function():
    rng = np.random.default_rng(1)
    A = torch.tensor(rng.standard_normal((30, 30)))
    eta = rng.uniform(0.5, 2, 30)
    for warm in (False, True):
        proj = MuInfProjector(0.8, eta=eta, warm_start=warm)
        X1 = proj(A)
        torch.testing.assert_close(X1, project_mu_inf(A, 0.8, eta), rtol=0, atol=1e-13)
        B = X1 + 1e-3 * torch.tensor(rng.standard_normal((30, 30)))  # a training step's correction
        torch.testing.assert_close(proj(B), project_mu_inf(B, 0.8, eta), rtol=0, atol=1e-13)
        assert proj.info["rows"] == 30 and proj.info["projected"] >= 1
    with pytest.raises(ValueError, match="warm_start"):
        MuInfProjector(0.8, method="sort", warm_start=True)
    with pytest.raises(ValueError, match="positive"):  # weights are checked when the projector is made
        MuInfProjector(0.8, eta=[1.0, -2.0])
    # a warm projector fed matrices of another shape, dtype or batch starts cold for them
    proj = MuInfProjector(0.8, warm_start=True)
    for B in (torch.randn(120, 120), torch.randn(4, 30, 30, dtype=torch.float64), torch.randn(120, 120)):
        torch.testing.assert_close(proj(B), project_mu_inf(B, 0.8), rtol=0, atol=1e-5)


def test_batched_torch_and_types():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 3, 7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    eta = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    X = project_mu_inf(A, 0.4, eta)
    assert X.shape == A.shape and X.dtype == A.dtype and not X.requires_grad
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(X[i, j], project_mu_inf(A[i, j].detach(), 0.4, eta), rtol=0, atol=1e-14)
    assert torch.all(mu_inf(X, eta) <= 0.4 + 1e-12)
    # batched weights, one η per matrix
    etas = torch.rand(2, 3, 7, generator=g, dtype=torch.float64) + 0.5
    Xb = project_mu_inf(A, 0.4, etas)
    torch.testing.assert_close(Xb[1, 2], project_mu_inf(A[1, 2].detach(), 0.4, etas[1, 2]), rtol=0, atol=1e-14)
    # the input is never modified (numpy input shares memory with the tensor used inside)
    An = np.random.default_rng(0).standard_normal((6, 6)) * 3
    before = An.copy()
    for method in ("sort", "pivot"):
        project_mu_inf(An, 0.1, method=method)
        project_norm_inf(An, 0.1, method=method)
    project_mu_2(An, 0.1)
    project_conv_kernel(An.reshape(1, 1, 6, 6)[:, :, :5, :5].copy(), 0.1)
    assert np.array_equal(An, before)
    # lists and numpy come back as numpy; an empty batch is fine
    assert project_mu_inf([[2.0]], 0.5).tolist() == [[0.5]]
    assert project_mu_inf(np.zeros((0, 4, 4)), 0.5).shape == (0, 4, 4)


def test_examples_from_docstrings():
    X = project_mu_inf(np.array([[1.0, 2.0], [0.5, -3.0]]), gamma=0.5)
    assert X.tolist() == [[-0.25, 0.75], [0.5, -3.0]] and mu_inf(X) == 0.5
    assert project_norm_inf(np.array([[3.0, -1.0], [0.2, 0.1]]), gamma=1.0).tolist() == [[1.0, 0.0], [0.2, 0.1]]
    assert project_mu_2(np.array([[2.0, 1.0], [-1.0, 0.0]]), bound=1.0).tolist() == [[1.0, 1.0], [-1.0, 0.0]]


# ---------------------------------------------------------------------------------------------------
# El Ghaoui's norm ball
# ---------------------------------------------------------------------------------------------------

def oracle_l1(v, gamma):
    a = np.abs(v)
    if a.sum() <= gamma:
        return v.copy()
    lam = brentq(lambda t: np.maximum(a - t, 0).sum() - gamma, 0.0, a.max(), xtol=1e-300,
                 rtol=4 * np.finfo(float).eps)
    return np.sign(v) * np.maximum(a - lam, 0)


@settings(max_examples=60, **FAST)
@given(problems(weighted=False))
def test_norm_inf_projection_properties(prob):
    A, gamma, _ = prob
    gamma = abs(gamma)
    eps = np.finfo(A.dtype).eps
    X = project_norm_inf(A, gamma)
    assert X.dtype == A.dtype
    assert np.all(np.abs(X).sum(1) <= gamma * (1 + 4 * eps))  # exactly in the dtype, up to conversion
    assert np.array_equal(project_norm_inf(X, gamma), X)
    inside = np.abs(A.astype(float)).sum(1) <= gamma * (1 - 1e-3)
    assert np.array_equal(X[inside], A[inside])
    scale = np.maximum(np.abs(A).max(1), gamma)[:, None].astype(float)
    for method in ("sort", "pivot"):
        Xm = project_norm_inf(A, gamma, method=method)
        assert np.all(np.abs(Xm.astype(float) - X) <= 4 * (A.shape[1] + 2) * eps * scale * A.shape[1])
        assert np.array_equal(project_norm_inf(Xm, gamma, method=method), Xm)
    if A.dtype == np.float64:
        O = np.stack([oracle_l1(v, gamma) for v in A])
        for method in ("sort", "pivot"):
            assert np.all(np.abs(project_norm_inf(A, gamma, method=method) - O) <= 1e-11 * scale + 1e-300)


def test_norm_inf_matches_cvxpy_and_takes_rectangles():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((6, 15)) * 2
    X = project_norm_inf(A, 1.5)
    C = project_norm_inf(A, 1.5, method="cvxpy")
    assert np.abs(X - C).max() <= 1e-7 * np.abs(A).max()
    assert np.all(np.abs(X).sum(1) <= 1.5)
    assert np.array_equal(project_norm_inf(A, 0.0), np.zeros_like(A))  # γ = 0: the ball is {0}
    assert np.array_equal(project_norm_inf(A, 1.5, method="pivot"), X)


# ---------------------------------------------------------------------------------------------------
# the monotone set
# ---------------------------------------------------------------------------------------------------

@settings(max_examples=40, **FAST)
@given(st.integers(1, 30), st.sampled_from([np.float64, np.float32]), st.floats(-2, 2), st.integers(0, 2**31))
def test_mu_2_projection_properties(n, dtype, bound, seed):
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((n, n)) * 2).astype(dtype)
    X = project_mu_2(A, bound)
    assert X.dtype == A.dtype
    assert mu_2(X) <= bound  # exactly: the same eigvalsh test that decides feasibility
    assert np.array_equal(project_mu_2(X, bound), X)
    eps = np.finfo(dtype).eps
    # the skew part is kept; the symmetric part's eigenvalues are clipped
    np.testing.assert_allclose(X - X.T, A - A.T, atol=50 * n * eps * np.abs(A).max())
    lam_a = np.linalg.eigvalsh((A.astype(float) + A.T) / 2)
    lam_x = np.linalg.eigvalsh((X.astype(float) + X.T) / 2)
    np.testing.assert_allclose(lam_x, np.minimum(lam_a, bound), atol=50 * n * eps * (np.abs(lam_a).max() + 1))


@settings(max_examples=8, **FAST)
@given(st.integers(1, 10), st.floats(-1, 1), st.integers(0, 2**31))
def test_mu_2_eig_agrees_with_sdp(n, bound, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) * 3
    X = project_mu_2(A, bound)
    S = project_mu_2(A, bound, method="cvxpy")
    assert np.abs(X - S).max() <= 1e-6 * max(1.0, np.abs(A).max())


def test_mu_2_batched_and_feasible_untouched():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(4, 6, 6, generator=g, dtype=torch.float64)
    A[0] = -torch.eye(6, dtype=torch.float64)  # already inside: returned bit-identical
    X = project_mu_2(A, 0.25)
    assert torch.equal(X[0], A[0])
    for k in range(4):
        torch.testing.assert_close(X[k], project_mu_2(A[k], 0.25), rtol=0, atol=1e-13)
    assert torch.all(mu_2(X) <= 0.25)


# ---------------------------------------------------------------------------------------------------
# convolution kernels
# ---------------------------------------------------------------------------------------------------

def conv_operator(K, size):
    """The matrix of x ↦ conv2d(x, K) with circular padding on a size×size image (C·size² square)."""
    C, _, kh, kw = K.shape
    n = C * size * size
    eye = torch.eye(n, dtype=K.dtype).reshape(n, C, size, size)
    padded = torch.nn.functional.pad(eye, (kw // 2, kw // 2, kh // 2, kh // 2), mode="circular")
    return torch.nn.functional.conv2d(padded, K).reshape(n, n).T


@pytest.mark.parametrize("k", [1, 3, 5])
def test_conv_kernel_makes_the_operator_well_posed(k):
    g = torch.Generator().manual_seed(k)
    K = torch.randn(3, 3, k, k, generator=g, dtype=torch.float64)
    gamma = 0.5
    P = project_conv_kernel(K, gamma)
    Op = conv_operator(P, 6)
    assert float(mu_inf(Op)) <= gamma + 1e-12
    # every row of the operator is one kernel row constraint: the maximum is attained (boundary)
    assert float(mu_inf(Op)) == pytest.approx(gamma, abs=1e-12)
    assert torch.equal(project_conv_kernel(P, gamma), P)
    # same as projecting the rows (channel slice with its centre tap) by hand with the CVXPY reference
    C = project_conv_kernel(K, gamma, method="cvxpy")
    assert (P - C).abs().max() <= 1e-7 * K.abs().max()
    # a feasible kernel is left alone; float32 numpy in, float32 numpy out
    Kn = (0.01 * K).numpy().astype(np.float32)
    Kn[np.arange(3), np.arange(3), k // 2, k // 2] = -1.0
    assert np.array_equal(project_conv_kernel(Kn, gamma), Kn)


def test_conv_kernel_centre_argument_and_errors():
    K = torch.randn(2, 2, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ShapeError, match="centre"):
        project_conv_kernel(K, 0.5)
    P = project_conv_kernel(K, 0.5, centre=(0, 0))
    rows = P.reshape(2, 8)
    # summed in another order than the projection's own test: allow round-off
    assert torch.all(rows[[0, 1], [0, 4]] + rows.abs().sum(1) - rows[[0, 1], [0, 4]].abs() <= 0.5 + 1e-14)
    with pytest.raises(ValueError, match="centre"):
        project_conv_kernel(K, 0.5, centre=(2, 0))
    with pytest.raises(ShapeError, match="channels"):
        project_conv_kernel(torch.randn(3, 2, 3, 3), 0.5)
    with pytest.raises(ShapeError, match=r"\(C, C, kh, kw\)"):
        project_conv_kernel(torch.randn(3, 3, 3), 0.5)
    with pytest.raises(NonFiniteError):
        project_conv_kernel(torch.full((2, 2, 3, 3), float("nan")), 0.5)


# ---------------------------------------------------------------------------------------------------
# bad input and solver failures
# ---------------------------------------------------------------------------------------------------

def test_bad_input_raises_value_errors():
    A = np.eye(3)
    with pytest.raises(NonFiniteError):
        project_mu_inf(np.array([[1.0, np.inf], [0.0, 1.0]]), 0.5)
    for bad in (np.diag([np.nan, 1.0]), np.array([[0.0, -np.inf], [np.nan, 0.0]])):  # diagonal or not
        for method in ("sort", "pivot", "cvxpy"):
            with pytest.raises(NonFiniteError, match="NaN/Inf"):
                project_mu_inf(bad, 0.5, eta=[1.0, 2.0], method=method)
        with pytest.raises(NonFiniteError, match="NaN/Inf"):
            MuInfProjector(0.5)(torch.tensor(bad))
    with pytest.raises(ShapeError):
        project_mu_inf(np.ones((3, 4)), 0.5)
    with pytest.raises(ValueError, match="gamma"):
        project_mu_inf(A, float("nan"))
    with pytest.raises(ValueError, match="positive"):
        project_mu_inf(A, 0.5, eta=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        project_mu_inf(A, 0.5, eta=[1.0, -1.0, 1.0])
    with pytest.raises(ShapeError):
        project_mu_inf(A, 0.5, eta=[1.0, 1.0])
    with pytest.raises(ValueError, match="method"):
        project_mu_inf(A, 0.5, method="simplex")
    with pytest.raises(ValueError, match="cvxpy"):
        project_mu_inf(A, 0.5, method="pivot", tol=1e-9)
    with pytest.raises(ValueError, match="empty"):
        project_norm_inf(A, -0.1)
    with pytest.raises(NonFiniteError):
        project_norm_inf(np.array([[np.nan]]), 1.0)
    with pytest.raises(NonFiniteError):
        project_mu_2(np.array([[np.nan]]), 1.0)
    with pytest.raises(ValueError, match="bound"):
        project_mu_2(A, float("nan"))
    with pytest.raises(ValueError, match="method"):
        project_mu_2(A, 1.0, method="exact")
    with pytest.raises(NonFiniteError, match="overflow"):  # finite entries whose row sums overflow
        project_mu_inf(np.full((3, 3), 1e308), 0.5)
    with pytest.raises(TypeError, match="float32 or float64"):
        project_mu_inf(torch.ones(3, 3, dtype=torch.int64), 0.5)


def test_cvxpy_failure_carries_the_status():
    A = np.random.default_rng(0).standard_normal((5, 5)) * 4
    with pytest.raises(ProjectionError) as info:
        project_mu_inf(A, 0.1, method="cvxpy", solver_options={"max_iter": 1})
    assert info.value.status is not None and info.value.status != "optimal"
    with pytest.raises(ProjectionError) as info:
        project_mu_2(A, 0.1, method="cvxpy", solver_options={"max_iter": 1})
    assert info.value.status not in (None, "optimal")


def test_cvxpy_result_is_checked_against_the_constraint(monkeypatch):
    import linf_opt.sets.reference as reference

    A = np.random.default_rng(0).standard_normal((5, 5)) * 4
    X = project_mu_inf(A, 0.1, method="cvxpy")  # default tolerances pass the check
    assert mu_inf(X) <= 0.1 + 1e-8
    solve = reference._solve

    def solve_then_spoil(prob, opts, what, retry=True):  # reports 'optimal' for an infeasible point
        solve(prob, opts, what, retry)
        for var in prob.variables():
            var.value = var.value + 1.0

    monkeypatch.setattr(reference, "_solve", solve_then_spoil)  # the rows' and the SDP's solves
    with pytest.raises(ProjectionError, match="violates") as info:
        project_mu_inf(A, 0.1, method="cvxpy")
    assert info.value.status == "optimal"
    with pytest.raises(ProjectionError, match="above the bound"):
        project_mu_2(A, 0.1, method="cvxpy")


def test_cvxpy_retries_once_with_a_looser_gap(monkeypatch):
    import linf_opt.sets.reference as reference

    A = np.random.default_rng(1).standard_normal((4, 4)) * 3
    solve_once = reference._solve_once
    seen = []

    def stalls_at_tight_gaps(prob, opts):  # Clarabel stopping short of the tightest gap tolerances
        seen.append(opts["tol_gap_abs"])
        return "optimal_inaccurate" if opts["tol_gap_abs"] < 1e-14 else solve_once(prob, opts)

    monkeypatch.setattr(reference, "_solve_once", stalls_at_tight_gaps)
    X = project_mu_inf(A, 0.2, method="cvxpy")  # default: gap 1e-15, retried at 1e-13
    np.testing.assert_allclose(X, project_mu_inf(A, 0.2), atol=1e-7 * np.abs(A).max())
    assert min(seen) == pytest.approx(1e-15) and max(seen) == pytest.approx(1e-13)
    with pytest.raises(ProjectionError) as info:  # a gap the caller chose is not relaxed
        project_mu_inf(A, 0.2, method="cvxpy", solver_options={"tol_gap_abs": 1e-15, "tol_gap_rel": 1e-15})
    assert info.value.status == "optimal_inaccurate"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 300, 300, generator=g, dtype=torch.float64) / 300 ** 0.5
    eta = torch.rand(300, generator=g, dtype=torch.float64) + 0.5
    for method in ("sort", "pivot", "exact"):
        for e in (None, eta):
            X = project_mu_inf(A.cuda(), 0.5, None if e is None else e.cuda(), method=method)
            assert X.is_cuda and X.dtype == A.dtype
            torch.testing.assert_close(X.cpu(), project_mu_inf(A, 0.5, e, method=method), rtol=0, atol=1e-12)
            assert bool((mu_inf(X, None if e is None else e.cuda()) <= 0.5 + 1e-12).all())
    torch.testing.assert_close(project_norm_inf(A.cuda(), 2.0).cpu(), project_norm_inf(A, 2.0), rtol=0, atol=1e-12)
    torch.testing.assert_close(project_mu_2(A.cuda(), 0.1).cpu(), project_mu_2(A, 0.1), rtol=0, atol=1e-10)
    K = torch.randn(4, 4, 3, 3, generator=g, dtype=torch.float32)
    torch.testing.assert_close(project_conv_kernel(K.cuda(), 0.5).cpu(), project_conv_kernel(K, 0.5), rtol=0, atol=1e-5)


def test_warm_start_keeps_feasible_rows_and_matches_cold_start():
    """Regression: with any warm-start multipliers, feasible rows come back unchanged and the result
    equals the cold-start projection. (A feasible row carried through the Newton passes from its old
    multiplier once followed g(λ) to a negative root: it changed A by 2.5e-5 during MNIST training.)
    """
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        n = 80
        A = torch.randn(n, n, generator=g, dtype=torch.float64) / n
        A.diagonal().sub_(torch.rand(n, generator=g, dtype=torch.float64))   # a mix of feasible rows
        lam0 = torch.rand(n, generator=g, dtype=torch.float64) * 10.0 ** (-trial % 6)
        feasible = torch.from_numpy(row_values(A.numpy(), None)[0] <= 0.3)
        assert 0 < int(feasible.sum()) < n
        for method in ("pivot", "exact"):
            X, _ = _project_mu_inf(A, 0.3, None, method, lam0=lam0)
            assert torch.equal(X[feasible], A[feasible])
            # the kernel ("exact") sits inside γ by δ = 2(n + 2)·2⁻⁵³ of the row mass, on the diagonal
            slack = 2 * 2 * (n + 2) * 2.0 ** -53 * float(A.abs().sum(-1).max()) if method == "exact" else 0.0
            torch.testing.assert_close(X, project_mu_inf(A, 0.3, method="sort"), atol=1e-14 + slack, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_in_place_projection_matches_cpu():
    """project_ on a small CUDA parameter goes through a pinned host buffer and the CPU kernel; larger
    ones through the device forms; both equal the CPU projection."""
    g = torch.Generator().manual_seed(3)
    for n, warm in ((100, True), (100, False), (500, False)):
        proj = MuInfProjector(0.9, warm_start=warm)
        P = torch.nn.Parameter(torch.randn(n, n, generator=g, dtype=torch.float64).cuda() / n ** 0.5)
        for _ in range(3):
            with torch.no_grad():
                P.add_(0.01 * torch.randn(n, n, generator=g, dtype=torch.float64).cuda())
            expected = project_mu_inf(P.detach().cpu(), 0.9)
            assert proj.project_(P) is P and P.is_cuda
            # n = 500 takes the device forms, on the boundary; the kernel sits δ = 2(n + 2)·2⁻⁵³·mass inside
            slack = 4 * (n + 2) * 2.0 ** -53 * float(expected.abs().sum(-1).max()) if n > 362 else 0.0
            torch.testing.assert_close(P.detach().cpu(), expected, rtol=0, atol=1e-13 + slack)


def test_prepare_kernels_compiles_both_dtypes():
    from linf_opt.sets.projections import prepare_kernels
    assert prepare_kernels(torch.float32) and prepare_kernels(torch.float64)
    assert prepare_kernels(torch.float16)  # nothing to compile for other dtypes; the kernels exist
