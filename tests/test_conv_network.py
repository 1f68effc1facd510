"""The convolutional implicit network (docs/mathematics.md §10): equal to the dense network built from its
matrices, exact gradients, sound certificates, the authors' construction, training and bad input."""
import math

import pytest
import torch

from linf_opt import (ConvImplicitNetwork, ImplicitNetwork, certify, lipschitz_bound, empirical_lipschitz, mu_inf,
                      reachable_box)
from linf_opt.robustness.attacks import pgd
from linf_opt.robustness.certify import METHODS, embedded_equilibrium
from linf_opt.robustness.input_space import InputSpace

F64 = torch.float64
SPACE = InputSpace(-2.0, 2.0)

CONFIGS = {
    "zeros": dict(in_channels=2, channels=3, input_size=(6, 6), out_features=4, kernel_size=3, stride=2, pool=1),
    "circular_small": dict(in_channels=1, channels=2, input_size=(4, 6), out_features=3, kernel_size=3, stride=2,
                           padding="circular", pool=1),      # state 2 × 3 < kernel: aliased taps
    "k5_stride1_pool": dict(in_channels=1, channels=2, input_size=(4, 4), out_features=3, kernel_size=5,
                            stride=1, pool=2, injection_kernel_size=1),
    "tanh": dict(in_channels=1, channels=2, input_size=(5, 5), out_features=3, kernel_size=3, stride=1,
                 pool=1, activation="tanh"),
}


def make_conv(name, seed=0, gamma=0.9, init_scale=3.0, **extra):
    kw = {**CONFIGS[name], **extra}
    g = torch.Generator().manual_seed(seed)
    net = ConvImplicitNetwork(gamma=gamma, init_scale=init_scale, dtype=F64, generator=g, tol=1e-12, rtol=0.0,
                              max_iter=20000, **kw)
    with torch.no_grad():
        net.injection_weight.mul_(2.0)
        net.C.mul_(3.0)
    return net


def dense_twin(net: ConvImplicitNetwork) -> ImplicitNetwork:
    """The dense ImplicitNetwork with A = as_matrix(), B and b from the injection applied to basis
    images, and C the read-out matrix: the same model, built independently of the conv code paths."""
    r, n, q = net.in_features, net.n, net.out_features
    d = ImplicitNetwork(r, n, q, net.activation, gamma=0.99, dtype=F64, tol=1e-12, rtol=0.0, max_iter=20000)
    with torch.no_grad():
        eye = torch.eye(r, dtype=F64)
        zero = net.injection(torch.zeros(1, r, dtype=F64)).reshape(-1)
        B = net.injection(eye).reshape(r, n).t() - zero.unsqueeze(1)
        d.A.copy_(net.operator.as_matrix())
        d.B.copy_(B)
        d.b.copy_(zero)
        pooled = torch.eye(n, dtype=F64).reshape(n, *net.state_shape)
        C = net.readout(pooled, None) - net.c        # columns of the read-out, by applying it to basis states
        d.C.copy_(C.t())
        d.c.copy_(net.c)
    return d


def inputs_for(net, seed, batch=16):
    g = torch.Generator().manual_seed(100 + seed)
    return torch.rand(batch, *net.input_shape, generator=g, dtype=F64) * 4 - 2


