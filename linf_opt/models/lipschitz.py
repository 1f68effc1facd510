"""ℓ∞ → ℓ∞ input–output Lipschitz bounds of implicit networks (docs/mathematics.md §5).

For μ = μ_{∞,η}(A) < 1 and μ⁺ = max(μ, 0):

    paper:  Lip ≤ ‖C diag(η)‖∞ ‖diag(η)⁻¹ B‖∞ / (1 − μ⁺) + ‖D‖∞
    tight:  Lip ≤ ‖C diag(η)‖∞ ‖diag(η)⁻¹ B‖∞ / (1 − μ)  + ‖D‖∞      (valid for every μ < 1)

Both are certified upper bounds; :func:`empirical_lipschitz` gives a lower bound by gradient ascent on
‖y(u) − y(u′)‖∞ / ‖u − u′‖∞ over input pairs. :func:`lipschitz_surrogate` is the differentiable
training regularizer (valid under the constraint μ ≤ γ).

    >>> L = lipschitz_bound(net)        # 0-d tensor, differentiable in the parameters; L.item() for a float
    >>> low, (u, v) = empirical_lipschitz(net, torch.randn(64, 1))
"""
from __future__ import annotations

import torch

from linf_opt._tensor import as_weights, check_parameters_finite, check_scalar
from linf_opt.errors import NonFiniteError

__all__ = ["lipschitz_bound", "lipschitz_value", "lipschitz_surrogate", "empirical_lipschitz"]


def _resolve_eta(net, eta):
    op = net.operator
    if isinstance(eta, str):
        if eta != "optimal":
            raise ValueError(f"eta: expected None, 'optimal' or positive weights, got {eta!r}")
        from linf_opt.operators.measures import optimal_weights
        if op.n > 4096:
            raise ValueError(f"eta='optimal': the Perron weights need the dense {op.n} × {op.n} matrix of the "
                             f"operator; pass explicit weights for a state this large")
        e, _ = optimal_weights(op.as_matrix().detach())
        return e.reshape(op.state_shape)
    if eta is None:
        return getattr(net, "eta", None)
    w = op.weight.detach()
    return as_weights(torch.as_tensor(eta).reshape(-1), op.n, w).reshape(op.state_shape)


def _readout_norm(C: torch.Tensor, eta: torch.Tensor | None) -> torch.Tensor:
    """‖C diag(η)‖∞ = maxᵢ Σⱼ |Cᵢⱼ| ηⱼ (C over the flattened state)."""
    a = C.abs()
    return (a if eta is None else a * eta.reshape(1, -1)).sum(-1).amax()


def lipschitz_bound(net, kind: str = "tight", eta=None) -> torch.Tensor:
    """Certified Lipschitz constant of u ↦ y(u) from ‖·‖∞ to ‖·‖∞ (docs/mathematics.md §5), a differentiable 0-d tensor.

        L = ‖C diag(η)‖∞ ‖diag(η)⁻¹ B‖∞ / (1 − μ) + ‖D‖∞      ("tight"; "paper" uses 1 − μ⁺)

    with μ = μ_{∞,η}(A) of the model's operator, C its read-out matrix and B the linear part of its
    injection (for a convolutional model: the operator norms of the injection convolution and of the
    pooling read-out, docs/mathematics.md §10).

    Args:
        net: an :class:`~linf_opt.models.base.ImplicitModel` (dense or convolutional).
        kind: "tight" (1/(1 − μ)) or "paper" (1/(1 − μ⁺)).
        eta: None (the network's own weights, else unweighted), "optimal" (Perron weights of the
            Metzler majorant, the smallest μ; dense matrices up to n = 4096), or explicit positive weights.

    Raises ``ValueError`` when μ_{∞,η}(A) ≥ 1: the network is then not certified well-posed, and
    :class:`~linf_opt.errors.NonFiniteError` (a ``ValueError``) naming any parameter that holds NaN or ±Inf.
    """
    if kind not in ("tight", "paper"):
        raise ValueError(f"kind: expected 'tight' or 'paper', got {kind!r}")
    if isinstance(net, torch.nn.Module):   # NaN in A would read as "μ ≥ 1"; name the parameter instead
        check_parameters_finite(net, "lipschitz_bound", consequence="; the bound is not finite")
    e = _resolve_eta(net, eta)
    mu = net.operator.row_measures(e).amax()
    mu_v = float(mu.detach())
    if not mu_v < 1:
        raise ValueError(f"A: μ∞,η(A) = {mu_v:.6g} ≥ 1, the network is not certified well-posed, "
                         "so no Lipschitz bound exists")
    cn = _readout_norm(net.readout_matrix(), e)
    bn = net.injection_norm(e)
    denom = 1 - (mu if kind == "tight" else mu.clamp(min=0))
    L = cn * bn / denom
    D = getattr(net, "D", None)
    if D is not None:
        L = L + D.abs().sum(-1).amax()
    if not bool(torch.isfinite(L.detach())):
        raise ValueError(f"the Lipschitz bound is not finite ({float(L.detach())}): a parameter of the network "
                         f"holds NaN or ±Inf, or the norms overflow")
    return L


