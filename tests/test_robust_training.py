"""The robust loss (clean CE mixed with CE on the negated margin lower bounds) and its ε / κ schedule."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from linf_opt import ImplicitNetwork
from linf_opt.robustness.attacks import pgd
from linf_opt.robustness.certify import certify, embedded_equilibrium, margin_lower_bounds
from linf_opt.training.config import RobustConfig, load_problem
from linf_opt.errors import NonFiniteError
from linf_opt.robustness.input_space import IDENTITY
from linf_opt.sets.projections import project_mu_inf
from linf_opt.robustness.robust_training import ramp, robust_loss, robust_schedule

F64 = torch.float64
ROOT = Path(__file__).resolve().parent.parent


def small_net(seed=0, r=4, q=3):
    g = torch.Generator().manual_seed(seed)
    return ImplicitNetwork(r, 8, q, gamma=0.9, init_scale=2.0, dtype=F64, generator=g, tol=1e-11, rtol=0.0)


def batch(net, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(size, net.in_features, generator=g, dtype=F64) * 2 - 1
    return u, torch.randint(0, net.out_features, (size,), generator=g)


# ----------------------------------------------------------------------------------------------------
# Schedule
# ----------------------------------------------------------------------------------------------------

def test_schedule_warmup_and_linear_ramps():
    cfg = RobustConfig(enabled=True, eps=0.1, eps_ramp_epochs=4, mix=0.5, mix_ramp_epochs=2, warmup_epochs=1)
    assert robust_schedule(cfg, 0, 0.0) == (0.0, 0.0)
    assert robust_schedule(cfg, 0, 0.99) == (0.0, 0.0)
    assert robust_schedule(cfg, 2, 0.0) == pytest.approx((0.025, 0.25))
    assert robust_schedule(cfg, 2, 0.5) == pytest.approx((0.0375, 0.375))
    assert robust_schedule(cfg, 2.5) == robust_schedule(cfg, 2, 0.5)         # a fractional epoch works too
    assert robust_schedule(cfg, 3, 0.0) == pytest.approx((0.05, 0.5))
    assert robust_schedule(cfg, 5, 0.0) == pytest.approx((0.1, 0.5))
    assert robust_schedule(cfg, 40, 0.3) == pytest.approx((0.1, 0.5))
    eps = [robust_schedule(cfg, e, f)[0] for e in range(7) for f in (0.0, 0.25, 0.5, 0.75)]
    assert eps == sorted(eps)
    # no ramp: full strength right after the warm-up; disabled: nothing
    step = RobustConfig(enabled=True, eps=0.2, eps_ramp_epochs=0, mix=1.0, mix_ramp_epochs=0, warmup_epochs=2)
    assert robust_schedule(step, 1, 0.9) == (0.0, 0.0) and robust_schedule(step, 2, 0.0) == (0.2, 1.0)
    assert robust_schedule(RobustConfig(enabled=False), 10, 0.0) == (0.0, 0.0)
    assert ramp(-1, 3) == 0 and ramp(1.5, 3) == 0.5 and ramp(7, 3) == 1 and ramp(0, 0) == 1


def test_schedule_rejects_bad_time():
    cfg = RobustConfig(enabled=True)
    for epoch, frac in ((-1, 0.0), (0, 1.5), (0, -0.1), (math.nan, 0.0)):
        with pytest.raises(ValueError, match="epoch"):
            robust_schedule(cfg, epoch, frac)


def test_robust_problem_file():
    p = load_problem(ROOT / "problems" / "mnist_fc_robust.toml")
    assert p.robust.enabled and p.data.kind == "mnist"
    end = robust_schedule(p.robust, p.training.epochs - 1, 1.0)
    assert end == pytest.approx((p.robust.eps, p.robust.mix))


# ----------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------

def test_loss_reduces_to_clean_cross_entropy():
    net = small_net()
    u, t = batch(net)
    with torch.no_grad():
        clean = F.cross_entropy(net(u), t)
        accuracy = float((net(u).argmax(1) == t).double().mean())
    for eps, mix in ((0.0, 0.7), (0.3, 0.0), (0.0, 0.0)):
        loss, info = robust_loss(net, u, t, eps, mix)
        assert float(loss.detach()) == pytest.approx(float(clean), rel=1e-12)
        assert info["clean_loss"] == pytest.approx(float(clean))
        if eps == 0:
            assert info["robust_loss"] == info["clean_loss"] and info["certified"] == pytest.approx(accuracy)
        else:
            assert math.isnan(info["robust_loss"]) and math.isnan(info["certified"])
    # at ε = 0 the robust term itself equals the clean loss (the margins are exact)
    with torch.no_grad():
        xl, xu, _ = embedded_equilibrium(net, u, u)
        z = margin_lower_bounds(net, xl, xu, t, u, u)
    assert float(F.cross_entropy(-z, t)) == pytest.approx(float(clean), rel=1e-8)


def test_loss_is_the_convex_mix_and_bounds_the_worst_case():
    net = small_net(1)
    u, t = batch(net, 1)
    eps = 0.1
    with torch.no_grad():
        full, info1 = robust_loss(net, u, t, eps, 1.0)
        half, info_h = robust_loss(net, u, t, eps, 0.5)
        clean = F.cross_entropy(net(u), t)
        with_logits, _ = robust_loss(net, u, t, eps, 0.5, logits=net(u))
    assert math.isnan(info1["clean_loss"])                       # κ = 1: no clean solve
    assert float(half) == pytest.approx(0.5 * float(clean) + 0.5 * float(full), rel=1e-10)
    assert float(with_logits) == pytest.approx(float(half), rel=1e-12)
    assert float(full) > float(clean)
    # CE(−z̲) ≥ CE(y(u′)) for every u′ in the box: check on PGD's worst case, per sample
    adv = pgd(net, u, t, eps, steps=20, space=IDENTITY)
    with torch.no_grad():
        xl, xu, _ = embedded_equilibrium(net, u - eps, u + eps)
        bound = F.cross_entropy(-margin_lower_bounds(net, xl, xu, t, u - eps, u + eps), t, reduction="none")
        worst = F.cross_entropy(net(adv), t, reduction="none")
    assert bool((bound >= worst - 1e-9).all())
    assert 0 <= info_h["certified"] <= 1 and info_h["embedded_iterations"] > 0


def test_box_is_clipped_to_the_valid_range():
    net = small_net(2)
    u, t = batch(net, 2)
    with torch.no_grad():
        clipped, _ = robust_loss(net, u, t, 0.5, 1.0, lower=-1.0, upper=1.0)
        free, _ = robust_loss(net, u, t, 0.5, 1.0)
        lo, hi = (u - 0.5).clamp(min=-1.0), (u + 0.5).clamp(max=1.0)
        xl, xu, _ = embedded_equilibrium(net, lo, hi)
        expect = F.cross_entropy(-margin_lower_bounds(net, xl, xu, t, lo, hi), t)
    assert float(clipped) < float(free)             # a smaller box gives tighter bounds
    assert float(clipped) == pytest.approx(float(expect), rel=1e-12)


def test_gradients_reach_every_parameter():
    net = small_net(3)
    u, t = batch(net, 3)
    loss, _ = robust_loss(net, u, t, 0.1, 0.5)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0, name


def test_robust_training_raises_certified_accuracy():
    """A few projected Adam steps on the robust loss (κ = 1) lower it and certify most of a toy problem."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-0.5, -0.5], [0.5, 0.5]], dtype=F64)
    t = torch.randint(0, 2, (64,), generator=g)
    u = (centres[t] + 0.2 * torch.randn(64, 2, generator=g, dtype=F64)).clamp(-1, 1)
    net = ImplicitNetwork(2, 8, 2, gamma=0.9, dtype=F64, tol=1e-7, rtol=0.0,
                          generator=torch.Generator().manual_seed(1))
    before = certify(net, u, t, 0.2, "mixed_monotone_relative", space=IDENTITY).certified_accuracy
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss, _ = robust_loss(net, u, t, 0.2, 1.0)
        loss.backward()
        opt.step()
        with torch.no_grad():
            net.A.copy_(project_mu_inf(net.A, 0.9))
        losses.append(float(loss.detach()))
    after = certify(net, u, t, 0.2, "mixed_monotone_relative", space=IDENTITY).certified_accuracy
    assert losses[-1] < 0.5 * losses[0]
    assert before < 0.5 < 0.8 < after


def test_bad_arguments():
    net = small_net()
    u, t = batch(net)
    with pytest.raises(ValueError, match="eps_normalized"):
        robust_loss(net, u, t, -0.1, 0.5)
    with pytest.raises(NonFiniteError, match="eps_normalized"):
        robust_loss(net, u, t, math.inf, 0.5)
    for mix in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="mix"):
            robust_loss(net, u, t, 0.1, mix)
