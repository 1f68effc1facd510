"""Feasible-set objects and their registry (linf_opt.sets.feasible)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from linf_opt import ConfigError, ShapeError, mu_2, mu_inf, norm_inf
from linf_opt.sets.projections import project_mu_2, project_mu_inf, project_norm_inf
from linf_opt.sets.feasible import (FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall, available_sets, get_set,
                           register_set)

SETS = [MuInfPolytope(0.9), MuInfPolytope(-0.5, eta=[1.0, 2.0, 0.5, 1.0]), NormInfBall(1.5), MonotoneSet(0.2)]


@pytest.mark.parametrize("S", SETS, ids=repr)
def test_interface_on_random_matrices(S):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4)) * 2
    assert S.convex and S.has_projection and isinstance(S.name, str)
    assert S.margin(A) == pytest.approx(S.bound - S.value(A))
    X = S.project(A)
    assert isinstance(X, np.ndarray) and X.shape == A.shape
    assert S.contains(X) is True and S.contains(A) is (S.value(A) <= S.bound)
    assert S.distance(A) == pytest.approx(np.linalg.norm(A - X))
    assert S.distance(X) == 0.0
    assert np.array_equal(S.project(X), X)
    for method in S.methods:  # every backend lands on the same point
        np.testing.assert_allclose(S.project(A, method=method), X, atol=1e-7 * np.abs(A).max())
    # torch, batched: bool tensor and tensors back, float32 stays float32
    B = torch.tensor(rng.standard_normal((3, 4, 4)) * 2, dtype=torch.float32)
    PB = S.project(B)
    assert PB.dtype == torch.float32 and PB.shape == B.shape
    inside = S.contains(PB)
    assert isinstance(inside, torch.Tensor) and inside.dtype == torch.bool and bool(inside.all())
    assert S.distance(B).shape == (3,) and S.value(B).shape == (3,)
    assert isinstance(S.contains(B.numpy()), np.ndarray)


def test_values_match_the_measures_and_functions():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5))
    eta = rng.uniform(0.5, 2, 5)
    P = MuInfPolytope(0.3, eta=eta)
    assert P.value(A) == mu_inf(A, eta) and P.bound == 0.3
    assert np.array_equal(P.project(A), project_mu_inf(A, 0.3, eta))
    assert np.array_equal(P.project(A, method="sort"), project_mu_inf(A, 0.3, eta, method="sort"))
    N = NormInfBall(2.0)
    assert N.value(A) == norm_inf(A) and np.array_equal(N.project(A), project_norm_inf(A, 2.0))
    M = MonotoneSet(0.25)
    assert M.bound == 0.75 and M.value(A) == mu_2(A)
    assert np.array_equal(M.project(A), project_mu_2(A, 0.75))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.floats(-2, 2), st.integers(0, 2**31))
def test_contains_tolerance_and_projection_boundary(n, gamma, seed):
    A = np.random.default_rng(seed).standard_normal((n, n)) * 3
    for S in (MuInfPolytope(gamma), MonotoneSet(1 - gamma), NormInfBall(abs(gamma))):
        X = S.project(A)
        assert S.contains(X)
        assert S.margin(X) >= -1e-9 * max(1.0, np.abs(X).sum(1).max())
        if not S.contains(A, tol=0.0):  # projected points lie on the boundary
            assert abs(S.margin(X)) <= 1e-9 * max(1.0, np.abs(A).sum(1).max())
            # without tolerance, membership is exactly value ≤ bound; a step outward leaves the set
            outward = X * 1.001 if isinstance(S, NormInfBall) else X + 1e-3 * np.eye(n)
            assert S.contains(outward, tol=0.0) == (S.value(outward) <= S.bound)
            if abs(S.bound) > 1e-6:
                assert not S.contains(outward, tol=0.0)


def test_contains_covers_float32_round_off():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(8, 60, 60, generator=g) * 3
    for S in (MuInfPolytope(0.9), MonotoneSet(0.1), NormInfBall(0.9)):
        assert bool(S.contains(S.project(A)).all())


def test_warm_started_polytope_matches_cold():
    rng = np.random.default_rng(4)
    P, Q = MuInfPolytope(0.5, warm_start=True), MuInfPolytope(0.5)
    A = torch.tensor(rng.standard_normal((20, 20)))
    for _ in range(5):
        X = P.project(A)
        torch.testing.assert_close(X, Q.project(A), rtol=0, atol=1e-13)
        A = X + 0.05 * torch.tensor(rng.standard_normal((20, 20)))


def test_registry_and_configuration_errors():
    assert {"mu_inf", "norm_inf", "monotone"} <= set(available_sets())
    S = get_set("mu_inf", gamma=0.9, eta=[1.0, 2.0])
    assert isinstance(S, MuInfPolytope) and S.params == {"gamma": 0.9, "eta": [1.0, 2.0]}
    assert repr(get_set("monotone", m=0.1)) == "MonotoneSet(m=0.1)"
    with pytest.raises(ConfigError, match="valid names: .*monotone.*mu_inf.*norm_inf"):
        get_set("spectral")
    with pytest.raises(ConfigError, match="'gama'.*valid parameters: gamma, eta"):
        get_set("mu_inf", gama=0.9)
    with pytest.raises(ConfigError, match="missing parameter gamma"):
        get_set("norm_inf")
    with pytest.raises(ValueError):
        get_set("mu_inf", gamma=float("nan"))

    class Halfspace(FeasibleSet):  # a new condition is one class and one registration
        name, convex, has_projection = "trace", True, False

        def __init__(self, level):
            self.level = level

        @property
        def bound(self):
            return self.level

        def value(self, A):
            return torch.as_tensor(A).diagonal(dim1=-2, dim2=-1).sum(-1)

    register_set("trace_test", Halfspace)
    try:
        H = get_set("trace_test", level=1.0)
        assert H.contains(torch.eye(2) * 0.5) and not H.contains(torch.eye(2))
        with pytest.raises(NotImplementedError, match="no Euclidean projection"):
            H.project(torch.eye(2))
        with pytest.raises(ValueError, match="already registered"):
            register_set("trace_test", MonotoneSet)
        register_set("trace_test", MonotoneSet, overwrite=True)
        with pytest.raises(TypeError):
            register_set("bad", dict)
    finally:
        import linf_opt.sets.feasible as sets
        sets._REGISTRY.pop("trace_test", None)


def test_constructor_and_argument_errors():
    with pytest.raises(ValueError, match="empty|≥"):
        NormInfBall(-1.0)
    with pytest.raises(ValueError, match="positive"):
        MuInfPolytope(0.9, eta=[1.0, 0.0])
    with pytest.raises(ShapeError):
        MuInfPolytope(0.9, eta=[[1.0, 2.0]])
    with pytest.raises(ValueError, match="method"):
        MuInfPolytope(0.9).project(np.eye(2), method="eig")
    with pytest.raises(ShapeError):
        MonotoneSet(0.1).contains(np.ones((2, 3)))
    with pytest.raises(ShapeError):
        NormInfBall(1.0).project(np.ones((2, 3)))
    with pytest.raises(ShapeError):  # η of the wrong length for A
        MuInfPolytope(0.9, eta=[1.0, 2.0]).project(np.eye(3))


def test_compiled_membership_matches_the_generic_route(monkeypatch):
    """MuInfPolytope.contains on one CPU matrix takes a compiled pass (μ, ‖A‖∞, ‖A‖₁ in float64);
    it must decide exactly as the tensor route does away from round-off, and raise on NaN."""
    import linf_opt.sets.rows as row_module
    from linf_opt.sets._row_kernel import mu_inf_stats
    rng = np.random.default_rng(7)
    cases = []
    for n in (1, 3, 17, 64):
        eta = rng.uniform(0.3, 3.0, n)
        for S in (MuInfPolytope(0.7), MuInfPolytope(-0.2, eta=eta)):
            X = S.project(rng.standard_normal((n, n)) * 2)
            for A in (X, X + 1e-3 * np.eye(n), X - 1e-3 * np.eye(n), rng.standard_normal((n, n))):
                for dtype in (torch.float64, torch.float32):
                    cases.append((S, torch.tensor(A, dtype=dtype)))
    fast = [S.contains(A, tol=1e-6) for S, A in cases]
    huge = torch.zeros(3, 3, dtype=torch.float64)
    huge[0, 1:] = 1e308                                   # finite entries whose row sum overflows
    cases.append((MuInfPolytope(0.5), huge))
    fast.append(MuInfPolytope(0.5).contains(huge, tol=1e-6))
    assert fast[-1] is False
    calls = []
    monkeypatch.setattr(MuInfPolytope, "_value_and_scale_fast", lambda self, t: calls.append(1))
    generic = [S.contains(A, tol=1e-6) for S, A in cases]
    assert fast == generic and len(calls) == len(cases) and any(fast) and not all(fast)
    # the compiled statistics are the measures' values
    A = rng.standard_normal((30, 30))
    eta = rng.uniform(0.5, 2.0, 30)
    mu, rows, cols = mu_inf_stats(A, eta)
    assert mu == pytest.approx(mu_inf(A, eta), rel=1e-14)
    assert rows == pytest.approx(norm_inf(A), rel=1e-14) and cols == pytest.approx(norm_inf(A.T), rel=1e-14)
    A[4, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MuInfPolytope(0.5).contains(torch.tensor(A), tol=1e-6)
    monkeypatch.undo()
    assert MuInfPolytope(0.5).contains(torch.zeros(4, 4).t(), tol=1e-6) is True   # a non-contiguous view
    assert row_module._cpu_kernel() is not None


@pytest.mark.parametrize("S", [MuInfPolytope(0.6), MuInfPolytope(0.6, eta=[1.0, 0.5, 2.0, 1.5, 1.0], warm_start=True),
                               NormInfBall(1.0), MonotoneSet(0.3)], ids=repr)
def test_project_in_place_equals_project(S):
    """project_(A) writes project(A) into A (a parameter after an optimizer step), bit for bit, also
    when called repeatedly on the same parameter (cached views), after its storage is replaced, and on
    non-contiguous views; NaN leaves A untouched."""
    rng = np.random.default_rng(3)
    P = torch.nn.Parameter(torch.tensor(rng.standard_normal((5, 5)) * 2))
    for step in range(4):
        with torch.no_grad():
            P.add_(torch.tensor(rng.standard_normal((5, 5)) * 0.3))
        expected = torch.as_tensor(S.project(P.detach().clone()))
        assert S.project_(P) is P
        assert torch.equal(P.detach(), expected) and P.requires_grad
        if step == 1:
            P.data = torch.tensor(rng.standard_normal((5, 5)) * 2)   # new storage: the cache must notice
    T = torch.tensor(rng.standard_normal((5, 5)) * 2, dtype=torch.float32)
    view = T.t()                                                    # same data pointer, other strides
    expected = torch.as_tensor(S.project(view.clone()))
    S.project_(view)
    assert torch.equal(view, expected)
    B = torch.tensor(rng.standard_normal((2, 5, 5)) * 2)           # a batch
    expected = torch.as_tensor(S.project(B.clone()))
    assert torch.equal(S.project_(B), expected)
    bad = torch.tensor(rng.standard_normal((5, 5)) * 2)
    bad[2, 3] = float("nan")
    before = bad.clone()
    with pytest.raises(ValueError, match="NaN"):
        S.project_(bad)
    assert torch.equal(bad[~bad.isnan()], before[~before.isnan()])
    with pytest.raises(TypeError, match="in place"):
        S.project_(np.zeros((5, 5)))


def test_monotone_sdp_projection_is_size_guarded():
    """MonotoneSet.project(method="cvxpy") solves the SDP only where it is estimated to take under a
    minute (it once took 91 s at n = 100 without a warning)."""
    from linf_opt.sets.sdp import SDPTooLargeError
    rng = np.random.default_rng(0)
    S = MonotoneSet(0.1)
    A = rng.standard_normal((6, 6))
    np.testing.assert_allclose(S.project(A, method="cvxpy"), S.project(A), atol=1e-7)
    with pytest.raises(SDPTooLargeError, match="force=True"):
        S.project(rng.standard_normal((400, 400)), method="cvxpy")


def test_every_registered_set_takes_gamma():
    """One level for a loop over available_sets() (before: get_set("monotone", gamma=0.9) raised)."""
    from linf_opt.errors import ConfigError

    A = np.array([[0.2, 0.3], [-0.1, 0.4]])
    for name in available_sets():
        S = get_set(name, gamma=0.9)
        assert S.bound == 0.9, name
        assert bool(S.contains(A)), name
        assert repr(get_set(name, **S.params)) == repr(S)  # params round-trip
    M = get_set("monotone", gamma=0.9)
    assert isinstance(M, MonotoneSet) and np.isclose(M.m, 0.1)
    assert get_set("monotone", m=0.1).bound == 0.9 and MonotoneSet(0.25).bound == 0.75  # m still works
    assert get_set("monotone", m=0.1, gamma=0.9).bound == 0.9                             # consistent: accepted
    with pytest.raises(ConfigError, match="disagree"):
        get_set("monotone", m=0.2, gamma=0.9)
    with pytest.raises(ConfigError, match="gamma"):
        MonotoneSet()
