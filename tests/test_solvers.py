import math
import warnings

import numpy as np
import pytest
import torch

from linf_opt import (ConvergenceError, ConvergenceWarning, NonFiniteError, ShapeError, SolverStats,
                      contraction_factor, mu_2, mu_inf, norm_inf, register_solver, solve_fixed_point)
from linf_opt.equilibrium.activations import Activation, get_activation
from linf_opt.equilibrium.solvers import SOLVERS, a_priori_iterations, average_iteration
from helpers import monotone_matrix, well_posed_matrix

TOL = 1e-10


def residual(A, B, u, b, x, act=torch.relu):
    return (x - act(x @ A.T + u @ B.T + b)).abs().amax(-1)


def problem(n=30, r=4, batch=16, mu=0.5, offdiag=1.0, neg_diag=0.0, seed=0):
    A = well_posed_matrix(n, mu, offdiag=offdiag, neg_diag=neg_diag, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    B = torch.randn(n, r, generator=g, dtype=torch.float64)
    u = torch.randn(batch, r, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return A, B, u, b


@pytest.mark.parametrize("method", ["average", "anderson"])
@pytest.mark.parametrize("case", [dict(mu=0.5), dict(mu=0.9, offdiag=5.0, neg_diag=5.0),
                                  dict(mu=-2.0, offdiag=20.0, neg_diag=10.0), dict(mu=0.99, offdiag=0.5)])
def test_guaranteed_methods_converge(method, case):
    A, B, u, b = problem(**case)
    assert mu_inf(A) == pytest.approx(case["mu"], abs=1e-9)
    x, st = solve_fixed_point(A, B, u, b, method=method, tol=TOL, rtol=0, max_iter=20000)
    assert st.all_converged and not st.diverged
    assert float(residual(A, B, u, b, x).max()) <= TOL
    assert torch.equal(st.residual <= TOL, st.converged)


@pytest.mark.parametrize("seed", range(4))
def test_average_iterations_within_a_priori_bound(seed):
    A, B, u, b = problem(n=40, mu=0.8, offdiag=3.0, neg_diag=3.0, seed=seed)
    rho = float(contraction_factor(A))
    x, st = solve_fixed_point(A, B, u, b, tol=1e-9, rtol=0, max_iter=100000, trace=True)
    r0 = st.trace[0]   # = ‖x¹ − x⁰‖ / α for the whole batch
    bound = a_priori_iterations(rho, r0, 1e-9)
    assert st.all_converged
    assert st.iterations <= bound
    assert int(st.sample_iterations.max()) == st.iterations
    # and the residual really contracts by ρ per step (in ℓ∞, unweighted measure)
    tr = np.array(st.trace)
    assert np.all(tr[1:] <= rho * tr[:-1] * (1 + 1e-9) + 1e-15)


def test_anderson_never_slower_than_guarantee_and_faster_in_practice():
    A, B, u, b = problem(n=60, mu=0.95, offdiag=4.0, neg_diag=2.0, seed=3)
    rho = float(contraction_factor(A))
    _, avg = solve_fixed_point(A, B, u, b, tol=1e-9, rtol=0, max_iter=100000, trace=True)
    _, aa = solve_fixed_point(A, B, u, b, method="anderson", tol=1e-9, rtol=0, max_iter=100000, trace=True)
    assert aa.all_converged
    assert aa.iterations <= a_priori_iterations(rho, aa.trace[0], 1e-9)
    tr = np.array(aa.trace)
    assert np.all(tr[1:] <= rho * tr[:-1] * (1 + 1e-9) + 1e-15)    # the safeguard
    assert aa.iterations < avg.iterations


def test_picard_converges_in_el_ghaoui_regime():
    A, B, u, b = problem(mu=0.3, offdiag=0.3)
    A = A.abs() * 0.3 / float(norm_inf(A.abs()))          # non-negative, ‖A‖∞ = 0.3
    x, st = solve_fixed_point(A, B, u, b, method="picard", tol=TOL, rtol=0)
    assert st.all_converged and st.alpha == 1.0


def test_picard_flagged_when_it_fails_on_well_posed_matrix():
    A = np.array([[-5.0]])
    B = np.array([[1.0]])
    u = np.array([[1.0]])
    assert mu_inf(A) < 1 < norm_inf(A)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        x, st = solve_fixed_point(A, B, u, method="picard", max_iter=200)
    assert not st.all_converged and st.n_not_converged == 1
    with pytest.raises(ConvergenceError) as info:
        solve_fixed_point(A, B, u, method="picard", max_iter=200, strict=True)
    assert isinstance(info.value.stats, SolverStats)
    x, st = solve_fixed_point(A, B, u)   # the average iteration handles it: x* = 1/6
    assert st.all_converged and x[0, 0] == pytest.approx(1 / 6, abs=1e-9)
    # larger example with strongly negative diagonal: Picard oscillates or diverges
    A, B, u, b = problem(mu=0.5, offdiag=8.0, neg_diag=4.0)
    assert float(norm_inf(A)) > 1
    with pytest.warns(ConvergenceWarning):
        _, st = solve_fixed_point(A, B, u, b, method="picard", max_iter=300)
    assert not st.all_converged
    # oscillation is detected without running to the iteration limit
    with pytest.warns(ConvergenceWarning, match="stagnated|DIVERGED"):
        _, st = solve_fixed_point(A, B, u, b, method="picard", max_iter=10 ** 6)
    assert (st.stagnated or st.diverged) and st.iterations < 5000


def test_divergence_detected_early():
    A = np.array([[3.0]])          # μ∞ = 3: not well-posed, identity activation diverges
    with pytest.warns(ConvergenceWarning):
        _, st = solve_fixed_point(A, np.eye(1), np.ones((1, 1)), activation="identity", max_iter=10000)
    assert st.diverged and st.iterations < 10000


@pytest.mark.parametrize("method", ["forward_backward", "peaceman_rachford"])
def test_monotone_splittings(method):
    n = 25
    A = monotone_matrix(n, m=0.3, seed=1)
    assert float(mu_2(A)) <= 0.7 + 1e-9
    _, B, u, b = problem(n=n)
    x, st = solve_fixed_point(A, B, u, b, method=method, tol=1e-9, rtol=0, max_iter=20000)
    assert st.all_converged
    assert float(residual(A, B, u, b, x).max()) <= 1e-9
    if float(mu_inf(A)) < 1:
        x2, _ = solve_fixed_point(A, B, u, b, tol=1e-11, rtol=0)
        assert torch.allclose(x, x2, atol=1e-7)


def test_splittings_refuse_non_relu_and_non_monotone():
    A, B, u, b = problem(n=5)
    with pytest.raises(ValueError, match="only for activation='relu'"):
        solve_fixed_point(A, B, u, b, activation="tanh", method="peaceman_rachford")
    A2 = torch.eye(5, dtype=torch.float64) * 2
    with pytest.raises(ValueError, match="monotone"):
        solve_fixed_point(A2, B, u, b, method="forward_backward")


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu", "identity"])
def test_other_activations(activation):
    A, B, u, b = problem(mu=0.6, offdiag=3.0, neg_diag=1.0)
    act = get_activation(activation)
    x, st = solve_fixed_point(A, B, u, b, activation=act, tol=TOL, rtol=0)
    assert st.all_converged
    assert float(residual(A, B, u, b, x, act).max()) <= TOL


def test_numpy_in_numpy_out_single_sample_and_no_mutation():
    A, B, u, b = problem(n=6)
    A0, B0, u0 = A.clone(), B.clone(), u.clone()
    x, st = solve_fixed_point(A.numpy(), B.numpy(), u[0].numpy(), b.numpy())
    assert isinstance(x, np.ndarray) and x.shape == (6,)
    xt, _ = solve_fixed_point(A, B, u, b)
    assert isinstance(xt, torch.Tensor) and xt.shape == (16, 6)
    np.testing.assert_allclose(x, xt[0].numpy(), atol=1e-8)
    assert torch.equal(A, A0) and torch.equal(B, B0) and torch.equal(u, u0)


def test_float32_defaults_converge():
    A, B, u, b = [t.float() for t in problem(mu=0.9, offdiag=3.0, neg_diag=2.0)]
    x, st = solve_fixed_point(A, B, u, b)
    assert x.dtype == torch.float32 and st.all_converged


def test_registry_accepts_user_solver():
    calls = []

    def halved(A, Q, act, x0, **kw):
        calls.append(1)
        return average_iteration(A, Q, act, x0, **{**kw, "alpha": 0.5 * (kw["alpha"] or 1.0)}, method="halved")

    register_solver("halved", halved)
    try:
        A, B, u, b = problem(n=8, mu=0.2, offdiag=0.2)
        x, st = solve_fixed_point(A, B, u, b, method="halved")
        assert calls and st.method == "halved" and st.all_converged
    finally:
        SOLVERS.pop("halved")


def test_a_priori_iterations():
    assert a_priori_iterations(0.5, 1.0, 1e-3) == math.ceil(math.log(1e-3) / math.log(0.5))
    assert a_priori_iterations(0.5, 1e-4, 1e-3) == 0
    assert a_priori_iterations(1.0, 1.0, 1e-3) == math.inf


def test_bad_inputs_name_the_argument():
    A, B, u, b = problem(n=4, r=2)
    with pytest.raises(ShapeError, match="A: expected a square"):
        solve_fixed_point(torch.ones(4, 3), B, u, b)
    with pytest.raises(ShapeError, match="B: expected shape"):
        solve_fixed_point(A, torch.ones(3, 2), u, b)
    with pytest.raises(ShapeError, match="u: expected shape"):
        solve_fixed_point(A, B, torch.ones(5, 3), b)
    with pytest.raises(ShapeError, match="b: expected shape"):
        solve_fixed_point(A, B, u, torch.ones(5))
    for name, args in [("A", (A * np.nan, B, u, b)), ("B", (A, B * np.inf, u, b)),
                       ("u", (A, B, u * np.nan, b)), ("b", (A, B, u, b * np.nan))]:
        with pytest.raises(NonFiniteError, match=f"{name}: expected finite"):
            solve_fixed_point(*args)
    with pytest.raises(ValueError, match="method: expected one of"):
        solve_fixed_point(A, B, u, b, method="newton")
    with pytest.raises(ValueError, match="activation: expected one of"):
        solve_fixed_point(A, B, u, b, activation="exp")
    with pytest.raises(ValueError, match="negative_slope"):
        get_activation("leaky_relu", negative_slope=2.0)
    with pytest.raises(ValueError, match="slopes must lie in"):
        Activation("steep", lambda z: 2 * z, lambda z: 2 * torch.ones_like(z), 0.0, 2.0)
    with pytest.raises(ValueError, match="alpha"):
        solve_fixed_point(A, B, u, b, alpha=0.0)
    As = A - 3 * torch.eye(4, dtype=A.dtype)
    with pytest.raises(ValueError, match="alpha: the average iteration is guaranteed only"):
        solve_fixed_point(As, B, u, b, alpha=0.9, strict=True)
    with pytest.warns(ConvergenceWarning, match="alpha"):
        solve_fixed_point(As, B, u, b, alpha=0.9, max_iter=5)
    with pytest.raises(ShapeError, match="x0"):
        solve_fixed_point(A, B, u, b, x0=torch.zeros(3))
    with pytest.raises(ValueError, match="tol"):
        solve_fixed_point(A, B, u, b, tol=-1.0)


def test_no_warning_when_converged():
    A, B, u, b = problem(n=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_fixed_point(A, B, u, b)


@pytest.mark.parametrize("check_every", [1, 3, 8, 50])
@pytest.mark.parametrize("method", ["average", "picard", "anderson"])
def test_reported_convergence_is_always_on_the_true_residual(method, check_every):
    """However the checks are scheduled (rate-predicted, every k, Anderson's extrapolation), a sample is
    reported converged only if the true residual ‖x − Φ(Ax + Bu + b)‖∞ of the returned x, recomputed here
    independently, is within tol + rtol·‖x‖∞; and the reported residual is that true residual."""
    for seed in range(6):
        A, B, u, b = problem(n=12, mu=0.8, offdiag=2.0, neg_diag=1.5 if method != "picard" else 0.0, seed=seed)
        for tol, rtol in ((1e-3, 0.0), (1e-8, 1e-6), (1e-12, 0.0)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                from linf_opt.equilibrium.solvers import get_solver
                from linf_opt.equilibrium.activations import get_activation
                Q = u @ B.t() + b
                X, st = get_solver(method)(A, Q, get_activation("relu"), torch.zeros_like(Q), alpha=None, tol=tol,
                                           rtol=rtol, max_iter=40, trace=False, check_every=check_every)
            true = (X - torch.relu(X @ A.t() + Q)).abs().amax(1)
            limit = tol + rtol * torch.relu(X @ A.t() + Q).abs().amax(1)
            assert bool((true[st.converged] <= limit[st.converged] * (1 + 1e-12)).all())
            torch.testing.assert_close(st.residual, true, rtol=1e-10, atol=1e-13)
