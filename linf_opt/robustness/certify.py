"""Certified ℓ∞ robustness of implicit networks: reachable boxes and certificates (docs/mathematics.md §8).

**Embedded (mixed-monotone) network.** Split A into A_up = diag(A) + (off-diagonal part)⁺ and
A_dn = (off-diagonal part)⁻ = A − A_up. For an input box [u̲, ū] the 2n-dimensional implicit network

    x̲ = Φ(A_up x̲ + A_dn x̄ + B⁺u̲ + B⁻ū + b)
    x̄ = Φ(A_up x̄ + A_dn x̲ + B⁺ū + B⁻u̲ + b)

has the matrix Â = [[A_up, A_dn], [A_dn, A_up]] with μ_{∞,(η,η)}(Â) = μ_{∞,η}(A) and the same α*, so it
is well-posed whenever the network is and the same average iteration solves it. For every u in the box
x*(u) ∈ [x̲, x̄] (Φ is monotone: slopes ≥ 0), and with y = Cx + Du + c

    y̲ = C⁺x̲ + C⁻x̄ + D⁺u̲ + D⁻ū + c,   ȳ = C⁺x̄ + C⁻x̲ + D⁺ū + D⁻u̲ + c.

The relative classifier bounds zⱼ = yᵢ − yⱼ directly with the rows of TC, T = eᵢ1ᵀ − I:
z̲ⱼ = (Cᵢ − Cⱼ)x_c − |Cᵢ − Cⱼ| x_r (+ the same for D), with the box written as centre ± radius. It is
never looser than y̲ᵢ − ȳⱼ. Everything here is built from differentiable torch operations and
:func:`linf_opt.equilibrium.implicit.equilibrium`, so robust training gets exact implicit gradients.

**Soundness of computed bounds.** A solve stops at a residual r = ‖x − Φ(Âx + q̂)‖∞, not at the exact
fixed point. The average map contracts with factor 1 − α(1 − μ⁺) and moves by α r, so the exact fixed
point is within r/(1 − μ⁺) (weighted norm); certificates widen the hidden box by that much (and the
Lipschitz certificate shrinks the margin by 2‖C‖ r/(1 − μ⁺)), so they hold up to floating-point
round-off, whatever the solver tolerance.

**Interval bound propagation (IBP)** through the fixed point, the usual baseline, iterates the box map
with A⁺ and A⁻ (matrix [[A⁺, A⁻], [A⁻, A⁺]], well-posed only when ρ(|A|) < 1, not under μ∞(A) < 1).
A converged box is accepted for a sample only if it is verified invariant, F([l, h]) ⊆ [l, h], after a
small widening: then, by Brouwer's theorem and the uniqueness of x*(u), it contains x*(u). Samples where
it diverges or fails the check are reported (``valid`` False) and never certified.

**Lipschitz certificate.** With L the ℓ∞ → ℓ∞ bound of docs/mathematics.md §5 (``"tight"`` or ``"paper"``), a sample
of class i is certified at radius ε (model units) when yᵢ − maxⱼ≠ᵢ yⱼ > 2Lε.

Inputs of :func:`certify` are at the attack scale of an :class:`~linf_opt.robustness.input_space.InputSpace`
(pixels for MNIST, ``space=MNIST``); the ε-ball is clipped to the valid range and mapped to the model's
input box. :func:`reachable_box` takes a box in model units directly, for any region.

    >>> box = reachable_box(net, lower, upper)                  # output bounds for any input box
    >>> res = certify(net, pixels, labels, 0.05, method="mixed_monotone_relative", space=MNIST)
    >>> res.certified_accuracy, res.time
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from linf_opt._tensor import check_finite, check_parameters_finite, like_input, to_torch
from linf_opt.errors import ConvergenceWarning, ShapeError
from linf_opt.equilibrium.implicit import equilibrium
from linf_opt.robustness.input_space import PIXELS, InputSpace, batch_slices, prepare_batch
from linf_opt.models.lipschitz import lipschitz_bound
from linf_opt.equilibrium.solvers import SolverStats, average_iteration, default_tol, register_solver
from linf_opt.operators.base import WeightOperator
from linf_opt.operators.block import BlockOperator
from linf_opt.operators.dense import DenseOperator

__all__ = ["embedded_matrix", "embedded_equilibrium", "ibp_matrix", "reachable_box", "ReachableBox",
           "output_bounds", "margin_lower_bounds", "certify", "CertifyResult", "METHODS", "BOX_METHODS"]

BOX_METHODS = ("mixed_monotone", "ibp")
"""Methods that bound the hidden state on a box (:func:`reachable_box`)."""
METHODS = ("lipschitz", "lipschitz_paper", "mixed_monotone", "mixed_monotone_relative", "ibp")
"""Certificates of :func:`certify`."""


# ----------------------------------------------------------------------------------------------------
# The embedded networks
# ----------------------------------------------------------------------------------------------------

def embedded_matrix(A: torch.Tensor) -> torch.Tensor:
    """Â = [[A_up, A_dn], [A_dn, A_up]] (2n × 2n), A_up = diag(A) + offdiag(A)⁺, A_dn = offdiag(A)⁻.

    Differentiable in A; μ_{∞,(η,η)}(Â) = μ_{∞,η}(A) and the diagonals agree, so α* is the same.
    """
    d = torch.diag_embed(torch.diagonal(A))
    off = A - d
    pos = torch.relu(off)      # at an entry of exactly 0 the gradient goes to one block only (not both)
    up, dn = pos + d, off - pos
    return torch.cat([torch.cat([up, dn], 1), torch.cat([dn, up], 1)], 0)


def ibp_matrix(A: torch.Tensor) -> torch.Tensor:
    """The interval-propagation matrix [[A⁺, A⁻], [A⁻, A⁺]] (2n × 2n); its measure is ‖A‖∞."""
    pos, neg = A.clamp(min=0), A.clamp(max=0)
    return torch.cat([torch.cat([pos, neg], 1), torch.cat([neg, pos], 1)], 0)


def _box_injection(net, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Q̂ = (B⁺u̲ + B⁻ū + b, B⁺ū + B⁻u̲ + b), shape (batch, 2, *state_shape): the model's exact
    injection bounds B u_c + b ∓ |B| u_r over the box."""
    return torch.stack(net.injection_bounds(lower, upper), 1)