@pytest.mark.parametrize("name", list(CONFIGS))
def test_equilibria_and_outputs_equal_the_dense_twin(name):
    net = make_conv(name)
    assert float(net.operator.mu_inf()) <= 0.9 + 1e-12
    twin = dense_twin(net)
    assert float(mu_inf(twin.A.detach())) == pytest.approx(float(net.operator.mu_inf()), abs=1e-12)
    u = inputs_for(net, 0)
    x, st = net.equilibrium(u)
    xd, _ = twin.equilibrium(u.reshape(u.shape[0], -1))
    assert st.all_converged and x.shape == (u.shape[0], *net.state_shape)
    torch.testing.assert_close(x.reshape(u.shape[0], -1), xd, rtol=0, atol=1e-10)
    torch.testing.assert_close(net(u), twin(u.reshape(u.shape[0], -1)), rtol=0, atol=1e-10)
    torch.testing.assert_close(net.readout_matrix(), twin.C, rtol=0, atol=1e-14)
    # the same bounds: Lipschitz, and the embedded network's box
    assert float(lipschitz_bound(net).detach()) == pytest.approx(float(lipschitz_bound(twin).detach()), rel=1e-12)
    lo, hi = u.reshape(u.shape[0], -1) - 0.1, u.reshape(u.shape[0], -1) + 0.1
    xl, xu, _ = embedded_equilibrium(net, lo, hi)
    dl, du, _ = embedded_equilibrium(twin, lo, hi)
    if name != "circular_small":   # tap-level split = entry-level split unless taps alias
        torch.testing.assert_close(xl.reshape(lo.shape[0], -1), dl, rtol=0, atol=1e-9)
        torch.testing.assert_close(xu.reshape(lo.shape[0], -1), du, rtol=0, atol=1e-9)


def test_injection_norm_and_state_shape():
    net = make_conv("zeros")
    assert net.state_shape == (3, 3, 3)
    twin = dense_twin(net)
    B = twin.B.detach()
    assert float(net.injection_norm().detach()) == pytest.approx(float(B.abs().sum(1).max()), rel=1e-12)
    eta = torch.rand(net.state_shape, dtype=F64) + 0.5
    assert float(net.injection_norm(eta).detach()) == pytest.approx(float((B.abs().sum(1) / eta.reshape(-1)).max()),
                                                                    rel=1e-12)


@pytest.mark.parametrize("name", ["zeros", "tanh"])
def test_gradcheck_every_parameter(name):
    net = make_conv(name, init_scale=2.0)
    u = inputs_for(net, 1, batch=2)
    params = dict(net.named_parameters())

    def f(*tensors):
        state = dict(zip(params, tensors[:-1]))
        y = torch.func.functional_call(net, state, (tensors[-1],))
        return y

    args = tuple(p.detach().clone().requires_grad_(True) for p in params.values()) + (u.requires_grad_(True),)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6)


def test_backward_reports_its_stats_and_gradient_flows():
    net = make_conv("zeros")
    net(inputs_for(net, 2)).sum().backward()
    assert net.last_backward_stats is not None and net.last_backward_stats.all_converged
    assert net.kernel.grad is not None and bool(net.kernel.grad.abs().sum() > 0)


@pytest.mark.parametrize("name", ["zeros", "circular_small", "tanh"])
def test_certified_samples_survive_pgd_and_boxes_contain_samples(name):
    net = make_conv(name, seed=3)
    u = inputs_for(net, 3, batch=48).reshape(48, -1)
    labels = net(u).argmax(1)
    eps = 0.1
    with net.solver_options(tol=1e-7):
        adv = pgd(net, u, labels, eps, steps=20, restarts=2, seed=0, space=SPACE)
    broken = net(adv).argmax(1) != labels
    assert bool(broken.any())
    for method in METHODS:
        res = certify(net, u, labels, eps, method, space=SPACE)
        assert not bool((res.certified & broken).any()), method
    rel = certify(net, u, labels, 0.02, "mixed_monotone_relative", space=SPACE)
    assert bool(rel.certified.any())
    box = reachable_box(net, u[:6] - 0.1, u[:6] + 0.1)
    assert bool(box.valid.all())
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = torch.rand(u[:6].shape, generator=g, dtype=F64).round() if _ % 2 else torch.rand(u[:6].shape,
                                                                                             generator=g, dtype=F64)
        p = u[:6] - 0.1 + 0.2 * w
        y = net(p)
        x, _ = net.equilibrium(p)
        assert bool(((box.lower <= y + 1e-9) & (y <= box.upper + 1e-9)).all())
        assert bool(((box.hidden_lower <= x + 1e-9) & (x <= box.hidden_upper + 1e-9)).all())


