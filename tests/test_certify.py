"""Reachable boxes and certificates (docs/mathematics.md §8): soundness against sampling and PGD, tightness relations,
the embedded network's algebra, and the error paths."""
import math

import numpy as np
import pytest
import torch

from linf_opt import ImplicitNetwork, mu_inf, average_step, solve_fixed_point
from linf_opt.robustness.attacks import pgd
from linf_opt.robustness.certify import (METHODS, certify, embedded_equilibrium, embedded_matrix, ibp_matrix,
                              margin_lower_bounds, reachable_box)
from linf_opt.errors import NonFiniteError, ShapeError
from linf_opt.robustness.input_space import MNIST, PIXELS, InputSpace

F64 = torch.float64


def make_net(seed, *, r=5, n=10, q=4, gamma=0.9, init_scale=3.0, activation="relu", feedthrough=False,
             eta=None):
    g = torch.Generator().manual_seed(seed)
    net = ImplicitNetwork(r, n, q, activation, gamma=gamma, init_scale=init_scale, feedthrough=feedthrough,
                          eta=eta, dtype=F64, generator=g, tol=1e-12, rtol=0.0, max_iter=20000)
    with torch.no_grad():
        net.B.mul_(3.0)
        net.C.mul_(3.0)
        if feedthrough:
            net.D.uniform_(-0.5, 0.5, generator=g)
    return net


# A few structurally different networks: negative diagonals (μ < 0 and μ > 0), smooth and leaky
# activations, feedthrough, weighted measure.
NETS = {
    "relu": dict(seed=0),
    "relu_negative_mu": dict(seed=1, gamma=-0.5),
    "tanh_feedthrough": dict(seed=2, activation="tanh", feedthrough=True),
    "leaky": dict(seed=3, activation="leaky_relu"),
    "weighted": dict(seed=4, eta=[1.0 + 0.2 * i for i in range(10)]),
}


SPACE = InputSpace(-2.0, 2.0)     # wide enough that the random networks predict several classes


def inputs_for(net, seed, batch=64):
    g = torch.Generator().manual_seed(100 + seed)
    return torch.rand(batch, net.in_features, generator=g, dtype=F64) * 4 - 2