@register_solver("embedded_average")
def embedded_average_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, check_every=None):
    """The average iteration for the block system Â = [[P, N], [N, P]] (the embedded network), same iterates.

    ``A`` is a :class:`~linf_opt.operators.block.BlockOperator` (states (batch, 2, *state_shape)), or a
    dense 2n × 2n matrix of that structure with states (batch, 2n), which is converted: with
    s = x̲ + x̄ and d = x̄ − x̲ every step takes two n × n products instead of one 2n × 2n (half the
    work). A matrix without the structure raises ``ValueError``.
    """
    if isinstance(A, BlockOperator):
        return average_iteration(A, Q, act, x0, alpha=alpha, tol=tol, rtol=rtol, max_iter=max_iter, trace=trace,
                                 check_every=check_every, method="embedded_average")
    if isinstance(A, WeightOperator):
        raise ValueError(f"A: method 'embedded_average' needs a BlockOperator or a block matrix [[P, N], [N, P]], "
                         f"got {A!r}")
    n = A.shape[0] // 2
    P, N = A[:n, :n], A[:n, n:]
    if A.shape[0] % 2 or not (torch.equal(A[n:, n:], P) and torch.equal(A[n:, :n], N)):
        raise ValueError(f"A: method 'embedded_average' needs a block matrix [[P, N], [N, P]] (the embedded "
                         f"network's Â), got a {tuple(A.shape)} matrix without that structure")
    op = BlockOperator(DenseOperator(P + N), DenseOperator(P - N))
    batch = Q.shape[0]
    X, stats = average_iteration(op, Q.reshape(batch, 2, n), act, x0.reshape(batch, 2, n), alpha=alpha, tol=tol,
                                 rtol=rtol, max_iter=max_iter, trace=trace, check_every=check_every,
                                 method="embedded_average")
    if stats.preactivation is not None:
        stats.preactivation = stats.preactivation.reshape(batch, 2 * n)
    return X.reshape(batch, 2 * n), stats


