"""FGSM and PGD: they stay in the clipped ε-ball, find the optimum where it is known, are reproducible,
and refuse bad input with messages that name the argument."""
import math

import numpy as np
import pytest
import torch

from linf_opt import ImplicitNetwork
from linf_opt.robustness.attacks import attack_accuracy, fgsm, pgd
from linf_opt.data.datasets import to_normalized
from linf_opt.errors import NonFiniteError, ShapeError
from linf_opt.robustness.input_space import IDENTITY, MNIST, PIXELS, InputSpace

F64 = torch.float64


def small_net(seed=0, r=6, q=3):
    g = torch.Generator().manual_seed(seed)
    net = ImplicitNetwork(r, 8, q, gamma=0.8, init_scale=2.0, dtype=F64, generator=g, tol=1e-9, rtol=0.0)
    with torch.no_grad():
        net.B.mul_(4.0)
    return net


def pixels(batch=32, r=6, seed=0):
    """Pixels in [0, 1] with many exact 0s and 1s, so that clipping to the range matters."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, r, generator=g, dtype=F64)
    p[p < 0.3] = 0.0
    p[p > 0.8] = 1.0
    return p


def assert_in_ball(adv, p, eps, space):
    assert bool(((adv - p).abs() <= eps + 1e-12).all())
    assert bool((adv >= space.low).all() and (adv <= space.high).all())


@pytest.mark.parametrize("space", [PIXELS, MNIST], ids=["pixels", "mnist"])
@pytest.mark.parametrize("eps", [0.0, 0.01, 0.1, 0.5])
def test_attacks_stay_in_the_clipped_ball(space, eps):
    net, p = small_net(), pixels()
    labels = net(space.to_model(p)).argmax(1)
    for adv in (fgsm(net, p, labels, eps, space=space),
                pgd(net, p, labels, eps, steps=5, restarts=2, space=space, seed=1),
                pgd(net, p, labels, eps, steps=3, step_size=10 * eps, space=space, random_start=False)):
        assert adv.shape == p.shape and adv.dtype == p.dtype
        assert_in_ball(adv, p, eps, space)
    if eps == 0:
        assert torch.equal(pgd(net, p, labels, eps, steps=3, space=space), p)


def test_unbounded_space_and_numpy_round_trip():
    net = small_net()
    u = np.random.default_rng(0).normal(size=(16, 6)) * 3
    labels = net(torch.as_tensor(u)).argmax(1).numpy()
    adv = pgd(net, u, labels, 0.2, steps=5, space=IDENTITY)
    assert isinstance(adv, np.ndarray) and adv.shape == u.shape
    assert np.all(np.abs(adv - u) <= 0.2 + 1e-12)
    assert np.any(np.abs(adv - u) > 0.19)                      # it moved (beyond [0, 1], unclipped)


def test_fgsm_and_pgd_find_the_optimum_of_a_linear_model():
    """For y = W x + c with two classes the worst case in the ball is p + ε sign(W_other − W_label)."""
    lin = torch.nn.Linear(5, 2).double()
    p = torch.full((4, 5), 0.5, dtype=F64)
    labels = torch.tensor([0, 1, 0, 1])
    W = lin.weight.detach()
    direction = torch.stack([(W[1 - t] - W[t]).sign() for t in labels.tolist()])
    expected = p + 0.1 * direction
    assert torch.allclose(fgsm(lin, p, labels, 0.1), expected)
    assert torch.allclose(pgd(lin, p, labels, 0.1, steps=10), expected)
    # clipping: at a corner of the range the step is cut at the range
    q = torch.zeros(4, 5, dtype=F64)
    assert torch.allclose(fgsm(lin, q, labels, 0.1), (0.1 * direction).clamp(min=0))
    assert lin.weight.grad is None and lin.weight.requires_grad        # nothing accumulated, nothing frozen


def test_pgd_is_reproducible_and_restarts_only_help():
    net, p = small_net(1), pixels(64, seed=1)
    labels = net(p).argmax(1)
    a = pgd(net, p, labels, 0.1, steps=3, seed=5)
    assert torch.equal(a, pgd(net, p, labels, 0.1, steps=3, seed=5))
    assert not torch.equal(a, pgd(net, p, labels, 0.1, steps=3, seed=6))
    b = pgd(net, p, labels, 0.1, steps=3, seed=5, restarts=3)      # its first run is ``a``
    ya, yb = net(a).detach(), net(b).detach()
    wa, wb = ya.argmax(1) != labels, yb.argmax(1) != labels
    assert bool((wb | ~wa).all())
    la = torch.nn.functional.cross_entropy(ya, labels, reduction="none")
    lb = torch.nn.functional.cross_entropy(yb, labels, reduction="none")
    assert bool((lb[~wb] >= la[~wb] - 1e-12).all())
    # the random starts depend on the sample, not on the batching (chunks of 256 samples: cross them)
    big = pixels(600, seed=4)
    big_labels = net(big).argmax(1)
    whole = pgd(net, big, big_labels, 0.1, steps=2, restarts=2, seed=5)
    for bs in (7, 256, 300):
        assert torch.equal(pgd(net, big, big_labels, 0.1, steps=2, restarts=2, seed=5, batch_size=bs), whole)
    accs = {attack_accuracy(net, big, big_labels, 0.1, "pgd", steps=2, seed=5, batch_size=bs) for bs in (50, 1000)}
    assert len(accs) == 1
    # the global RNG is untouched
    state = torch.get_rng_state()
    pgd(net, p, labels, 0.1, steps=1, seed=9)
    assert torch.equal(state, torch.get_rng_state())


def test_attack_accuracy_orders_clean_fgsm_pgd():
    net, p = small_net(2), pixels(64, seed=2)
    labels = net(p).argmax(1)
    labels[:8] = (labels[:8] + 1) % 3
    clean = attack_accuracy(net, p, labels, 0.0)
    assert clean == pytest.approx(56 / 64)
    f = attack_accuracy(net, p, labels, 0.2, "fgsm", batch_size=16)
    g = attack_accuracy(net, p, labels, 0.2, "pgd", steps=20, restarts=2, batch_size=16)
    assert g <= clean and f <= clean and g < clean
    assert net.A.requires_grad and net.A.grad is None


def test_bad_input_is_refused():
    net, p = small_net(), pixels(4)
    labels = torch.zeros(4, dtype=torch.long)
    for attack in (fgsm, pgd):
        with pytest.raises(ValueError, match="eps"):
            attack(net, p, labels, -0.1)
        for bad in (math.nan, math.inf):
            with pytest.raises(NonFiniteError, match="eps"):
                attack(net, p, labels, bad)
        with pytest.raises(ValueError, match=r"valid input range \[0, 1\].*normalized MNIST"):
            attack(net, to_normalized(p), labels, 0.1)
        with pytest.raises(ValueError, match="valid input range"):
            attack(net, p * 2, labels, 0.1, space=MNIST)
        nanp = p.clone(); nanp[0, 0] = math.nan
        with pytest.raises(NonFiniteError, match="inputs"):
            attack(net, nanp, labels, 0.1)
        with pytest.raises(ShapeError, match="labels"):
            attack(net, p, labels[:3], 0.1)
        with pytest.raises(TypeError, match="labels"):
            attack(net, p, labels.double(), 0.1)
        with pytest.raises(ValueError, match="labels"):
            attack(net, p, labels + 3, 0.1)
        with pytest.raises(TypeError, match="space"):
            attack(net, p, labels, 0.1, space=(0, 1))
    with pytest.raises(ValueError, match="restarts"):
        pgd(net, p, labels, 0.1, restarts=0)
    with pytest.raises(ValueError, match="steps"):
        pgd(net, p, labels, 0.1, steps=-1)
    with pytest.raises(ValueError, match="step_size"):
        pgd(net, p, labels, 0.1, step_size=-0.01)
    with pytest.raises(ValueError, match="attack"):
        attack_accuracy(net, p, labels, 0.1, "cw")
    with pytest.raises(ValueError, match="batch_size"):
        fgsm(net, p, labels, 0.1, batch_size=0)


def test_input_space_maps():
    s = InputSpace(0.0, 1.0, 0.5, 2.0)
    x = torch.tensor([0.0, 0.25, 1.0])
    assert torch.allclose(s.to_attack(s.to_model(x)), x)
    assert s.model_range == (-0.25, 0.25) and s.eps_to_model(0.1) == pytest.approx(0.05)
    lo, hi = s.box(x, 0.5)
    assert torch.allclose(lo, s.to_model(torch.tensor([0.0, 0.0, 0.5])))
    assert torch.allclose(hi, s.to_model(torch.tensor([0.5, 0.75, 1.0])))
    assert MNIST.eps_to_model(0.1) == pytest.approx(0.1 / 0.3081)
    with pytest.raises(ValueError, match="scale"):
        InputSpace(scale=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_attacks_stay_in_the_ball_and_match_cpu():
    net = small_net(1)
    p = pixels(64, seed=2)
    gnet = small_net(1).to("cuda")
    for space in (PIXELS, MNIST):
        labels = net(space.to_model(p)).argmax(1)
        adv = fgsm(gnet, p.cuda(), labels.cuda(), 0.1, space=space)
        assert adv.is_cuda
        assert_in_ball(adv.cpu(), p, 0.1, space)
        torch.testing.assert_close(adv.cpu(), fgsm(net, p, labels, 0.1, space=space), rtol=1e-9, atol=1e-9)
        adv = pgd(gnet, p.cuda(), labels.cuda(), 0.1, steps=10, restarts=2, seed=0, space=space)
        assert adv.is_cuda
        assert_in_ball(adv.cpu(), p, 0.1, space)
        acc = attack_accuracy(gnet, p.cuda(), labels.cuda(), 0.1, space=space, attack="pgd", steps=5)
        assert 0.0 <= acc <= 1.0