def random_points_in_box(lo, hi, count, seed):
    """``count`` points per box: uniform inside, plus random corners (extreme for monotone maps)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand((count,) + lo.shape, generator=g, dtype=lo.dtype)
    w[: count // 2] = w[: count // 2].round()
    return lo + w * (hi - lo)


# ----------------------------------------------------------------------------------------------------
# The embedded network's algebra
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_embedded_matrix_keeps_measure_and_step(seed):
    A = make_net(seed, gamma=0.5 - seed).A.detach()
    E = embedded_matrix(A)
    n = A.shape[0]
    assert E.shape == (2 * n, 2 * n)
    assert mu_inf(E) == pytest.approx(float(mu_inf(A)), abs=1e-12)
    assert average_step(E) == pytest.approx(float(average_step(A)), abs=1e-12)
    eta = torch.rand(n, dtype=F64) + 0.5
    assert mu_inf(E, torch.cat([eta, eta])) == pytest.approx(float(mu_inf(A, eta)), abs=1e-12)
    # rows add up to A: A_up + A_dn = A, and the IBP matrix's measure is ‖A‖∞
    assert torch.allclose(E[:n, :n] + E[:n, n:], A)
    assert float(mu_inf(ibp_matrix(A))) == pytest.approx(float(A.abs().sum(1).max()), abs=1e-12)


@pytest.mark.parametrize("name", list(NETS))
def test_embedded_fixed_point_brackets_the_centre(name):
    net = make_net(**NETS[name])
    u = inputs_for(net, 0)
    for r in (0.0, 0.01, 0.2):
        xl, xu, stats = embedded_equilibrium(net, u - r, u + r)
        assert stats.all_converged
        x, _ = net.equilibrium(u)
        assert bool((xl <= x + 1e-10).all() and (x <= xu + 1e-10).all())
        if r == 0:  # a degenerate box gives the equilibrium itself, twice
            assert torch.allclose(xl, x, atol=1e-9) and torch.allclose(xu, x, atol=1e-9)


def test_structured_embedded_solver_matches_the_plain_average_iteration():
    from linf_opt.equilibrium.activations import get_activation
    from linf_opt.equilibrium.solvers import get_solver
    net = make_net(1)
    u = inputs_for(net, 0, batch=8)
    E = embedded_matrix(net.A.detach())
    Q = torch.randn(8, 2 * net.hidden_features, dtype=F64)
    relu = get_activation("relu")
    opts = dict(alpha=None, tol=1e-12, rtol=0.0, max_iter=5000, trace=True)
    X1, s1 = get_solver("average")(E, Q, relu, torch.zeros_like(Q), **opts)
    X2, s2 = get_solver("embedded_average")(E, Q, relu, torch.zeros_like(Q), **opts)
    assert s2.all_converged and s1.iterations == s2.iterations and s1.alpha == s2.alpha
    assert torch.allclose(X1, X2, atol=1e-11)
    assert s2.trace == pytest.approx(s1.trace, rel=1e-6, abs=1e-12)
    bad = E.clone(); bad[0, -1] += 1.0
    with pytest.raises(ValueError, match=r"\[\[P, N\], \[N, P\]\]"):
        get_solver("embedded_average")(bad, Q, relu, torch.zeros_like(Q), **opts)


# ----------------------------------------------------------------------------------------------------
# Box bounds contain every output of the box
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(NETS))
def test_reachable_box_contains_sampled_outputs(name):
    net = make_net(**NETS[name])
    u = inputs_for(net, 1, batch=16)
    lo, hi = u - 0.05, u + 0.05
    box = reachable_box(net, lo, hi)
    assert bool(box.valid.all())
    pts = random_points_in_box(lo, hi, 200, seed=7)             # (200, 16, r)
    with torch.no_grad():
        X, _ = net.equilibrium(pts.reshape(-1, net.in_features))
        Y = net.readout(X, pts.reshape(-1, net.in_features))
    X, Y = X.view(200, 16, -1), Y.view(200, 16, -1)
    assert bool((X >= box.hidden_lower - 1e-10).all() and (X <= box.hidden_upper + 1e-10).all())
    assert bool((Y >= box.lower - 1e-10).all() and (Y <= box.upper + 1e-10).all())
    # not vacuous: the sampled range fills a good part of the box
    spread = (Y.amax(0) - Y.amin(0)) / (box.upper - box.lower)
    assert float(spread.median()) > 0.05


def test_reachable_box_numpy_single_box_and_tighter_than_ibp():
    # ‖A‖∞ < 1 with negative diagonal entries: IBP converges, the embedded network is tighter
    net = make_net(5, init_scale=0.3, gamma=0.5)
    with torch.no_grad():
        net.A.mul_(0.6 / float(net.A.abs().sum(1).max()))
        net.A.diagonal().sub_(0.05)
    assert float(net.A.detach().diagonal().min()) < 0 and float(net.A.detach().abs().sum(1).max()) < 1
    u = np.linspace(0.1, 0.9, net.in_features)
    mm = reachable_box(net, u - 0.1, u + 0.1)
    ib = reachable_box(net, u - 0.1, u + 0.1, method="ibp")
    assert isinstance(mm.lower, np.ndarray) and mm.lower.shape == (net.out_features,)
    assert bool(mm.valid) and bool(ib.valid)
    assert np.all(ib.hidden_lower <= mm.hidden_lower + 1e-9) and np.all(mm.hidden_upper <= ib.hidden_upper + 1e-9)
    assert np.all(ib.lower <= mm.lower + 1e-9) and np.all(mm.upper <= ib.upper + 1e-9)
    y = net(torch.as_tensor(u)).detach().numpy()
    assert np.all(ib.lower <= y) and np.all(y <= ib.upper)


def test_ibp_reports_divergence_where_the_embedded_network_converges():
    net = make_net(0, init_scale=4.0)        # strongly negative diagonal: ρ(|A|) > 1 > μ∞(A)
    A = net.A.detach()
    assert float(torch.linalg.eigvals(A.abs()).abs().max()) > 1 > float(mu_inf(A))
    u = inputs_for(net, 2, batch=8)
    ib = reachable_box(net, u - 0.02, u + 0.02, method="ibp")
    assert not bool(ib.valid.any())
    assert ib.stats.diverged or not ib.stats.all_converged
    res = certify(net, u, net(u).argmax(1), 0.02, "ibp", space=SPACE)
    assert res.n_invalid == 8 and not bool(res.certified.any())
    assert bool(reachable_box(net, u - 0.02, u + 0.02).valid.all())


# ----------------------------------------------------------------------------------------------------
# Certificates
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(NETS))
def test_certified_samples_survive_pgd(name):
    """Soundness: no sample certified at ε by any method is misclassified by PGD at ε."""
    net = make_net(**NETS[name])
    u = inputs_for(net, 3, batch=64)
    labels = net(u).argmax(1)
    eps = 0.1
    with net.solver_options(tol=1e-7):
        adv = pgd(net, u, labels, eps, steps=20, restarts=2, seed=0, space=SPACE)
    broken = net(adv).argmax(1) != labels
    assert bool(broken.any())       # the attack is not idle
    for method in METHODS:
        res = certify(net, u, labels, eps, method, space=SPACE)
        assert not bool((res.certified & broken).any()), method
        if method == "mixed_monotone_relative":
            assert bool(res.certified.any())   # nor is the certificate
        assert bool((res.margins.gather(1, labels.view(-1, 1)) == 0).all())


@pytest.mark.parametrize("name", ["relu", "tanh_feedthrough", "weighted"])
def test_relative_classifier_never_weaker(name):
    net = make_net(**NETS[name])
    u = inputs_for(net, 4, batch=128)
    labels = torch.randint(0, net.out_features, (128,), generator=torch.Generator().manual_seed(0))
    labels[:64] = net(u[:64]).argmax(1)
    for eps in (0.0, 0.005, 0.02, 0.1):
        plain = certify(net, u, labels, eps, "mixed_monotone", space=SPACE)
        rel = certify(net, u, labels, eps, "mixed_monotone_relative", space=SPACE)
        assert bool((rel.margins >= plain.margins - 1e-10).all())
        assert bool((rel.certified | ~plain.certified).all())
        tight = certify(net, u, labels, eps, "lipschitz", space=SPACE)
        paper = certify(net, u, labels, eps, "lipschitz_paper", space=SPACE)
        assert tight.lipschitz <= paper.lipschitz + 1e-12
        assert bool((tight.certified | ~paper.certified).all())
    wrong = net(u).argmax(1) != labels
    assert not bool((rel.certified & wrong).any())        # wrong labels are never certified


def test_lipschitz_certificate_matches_the_margin_rule():
    net = make_net(0)
    u = inputs_for(net, 5)
    labels = net(u).argmax(1)
    y = net(u).detach()
    top2 = y.topk(2, dim=1).values
    gaps = (top2[:, 0] - top2[:, 1]).sort().values
    eps = float(gaps[31] + gaps[32]) / 2 / (2 * float(net.lipschitz_bound().detach()))   # between two samples
    res = certify(net, u, labels, eps, "lipschitz", space=SPACE)
    rule = (top2[:, 0] - top2[:, 1]) > 2 * res.lipschitz * eps
    assert torch.equal(res.certified, rule)
    assert 0 < res.certified_accuracy < 1
    assert torch.allclose(res.upper - res.lower, torch.full_like(y, 2 * res.lipschitz * eps), atol=1e-9)


def test_eps_zero_certifies_exactly_the_correct_predictions():
    net = make_net(2)
    u = inputs_for(net, 6)
    labels = net(u).argmax(1)
    labels[::3] = (labels[::3] + 1) % net.out_features
    for method in METHODS:
        if method == "ibp":
            continue
        res = certify(net, u, labels, 0.0, method, space=SPACE)
        assert torch.equal(res.certified, net(u).argmax(1) == labels), method


def test_certify_in_mnist_space_clips_the_box():
    net = make_net(1, r=6)
    p = torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0, 0.3]] * 3, dtype=F64)
    lo, hi = MNIST.box(p, 0.1)
    assert torch.allclose(lo[0], MNIST.to_model(torch.tensor([0.0, 0.0, 0.4, 0.9, 0.9, 0.2], dtype=F64)))
    assert torch.allclose(hi[0], MNIST.to_model(torch.tensor([0.1, 0.1, 0.6, 1.0, 1.0, 0.4], dtype=F64)))
    labels = net(MNIST.to_model(p)).argmax(1)
    res = certify(net, p, labels, 0.1, "mixed_monotone", space=MNIST, batch_size=2)
    box = reachable_box(net, lo, hi)
    assert torch.allclose(res.lower, box.lower) and res.batches == 2
    assert res.eps_model == pytest.approx(0.1 / 0.3081)


def test_float32_network_bounds_are_widened_by_the_residual():
    g = torch.Generator().manual_seed(0)
    net = ImplicitNetwork(5, 10, 3, gamma=0.9, init_scale=3.0, generator=g)   # float32
    u = torch.rand(32, 5, generator=g)
    box = reachable_box(net, u - 0.05, u + 0.05)
    xl, xu, st = embedded_equilibrium(net, u - 0.05, u + 0.05, tol=1e-5, rtol=1e-5)
    assert bool((box.hidden_lower <= xl).all()) and bool((box.hidden_upper >= xu).all())
    pts = random_points_in_box(u - 0.05, u + 0.05, 50, seed=1).reshape(-1, 5)
    y = net(pts).detach().view(50, 32, -1)
    assert bool((y >= box.lower).all()) and bool((y <= box.upper).all())


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------

def test_bad_boxes_and_radii():
    net = make_net(0)
    u = inputs_for(net, 0, batch=4)
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="lower ≤ upper"):
        reachable_box(net, u + 0.1, u)
    with pytest.raises(ShapeError, match="lower"):
        reachable_box(net, u[:, :3], u[:, :3])
    with pytest.raises(ShapeError, match="same shape"):
        reachable_box(net, u, u[:2])
    bad = u.clone(); bad[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match="upper"):
        reachable_box(net, u, bad)
    with pytest.raises(ValueError, match="method"):
        reachable_box(net, u, u, method="zonotope")
    p = (u + 2) / 4                                   # pixels in [0, 1]
    for eps, err in ((-0.1, ValueError), (math.inf, NonFiniteError), (math.nan, NonFiniteError)):
        with pytest.raises(err, match="eps"):
            certify(net, p, labels, eps)
    with pytest.raises(ValueError, match="valid input range"):
        certify(net, p + 1.0, labels, 0.1)
    with pytest.raises(ValueError, match="normalized MNIST"):
        certify(net, p - 0.5, labels, 0.1, space=PIXELS)
    with pytest.raises(ValueError, match="method"):
        certify(net, p, labels, 0.1, "bogus")
    with pytest.raises(ValueError, match="labels"):
        certify(net, p, labels + 10, 0.1)
    with pytest.raises(ShapeError, match="labels"):
        certify(net, p, labels[:2], 0.1)
    with pytest.raises(TypeError, match="labels"):
        certify(net, p, labels.double(), 0.1)
    with pytest.raises(ValueError, match="low < high"):
        InputSpace(1.0, 0.0)


def test_ill_posed_network_is_refused():
    net = make_net(0)
    with torch.no_grad():
        net.A.copy_(torch.eye(net.hidden_features, dtype=F64) * 1.5)
    u = inputs_for(net, 0, batch=2)
    with pytest.raises(ValueError, match="not certified well-posed"):
        reachable_box(net, u, u + 0.1)
    with pytest.raises(ValueError, match="not certified well-posed"):
        certify(net, u, torch.zeros(2, dtype=torch.long), 0.1, "ibp", space=SPACE)


def test_margin_bounds_are_differentiable():
    """Exact implicit gradients through the embedded network: float64 gradcheck in A, B, b, C."""
    net = make_net(2, r=3, n=4, q=3, activation="tanh", gamma=0.3, init_scale=1.0)
    u = inputs_for(net, 0, batch=2)
    labels = torch.tensor([0, 2])

    class Weights:   # the same interface as the network, over plain tensors gradcheck can perturb
        readout = ImplicitNetwork.readout
        readout_matrix = ImplicitNetwork.readout_matrix
        operator = ImplicitNetwork.operator
        injection_bounds = ImplicitNetwork.injection_bounds

    def f(A, B, b, C):
        w = Weights()
        for k in ("activation", "method", "alpha", "tol", "rtol", "max_iter", "strict", "backward",
                  "backward_tol", "c", "D"):
            setattr(w, k, getattr(net, k))
        w.A, w.B, w.b, w.C = A, B, b, C
        xl, xu, _ = embedded_equilibrium(w, u - 0.1, u + 0.1)
        return margin_lower_bounds(w, xl, xu, labels, u - 0.1, u + 0.1)

    args = [p.detach().clone() for p in (net.A, net.B, net.b, net.C)]
    args[0] += 1e-3 * (args[0] == 0)          # away from the kinks of A ↦ (A_up, A_dn)
    args = tuple(a.requires_grad_(True) for a in args)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["relu", "weighted", "tanh_feedthrough"])
def test_cuda_certificates_match_cpu(name):
    net = make_net(**NETS[name])
    u = inputs_for(net, 5, batch=64)
    labels = net(u).argmax(1)
    gnet = make_net(**NETS[name]).to("cuda")
    for method in METHODS:
        c = certify(net, u, labels, 0.05, method, space=SPACE)
        g = certify(gnet, u.cuda(), labels.cuda(), 0.05, method, space=SPACE)
        assert g.margins.is_cuda
        torch.testing.assert_close(g.margins.cpu(), c.margins, rtol=1e-6, atol=1e-8)
        assert torch.equal(g.certified.cpu(), c.certified), method
    box = reachable_box(net, u - 0.05, u + 0.05)
    gbox = reachable_box(gnet, (u - 0.05).cuda(), (u + 0.05).cuda())
    assert gbox.lower.is_cuda and bool(gbox.valid.all())
    for a, b in ((gbox.lower, box.lower), (gbox.upper, box.upper), (gbox.hidden_lower, box.hidden_lower)):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-8)
