"""SDPs of the ℓ2 conditions (linf_opt.sets.sdp): monotone projection and diagonal-metric certificates."""
import numpy as np
import pytest
import torch

import linf_opt.sets.sdp as sdp
from linf_opt import ProjectionError, metzler_majorant, mu_2, project_mu_2, spectral_abscissa
from linf_opt.sets.sdp import (SDPTooLargeError, check_sdp_size, diagonal_metric_certificate, diagonal_metric_value,
                          diagonal_metric_value_2x2, diagonally_scaled_mu_2, estimate_sdp_seconds, perron_metric,
                          project_monotone_sdp)


def _strict_holds(A, lam, gamma):
    """Independent check of ΛA + AᵀΛ ≺ 2γΛ: the symmetric matrix has a negative largest eigenvalue."""
    L = np.diag(lam)
    G = L @ A + A.T @ L - 2 * gamma * L
    return np.linalg.eigvalsh((G + G.T) / 2)[-1] < 0


# ---------------------------------------------------------------------------------------------------
# monotone projection
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,seed", [(2, 0), (3, 1), (6, 2), (10, 3), (15, 4)])
def test_monotone_sdp_matches_closed_form(n, seed):
    A = np.random.default_rng(seed).standard_normal((n, n)) * 2
    bound = 0.9
    X = project_monotone_sdp(A, bound)
    Y = project_mu_2(A, bound)
    np.testing.assert_allclose(X, Y, atol=1e-6, rtol=0)
    assert mu_2(X) <= bound + 1e-7
    # torch in, torch out; a matrix already inside comes back unchanged
    T = torch.as_tensor(Y)
    assert torch.equal(project_monotone_sdp(T, bound), T)


def test_monotone_sdp_refuses_large_sizes_unless_forced():
    with pytest.raises(SDPTooLargeError, match=r"estimated to take about .* s .*force=True") as info:
        project_monotone_sdp(np.zeros((300, 300)), 0.9)
    assert info.value.n == 300 and info.value.estimate > 60
    assert isinstance(info.value, ValueError)
    A = np.random.default_rng(0).standard_normal((4, 4))
    with pytest.raises(SDPTooLargeError):
        project_monotone_sdp(A, 0.9, max_seconds=0)
    np.testing.assert_allclose(project_monotone_sdp(A, 0.9, max_seconds=0, force=True), project_mu_2(A, 0.9),
                               atol=1e-6)


def test_estimates_and_size_check():
    assert estimate_sdp_seconds("monotone_projection", 100) > estimate_sdp_seconds("monotone_projection", 50) * 10
    assert estimate_sdp_seconds("diagonal_metric", 20, solves=10) == pytest.approx(
        10 * estimate_sdp_seconds("diagonal_metric", 20))
    with pytest.raises(ValueError, match="kind"):
        estimate_sdp_seconds("lmi", 5)
    assert check_sdp_size("diagonal_metric", 5) < 1
    with pytest.raises(ValueError, match="max_seconds"):
        check_sdp_size("diagonal_metric", 5, max_seconds=-1)


# ---------------------------------------------------------------------------------------------------
# diagonal metric
# ---------------------------------------------------------------------------------------------------

def _sdp_cases():
    """Matrices whose certificate needs the SDP (Λ = I and the Perron metric both fail)."""
    rng = np.random.default_rng(7)
    out = []
    while len(out) < 6:
        n = int(rng.integers(3, 7))
        A = rng.standard_normal((n, n)) * 1.5 - 0.8 * np.eye(n)
        alpha = np.linalg.eigvals(A).real.max()
        lam = perron_metric(A)
        cheap = min(mu_2(A), diagonally_scaled_mu_2(A, lam))
        if cheap - alpha > 0.3:
            out.append((A, float(alpha + 0.6 * (cheap - alpha))))
    return out


@pytest.mark.parametrize("case", range(6))
def test_certificate_satisfies_its_inequality(case):
    A, gamma = _sdp_cases()[case]
    cert = diagonal_metric_certificate(A, gamma)
    assert cert.source == "sdp" and cert.status in ("optimal", "optimal_inaccurate")
    assert (cert.sdp_objective < 0) == cert.feasible
    if cert.feasible:
        assert cert.lam.shape == (A.shape[0],) and cert.lam.min() == pytest.approx(1.0)
        assert _strict_holds(A, cert.lam, gamma)
        assert cert.level < gamma and cert.violation(A) < 0
        np.testing.assert_allclose(cert.Lambda, np.diag(cert.lam))
    else:
        assert cert.lam is None and cert.level is None
        with pytest.raises(ValueError, match="infeasible"):
            cert.violation(A)


def test_certificate_verdicts_agree_with_the_bisection_value():
    verdicts = []
    for A, gamma in _sdp_cases():
        value, _ = diagonal_metric_value(A)
        feasible = diagonal_metric_certificate(A, gamma).feasible
        assert abs(value - gamma) > 1e-3   # the cases are not borderline
        assert feasible == (value < gamma)
        verdicts.append(feasible)
    assert set(verdicts) == {True, False}   # both answers are exercised