def lipschitz_value(net, kind: str = "tight") -> float | None:
    """:func:`lipschitz_bound` as a float, or None when μ∞(A) ≥ 1 (no certificate exists, e.g. after
    unconstrained training). A parameter holding NaN or ±Inf still raises
    :class:`~linf_opt.errors.NonFiniteError`: it is an error, not a missing certificate."""
    try:
        return float(lipschitz_bound(net, kind).detach())
    except NonFiniteError:
        raise
    except ValueError:
        return None

def lipschitz_surrogate(net, gamma: float, form: str = "norm_product") -> torch.Tensor:
    """Differentiable Lipschitz surrogate for training under μ∞(A) ≤ γ (docs/mathematics.md §5).

    "norm_product": ‖C‖∞ ‖B‖∞ / (1 − γ);  "sum_of_squares": (‖B‖∞² + ‖C‖∞²) / (2(1 − γ)) (an upper
    bound of the former). ‖D‖∞ is added when the network has a D term. B and C are the model's
    injection and read-out (any :class:`~linf_opt.models.base.ImplicitModel`).
    """
    gamma = check_scalar(gamma, "gamma", high=1.0, high_open=True)
    bn = net.injection_norm(None)
    cn = _readout_norm(net.readout_matrix(), None)
    if form == "norm_product":
        s = cn * bn / (1 - gamma)
    elif form == "sum_of_squares":
        s = (bn ** 2 + cn ** 2) / (2 * (1 - gamma))
    else:
        raise ValueError(f"form: expected 'norm_product' or 'sum_of_squares', got {form!r}")
    D = getattr(net, "D", None)
    return s + D.abs().sum(-1).amax() if D is not None else s


def empirical_lipschitz(net, inputs, *, steps: int = 100, lr: float = 0.01, init_radius: float = 1e-2,
                        seed: int = 0) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    """Lower bound on the ℓ∞ Lipschitz constant: max over pairs of ‖y(u) − y(u′)‖∞ / ‖u − u′‖∞.

    Starts from each row u of ``inputs`` with u′ = u + δ, δ uniform in [−init_radius, init_radius],
    and runs ``steps`` Adam steps of gradient ascent on the ratio over (u, δ). Returns the largest ratio
    seen, re-evaluated at high solver accuracy, and the pair attaining it.
    """
    U0, _ = net._inputs(inputs, "inputs")
    g = torch.Generator(device="cpu").manual_seed(seed)
    delta0 = (torch.rand(U0.shape, generator=g, dtype=U0.dtype) * 2 - 1) * init_radius
    U = U0.clone().requires_grad_(True)
    Dl = delta0.to(U0.device).requires_grad_(True)
    params = [p for p in net.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    opt = torch.optim.Adam([U, Dl], lr=lr)
    loose = 1e-8 if U.dtype == torch.float64 else 1e-5
    try:
        with net.solver_options(tol=max(net.tol or 0.0, loose), rtol=max(net.rtol or 0.0, loose),
                                max_iter=max(net.max_iter, 20000)):
            for _ in range(steps):
                opt.zero_grad()
                ratio = _ratios(net, U, Dl)
                (-ratio.sum()).backward()
                opt.step()
        # the lower bound itself is evaluated at high accuracy
        tight = 1e-13 if U.dtype == torch.float64 else 1e-6
        with torch.no_grad(), net.solver_options(tol=tight, rtol=0.0, max_iter=max(net.max_iter, 100000)):
            r = _ratios(net, U, Dl)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    k = int(torch.argmax(r))
    return float(r[k]), (U[k].detach().clone(), (U[k] + Dl[k]).detach().clone())


def _ratios(net, U, Dl):
    Y = net(torch.cat([U, U + Dl]))
    n = U.shape[0]
    num = (Y[:n] - Y[n:]).abs().amax(-1)
    den = Dl.abs().amax(-1).clamp(min=1e-30)
    return num / den
