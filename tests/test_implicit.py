import pytest
import torch

from linf_opt import ConvergenceWarning, adjoint_solve, equilibrium, get_activation, solve_fixed_point
from linf_opt.equilibrium.implicit import EquilibriumRecord
from helpers import well_posed_matrix

CASES = [dict(mu=0.5), dict(mu=0.9, offdiag=4.0, neg_diag=3.0), dict(mu=-1.5, offdiag=6.0, neg_diag=4.0),
         dict(mu=0.3, offdiag=0.2)]


def make(n, r, batch, seed, **case):
    A = well_posed_matrix(n, seed=seed, **case)
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, r, generator=g, dtype=torch.float64)
    u = torch.randn(batch, r, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64) * 0.5
    return [t.requires_grad_(True) for t in (A, B, u, b)]


@pytest.mark.parametrize("backward", ["average", "direct"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_gradcheck_A_B_b_u(case, activation, backward):
    A, B, u, b = make(6, 3, 4, seed=case, **CASES[case])

    def f(A, B, u, b):
        return solve_fixed_point(A, B, u, b, activation=activation, tol=1e-14, rtol=0, max_iter=100000,
                                 backward=backward, backward_tol=1e-14)[0]

    assert torch.autograd.gradcheck(f, (A, B, u, b), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_method_anderson():
    A, B, u, b = make(5, 2, 3, seed=11, mu=0.8, offdiag=3.0, neg_diag=2.0)
    f = lambda A, B, u, b: solve_fixed_point(A, B, u, b, method="anderson", tol=1e-14, rtol=0)[0]
    assert torch.autograd.gradcheck(f, (A, B, u, b), eps=1e-6, atol=1e-6)


def test_adjoint_average_matches_direct():
    A = well_posed_matrix(30, 0.9, offdiag=5.0, neg_diag=2.0, seed=2)
    g = torch.Generator().manual_seed(0)
    J = (torch.rand(8, 30, generator=g, dtype=torch.float64) > 0.4).double()
    G = torch.randn(8, 30, generator=g, dtype=torch.float64)
    S1, st1 = adjoint_solve(A, J, G, method="average", tol=1e-14)
    S2, st2 = adjoint_solve(A, J, G, method="direct")
    assert st1.all_converged and st2.all_converged
    torch.testing.assert_close(S1, S2, atol=1e-11, rtol=1e-11)
    torch.testing.assert_close(S1, G + (J * S1) @ A, atol=1e-11, rtol=1e-11)


def test_no_graph_through_iterations():
    """Memory must not grow with the iteration count: the same tensors are saved for 5 or 500 iterations."""
    A, B, u, b = make(10, 3, 4, seed=0, mu=0.99, offdiag=0.5)
    counts = []
    for max_iter in (5, 500):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            Q = u @ B.t() + b
            with pytest.warns(ConvergenceWarning):
                X, st = equilibrium(A, Q, get_activation("relu"), max_iter=max_iter, tol=0.0, rtol=0.0)
        assert st.iterations == max_iter
        counts.append(sum(saved))
    assert counts[0] == counts[1]


def test_backward_stats_recorded_and_gradient_matches_finite_difference():
    A, B, u, b = make(8, 2, 5, seed=4, mu=0.7, offdiag=2.0, neg_diag=1.0)
    rec = EquilibriumRecord()
    X, st = equilibrium(A, u @ B.t() + b, get_activation("relu"), tol=1e-14, rtol=0, record=rec)
    X.sum().backward()
    assert rec.backward is not None and rec.backward.all_converged
    # directional finite difference in A
    D = torch.randn_like(A)
    h = 1e-6
    with torch.no_grad():
        plus, _ = equilibrium(A + h * D, u @ B.t() + b, get_activation("relu"), tol=1e-14, rtol=0)
        minus, _ = equilibrium(A - h * D, u @ B.t() + b, get_activation("relu"), tol=1e-14, rtol=0)
    fd = (plus.sum() - minus.sum()) / (2 * h)
    assert float((A.grad * D).sum()) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