@pytest.mark.parametrize("seed", range(8))
def test_cheap_certificates_and_obstruction(seed):
    rng = np.random.default_rng(seed)
    n = 2 + seed % 4
    A = rng.standard_normal((n, n))
    gamma = 0.9
    cert = diagonal_metric_certificate(A, gamma, use_sdp=False)
    if cert.feasible:
        assert _strict_holds(A, cert.lam, gamma)
        assert cert.source in ("identity", "perron", "closed_form")
    if np.linalg.eigvals(A).real.max() >= gamma:
        assert not cert.feasible and cert.source in ("eigenvalue", "closed_form")
    # the Perron metric certifies the level α(M(A)) (up to the eps perturbation)
    lam = perron_metric(A)
    assert diagonally_scaled_mu_2(A, lam) <= float(spectral_abscissa(metzler_majorant(A))) + 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_2x2_closed_form_matches_the_sdp(seed):
    A = np.random.default_rng(100 + seed).standard_normal((2, 2)) * 2
    nu = diagonal_metric_value_2x2(A)
    # the feasibility SDP itself, just above and just below ν
    st_hi, lam_hi, t_hi = sdp._sdp_metric(A, nu + 1e-3, None)
    st_lo, lam_lo, t_lo = sdp._sdp_metric(A, nu - 1e-3, None)
    assert lam_hi is not None and t_hi < 0 and diagonally_scaled_mu_2(A, lam_hi) <= nu + 1e-3 + 1e-7
    assert lam_lo is None and t_lo >= 0 and st_lo == "optimal"
    # the bisection on a 3×3 block matrix (ν = max of the blocks' values) reaches the closed form
    B = np.zeros((3, 3))
    B[:2, :2] = A
    B[2, 2] = nu - 5.0
    value, lam = diagonal_metric_value(B, rtol=1e-6)
    assert value == pytest.approx(nu, abs=1e-4)
    assert diagonally_scaled_mu_2(B, lam) == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_value_brackets(seed):
    A = np.random.default_rng(200 + seed).standard_normal((4, 4))
    value, lam = diagonal_metric_value(A, rtol=1e-4)
    alpha = np.linalg.eigvals(A).real.max()
    assert alpha - 1e-9 <= value <= min(mu_2(A), float(spectral_abscissa(metzler_majorant(A)))) + 1e-6
    assert diagonally_scaled_mu_2(A, lam) == pytest.approx(value, abs=1e-9)
    # just below the value there is no certificate (up to the bisection accuracy)
    assert not diagonal_metric_certificate(A, value - 1e-2 * max(1, abs(value))).feasible
    assert diagonal_metric_certificate(A, value + 1e-3 * max(1, abs(value))).feasible


def test_failed_solve_reports_the_status(monkeypatch):
    A, gamma = _sdp_cases()[0]
    real = sdp._clarabel_settings
    monkeypatch.setattr(sdp, "_clarabel_settings", lambda tol: {**real(tol), "max_iter": 1})
    with pytest.raises(ProjectionError, match="status") as info:
        diagonal_metric_certificate(A, gamma)
    assert info.value.status not in (None, "optimal", "infeasible")


def test_diagonal_metric_refusal_and_validation():
    A, gamma = _sdp_cases()[0]
    with pytest.raises(SDPTooLargeError, match="force=True"):
        diagonal_metric_certificate(A, gamma, max_seconds=0)
    assert diagonal_metric_certificate(A, gamma, max_seconds=0, force=True).source == "sdp"
    with pytest.raises(ValueError, match="A"):
        diagonal_metric_certificate(np.zeros((2, 3)), 0.9)
    with pytest.raises(ValueError, match="lam"):
        diagonally_scaled_mu_2(np.eye(2), [1.0, -1.0])
    with pytest.raises(ValueError, match="2×2"):
        diagonal_metric_value_2x2(np.eye(3))
    batch = np.random.default_rng(1).standard_normal((5, 3, 2, 2))
    values = diagonal_metric_value_2x2(batch)
    assert values.shape == (5, 3)
    assert values[2, 1] == diagonal_metric_value_2x2(batch[2, 1])


def test_infeasible_instances_need_no_infeasibility_certificate():
    """Clarabel stalled (NumericalError) proving infeasibility of "find Λ ⪰ I with 2cΛ − ΛA − AᵀΛ ⪰ 0"
    on matrices like this one (α(A) < c < every cheap level); the margin form just returns t* ≥ 0."""
    rng = np.random.default_rng(3)
    n = 12
    A = rng.standard_normal((n, n)) * 0.6 + np.diag(rng.uniform(-1.5, 0.3, n))
    alpha = np.linalg.eigvals(A).real.max()
    value, _ = diagonal_metric_value(A)
    gamma = (alpha + value) / 2            # below ν: infeasible, above α: no spectral obstruction
    cert = diagonal_metric_certificate(A, gamma)
    assert cert.source == "sdp" and not cert.feasible and cert.sdp_objective >= 0
