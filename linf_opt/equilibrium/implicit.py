"""Exact gradients through the equilibrium by implicit differentiation (docs/mathematics.md §4).

At the solution X (rows x* of shape (batch, n)) of X = Φ(X Aᵀ + Q), with z* = A x* + q and
J = diag(φ′(z*)), an upstream gradient g = ∂L/∂x* gives

    s = g + Aᵀ J s,   v = J s = ∂L/∂z*,   ∂L/∂A = Σ_batch v x*ᵀ,   ∂L/∂q = v.

Gradients for B, b and u follow by ordinary autograd through Q = U Bᵀ + b. The adjoint equation is
solved either by the average iteration in ℓ1 (``backward="average"``; it contracts with the same α*
and factor as the forward pass because μ₁(AᵀJ) = μ∞(JA) ≤ μ⁺) or by a batched direct linear solve of
(I − AᵀJ) s = g (``backward="direct"``, for small n). The forward iterations run under ``no_grad``:
no autograd graph is kept, so memory does not grow with the iteration count.

    >>> X, stats = equilibrium(A, Q, get_activation("relu"))   # differentiable in A and Q
"""
from __future__ import annotations

import torch

from linf_opt.equilibrium.activations import Activation
from linf_opt.operators.measures import _average_step
from linf_opt._tensor import check_finite, check_scalar, like_input, to_torch
from linf_opt.equilibrium.activations import get_activation
from linf_opt.equilibrium.solvers import (SolverStats, _Monitor, check_step, default_tol, get_solver, prepare_inputs,
                                          report)
from linf_opt.errors import ShapeError

__all__ = ["equilibrium", "adjoint_solve", "EquilibriumRecord", "solve_fixed_point"]


class EquilibriumRecord:
    """Where the forward and backward statistics of one differentiable solve are left for the caller."""

    def __init__(self):
        self.forward: SolverStats | None = None
        self.backward: SolverStats | None = None


def adjoint_solve(A: torch.Tensor, Jd: torch.Tensor, G: torch.Tensor, *, method: str = "average",
                  tol: float | None = None, max_iter: int = 1000, strict: bool = False) -> tuple[torch.Tensor, SolverStats]:
    """Solve s = g + Aᵀ J s for every row (rows: S = G + (Jd ⊙ S) A); return ``(S, stats)``.

    ``Jd`` holds the diagonals of J (batch, n). "average": S⁺ = S + α*(G + (Jd ⊙ S)A − S), stopping when
    ‖S − G − (Jd ⊙ S)A‖₁ ≤ tol · ‖G‖₁ per sample. "direct": a batched LU solve of (I − AᵀJ)s = g.
    """
    if tol is None:
        tol = 1e-12 if G.dtype == torch.float64 else 1e-6
    if method == "direct":
        n = A.shape[0]
        M = torch.eye(n, dtype=A.dtype, device=A.device) - A.t().unsqueeze(0) * Jd.unsqueeze(1)
        S = torch.linalg.solve(M, G.unsqueeze(-1)).squeeze(-1)
        res = (S - G - (Jd * S) @ A).abs().sum(-1)
        ok = torch.isfinite(res)
        stats = SolverStats("direct", 1, res, ok, torch.ones_like(res, dtype=torch.long), None, 1)
        report(stats, strict, "adjoint (backward)")
        return S, stats
    if method != "average":
        raise ValueError(f"backward: expected 'average' or 'direct', got {method!r}")
    alpha = float(_average_step(A))
    gnorm = G.abs().sum(-1)
    mon = _Monitor("adjoint_average", G.shape[0], G.device, 0.0, tol, max_iter, False, alpha)
    S = G
    while True:
        T = G + (Jd * S) @ A
        mon.evaluations += 1
        if mon.update((S - T).abs().sum(-1), gnorm):
            break
        S = torch.lerp(S, T, alpha)
        mon.k += 1
    stats = mon.stats()
    report(stats, strict, "adjoint (backward)")
    return S, stats


class _EquilibriumFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, Q, opts):
        act: Activation = opts["act"]
        with torch.no_grad():
            x0 = opts["x0"] if opts["x0"] is not None else torch.zeros_like(Q)
            X, stats = get_solver(opts["method"])(
                A, Q, act, x0, alpha=opts["alpha"], tol=opts["tol"], rtol=opts["rtol"],
                max_iter=opts["max_iter"], trace=opts["trace"])
        opts["record"].forward = stats
        ctx.opts = opts
        ctx.save_for_backward(A, Q, X)
        return X

    @staticmethod
    def backward(ctx, G):
        A, Q, X = ctx.saved_tensors
        opts = ctx.opts
        with torch.no_grad():
            Jd = opts["act"].derivative(torch.addmm(Q, X, A.t()))
            S, stats = adjoint_solve(A, Jd, G, method=opts["backward"], tol=opts["backward_tol"],
                                     max_iter=opts["backward_max_iter"], strict=opts["strict"])
            opts["record"].backward = stats
            V = Jd * S
            grad_A = V.t() @ X if ctx.needs_input_grad[0] else None
        return grad_A, V, None


