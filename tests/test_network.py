import pytest
import torch

from linf_opt import ConvergenceError, ImplicitNetwork, NonFiniteError, ShapeError, mu_inf


@pytest.mark.parametrize("gamma", [0.95, 0.5, 0.0, -1.0])
@pytest.mark.parametrize("init_scale", [0.5, 3.0])
def test_initialisation_is_feasible(gamma, init_scale):
    net = ImplicitNetwork(4, 30, 3, gamma=gamma, init_scale=init_scale, generator=torch.Generator().manual_seed(0))
    A = net.A.detach()
    # float32 round-off, scaled by the row's magnitude
    assert float(mu_inf(A)) <= gamma + 1e-6 * (1 + float(A.abs().sum(1).max()))


def test_weighted_initialisation():
    eta = torch.linspace(0.2, 2.0, 10)
    net = ImplicitNetwork(2, 10, 1, gamma=0.8, eta=eta, init_scale=3.0)
    assert float(mu_inf(net.A.detach(), eta)) <= 0.8 + 1e-6
    assert float(net.mu().detach()) <= 0.8 + 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_shapes_and_equilibrium(dtype):
    net = ImplicitNetwork(784, 20, 10, dtype=dtype)
    u = torch.randn(7, 1, 28, 28, dtype=dtype)
    y = net(u)
    assert y.shape == (7, 10) and y.dtype == dtype
    x, st = net.equilibrium(u.reshape(7, -1))
    assert x.shape == (7, 20) and st.all_converged
    res = (x - torch.relu(x @ net.A.T + u.reshape(7, -1) @ net.B.T + net.b)).abs().max()
    assert float(res.detach()) <= 1e-4
    assert net(u[0].reshape(-1)).shape == (10,)


def test_gradcheck_all_parameters_with_feedthrough():
    torch.manual_seed(0)
    net = ImplicitNetwork(3, 6, 2, feedthrough=True, gamma=0.6, init_scale=2.0, dtype=torch.float64,
                          tol=1e-14, rtol=0.0, max_iter=100000, backward_tol=1e-14)
    with torch.no_grad():
        net.D.normal_()
    u = torch.randn(4, 3, dtype=torch.float64)
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())

    def f(*ps):
        out = torch.func.functional_call(net, dict(zip(names, ps)), (u,))
        return out

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_backward_populates_grads_and_stats():
    net = ImplicitNetwork(5, 12, 3)
    loss = net(torch.randn(8, 5)).pow(2).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.last_forward_stats.all_converged and net.last_backward_stats.all_converged


def test_direct_backward_matches_average():
    torch.manual_seed(1)
    u = torch.randn(6, 4, dtype=torch.float64)
    grads = []
    for backward in ("average", "direct"):
        torch.manual_seed(2)
        net = ImplicitNetwork(4, 9, 2, dtype=torch.float64, backward=backward, tol=1e-13, rtol=0.0,
                              backward_tol=1e-13)
        net(u).sum().backward()
        grads.append(net.A.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-9, rtol=1e-9)


def test_strict_mode_raises_on_non_convergence():
    net = ImplicitNetwork(2, 5, 1, strict=True, max_iter=1, tol=1e-15, rtol=0.0, dtype=torch.float64)
    with pytest.raises(ConvergenceError):
        net(torch.randn(3, 2, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    net = ImplicitNetwork(5, 16, 3, dtype=torch.float64)
    u = torch.randn(8, 5, dtype=torch.float64)
    y_cpu = net(u)
    y_gpu = net.to("cuda")(u.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-8, rtol=1e-8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden_features"):
        ImplicitNetwork(2, 0, 1)
    with pytest.raises(ValueError, match="gamma"):
        ImplicitNetwork(2, 3, 1, gamma=1.0)
    with pytest.raises(ValueError, match="gamma"):
        ImplicitNetwork(2, 3, 1, gamma=float("nan"))
    with pytest.raises(ValueError, match="eta"):
        ImplicitNetwork(2, 3, 1, eta=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="activation"):
        ImplicitNetwork(2, 3, 1, activation="softplus2")
    with pytest.raises(ValueError, match="method"):
        ImplicitNetwork(2, 3, 1, method="bogus")
    with pytest.raises(ValueError, match="backward"):
        ImplicitNetwork(2, 3, 1, backward="bogus")
    net = ImplicitNetwork(2, 3, 1)
    with pytest.raises(ShapeError, match="u: expected shape"):
        net(torch.randn(4, 3))
    with pytest.raises(NonFiniteError, match="u: expected finite"):
        net(torch.tensor([[float("nan"), 0.0]]))