def _solver_settings(net, method, tol, rtol, max_iter, strict):
    if method is None:
        method = {"average": "embedded_average", "anderson": "anderson"}.get(net.method, "embedded_average")
    return dict(method=method, alpha=net.alpha, tol=net.tol if tol is None else tol,
                rtol=net.rtol if rtol is None else rtol, max_iter=net.max_iter if max_iter is None else max_iter,
                strict=net.strict if strict is None else strict, backward=net.backward,
                backward_tol=net.backward_tol, check_every=getattr(net, "check_every", None))


def embedded_equilibrium(net, lower: torch.Tensor, upper: torch.Tensor, *, method: str | None = None,
                         tol: float | None = None, rtol: float | None = None, max_iter: int | None = None,
                         strict: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, SolverStats]:
    """Differentiable fixed point (x̲, x̄) of the embedded network for the boxes [lower, upper] (model units).

    lower, upper: (batch, r) tensors in the network's dtype, lower ≤ upper (not checked here: this is
    the robust-training hot path; :func:`reachable_box` validates). Solver settings default to the
    network's (``method``: "embedded_average", the structured average iteration, unless the network
    uses "anderson"). Returns
    ``(x_lower, x_upper, stats)``, each bound of shape (batch, *state_shape), exactly as solved (not widened).
    The block operator is :meth:`BlockOperator.embedded` of the network's operator (for a convolution:
    two convolutions per step, docs/mathematics.md §10).
    """
    X, stats = equilibrium(BlockOperator.embedded(net.operator), _box_injection(net, lower, upper),
                           net.activation, **_solver_settings(net, method, tol, rtol, max_iter, strict))
    return X[:, 0], X[:, 1], stats


# ----------------------------------------------------------------------------------------------------
# From hidden boxes to output and margin bounds
# ----------------------------------------------------------------------------------------------------

def output_bounds(net, x_lower, x_upper, u_lower, u_upper) -> tuple[torch.Tensor, torch.Tensor]:
    """y̲ = C⁺x̲ + C⁻x̄ + D⁺u̲ + D⁻ū + c and ȳ (the box image of y = Cx + Du + c), shapes (batch, q)."""
    xc, xr = (x_lower + x_upper) / 2, (x_upper - x_lower) / 2
    feed = net.D is not None    # the input box only matters through D
    yc = net.readout(xc, (u_lower + u_upper) / 2 if feed else None)
    yr = xr.reshape(xr.shape[0], -1) @ net.readout_matrix().abs().t()
    if feed:
        yr = yr + ((u_upper - u_lower) / 2) @ net.D.abs().t()
    return yc - yr, yc + yr


def _pair_abs(W: torch.Tensor) -> torch.Tensor:
    """|Wᵢ − Wⱼ| for all pairs of rows, flattened to (q·q, m)."""
    q = W.shape[0]
    return (W.unsqueeze(1) - W.unsqueeze(0)).abs().reshape(q * q, -1)


def margin_lower_bounds(net, x_lower, x_upper, labels, u_lower, u_upper) -> torch.Tensor:
    """Relative-classifier bounds: z̲ⱼ ≤ y_t − yⱼ over the box, t = label; shape (batch, q), z̲_t = 0.

    z̲ⱼ = (C_t − Cⱼ)x_c − |C_t − Cⱼ| x_r + (D_t − Dⱼ)u_c − |D_t − Dⱼ| u_r + c_t − cⱼ with the boxes
    written as centre ± radius; equal to (TC)⁺x̲ + (TC)⁻x̄ + ... with T = e_t 1ᵀ − I. Differentiable.
    """
    C = net.readout_matrix()
    q = C.shape[0]
    xc, xr = (x_lower + x_upper) / 2, (x_upper - x_lower) / 2
    feed = net.D is not None    # the input box only matters through D
    yc = net.readout(xc, (u_lower + u_upper) / 2 if feed else None)
    idx = labels.view(-1, 1)
    centre = yc.gather(1, idx) - yc
    spread = xr.reshape(xr.shape[0], -1) @ _pair_abs(C).t()                      # (batch, q·q): row t·q + j is |C_t − C_j| x_r
    if feed:
        spread = spread + ((u_upper - u_lower) / 2) @ _pair_abs(net.D).t()
    spread = spread.view(-1, q, q).gather(1, idx.unsqueeze(-1).expand(-1, 1, q)).squeeze(1)
    return centre - spread


