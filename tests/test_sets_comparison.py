"""The non-convex sets of the comparison: WeightedMuInf, PerronFrobeniusSet, DiagonalMetricSet."""
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from linf_opt import (SDPTooLargeError, metzler_majorant, mu_2, mu_inf, optimal_weights, project_mu_2,
                      project_mu_inf, spectral_abscissa)
from linf_opt.sets.sdp import diagonal_metric_value_2x2, diagonally_scaled_mu_2
from linf_opt.sets.feasible import (DiagonalMetricSet, MonotoneSet, MuInfPolytope, PerronFrobeniusSet, WeightedMuInf,
                           available_sets, get_set)

NEW = [WeightedMuInf(0.9), PerronFrobeniusSet(0.9), DiagonalMetricSet(0.9)]


def test_registered_and_built_by_name():
    assert {"weighted_mu_inf", "perron_frobenius", "diagonal_metric"} <= set(available_sets())
    assert isinstance(get_set("weighted_mu_inf", gamma=0.5), WeightedMuInf)
    assert get_set("perron_frobenius", gamma=0.5).bound == 0.5
    S = get_set("diagonal_metric", gamma=1.0, force=True)
    assert S.force and S.params["gamma"] == 1.0
    with pytest.raises(ValueError, match="gamma"):
        PerronFrobeniusSet(-0.1)


@pytest.mark.parametrize("S", NEW, ids=repr)
def test_interface(S):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    assert not S.convex and not S.has_projection
    with pytest.raises(NotImplementedError, match="no Euclidean projection"):
        S.project(A)
    v = S.value(A)
    assert isinstance(v, float) and S.margin(A) == pytest.approx(S.bound - v)
    assert S.contains(A) is (v <= S.bound)
    X = S.feasible_point(A * 3)
    assert isinstance(X, np.ndarray) and S.contains(X)
    assert np.array_equal(S.feasible_point(X), X)          # a point inside stays put
    B = torch.tensor(rng.standard_normal((3, 3, 3)), dtype=torch.float32)
    vb = S.value(B)
    assert isinstance(vb, torch.Tensor) and vb.shape == (3,) and vb.dtype == torch.float32
    cb = S.contains(B)
    assert isinstance(cb, torch.Tensor) and cb.dtype == torch.bool and cb.shape == (3,)
    assert isinstance(S.contains(B.numpy()), np.ndarray)
    assert bool(torch.as_tensor(S.contains(S.feasible_point(B))).all())


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**31))
def test_values_and_orderings(n, seed):
    A = np.random.default_rng(seed).standard_normal((n, n)) * 1.5
    W, P = WeightedMuInf(0.9), PerronFrobeniusSet(0.9)
    alpha_M = float(spectral_abscissa(metzler_majorant(A)))
    assert W.value(A) == pytest.approx(alpha_M)
    eta, reached = optimal_weights(A)
    assert alpha_M <= mu_inf(A, eta) + 1e-9 and alpha_M <= mu_inf(A) + 1e-9   # α(M) = inf_η μ_{∞,η}
    assert P.value(A) >= alpha_M - 1e-9                                          # ρ(|A|) ≥ α(M(A))
    assert P.value(A) == pytest.approx(max(abs(np.linalg.eigvals(np.abs(A)))))


@pytest.mark.parametrize("seed", range(5))
def test_diagonal_metric_value_brackets(seed):
    A = np.random.default_rng(seed).standard_normal((3, 3))
    D = DiagonalMetricSet(0.9, rtol=1e-4)
    v = D.value(A)
    assert np.linalg.eigvals(A).real.max() - 1e-9 <= v
    assert v <= min(mu_2(A), float(spectral_abscissa(metzler_majorant(A)))) + 1e-6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=4, max_size=4), st.floats(-1, 2))
@example([-6.431183178702701e-78, 0.0, 5.681640053360826e-173, -1.0], 0.0)   # b₂₁² underflows in the 2×2 Λ
def test_diagonal_metric_2x2_membership_is_the_closed_form(entries, gamma):
    A = np.array(entries).reshape(2, 2)
    nu = diagonal_metric_value_2x2(A)
    S = DiagonalMetricSet(gamma)
    if abs(nu - gamma) > 1e-6:
        assert S.contains(A) is (nu < gamma)
    cert = S.certificate(A)
    assert S.last_certificate is cert
    if cert.feasible:
        L = np.diag(cert.lam)
        G = L @ A + A.T @ L - 2 * gamma * L
        assert np.linalg.eigvalsh(G)[-1] < 0


def test_spec_example_with_fixed_weights():
    A = np.array([[0.0, 10.0], [0.01, 0.0]])
    assert mu_inf(A, [1.0, 1 / 20]) == pytest.approx(0.5)
    assert MuInfPolytope(0.9, eta=[1.0, 1 / 20]).contains(A)
    assert not MuInfPolytope(0.9).contains(A)
    assert WeightedMuInf(0.9).contains(A) and DiagonalMetricSet(0.9).contains(A)
    assert not MonotoneSet(0.1).contains(A)


@pytest.mark.parametrize("seed", range(4))
def test_feasible_points_bound_the_distance(seed):
    A = np.random.default_rng(seed).standard_normal((5, 5)) * 2
    W, D, P = WeightedMuInf(0.9), DiagonalMetricSet(0.9), PerronFrobeniusSet(0.9)
    d_mu = np.linalg.norm(A - project_mu_inf(A, 0.9))
    d_mono = np.linalg.norm(A - project_mu_2(A, 0.9))
    d_w = np.linalg.norm(A - W.feasible_point(A))
    d_d = np.linalg.norm(A - D.feasible_point(A))
    assert d_w <= d_mu + 1e-12                 # the weighted set contains the polytope
    assert d_d <= min(d_mono, d_w) + 1e-12     # the diagonal metric contains both
    Xp = P.feasible_point(A)
    assert P.value(Xp) == pytest.approx(0.9) or P.contains(A)
    assert W.contains(W.feasible_point(A)) and D.contains(D.feasible_point(A))


def test_diagonal_metric_refuses_big_sdps_unless_forced():
    rng = np.random.default_rng(7)
    while True:   # a matrix whose membership needs the SDP
        A = rng.standard_normal((4, 4)) * 1.5 - 0.8 * np.eye(4)
        alpha = np.linalg.eigvals(A).real.max()
        from linf_opt.sets.sdp import perron_metric
        cheap = min(mu_2(A), diagonally_scaled_mu_2(A, perron_metric(A)))
        if cheap - alpha > 0.3:
            break
    gamma = float((alpha + cheap) / 2)
    with pytest.raises(SDPTooLargeError):
        DiagonalMetricSet(gamma, max_seconds=0).contains(A)
    verdict = DiagonalMetricSet(gamma, max_seconds=0, force=True).contains(A)
    assert verdict == DiagonalMetricSet(gamma).contains(A)
    assert DiagonalMetricSet(gamma).last_certificate is None
