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
from linf_opt.operators.measures import _average_step, _row_measures

__all__ = ["SolverStats", "register_solver", "get_solver", "SOLVERS",
           "default_tol", "a_priori_iterations"]


@dataclass
class SolverStats:
    """What one solver call did.

    Attributes:
        method: solver name.
        iterations: iterations performed (updates of the iterate, for the whole batch).
        residual: per-sample final residual ‖x − Φ(Ax + q)‖∞ (ℓ1 norm for the adjoint solve), shape (batch,).
        converged: per-sample flags, residual ≤ tol + rtol·‖x‖, shape (batch,).
        sample_iterations: per-sample iteration at which that sample first met the tolerance
            (``iterations`` for samples that never did), shape (batch,).
        alpha: the step used (None where the method has none).
        evaluations: number of evaluations of Φ(A · + q) for the whole batch (Anderson uses up to 2 per step).
        diverged: True when the iteration was stopped because the residual grew without bound.
        stagnated: True when it was stopped because the largest residual had not improved for
            ``patience`` iterations (e.g. Picard oscillating on a matrix with negative diagonal).
        trace: the maximum residual over the batch after each iteration, if requested.
    """

    method: str
    iterations: int
    residual: torch.Tensor
    converged: torch.Tensor
    sample_iterations: torch.Tensor
    alpha: float | None = None
    evaluations: int = 0
    diverged: bool = False
    trace: list[float] | None = None
    stagnated: bool = False

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    @property
    def n_not_converged(self) -> int:
        return int((~self.converged).sum())

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
    def __call__(self, A: torch.Tensor, Q: torch.Tensor, act: Activation, x0: torch.Tensor, *,
                 alpha: float | None, tol: float, rtol: float, max_iter: int,
                 trace: bool) -> tuple[torch.Tensor, SolverStats]: ...


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

class _Monitor:
    """Tracks per-sample residuals, convergence and divergence for one solver run.

    Kept lean (a handful of tensor ops and one host synchronisation per iteration): it runs inside
    every solver iteration of every training step.
    """

    patience = 1000   # iterations without a new lowest residual before the run counts as stagnated

    def __init__(self, method, batch, device, tol, rtol, max_iter, trace, alpha):
        self.method, self.tol, self.rtol, self.max_iter, self.alpha = method, tol, rtol, max_iter, alpha
        self.first = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.trace = [] if trace else None
        self.k = 0
        self.evaluations = 0
        self.start = None
        self.diverged = False
        self.stagnated = False
        self.best, self.best_k = math.inf, 0

    def update(self, res: torch.Tensor, scale: torch.Tensor | None) -> bool:
        """Record residuals after iteration self.k; return True when the loop should stop.

        ``scale`` (per-sample ‖x‖) is only used when rtol > 0; pass None otherwise.
        """
        thr = self.tol if (self.rtol == 0 or scale is None) else scale.mul(self.rtol).add_(self.tol)
        ok = res <= thr
        self.first.masked_fill_(ok & (self.first < 0), self.k)
        self.ok, self.res = ok, res
        check = self.trace is not None or self.k % 8 == 0 or self.k >= self.max_iter
        if check:
            worst = float(res.max()) if res.numel() else 0.0
            if self.trace is not None:
                self.trace.append(worst)
            if self.start is None:
                self.start = worst
            if not math.isfinite(worst) or (self.k > 10 and worst > 1e8 * max(self.start, 1e-30)):
                self.diverged = True
                return True
            if worst < self.best:
                self.best, self.best_k = worst, self.k
            elif self.k - self.best_k > self.patience and not bool(ok.all()):
                self.stagnated = True
                return True
        if self.k >= self.max_iter:
            return True
        if bool(ok.all()):
            if not check and not bool(torch.isfinite(res).all()):
                self.diverged = True
            return True
        return False

    def stats(self) -> SolverStats:
        first = torch.where(self.first < 0, torch.full_like(self.first, self.k), self.first)
        ok = self.ok if not self.diverged else torch.zeros_like(self.ok)
        return SolverStats(self.method, self.k, self.res, ok, first,
                           self.alpha, self.evaluations, self.diverged, self.trace, self.stagnated)


def _inf(x: torch.Tensor) -> torch.Tensor:
    """Per-row ℓ∞ norm (abs().amax() is several times faster than vector_norm(ord=inf) on CPU)."""
    return x.abs().amax(-1) if x.shape[-1] else x.sum(-1).abs()


def _scale(mon: _Monitor, F: torch.Tensor) -> torch.Tensor | None:
    return _inf(F) if mon.rtol else None


@register_solver("average")
def average_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, method="average"):
    """Average (Krasnosel'skiĭ–Mann) iteration x⁺ = x + α(Φ(Ax + q) − x); α defaults to α*."""
    alpha = float(_average_step(A)) if alpha is None else float(alpha)
    mon = _Monitor(method, Q.shape[0], Q.device, tol, rtol, max_iter, trace, alpha)
    At = A.t()
    X = x0
    F = act(torch.addmm(Q, X, At))
    mon.evaluations = 1
    D = F - X
    while not mon.update(_inf(D), _scale(mon, F)):
        X = X.add_(D, alpha=alpha) if mon.k else X + alpha * D   # never write into the caller's x0
        F = act(torch.addmm(Q, X, At))
        D = torch.sub(F, X, out=D)
        mon.k += 1
        mon.evaluations += 1
    return X, mon.stats()