def _plain_margins(y_lower, y_upper, labels) -> torch.Tensor:
    """y̲_t − ȳⱼ for every j, with 0 at j = t."""
    low_t = y_lower.gather(1, labels.view(-1, 1))
    m = low_t - y_upper
    return m.scatter(1, labels.view(-1, 1), 0.0)


# ----------------------------------------------------------------------------------------------------
# Sound hidden boxes
# ----------------------------------------------------------------------------------------------------

def _measure(net) -> tuple[float, torch.Tensor | None]:
    """(μ_{∞,η}(A), η) with the network's weights; ValueError when μ ≥ 1 (nothing can be certified)."""
    eta = getattr(net, "eta", None)
    mu = float(net.operator.mu_inf(eta))
    if not mu < 1:
        raise ValueError(f"A: μ∞,η(A) = {mu:.6g} ≥ 1: the network is not certified well-posed, so no bound on "
                         "its equilibria can be certified")
    return mu, eta


def _fixed_point_error(residual: torch.Tensor, mu: float, eta) -> torch.Tensor:
    """Per-sample bound on ‖x − x*‖_{∞,η} from the residual: ‖res‖_{∞,η}/(1 − μ⁺) ≤ ‖res‖∞/(minᵢ ηᵢ (1 − μ⁺))."""
    gap = 1.0 - max(mu, 0.0)
    return residual / (gap if eta is None else gap * float(eta.min()))


def _solution_radius(residual: torch.Tensor, mu: float, eta, state_shape) -> torch.Tensor:
    """Per-unit distance bound to the exact fixed point, ηᵢ ‖x − x*‖_{∞,η}: shape (batch, 1, …) or
    (batch, *state_shape)."""
    err = _fixed_point_error(residual, mu, eta)
    err = err.reshape(err.shape[0], *([1] * len(state_shape)))
    return err if eta is None else err * eta.to(err.dtype)


def _check_box(net, lower, upper) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    L, was_numpy = to_torch(lower, "lower", dtype=net.dtype, device=net.device)
    U, _ = to_torch(upper, "upper", dtype=net.dtype, device=net.device)
    single = L.ndim == 1
    L, U = (L.unsqueeze(0), U.unsqueeze(0)) if single else (L, U)
    r = net.in_features

    def rows(t, name):
        if t.ndim > 2 and math.prod(t.shape[1:]) == r:
            t = t.reshape(t.shape[0], r)       # e.g. images (batch, 1, 28, 28)
        if t.ndim != 2 or t.shape[1] != r:
            raise ShapeError(f"{name}: expected shape (batch, {r}) or ({r},), got {tuple(t.shape)}")
        check_finite(t, name)
        return t

    L, U = rows(L, "lower"), rows(U, "upper")
    if L.shape != U.shape:
        raise ShapeError(f"lower, upper: expected the same shape, got {tuple(L.shape)} and {tuple(U.shape)}")
    bad = L > U
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        raise ValueError(f"lower, upper: expected lower ≤ upper elementwise, but {int(bad.sum())} entr"
                         f"{'y' if int(bad.sum()) == 1 else 'ies'} have lower > upper (first in sample {k})")
    return L, U, was_numpy, single


def _mixed_monotone_box(net, L, U, mu, eta, **solver):
    xl, xu, stats = embedded_equilibrium(net, L, U, **solver)
    # the embedded system contracts with its own measure: that of the majorant (= μ for a dense A;
    # never below μ, and larger only where a small circular image aliases taps)
    mu = max(mu, float(net.operator.majorant_operator().mu_inf(eta)))
    rad = _solution_radius(stats.residual, mu, eta, net.state_shape)
    return xl - rad, xu + rad, stats.converged.clone(), stats


