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

from linf_opt._tensor import as_weights, check_scalar
from linf_opt.operators.measures import _row_measures, _scaled

__all__ = ["lipschitz_bound", "lipschitz_surrogate", "empirical_lipschitz"]


def _resolve_eta(net, eta):
    if isinstance(eta, str):
        if eta != "optimal":
            raise ValueError(f"eta: expected None, 'optimal' or positive weights, got {eta!r}")
        from linf_opt.operators.measures import optimal_weights
        e, _ = optimal_weights(net.A.detach())
        return e
    if eta is None:
        return getattr(net, "eta", None)
    return as_weights(eta, net.A.shape[0], net.A.detach())


def lipschitz_bound(net, kind: str = "tight", eta=None) -> torch.Tensor:
    """Certified Lipschitz constant of u ↦ y(u) from ‖·‖∞ to ‖·‖∞ (docs/mathematics.md §5), a differentiable 0-d tensor.

    Args:
        net: an :class:`~linf_opt.models.implicit_network.ImplicitNetwork` (or any object with A, B, C and optional D).
        kind: "tight" (1/(1 − μ)) or "paper" (1/(1 − μ⁺)).
        eta: None (the network's own weights, else unweighted), "optimal" (Perron weights of the
            Metzler majorant, the smallest μ), or explicit positive weights.

    Raises ``ValueError`` when μ_{∞,η}(A) ≥ 1: the network is then not certified well-posed.
    """
    if kind not in ("tight", "paper"):
        raise ValueError(f"kind: expected 'tight' or 'paper', got {kind!r}")
    A, B, C = net.A, net.B, net.C
    D = getattr(net, "D", None)
    e = _resolve_eta(net, eta)
    mu = _row_measures(_scaled(A, e)).amax()
    if float(mu.detach()) >= 1:
        raise ValueError(f"A: μ∞,η(A) = {float(mu.detach()):.6g} ≥ 1, the network is not certified well-posed, "
                         "so no Lipschitz bound exists")
    if e is None:
        cn, bn = C.abs().sum(-1).amax(), B.abs().sum(-1).amax()
    else:
        cn = (C.abs() * e).sum(-1).amax()
        bn = (B.abs().sum(-1) / e).amax()
    denom = 1 - (mu if kind == "tight" else mu.clamp(min=0))
    L = cn * bn / denom
    if D is not None:
        L = L + D.abs().sum(-1).amax()
    return L


def lipschitz_surrogate(net, gamma: float, form: str = "norm_product") -> torch.Tensor:
    """Differentiable Lipschitz surrogate for training under μ∞(A) ≤ γ (docs/mathematics.md §5).

    "norm_product": ‖C‖∞ ‖B‖∞ / (1 − γ);  "sum_of_squares": (‖B‖∞² + ‖C‖∞²) / (2(1 − γ)) (an upper
    bound of the former). ‖D‖∞ is added when the network has a D term.
    """
    gamma = check_scalar(gamma, "gamma", high=1.0, high_open=True)
    bn = net.B.abs().sum(-1).amax()
    cn = net.C.abs().sum(-1).amax()
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
    U0 = torch.as_tensor(inputs, dtype=net.B.dtype, device=net.B.device)
    if U0.ndim == 1:
        U0 = U0.unsqueeze(0)
    U0 = U0.reshape(U0.shape[0], -1)
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