@register_solver("picard")
def picard_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace):
    """Picard iteration x⁺ = Φ(Ax + q) (α = 1); converges when ‖A‖_{∞,η} < 1, else may oscillate."""
    return average_iteration(A, Q, act, x0, alpha=1.0, tol=tol, rtol=rtol, max_iter=max_iter, trace=trace,
                             method="picard")


@register_solver("anderson")
def anderson_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace, memory=5, reg=1e-10):
    """Safeguarded Anderson acceleration (type II, ``memory`` past iterates) of the average map.

    G(x) = x + α(Φ(Ax + q) − x). Each step proposes x_AA = Σᵢ cᵢ G(xᵢ) with Σ cᵢ = 1 minimizing
    ‖Σᵢ cᵢ (G(xᵢ) − xᵢ)‖₂ (Tikhonov ``reg``); a sample accepts it only if its residual is at most
    ρ* × its current residual (ρ* = 1 − α(1 − μ⁺), capped at 1), otherwise it takes G(x).
    """
    alpha = float(_average_step(A)) if alpha is None else float(alpha)
    mu_plus = max(float(_row_measures(A).amax()), 0.0)
    rho = min(1.0 - alpha * (1.0 - mu_plus), 1.0)
    mon = _Monitor("anderson", Q.shape[0], Q.device, tol, rtol, max_iter, trace, alpha)
    batch, n = Q.shape
    At = A.t()
    X = x0
    F = act(torch.addmm(Q, X, At))
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
        Fa = act(torch.addmm(Q, Xa, At))
        ra = _inf(Xa - Fa)
        accept = (ra <= rho * res) & torch.isfinite(ra)
        mon.evaluations += 1
        if bool(accept.all()):
            X, F, res = Xa, Fa, ra
        else:
            Fg = act(torch.addmm(Q, G, At))
            mon.evaluations += 1
            acc = accept.unsqueeze(-1)
            X, F = torch.where(acc, Xa, G), torch.where(acc, Fa, Fg)
            res = torch.where(accept, ra, _inf(G - Fg))
        mon.k += 1
    return X, mon.stats()


def _require_relu(act: Activation, method: str) -> None:
    if act.name != "relu":
        raise ValueError(f"method={method!r}: the splitting's fixed point equals x = Φ(Ax + q) only for "
                         f"activation='relu' (Φ = projection onto x ≥ 0), got {act.name!r}")


def _monotone_margin(A: torch.Tensor) -> float:
    """m = λ_min(I − (A + Aᵀ)/2): the monotonicity margin, I − A ⪰ mI."""
    n = A.shape[0]
    S = torch.eye(n, dtype=A.dtype, device=A.device) - (A + A.t()) / 2
    return float(torch.linalg.eigvalsh(S)[0])


@register_solver("forward_backward")
def forward_backward_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace):
    """Forward–backward splitting x⁺ = Φ((1 − α)x + α(Ax + q)); needs I − A ⪰ mI, m > 0.

    Default α = m / ‖I − A‖₂², half the largest step 2m/‖I − A‖₂² with a convergence guarantee.
    """
    _require_relu(act, "forward_backward")
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
def peaceman_rachford_iteration(A, Q, act, x0, *, alpha, tol, rtol, max_iter, trace):
    """Peaceman–Rachford splitting (docs/mathematics.md §4) with V = (I + α(I − A))⁻¹, one inverse per call; α defaults to 1."""
    _require_relu(act, "peaceman_rachford")
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

def check_step(alpha, A: torch.Tensor, method: str, strict: bool) -> float | None:
    """Validate the step α of an average-type method: α ∈ (0, α*]; strict → ValueError, else a warning."""
    if alpha is None:
        return None
    a = check_scalar(alpha, "alpha", low=0.0, low_open=True)
    if method == "average":
        a_star = float(_average_step(A))
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
    """Convert and validate (A, B, u, b); return tensors, a flag for numpy input and one for a single sample."""
    At, was_numpy = as_matrix(A, "A", dtype=dtype)
    n = At.shape[-1]
    if At.ndim != 2:
        raise ShapeError(f"A: expected shape (n, n), got {tuple(At.shape)}")
    Bt, _ = to_torch(B, "B", dtype=At.dtype, device=At.device)
    if Bt.ndim != 2 or Bt.shape[0] != n:
        raise ShapeError(f"B: expected shape ({n}, r) to match A of shape ({n}, {n}), got {tuple(Bt.shape)}")
    check_finite(Bt, "B")
    r = Bt.shape[1]
    ut, _ = to_torch(u, "u", dtype=At.dtype, device=At.device)
    single = ut.ndim == 1
    if single:
        ut = ut.unsqueeze(0)
    if ut.ndim != 2 or ut.shape[1] != r:
        raise ShapeError(f"u: expected shape (batch, {r}) or ({r},) to match B of shape ({n}, {r}), "
                         f"got {tuple(ut.shape) if not single else tuple(ut.shape[1:])}")
    check_finite(ut, "u")
    if b is not None:
        bt, _ = to_torch(b, "b", dtype=At.dtype, device=At.device)
        if bt.shape != (n,):
            raise ShapeError(f"b: expected shape ({n},), got {tuple(bt.shape)}")
        check_finite(bt, "b")
    else:
        bt = None
    return At, Bt, ut, bt, was_numpy, single