def equilibrium(A: torch.Tensor, Q: torch.Tensor, act: Activation, *, method: str = "average",
                alpha: float | None = None, tol: float | None = None, rtol: float | None = None,
                max_iter: int = 1000, x0: torch.Tensor | None = None, strict: bool = False,
                trace: bool = False, backward: str = "average", backward_tol: float | None = None,
                backward_max_iter: int | None = None, record: EquilibriumRecord | None = None):
    """Differentiable solution X of X = Φ(X Aᵀ + Q) (A: (n, n), Q: (batch, n)); returns ``(X, stats)``.

    Validation is the caller's job (see :func:`solve_fixed_point`). Non-convergence
    warns, or raises in ``strict`` mode. ``record`` (optional) receives the backward stats when
    gradients are computed later.
    """
    if backward not in ("average", "direct"):
        raise ValueError(f"backward: expected 'average' or 'direct', got {backward!r}")
    d_tol, d_rtol = default_tol(Q.dtype)
    record = record if record is not None else EquilibriumRecord()
    opts = dict(act=act, method=method, alpha=alpha, tol=d_tol if tol is None else tol,
                rtol=d_rtol if rtol is None else rtol, max_iter=max_iter, x0=x0, trace=trace,
                backward=backward, backward_tol=backward_tol, strict=strict,
                backward_max_iter=max_iter if backward_max_iter is None else backward_max_iter, record=record)
    if torch.is_grad_enabled() and (A.requires_grad or Q.requires_grad):
        X = _EquilibriumFunction.apply(A, Q, opts)
    else:
        X = _EquilibriumFunction.forward(_NoCtx(), A, Q, opts)
    stats = record.forward
    report(stats, strict)
    return X, stats


class _NoCtx:
    """Stand-in context for the no-grad path (nothing is saved)."""

    def save_for_backward(self, *args):
        pass


def solve_fixed_point(A, B, u, b=None, activation="relu", method="average", alpha=None, tol=None,
                      max_iter=1000, *, rtol=None, x0=None, strict=False, trace=False,
                      backward="average", backward_tol=None):
    """Solve x = Φ(A x + B u + b) for every sample (row) of u; return ``(x, SolverStats)``.

    Args:
        A: (n, n); B: (n, r); u: (batch, r) or (r,); b: (n,) or None. numpy or torch.
        activation: a name from :data:`linf_opt.equilibrium.activations.ACTIVATIONS` or an :class:`Activation`.
        method: a registered solver name ("average", "picard", "anderson", "forward_backward",
            "peaceman_rachford").
        alpha: step; default α* for average/anderson, 1 for picard and peaceman_rachford.
        tol, rtol: stop when ‖x − Φ(Ax + Bu + b)‖∞ ≤ tol + rtol·‖x‖∞ (defaults by dtype, see default_tol).
        max_iter: iteration limit; reaching it unconverged warns (``ConvergenceWarning``) or, with
            ``strict=True``, raises :class:`ConvergenceError`. A step outside (0, α*] also raises in strict mode.
        x0: initial point (batch, n), default zero.
        trace: record the maximum residual after every iteration in ``stats.trace``.
        backward, backward_tol: how gradients are computed when an input requires grad (exact implicit
            differentiation, :mod:`linf_opt.equilibrium.implicit`): "average" (adjoint average iteration in ℓ1) or "direct".

    Returns:
        x of shape (batch, n) (or (n,) for a single sample) in the caller's type, and the stats.

        >>> A = np.array([[-3.0, 1.0], [0.5, 0.2]]); B = np.eye(2)
        >>> x, st = solve_fixed_point(A, B, np.array([1.0, -1.0]))
    """
    At, Bt, ut, bt, was_numpy, single = prepare_inputs(A, B, u, b)
    act = get_activation(activation)
    get_solver(method)
    alpha = check_step(alpha, At, method, strict)
    d_tol, d_rtol = default_tol(At.dtype)
    tol = d_tol if tol is None else check_scalar(tol, "tol", low=0.0)
    rtol = d_rtol if rtol is None else check_scalar(rtol, "rtol", low=0.0)
    max_iter = int(check_scalar(max_iter, "max_iter", low=0))
    Q = ut @ Bt.t() if bt is None else torch.addmm(bt, ut, Bt.t())
    if x0 is not None:
        x0, _ = to_torch(x0, "x0", dtype=At.dtype, device=At.device)
        x0 = x0.reshape(Q.shape) if x0.numel() == Q.numel() else None
        if x0 is None:
            raise ShapeError(f"x0: expected shape {tuple(Q.shape)}")
        check_finite(x0, "x0")
    x, stats = equilibrium(At, Q, act, method=method, alpha=alpha, tol=tol, rtol=rtol, max_iter=max_iter,
                           x0=x0, strict=strict, trace=trace, backward=backward, backward_tol=backward_tol)
    if single:
        x = x.squeeze(0)
    return like_input(x, was_numpy), stats
