"""From a training problem to its objects: the implicit network a ``[model]`` section describes,
initialised inside the feasible set, and the feasible set S of its ``[constraint]`` section.

- :func:`build_feasible_set`: P(γ, η) for the ℓ∞ sets, the ‖·‖∞ ball, the monotone set, or None.
- :func:`build_network`: a dense :class:`~linf_opt.models.implicit_network.ImplicitNetwork` (projected
  into S, or reparametrized onto it) or a :class:`~linf_opt.models.conv_network.ConvImplicitNetwork`,
  drawn from a generator seeded with ``problem.seed`` (the same problem gives the same network).
- :func:`image_shape` / :func:`augment_shape`: the (C, H, W) of image inputs, from the problem or the
  data, with errors that name the key to set.
"""
from __future__ import annotations

import math

import torch

from linf_opt.errors import ConfigError
from linf_opt.models.base import ImplicitModel
from linf_opt.models.conv_network import ConvImplicitNetwork
from linf_opt.models.implicit_network import ImplicitNetwork
from linf_opt.models.parametrizations import MonotoneParametrization, MuInfParametrization, apply_parametrization
from linf_opt.sets.feasible import FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall
from linf_opt.training.config import Problem

__all__ = ["build_network", "build_feasible_set", "image_shape", "augment_shape"]


def build_feasible_set(problem: Problem, eta: torch.Tensor | None = None) -> FeasibleSet | None:
    """The feasible set S of the problem's ``[constraint]`` (None for ``set = "none"``).

    For the ℓ∞ sets this is the polytope P(γ, η) with the current weights (fixed from ``eta``, or
    re-estimated during training for weighted ℓ∞).
    """
    c = problem.constraint
    if c.set in ("mu_inf", "weighted_mu_inf"):
        return MuInfPolytope(c.gamma, eta=eta, warm_start=True)
    if c.set == "norm_inf":
        return NormInfBall(c.gamma)
    if c.set == "monotone":
        return MonotoneSet(c.m)
    return None


def image_shape(problem: Problem, input_dim: int, input_shape=None) -> tuple[int, int, int]:
    """(in_channels, H, W) of the input images of a convolutional model: ``model.image_size`` when
    given, else the data's own (C, H, W) sample shape when it has one, else square images."""
    m = problem.model
    if m.image_size:
        H, W = m.image_size
    elif input_shape is not None and len(input_shape) == 3:
        cin, H, W = (int(v) for v in input_shape)
        if cin != m.in_channels:
            raise ConfigError(f"model.in_channels: the data are images of {cin} channel(s) ({cin} × {H} × {W}), "
                              f"but model.in_channels = {m.in_channels}")
    else:
        side = math.isqrt(input_dim // m.in_channels)
        H = W = side
    if m.in_channels * H * W != input_dim:
        raise ConfigError(f"model.image_size: the data have {input_dim} input features, which are not "
                          f"{m.in_channels} channel(s) of {H} × {W} images; set model.in_channels and "
                          f"model.image_size = [H, W]")
    return m.in_channels, H, W


def augment_shape(problem: Problem, input_dim: int, input_shape=None) -> tuple[int, int, int] | None:
    """The (C, H, W) that ``training.augment_shift`` translates (None when it is 0)."""
    s = problem.training.augment_shift
    if not s:
        return None
    try:
        C, H, W = image_shape(problem, input_dim, input_shape)
    except ConfigError as exc:
        raise ConfigError(f"training.augment_shift: needs image inputs; {exc}") from None
    if min(H, W) <= s:           # (image_shape has checked that C·H·W is the input size)
        raise ConfigError(f"training.augment_shift: a shift of {s} pixels needs images larger than {s} × {s}; "
                          f"the inputs ({input_dim} features) are {C} channel(s) of {H} × {W}")
    return C, H, W


def build_network(problem: Problem, input_dim: int, output_dim: int, input_shape=None) -> ImplicitModel:
    """The implicit model a problem describes (dense :class:`ImplicitNetwork` or
    :class:`ConvImplicitNetwork`), initialised (with generator seed ``problem.seed``) inside S.
    ``input_shape``: the data's sample shape (for a convolutional model, (C, H, W) sets the image size
    when ``model.image_size`` is not given)."""
    m, c, s = problem.model, problem.constraint, problem.solver
    dtype = torch.float64 if problem.dtype == "float64" else torch.float32
    gamma = c.gamma if c.set in ("mu_inf", "weighted_mu_inf", "norm_inf") else 0.95
    if gamma >= 1:
        gamma = 0.95   # unconstrained baselines start from the same well-posed initialisation
    eta = list(c.eta) if c.eta else None
    gen = torch.Generator().manual_seed(problem.seed)
    if m.kind == "conv":
        cin, H, W = image_shape(problem, input_dim, input_shape)
        net = ConvImplicitNetwork(cin, m.channels, (H, W), output_dim, m.kernel_size, m.activation,
                                  injection_kernel_size=m.injection_kernel_size, stride=m.stride,
                                  padding=m.padding, pool=m.pool, gamma=gamma, construction=m.construction,
                                  init_scale=m.init_scale, negative_slope=m.negative_slope, method=s.method,
                                  tol=s.tol, rtol=0.0, max_iter=s.max_iter, strict=s.strict, backward=s.backward,
                                  backward_tol=s.backward_tol, check_every=s.check_every, dtype=dtype,
                                  generator=gen)
        return net.to(problem.device)
    net = ImplicitNetwork(input_dim, m.hidden, output_dim, activation=m.activation,
                          negative_slope=m.negative_slope, gamma=gamma, eta=eta, feedthrough=m.feedthrough,
                          init_scale=m.init_scale, method=s.method, tol=s.tol, rtol=0.0, max_iter=s.max_iter,
                          strict=s.strict, backward=s.backward, backward_tol=s.backward_tol,
                          check_every=s.check_every, dtype=dtype, generator=gen)
    with torch.no_grad():
        S = build_feasible_set(problem, net.eta)
        if S is not None and c.enforce != "free":
            net.A.copy_(torch.as_tensor(S.project(net.A.detach())))
    if c.enforce == "reparam":
        if c.set in ("mu_inf", "weighted_mu_inf"):
            apply_parametrization(net, MuInfParametrization(c.gamma, net.eta))
        elif c.set == "monotone":
            apply_parametrization(net, MonotoneParametrization(c.m))
        else:  # the config rejects this; keep the guard for programmatic use
            raise ConfigError(f"constraint.enforce='reparam' is not available for set {c.set!r}")
    return net.to(problem.device)