def test_lipschitz_bound_exceeds_the_empirical_constant():
    net = make_conv("tanh", seed=5)
    low, _ = empirical_lipschitz(net, inputs_for(net, 5, batch=8), steps=30)
    assert 0 < low <= float(lipschitz_bound(net).detach()) * (1 + 1e-9)


def test_authors_construction_is_not_well_posed_on_random_kernels():
    """W = (m − C·max|K̂|)I + conv(K̂): μ∞ > 1 for random kernels (the gap the projection closes)."""
    values = []
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        net = ConvImplicitNetwork(1, 8, (28, 28), 10, 3, construction="authors", gamma=0.9, dtype=F64, generator=g)
        op = net.operator
        values.append(float(op.mu_inf()))
        # the construction's own bookkeeping holds: the centre tap is m − C·max|K̂| + K̂[c, c, centre]
        K = op.kernel.detach()
        assert float(K.abs().amax()) > 0
    assert min(values) > 1.0, values
    proj = ConvImplicitNetwork(1, 8, (28, 28), 10, 3, gamma=0.9, dtype=F64)
    assert float(proj.operator.mu_inf()) <= 0.9 + 1e-12


def test_float32_forward_and_module_behaviour():
    net = ConvImplicitNetwork(1, 4, (8, 8), 3, 3, generator=torch.Generator().manual_seed(0))
    assert net.C.dtype == torch.float32
    y = net(torch.rand(5, 1, 8, 8))
    assert y.shape == (5, 3) and bool(torch.isfinite(y).all())
    y1 = net(torch.rand(1, 8, 8))              # a single image
    assert y1.shape == (3,)
    assert "construction=projection" in repr(net)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=4), "kernel_size"),
    (dict(injection_kernel_size=2), "injection_kernel_size"),
    (dict(channels=0), "channels"),
    (dict(input_size=(1, 1), stride=3, injection_kernel_size=5), "input_size"),
    (dict(pool=4), "pool"),
    (dict(padding="reflect"), "padding"),
    (dict(construction="magic"), "construction"),
    (dict(gamma=1.5), "gamma"),
    (dict(check_every=0), "check_every"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    base = dict(in_channels=1, channels=2, input_size=(6, 6), out_features=3, pool=3)
    with pytest.raises(ValueError, match=match):
        ConvImplicitNetwork(**{**base, **kwargs})


def test_bad_dtype_and_inputs():
    with pytest.raises(TypeError, match="dtype"):
        ConvImplicitNetwork(1, 2, (6, 6), 3, pool=3, dtype=torch.float16)
    net = ConvImplicitNetwork(1, 2, (6, 6), 3, pool=3)
    with pytest.raises(ValueError, match="u"):
        net(torch.rand(2, 1, 5, 5))
    with pytest.raises(TypeError, match="complex"):
        net(torch.rand(2, 36, dtype=torch.complex64))
    with pytest.raises(ValueError, match="u"):
        net(torch.full((2, 36), math.nan))


def test_injection_is_public_for_both_networks():
    net = make_conv("zeros")
    u = inputs_for(net, 7, batch=3)
    q = net.injection(u)                                  # images in, state shape out
    assert q.shape == (3, *net.state_shape)
    torch.testing.assert_close(net.injection(u.reshape(3, -1)), q)
    torch.testing.assert_close(net.injection(u[0]), q[0])  # a single image
    dense = ImplicitNetwork(4, 6, 2, dtype=F64)
    v = torch.randn(5, 4, dtype=F64)
    torch.testing.assert_close(dense.injection(v), v @ dense.B.t() + dense.b)
    with pytest.raises(ValueError, match="u"):
        dense.injection(torch.randn(5, 3, dtype=F64))
