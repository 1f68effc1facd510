import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from linf_opt import (average_step, contraction_factor, metzler_majorant, mu_1, mu_2, mu_inf, norm_inf,
                      norm_inf_rect, optimal_weights, spectral_abscissa, NonFiniteError, ShapeError)
from helpers import brute_mu_inf, brute_norm_inf

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def square(max_n=8):
    return st.integers(1, max_n).flatmap(lambda n: arrays(np.float64, (n, n), elements=finite))


@settings(max_examples=60, deadline=None)
@given(square())
def test_mu_and_norm_match_brute_force(A):
    assert mu_inf(A) == pytest.approx(brute_mu_inf(A), rel=1e-12, abs=1e-9)
    assert norm_inf(A) == pytest.approx(brute_norm_inf(A), rel=1e-12, abs=1e-9)
    assert mu_1(A) == pytest.approx(brute_mu_inf(A.T), rel=1e-12, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(square(), st.data())
def test_weighted_measure_is_similarity_and_below_norm(A, data):
    n = A.shape[0]
    eta = np.array(data.draw(st.lists(st.floats(0.1, 10), min_size=n, max_size=n)))
    mu = mu_inf(A, eta)
    assert mu == pytest.approx(brute_mu_inf(A, eta), rel=1e-10, abs=1e-8)
    S = np.diag(1 / eta) @ A @ np.diag(eta)
    assert mu == pytest.approx(mu_inf(S), rel=1e-10, abs=1e-8)
    assert mu <= norm_inf(A, eta) + 1e-9
    if np.all(np.diag(A) >= 0):
        assert mu == pytest.approx(norm_inf(A, eta), rel=1e-12, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.tuples(arrays(np.float64, (n, n), elements=finite),
                                                     arrays(np.float64, (n, n), elements=finite))))
def test_measure_is_subadditive_and_bounds_spectral_abscissa(AB):
    A, B = AB
    assert mu_inf(A + B) <= mu_inf(A) + mu_inf(B) + 1e-9 * (1 + np.abs(A).sum() + np.abs(B).sum())
    # Every matrix measure bounds the spectral abscissa.
    alpha = np.max(np.linalg.eigvals(A).real)
    scale = 1 + np.abs(A).max()
    assert alpha <= mu_inf(A) + 1e-9 * scale
    assert alpha <= mu_2(A) + 1e-9 * scale


def test_mu_2_against_eigendecomposition():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(7, 7))
    assert mu_2(A) == pytest.approx(np.linalg.eigvalsh((A + A.T) / 2).max(), rel=1e-12)


def test_metzler_majorant():
    A = np.array([[-2.0, -1.0], [3.0, -0.5]])
    np.testing.assert_array_equal(metzler_majorant(A), [[-2.0, 1.0], [3.0, -0.5]])


@pytest.mark.parametrize("seed", range(6))
def test_optimal_weights_reach_spectral_abscissa_irreducible(seed):
    rng = np.random.default_rng(seed)
    n = 3 + seed
    A = rng.normal(size=(n, n)) - 2 * np.diag(rng.random(n))
    eta, value = optimal_weights(A)
    target = np.max(np.linalg.eigvals(metzler_majorant(A)).real)
    assert np.all(eta > 0)
    assert value == pytest.approx(target, rel=1e-9, abs=1e-9)
    assert mu_inf(A, eta) == pytest.approx(value, rel=1e-12)
    assert value <= mu_inf(A) + 1e-12
    # α(M(A)) ≤ ρ(|A|)
    assert target <= np.max(np.abs(np.linalg.eigvals(np.abs(A)))) + 1e-9


def test_optimal_weights_reducible_reports_value_reached():
    A = np.array([[0.0, 10.0], [0.0, 0.0]])          # reducible: infimum 0 not attained
    eta, value = optimal_weights(A)
    assert np.all(eta > 0)
    assert 0.0 <= value < 1e-3
    assert mu_inf(A, eta) == pytest.approx(value)
    A = np.array([[0.0, 10.0], [0.01, 0.0]])        # docs/mathematics.md §7: weighted measure 0.316 with Perron weights
    eta, value = optimal_weights(A)
    assert value == pytest.approx(np.sqrt(0.1), rel=1e-9)


def test_spectral_abscissa():
    A = np.array([[1.0, 2.0], [-2.0, 1.0]])
    assert spectral_abscissa(A) == pytest.approx(1.0)


def test_torch_batched_and_types():
    A = torch.randn(3, 5, 5, dtype=torch.float64)
    out = mu_inf(A)
    assert isinstance(out, torch.Tensor) and out.shape == (3,)
    for k in range(3):
        assert float(out[k]) == pytest.approx(brute_mu_inf(A[k].numpy()))
    eta, val = optimal_weights(A)
    assert eta.shape == (3, 5) and val.shape == (3,)
    assert isinstance(mu_inf(A[0].numpy()), float)
    assert isinstance(mu_inf(A[0].numpy().tolist()), float)
    assert mu_inf(A.float()).dtype == torch.float32


def test_average_step_and_contraction_factor():
    A = np.array([[-3.0, 0.5], [0.2, 0.4]])
    assert average_step(A) == pytest.approx(0.25)
    mu = mu_inf(A)
    assert contraction_factor(A) == pytest.approx(1 - 0.25 * (1 - mu))
    assert contraction_factor(A, alpha=0.1) == pytest.approx(1 - 0.1 * (1 - mu))
    assert average_step(np.eye(2) * 0.3) == 1.0
    with pytest.raises(ValueError, match="alpha"):
        contraction_factor(A, alpha=0.5)
    with pytest.raises(ValueError, match="alpha"):
        contraction_factor(A, alpha=0.0)
    # negative μ: μ⁺ = 0
    B = np.array([[-2.0, 0.5], [0.5, -2.0]])
    assert contraction_factor(B) == pytest.approx(1 - 1 / 3)


def test_norm_inf_rect():
    M = np.array([[1.0, -2.0, 3.0], [0.0, 0.5, -0.5]])
    assert norm_inf_rect(M) == 6.0


@pytest.mark.parametrize("fn", [mu_inf, norm_inf, mu_2, mu_1, metzler_majorant, average_step, optimal_weights])
def test_bad_matrices_raise(fn):
    with pytest.raises(ShapeError, match="A: expected a square matrix"):
        fn(np.ones((2, 3)))
    with pytest.raises(NonFiniteError, match="A: expected finite"):
        fn(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ShapeError):
        fn(np.ones(3))


def test_bad_weights_raise():
    A = np.eye(3)
    with pytest.raises(ValueError, match="eta: expected strictly positive"):
        mu_inf(A, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="eta: expected positive weights of shape"):
        mu_inf(A, [1.0, 1.0])
    with pytest.raises(ValueError, match="eta: expected finite"):
        norm_inf(A, [1.0, np.inf, 1.0])
