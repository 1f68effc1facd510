import pytest
import torch

from linf_opt import ImplicitNetwork, empirical_lipschitz, lipschitz_bound, lipschitz_surrogate, optimal_weights


def scalar_net(a: float):
    net = ImplicitNetwork(1, 1, 1, dtype=torch.float64, tol=1e-14, rtol=0.0)
    with torch.no_grad():
        net.A.fill_(a); net.B.fill_(1.0); net.b.zero_(); net.C.fill_(1.0); net.c.zero_()
    return net


@pytest.mark.parametrize("a", [-3.0, -0.5, 0.0, 0.6])
def test_scalar_example_attains_tight_bound(a):
    net = scalar_net(a)
    tight = lipschitz_bound(net).item()
    assert tight == pytest.approx(1 / (1 - a))
    assert lipschitz_bound(net, "paper").item() == pytest.approx(1 / (1 - max(a, 0)))
    low, (u, v) = empirical_lipschitz(net, torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64), steps=20)
    assert low == pytest.approx(tight, rel=1e-6)      # attained for u > 0
    assert low <= tight * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gamma", [0.9, -0.5])
def test_bounds_dominate_empirical_lower_bound(seed, gamma):
    g = torch.Generator().manual_seed(seed)
    net = ImplicitNetwork(3, 12, 2, gamma=gamma, init_scale=3.0, feedthrough=True, dtype=torch.float64,
                          generator=g, tol=1e-12, rtol=0.0)
    with torch.no_grad():
        net.D.uniform_(-0.3, 0.3, generator=g)
    u = torch.randn(32, 3, generator=g, dtype=torch.float64)
    low, _ = empirical_lipschitz(net, u, steps=60, lr=0.05)
    assert low > 0
    tight, paper = lipschitz_bound(net).item(), lipschitz_bound(net, "paper").item()
    opt = lipschitz_bound(net, eta="optimal").item()
    assert low <= tight * (1 + 1e-9) and tight <= paper * (1 + 1e-12)
    assert low <= opt * (1 + 1e-9)
    assert lipschitz_surrogate(net, max(gamma, net.mu().item())).item() >= tight * (1 - 1e-12) - 1e-12 or gamma < 0


def test_surrogates_order():
    net = ImplicitNetwork(3, 8, 2, gamma=0.9)
    s1 = float(lipschitz_surrogate(net, 0.9).detach())
    s2 = float(lipschitz_surrogate(net, 0.9, "sum_of_squares").detach())
    assert s2 >= s1 - 1e-6
    assert s1 >= lipschitz_bound(net, "paper").item() * (1 - 1e-6)
    with pytest.raises(ValueError, match="form"):
        lipschitz_surrogate(net, 0.9, "bogus")


def test_weighted_bound_uses_weights():
    A = torch.tensor([[0.0, 10.0], [0.01, 0.0]], dtype=torch.float64)   # μ∞ = 10, weighted 0.316
    net = ImplicitNetwork(1, 2, 1, dtype=torch.float64)
    with torch.no_grad():
        net.A.copy_(A)
    with pytest.raises(ValueError, match="not certified well-posed"):
        lipschitz_bound(net)
    L = lipschitz_bound(net, eta="optimal").item()
    eta, _ = optimal_weights(A)
    assert L == pytest.approx(lipschitz_bound(net, eta=eta).item())
    low, _ = empirical_lipschitz(net, torch.randn(16, 1, dtype=torch.float64), steps=30)
    assert low <= L * (1 + 1e-9)


def test_bound_is_differentiable():
    net = ImplicitNetwork(2, 5, 1)
    lipschitz_bound(net).backward()
    assert net.B.grad is not None and net.C.grad is not None and net.A.grad is not None


def test_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        lipschitz_bound(ImplicitNetwork(2, 5, 1), kind="loose")