def _ibp_box(net, L, U, **solver):
    """IBP through the fixed point (Picard on the interval map), with an invariance check per sample."""
    M = BlockOperator.interval(net.operator)
    Q = _box_injection(net, L, U)
    settings = _solver_settings(net, "picard", solver.get("tol"), solver.get("rtol"), solver.get("max_iter"), False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # divergence is expected and reported
        X, stats = equilibrium(M, Q, net.activation, **settings)
    batch = X.shape[0]
    flat = X.reshape(batch, -1)
    finite = torch.isfinite(flat).all(1)
    # Widen by a few residuals plus round-off, then verify F([l, h]) ⊆ [l, h].
    pad = (4 * torch.nan_to_num(stats.residual, nan=0.0, posinf=0.0) + 1e3 * torch.finfo(X.dtype).eps
           * (1 + flat.abs().amax(1).nan_to_num(0.0, 0.0, 0.0)))
    pad = pad.reshape(batch, *([1] * len(net.state_shape)))
    xl, xu = X[:, 0] - pad, X[:, 1] + pad
    Xw = torch.stack([xl, xu], 1).nan_to_num(0.0, 0.0, 0.0)
    Fw = net.activation(M.affine(Xw, Q))
    invariant = ((Fw[:, 0] >= xl).reshape(batch, -1).all(1)) & ((Fw[:, 1] <= xu).reshape(batch, -1).all(1))
    return xl, xu, stats.converged & finite & invariant, stats


@dataclass
class ReachableBox:
    """Certified bounds for an input box: x*(u) ∈ [hidden_lower, hidden_upper], y(u) ∈ [lower, upper].

    Attributes:
        lower, upper: output bounds (batch, q).
        hidden_lower, hidden_upper: hidden-state bounds (batch, n), widened for the solver residual.
        valid: (batch,) flags; the bounds of a sample hold only where True (the solve converged and,
            for IBP, the box passed the invariance check).
        method: "mixed_monotone" or "ibp".
        stats: the solver statistics of the 2n-dimensional solve.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    hidden_lower: torch.Tensor
    hidden_upper: torch.Tensor
    valid: torch.Tensor
    method: str
    stats: SolverStats


def _reachable(net, L, U, method, mu, eta, tol, rtol, max_iter) -> ReachableBox:
    solver = dict(tol=tol, rtol=rtol, max_iter=max_iter)
    if method == "mixed_monotone":
        xl, xu, valid, stats = _mixed_monotone_box(net, L, U, mu, eta, strict=False, **solver)
    else:
        xl, xu, valid, stats = _ibp_box(net, L, U, **solver)
    yl, yu = output_bounds(net, xl, xu, L, U)
    return ReachableBox(yl, yu, xl, xu, valid, method, stats)


def _default_tols(net, tol, rtol):
    d_tol, d_rtol = default_tol(net.dtype)
    return (d_tol if tol is None else tol), (d_rtol if rtol is None else rtol)


def _check_net(net, where: str) -> None:
    """NonFiniteError naming each parameter of ``net`` that holds NaN or ±Inf: a NaN in A or B would
    otherwise read as "μ ≥ 1" or give NaN bounds, which no comparison certifies."""
    if isinstance(net, torch.nn.Module):
        check_parameters_finite(net, where, consequence="; no certificate exists")


def reachable_box(net, lower, upper, *, method: str = "mixed_monotone", tol: float | None = None,
                  rtol: float | None = None, max_iter: int | None = None) -> ReachableBox:
    """Certified bounds on the hidden state and the outputs of ``net`` over the input box [lower, upper].

    Args:
        net: an :class:`~linf_opt.models.implicit_network.ImplicitNetwork` with μ_{∞,η}(A) < 1.
        lower, upper: (batch, r) or (r,) box corners in the network's input units, lower ≤ upper.
        method: "mixed_monotone" (the embedded network) or "ibp" (interval propagation; may diverge).
        tol, rtol: solver tolerances (default by dtype, tight); max_iter: default max(net.max_iter, 5000)
            for mixed_monotone, 500 for IBP.

    Returns a :class:`ReachableBox` (numpy fields for numpy inputs; a single box loses the batch axis).
    Raises ``ShapeError``/``NonFiniteError``/``ValueError`` for a malformed box or lower > upper, and
    ``ValueError`` when μ_{∞,η}(A) ≥ 1.

        >>> box = reachable_box(net, u - 0.1, u + 0.1)
        >>> bool(((box.lower <= net(u)) & (net(u) <= box.upper)).all())
        True
    """
    if method not in BOX_METHODS:
        raise ValueError(f"method: expected one of {list(BOX_METHODS)}, got {method!r}")
    _check_net(net, "reachable_box")
    L, U, was_numpy, single = _check_box(net, lower, upper)
    mu, eta = _measure(net)
    tol, rtol = _default_tols(net, tol, rtol)
    max_iter = _default_max_iter(net, method, max_iter)
    with torch.no_grad():
        box = _reachable(net, L, U, method, mu, eta, tol, rtol, max_iter)
    for f in ("lower", "upper", "hidden_lower", "hidden_upper", "valid"):
        t = getattr(box, f)
        setattr(box, f, like_input(t.squeeze(0) if single else t, was_numpy))
    return box


def _default_max_iter(net, method, max_iter):
    if max_iter is not None:
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter: expected a positive int, got {max_iter!r}")
        return max_iter
    return 500 if method == "ibp" else max(net.max_iter, 5000)


# ----------------------------------------------------------------------------------------------------
# Certificates
# ----------------------------------------------------------------------------------------------------

@dataclass
class CertifyResult:
    """Outcome of :func:`certify` for N samples.

    Attributes:
        method: the certificate (one of :data:`METHODS`); eps: the radius at the attack scale;
            eps_model: the radius in model units (before clipping to the valid range).
        certified: (N,) flags: the label's logit provably exceeds every other over the clipped ε-ball.
        margins: (N, q) certified lower bounds of y_t − yⱼ over the ball (t the label; 0 at j = t).
        lower, upper: (N, q) the output bounds used (for "mixed_monotone_relative": the plain box bounds,
            the margins come from the relative classifier); for Lipschitz: y ∓ Lε.
        valid: (N,) where the bounds hold (solver converged; IBP also verified invariant).
        lipschitz: the Lipschitz bound L (Lipschitz methods), else None.
        time: wall-clock seconds of the certificate over all samples (validation excluded).
        stats: solver statistics merged over the batches.
    """

    method: str
    eps: float
    eps_model: float
    certified: torch.Tensor
    margins: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    valid: torch.Tensor
    time: float
    stats: SolverStats
    lipschitz: float | None = None
    batches: int = field(default=1)

    @property
    def certified_accuracy(self) -> float:
        return float(self.certified.float().mean()) if self.certified.numel() else float("nan")

    @property
    def n_invalid(self) -> int:
        """Samples whose bounds do not hold (solver did not converge or IBP failed its check)."""
        return int((~self.valid).sum())

    def summary(self) -> str:
        extra = f", L = {self.lipschitz:.4g}" if self.lipschitz is not None else ""
        inval = (f", {self.n_invalid} without valid bounds ({self.stats.n_not_converged} not converged)"
                 if self.n_invalid else "")
        return (f"{self.method} at ε = {self.eps:g}: certified {self.certified_accuracy:.2%} of "
                f"{self.certified.numel()} in {self.time:.3f} s{extra}{inval}")


def _merge_stats(parts: list[SolverStats]) -> SolverStats:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return SolverStats(first.method, max(s.iterations for s in parts),
                       torch.cat([s.residual for s in parts]), torch.cat([s.converged for s in parts]),
                       torch.cat([s.sample_iterations for s in parts]), first.alpha,
                       sum(s.evaluations for s in parts), any(s.diverged for s in parts), None)


def certify(net, inputs, labels, eps: float, method: str = "mixed_monotone_relative", *,
            space: InputSpace = PIXELS, batch_size: int | None = 2000, tol: float | None = None,
            rtol: float | None = None, max_iter: int | None = None) -> CertifyResult:
    """Certify that ``net`` classifies each input's clipped ε-ball (attack scale) as its label.

    Methods (docs/mathematics.md §8):
        "lipschitz"                 margin > 2Lε with the tight bound L (1/(1 − μ)) of docs/mathematics.md §5
        "lipschitz_paper"           the same with the paper's bound (1/(1 − μ⁺))
        "mixed_monotone"            embedded-network box: y̲_t > maxⱼ≠t ȳⱼ
        "mixed_monotone_relative"   embedded network with the relative classifier: every z̲ⱼ > 0
        "ibp"                       interval bound propagation through the fixed point (baseline)

    Args:
        net: an :class:`~linf_opt.models.implicit_network.ImplicitNetwork` with μ_{∞,η}(A) < 1 (else ``ValueError``).
        inputs: (N, ...) at the attack scale of ``space``, inside its valid range; labels: (N,).
        eps: radius at the attack scale, finite, ≥ 0.
        space: the :class:`InputSpace` (``linf_opt.robustness.input_space.MNIST`` for the MNIST networks).
        batch_size: samples per solve (None: all at once).
        tol, rtol, max_iter: solver settings (defaults: tight tolerances by dtype; see reachable_box).

    Returns a :class:`CertifyResult`; ``time`` covers the whole computation (for Lipschitz methods:
    the forward solve and the bound).

        >>> res = certify(net, pixels, labels, 0.02, "mixed_monotone", space=MNIST)
        >>> print(res.summary())
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    _check_net(net, "certify")
    P, T, eps, _ = prepare_batch(inputs, labels, eps, space, net.dtype)
    P = P.reshape(P.shape[0], -1).to(net.device)
    if P.shape[1] != net.in_features:
        raise ShapeError(f"inputs: expected {net.in_features} features per sample, got {P.shape[1]}")
    q = net.out_features
    if P.shape[0] and int(T.max()) >= q:
        raise ValueError(f"labels: expected class indices < {q}, got {int(T.max())}")
    mu, eta = _measure(net)
    tol, rtol = _default_tols(net, tol, rtol)
    box_method = "ibp" if method == "ibp" else "mixed_monotone"
    max_iter = _default_max_iter(net, box_method, max_iter)
    eps_model = space.eps_to_model(eps)
    margins, lowers, uppers, valids, stats = [], [], [], [], []
    L_value = None
    start = time.perf_counter()
    with torch.no_grad():
        if method.startswith("lipschitz"):
            L_value = float(lipschitz_bound(net, kind="paper" if method == "lipschitz_paper" else "tight"))
            C = net.readout_matrix().abs()
            cnorm = float((C if eta is None else C * eta.reshape(1, -1)).sum(1).amax())
        for sl in batch_slices(P.shape[0], batch_size):
            p, t = P[sl], T[sl]
            if method.startswith("lipschitz"):
                U = space.to_model(p)
                with net.solver_options(tol=tol, rtol=rtol, max_iter=max_iter, strict=False):
                    X, st = net.equilibrium(U)
                Y = net.readout(X, U)
                # the computed logits are within ‖C diag(η)‖ r/(1 − μ⁺) of the exact ones
                err = cnorm * _fixed_point_error(st.residual, mu, eta)
                spread = (L_value * eps_model + err).unsqueeze(1)
                lo, hi = Y - spread, Y + spread
                m = _plain_margins(lo, hi, t)
                ok = st.converged.clone()
            else:
                lo_u, hi_u = space.box(p, eps)
                box = _reachable(net, lo_u, hi_u, box_method, mu, eta, tol, rtol, max_iter)
                lo, hi, ok, st = box.lower, box.upper, box.valid, box.stats
                if method == "mixed_monotone_relative":
                    m = margin_lower_bounds(net, box.hidden_lower, box.hidden_upper, t, lo_u, hi_u)
                else:
                    m = _plain_margins(lo, hi, t)
            margins.append(m), lowers.append(lo), uppers.append(hi), valids.append(ok), stats.append(st)
    elapsed = time.perf_counter() - start
    M, V = torch.cat(margins), torch.cat(valids)
    others = M.scatter(1, T.view(-1, 1), math.inf)
    certified = V & (others > 0).all(1)
    return CertifyResult(method, eps, eps_model, certified, M, torch.cat(lowers), torch.cat(uppers), V,
                         elapsed, _merge_stats(stats), L_value, len(stats))
