import pytest
import torch

from linf_opt import ImplicitNetwork, mu_2, mu_inf, project_mu_2, project_mu_inf
from linf_opt.models.parametrizations import MonotoneParametrization, MuInfParametrization, apply_parametrization


@pytest.mark.parametrize("gamma", [0.9, 0.0, -2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_mu_inf_parametrization_lands_in_polytope_and_inverts(gamma, weighted):
    g = torch.Generator().manual_seed(0)
    eta = torch.rand(12, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    P = MuInfParametrization(gamma, eta)
    for _ in range(5):
        T = torch.randn(12, 12, generator=g, dtype=torch.float64) * 3
        A = P(T)
        assert float(mu_inf(A, eta)) <= gamma + 1e-12 * (1 + float(A.abs().sum(1).max()))
    A = project_mu_inf(torch.randn(12, 12, generator=g, dtype=torch.float64) * 2, gamma, eta)
    torch.testing.assert_close(P(P.right_inverse(A)), A, atol=1e-12, rtol=1e-12)   # every A is reached


def test_monotone_parametrization_lands_in_set_and_inverts():
    g = torch.Generator().manual_seed(1)
    P = MonotoneParametrization(0.2)
    WS = torch.randn(2, 9, 9, generator=g, dtype=torch.float64)
    assert float(mu_2(P(WS))) <= 0.8 + 1e-12
    A = project_mu_2(torch.randn(9, 9, generator=g, dtype=torch.float64) * 2, 0.8)
    torch.testing.assert_close(P(P.right_inverse(A)), A, atol=1e-10, rtol=1e-10)


def test_right_inverse_refuses_infeasible():
    with pytest.raises(ValueError, match="project A onto the polytope"):
        MuInfParametrization(0.5).right_inverse(torch.eye(3))
    with pytest.raises(ValueError, match="monotone set"):
        MonotoneParametrization(0.5).right_inverse(torch.eye(3))


def test_registered_on_network_keeps_value_and_trains():
    net = ImplicitNetwork(2, 7, 1, gamma=0.7, dtype=torch.float64)
    A0 = net.A.detach().clone()
    apply_parametrization(net, MuInfParametrization(0.7))
    torch.testing.assert_close(net.A.detach(), A0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 2, dtype=torch.float64)).pow(2).sum().backward()
        opt.step()
        assert float(mu_inf(net.A.detach())) <= 0.7 + 1e-12
    assert not torch.equal(net.A.detach(), A0)
