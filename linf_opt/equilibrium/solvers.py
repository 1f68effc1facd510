"""Fixed-point solvers for the equilibrium x = Φ(A x + B u + b) (docs/mathematics.md §4), one signature for all.

Rows are samples: with the injection Q = U Bᵀ + b of shape (batch, n), the equation reads
X = Φ(X Aᵀ + Q). Every registered solver is a function

    solver(A, Q, activation, x0, *, alpha, tol, rtol, max_iter, trace) -> (X, SolverStats)

and stops when, for every sample, the fixed-point residual r = ‖x − Φ(Ax + q)‖∞ satisfies
r ≤ tol + rtol · ‖x‖∞. Methods:

- ``average``  x⁺ = (1 − α)x + αΦ(Ax + q), α ∈ (0, α*] (default α* = 1/(1 − minᵢ min(aᵢᵢ, 0))); a
  contraction in ‖·‖_{∞,η} with factor ρ = 1 − α(1 − μ⁺) whenever μ_{∞,η}(A) < 1.
- ``picard``   α = 1: guaranteed only when ‖A‖_{∞,η} < 1; oscillation and divergence are reported.
- ``anderson`` Anderson acceleration of the average map, safeguarded: a sample takes the extrapolated
  point only if its residual is ≤ ρ* × the current residual, else the plain average step, so it is
  never slower than the guaranteed rate.
- ``forward_backward``  x⁺ = Φ((1 − α)x + α(Ax + q)) (monotone networks; ReLU only).
- ``peaceman_rachford`` the operator splitting of Winston and Kolter (2020) (ReLU only).

Add a method with :func:`register_solver`. The public entry point is :func:`linf_opt.equilibrium.implicit.solve_fixed_point`; it
is differentiable by implicit differentiation (see :mod:`linf_opt.equilibrium.implicit`).

    >>> x, stats = solve_fixed_point(A, B, u)            # average iteration with α*
    >>> stats.iterations, bool(stats.converged.all())
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from linf_opt._tensor import as_matrix, check_finite, check_scalar, like_input, to_torch
from linf_opt.equilibrium.activations import Activation, get_activation
from linf_opt.errors import ConvergenceError, ConvergenceWarning, ShapeError
from linf_opt.operators.base import WeightOperator
from linf_opt.operators.dense import DenseOperator

__all__ = ["SolverStats", "register_solver", "get_solver", "SOLVERS",
           "default_tol", "a_priori_iterations", "CHECK_EVERY"]


@dataclass
class SolverStats:
    """What one solver call did.

    Attributes:
        method: solver name.
        iterations: iterations performed (updates of the iterate, for the whole batch).
        residual: per-sample final residual ‖x − Φ(Ax + q)‖∞ (ℓ1 norm for the adjoint solve), shape (batch,).
        converged: per-sample flags, residual ≤ tol + rtol·‖x‖, shape (batch,).
        sample_iterations: per-sample iteration at which that sample first met the tolerance
            (``iterations`` for samples that never did), shape (batch,). Solvers may pass it as a
            function that computes it (the average iteration does: it is formed on first access, not in
            every training step that never reads it).
        alpha: the step used (None where the method has none).
        evaluations: number of evaluations of Φ(A · + q) for the whole batch (Anderson uses up to 2 per step).
        diverged: True when the iteration was stopped because the residual grew without bound.
        stagnated: True when it was stopped because the largest residual had not improved for
            ``patience`` iterations (e.g. Picard oscillating on a matrix with negative diagonal).
        trace: the maximum residual over the batch after each iteration, if requested (a trace
            makes the solver check every iteration).
        preactivation: A x + q at the returned x, where the solver kept it (the average iteration
            does; implicit differentiation then needs no extra product). Not part of ``summary()``.
        known_converged: True when the solver already knows that every sample converged (it then
            saves the reduction that ``all_converged`` would make).
    """

    method: str
    iterations: int
    residual: torch.Tensor
    converged: torch.Tensor
    _sample_iterations: torch.Tensor | Callable[[], torch.Tensor]
    alpha: float | None = None
    evaluations: int = 0
    diverged: bool = False
    trace: list[float] | None = None
    stagnated: bool = False
    preactivation: torch.Tensor | None = field(default=None, repr=False, compare=False)
    known_converged: bool = field(default=False, repr=False, compare=False)

    @property
    def sample_iterations(self) -> torch.Tensor:
        if callable(self._sample_iterations):
            self._sample_iterations = self._sample_iterations()
        return self._sample_iterations

    @property
    def all_converged(self) -> bool:
        return self.known_converged or bool(self.converged.all())

    @property
    def n_not_converged(self) -> int:
        return 0 if self.known_converged else int((~self.converged).sum())

    @property
    def max_residual(self) -> float:
        return float(self.residual.max()) if self.residual.numel() else 0.0

    def summary(self) -> str:
        state = "converged" if self.all_converged else (
            "DIVERGED" if self.diverged else f"{self.n_not_converged}/{self.converged.numel()} NOT converged"
            + (" (stagnated)" if self.stagnated else ""))
        a = "" if self.alpha is None else f", α={self.alpha:.4g}"
        return f"{self.method}: {self.iterations} iterations{a}, max residual {self.max_residual:.3e}, {state}"


def default_tol(dtype: torch.dtype) -> tuple[float, float]:
    """Default (absolute, relative) tolerances: (1e-10, 1e-10) in float64, (1e-5, 1e-5) otherwise."""
    return (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 1e-5)


def a_priori_iterations(rho: float, first_step: float, tol: float) -> int:
    """Iterations k with ρᵏ ‖x¹ − x⁰‖ ≤ tol: k = ⌈log(tol/‖x¹ − x⁰‖) / log ρ⌉ (0 if already below tol)."""
    if first_step <= tol:
        return 0
    if rho <= 0:
        return 1
    if rho >= 1:
        return math.inf
    return math.ceil(math.log(tol / first_step) / math.log(rho))


class Solver(Protocol):
    """``A`` is a :class:`~linf_opt.operators.base.WeightOperator` (or an (n, n) matrix, which
    :func:`as_operator` wraps); Q and x0 have shape (batch, *state_shape). ``check_every`` is the number
    of iterations between convergence checks (None: :data:`CHECK_EVERY`); a solver may check more often."""

    def __call__(self, A, Q: torch.Tensor, act: Activation, x0: torch.Tensor, *,
                 alpha: float | None, tol: float, rtol: float, max_iter: int,
                 trace: bool, check_every: int | None = None) -> tuple[torch.Tensor, SolverStats]: ...


SOLVERS: dict[str, Solver] = {}


def register_solver(name: str, fn: Solver | None = None):
    """Register ``fn`` as method ``name`` (usable as a decorator). Overwrites an existing name."""
    def deco(f):
        SOLVERS[name] = f
        return f
    return deco(fn) if fn is not None else deco


def get_solver(name: str) -> Solver:
    """The solver registered as ``name``; ``ValueError`` listing the registered names otherwise."""
    if name not in SOLVERS:
        raise ValueError(f"method: expected one of {sorted(SOLVERS)}, got {name!r}")
    return SOLVERS[name]


# ----------------------------------------------------------------------------------------------------
# Shared loop machinery
# ----------------------------------------------------------------------------------------------------

CHECK_EVERY = 8
"""Default largest number of iterations between two convergence checks (see :class:`_Monitor`)."""


def as_operator(A) -> WeightOperator:
    """``A`` itself when it is a weight operator, else the dense operator of the (n, n) matrix A."""
    return A if isinstance(A, WeightOperator) else DenseOperator(A)


class _Monitor:
    """Tracks per-sample residuals, convergence, divergence and stagnation for one solver run.

    It runs inside every solver iteration of every training step, so it is kept lean: the residual
    norm is formed and examined only at checks (``due()``), and each check costs one host
    synchronisation, whatever the batch size. The checks are scheduled from the observed rate: after
    a check with worst residual r at iteration k, following one with r′ at k′, the rate
    ρ̂ = (r/r′)^{1/(k−k′)} predicts the iterations m = ⌈log(τ/r)/log ρ̂⌉ to the tolerance τ, and the next
    check comes after min(max(m, 1), check_every) iterations (check_every // 4 after the first check,
    when there is no rate yet, and check_every when the residual did not decrease).
    The schedule only decides when to look: a sample counts as converged only when the true residual
    of the iterate that is returned is below its tolerance, since the loop stops at a check, never
    between two.
    """

    patience = 1000   # iterations without a new lowest residual before the run counts as stagnated

    def __init__(self, method, batch, device, tol, rtol, max_iter, trace, alpha, check_every=None):
        self.method, self.tol, self.rtol, self.max_iter, self.alpha = method, tol, rtol, max_iter, alpha
        every = CHECK_EVERY if check_every is None else int(check_every)
        self.every = 1 if trace else max(every, 1)
        self.checks: list[tuple[int, torch.Tensor]] = []   # (k, per-sample ok) at every check
        self.device = device
        self.all_ok = False
        self.trace = [] if trace else None
        self.k = 0
        self.evaluations = 0
        self.start = None
        self.diverged = False
        self.stagnated = False
        self.best, self.best_k = math.inf, 0
        self.ok = self.res = None
        self.next_check = 0
        self.last = None            # (k, worst residual) of the previous check

    def due(self) -> bool:
        """Whether the residual of the current iterate is to be checked now."""
        return self.k >= self.next_check or self.k >= self.max_iter

    def _schedule(self, worst: float, target: float) -> None:
        # without a rate yet (the first check) look again soon, so that the rate is known early:
        # a solve that converges in a few iterations does not run on to check_every
        step = self.every if self.last is not None else max(1, self.every // 4)
        if (self.every > 1 and self.last is not None and 0 < worst < self.last[1] and target > 0
                and self.k > self.last[0]):
            rate = (worst / self.last[1]) ** (1.0 / (self.k - self.last[0]))
            if rate < 1:
                step = min(max(math.ceil(math.log(target / worst) / math.log(rate)), 1), self.every)
        self.last = (self.k, worst)
        self.next_check = self.k + step

    def update(self, res: torch.Tensor, scale: torch.Tensor | None, *, threshold: torch.Tensor | None = None) -> bool:
        """Record the residuals of the current iterate (iteration self.k); return True to stop.

        ``scale`` (per-sample ‖x‖) is only used when rtol > 0; pass None otherwise. ``threshold``: the
        per-sample tolerance tol + rtol·scale when the caller has it already (it is then used as is).
        """
        scalar = threshold is None and (self.rtol == 0 or scale is None)
        thr = self.tol if scalar else (threshold if threshold is not None else scale.mul(self.rtol).add_(self.tol))
        ok = res <= thr
        self.checks.append((self.k, ok))
        self.ok, self.res = ok, res
        if not res.numel():
            worst, excess = 0.0, -1.0
        elif scalar:
            worst = float(res.max())
            excess = worst - self.tol
        else:
            # one synchronisation for both facts: the worst residual and the worst excess over tolerance
            worst, excess = torch.stack([res.max(), (res - thr).max()]).tolist()
        if self.trace is not None:
            self.trace.append(worst)
        if self.start is None:
            self.start = worst
        if not math.isfinite(worst) or (self.k > 10 and worst > 1e8 * max(self.start, 1e-30)):
            self.diverged = True
            return True
        if excess <= 0:
            self.all_ok = True
            return True
        if worst < self.best:
            self.best, self.best_k = worst, self.k
        elif self.k - self.best_k > self.patience:
            self.stagnated = True
            return True
        self._schedule(worst, worst - excess)
        return self.k >= self.max_iter

    def _first(self) -> torch.Tensor:
        """Per sample, the first checked iteration at which it met its tolerance (self.k if never)."""
        ks, oks = zip(*self.checks)
        if len(oks) == 1:
            return torch.where(oks[0], ks[0], self.k)
        stack = torch.stack(oks)                                        # (checks, batch)
        at = torch.tensor(ks, device=self.device)[stack.to(torch.uint8).argmax(0)]   # first True
        return torch.where(stack.any(0), at, self.k)

    def stats(self, preactivation: torch.Tensor | None = None) -> SolverStats:
        ok = self.ok if not self.diverged else torch.zeros_like(self.ok)
        return SolverStats(self.method, self.k, self.res, ok, self._first, self.alpha, self.evaluations,
                           self.diverged, self.trace, self.stagnated, preactivation,
                           self.all_ok and not self.diverged)


def _inf(x: torch.Tensor) -> torch.Tensor:
    """Per-sample ℓ∞ norm over all but the batch axis (abs().amax() is several times faster than
    vector_norm(ord=inf) on CPU)."""
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1)
    return x.abs().amax(-1) if x.shape[-1] else x.sum(-1).abs()


def _scale(mon: _Monitor, F: torch.Tensor) -> torch.Tensor | None:
    return _inf(F) if mon.rtol else None


@register_solver("average")
def average_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, check_every=None, method="average"):
    """Average (Krasnosel'skiĭ–Mann) iteration x⁺ = (1 − α)x + αΦ(Ax + q); α defaults to α*.

    ``A`` is a weight operator or an (n, n) matrix; Q and x0 have the state's shape (batch, *state_shape).
    Per iteration: one fused product ``A x + q``, the activation, and one in-place blend; the residual
    ‖Φ(Ax + q) − x‖∞ is formed only when the monitor checks. The returned stats keep the last
    pre-activation A x + q of the returned x (implicit differentiation reuses it).
    """
    op = as_operator(A)
    alpha = op.average_step() if alpha is None else float(alpha)
    mon = _Monitor(method, Q.shape[0], Q.device, tol, rtol, max_iter, trace, alpha, check_every)
    X = x0.clone()                       # never write into the caller's x0
    Z = op.affine(X, Q)
    F = act(Z)
    mon.evaluations = 1
    while True:
        if mon.due():
            if mon.update(_inf(F - X), _scale(mon, F)):
                break
        if alpha == 1.0:
            X = F
        else:
            X.lerp_(F, alpha)
        Z = op.affine(X, Q)
        F = act(Z)
        mon.k += 1
        mon.evaluations += 1
    return X, mon.stats(Z)


@register_solver("picard")
def picard_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, check_every=None):
    """Picard iteration x⁺ = Φ(Ax + q) (α = 1); converges when ‖A‖_{∞,η} < 1, else may oscillate."""
    return average_iteration(A, Q, act, x0, alpha=1.0, tol=tol, rtol=rtol, max_iter=max_iter, trace=trace,
                             check_every=check_every, method="picard")


@register_solver("anderson")
def anderson_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, check_every=None, memory=5,
                       reg=1e-10):
    """Safeguarded Anderson acceleration (type II, ``memory`` past iterates) of the average map.

    G(x) = x + α(Φ(Ax + q) − x). Each step proposes x_AA = Σᵢ cᵢ G(xᵢ) with Σ cᵢ = 1 minimizing
    ‖Σᵢ cᵢ (G(xᵢ) − xᵢ)‖₂ (Tikhonov ``reg``); a sample accepts it only if its residual is at most
    ρ* × its current residual (ρ* = 1 − α(1 − μ⁺), capped at 1), otherwise it takes G(x). Its
    safeguard needs every residual, so it checks convergence at every iteration.
    """
    op = as_operator(A)
    alpha = op.average_step() if alpha is None else float(alpha)
    mu_plus = max(float(op.mu_inf()), 0.0)
    rho = min(1.0 - alpha * (1.0 - mu_plus), 1.0)
    mon = _Monitor("anderson", Q.shape[0], Q.device, tol, rtol, max_iter, trace, alpha, 1)
    shape = Q.shape
    batch, n = shape[0], math.prod(shape[1:])

    def image(Xf):
        return act(op.affine(Xf.reshape(shape), Q)).reshape(batch, n)

    X = x0.reshape(batch, n)
    F = image(X)
    mon.evaluations = 1
    Xh = torch.zeros(batch, memory, n, dtype=Q.dtype, device=Q.device)
    Gh = torch.zeros_like(Xh)
    res = _inf(X - F)
    while not mon.update(res, _scale(mon, F)):
        G = torch.lerp(X, F, alpha)
        slot = mon.k % memory
        Xh[:, slot], Gh[:, slot] = X, G
        m = min(mon.k + 1, memory)
        Fh = (Gh[:, :m] - Xh[:, :m])
        H = Fh @ Fh.transpose(1, 2)
        H = H + reg * (H.diagonal(dim1=1, dim2=2).amax(-1, keepdim=True).unsqueeze(-1) + 1e-30) * torch.eye(
            m, dtype=Q.dtype, device=Q.device)
        ones = torch.ones(batch, m, 1, dtype=Q.dtype, device=Q.device)
        try:
            w = torch.linalg.solve(H, ones)
        except RuntimeError:  # singular despite regularisation: plain step
            w = ones
        c = w / w.sum(1, keepdim=True)
        Xa = (c.transpose(1, 2) @ Gh[:, :m]).squeeze(1)
        Fa = image(Xa)
        ra = _inf(Xa - Fa)
        accept = (ra <= rho * res) & torch.isfinite(ra)
        mon.evaluations += 1
        if bool(accept.all()):
            X, F, res = Xa, Fa, ra
        else:
            Fg = image(G)
            mon.evaluations += 1
            acc = accept.unsqueeze(-1)
            X, F = torch.where(acc, Xa, G), torch.where(acc, Fa, Fg)
            res = torch.where(accept, ra, _inf(G - Fg))
        mon.k += 1
    return X.reshape(shape), mon.stats()


def _require_relu(act: Activation, method: str) -> None:
    if act.name != "relu":
        raise ValueError(f"method={method!r}: the splitting's fixed point equals x = Φ(Ax + q) only for "
                         f"activation='relu' (Φ = projection onto x ≥ 0), got {act.name!r}")


def _dense(A, method: str) -> torch.Tensor:
    """The (n, n) matrix of a dense operator; the monotone splittings need I − A as a matrix."""
    if isinstance(A, DenseOperator):
        return A.weight
    if isinstance(A, WeightOperator):
        raise ValueError(f"method={method!r}: the monotone splittings work on a dense matrix; got "
                         f"{A!r} (use method='average' for structured operators)")
    return A


def _monotone_margin(A: torch.Tensor) -> float:
    """m = λ_min(I − (A + Aᵀ)/2): the monotonicity margin, I − A ⪰ mI."""
    n = A.shape[0]
    S = torch.eye(n, dtype=A.dtype, device=A.device) - (A + A.t()) / 2
    return float(torch.linalg.eigvalsh(S)[0])


@register_solver("forward_backward")
def forward_backward_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, check_every=None):
    """Forward–backward splitting x⁺ = Φ((1 − α)x + α(Ax + q)); needs I − A ⪰ mI, m > 0.

    Default α = m / ‖I − A‖₂², half the largest step 2m/‖I − A‖₂² with a convergence guarantee.
    """
    _require_relu(act, "forward_backward")
    A = _dense(A, "forward_backward")
    if alpha is None:
        m = _monotone_margin(A)
        if m <= 0:
            raise ValueError(f"A: forward_backward needs I − A ⪰ mI with m > 0 (monotone), got m = {m:.4g}")
        IA = torch.eye(A.shape[0], dtype=A.dtype, device=A.device) - A
        alpha = m / float(torch.linalg.matrix_norm(IA, ord=2)) ** 2
    mon = _Monitor("forward_backward", Q.shape[0], Q.device, tol, rtol, max_iter, trace, float(alpha))
    At = A.t()
    X = x0
    while True:
        Z = torch.addmm(Q, X, At)
        F = act(Z)
        mon.evaluations += 1
        if mon.update(_inf(X - F), _scale(mon, F)):
            break
        X = act(torch.lerp(X, Z, alpha))
        mon.k += 1
    return X, mon.stats()


@register_solver("peaceman_rachford")
def peaceman_rachford_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, check_every=None):
    """Peaceman–Rachford splitting (docs/mathematics.md §4) with V = (I + α(I − A))⁻¹, one inverse per call; α defaults to 1."""
    _require_relu(act, "peaceman_rachford")
    A = _dense(A, "peaceman_rachford")
    alpha = 1.0 if alpha is None else float(alpha)
    n = A.shape[0]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    Vt = torch.linalg.inv(eye + alpha * (eye - A)).t()
    mon = _Monitor("peaceman_rachford", Q.shape[0], Q.device, tol, rtol, max_iter, trace, alpha)
    At = A.t()
    aQ = alpha * Q
    Z, W = x0, x0.clone()
    while True:
        F = act(torch.addmm(Q, Z, At))
        mon.evaluations += 1
        if mon.update(_inf(Z - F), _scale(mon, F)):
            break
        Wh = 2 * Z - W
        Zh = (Wh + aQ) @ Vt
        W = 2 * Zh - Wh
        Z = act(W)
        mon.k += 1
    return Z, mon.stats()


# ----------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------

def check_step(alpha, A, method: str, strict: bool) -> float | None:
    """Validate the step α of an average-type method: α ∈ (0, α*]; strict → ValueError, else a warning."""
    if alpha is None:
        return None
    a = check_scalar(alpha, "alpha", low=0.0, low_open=True)
    if method == "average":
        a_star = as_operator(A).average_step()
        if a > a_star * (1 + 1e-12):
            msg = (f"alpha: the average iteration is guaranteed only for α ∈ (0, α*] with α* = {a_star:.6g} "
                   f"(docs/mathematics.md §4), got {a:.6g}")
            if strict:
                raise ValueError(msg)
            warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    return a


def report(stats: SolverStats, strict: bool, what: str = "equilibrium") -> None:
    """Warn (or, in strict mode, raise :class:`ConvergenceError`) if any sample did not converge."""
    if stats.all_converged:
        return
    msg = f"{what} solver did not converge: {stats.summary()}"
    if stats.method == "picard" and not stats.diverged:
        msg += " (Picard needs ‖A‖∞ < 1; use method='average')"
    if strict:
        raise ConvergenceError(msg, stats)
    warnings.warn(msg, ConvergenceWarning, stacklevel=3)


def prepare_inputs(A, B, u, b, *, dtype=None):
    """Convert and validate (A, B, u, b); return tensors (A stays an operator if it is one), a flag for
    numpy input and one for a single sample."""
    if isinstance(A, WeightOperator):
        At, was_numpy = A, False
        check_finite(A.weight.detach(), "A")
        n, like = A.n, A.weight
    else:
        At, was_numpy = as_matrix(A, "A", dtype=dtype)
        n, like = At.shape[-1], At
        if At.ndim != 2:
            raise ShapeError(f"A: expected shape (n, n), got {tuple(At.shape)}")
    Bt, _ = to_torch(B, "B", dtype=like.dtype, device=like.device)
    if Bt.ndim != 2 or Bt.shape[0] != n:
        raise ShapeError(f"B: expected shape ({n}, r) to match A of shape ({n}, {n}), got {tuple(Bt.shape)}")
    check_finite(Bt, "B")
    r = Bt.shape[1]
    ut, _ = to_torch(u, "u", dtype=like.dtype, device=like.device)
    single = ut.ndim == 1
    if single:
        ut = ut.unsqueeze(0)
    if ut.ndim != 2 or ut.shape[1] != r:
        raise ShapeError(f"u: expected shape (batch, {r}) or ({r},) to match B of shape ({n}, {r}), "
                         f"got {tuple(ut.shape) if not single else tuple(ut.shape[1:])}")
    check_finite(ut, "u")
    if b is not None:
        bt, _ = to_torch(b, "b", dtype=like.dtype, device=like.device)
        if bt.shape != (n,):
            raise ShapeError(f"b: expected shape ({n},), got {tuple(bt.shape)}")
        check_finite(bt, "b")
    else:
        bt = None
    return At, Bt, ut, bt, was_numpy, single
