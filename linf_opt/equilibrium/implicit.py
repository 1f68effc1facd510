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
from linf_opt._tensor import check_finite, check_scalar, like_input, to_torch
from linf_opt.equilibrium.activations import get_activation
from linf_opt.equilibrium.solvers import (SolverStats, _Monitor, as_operator, check_step, default_tol, get_solver,
                                          prepare_inputs, report)
from linf_opt.errors import ShapeError
from linf_opt.operators.base import WeightOperator

__all__ = ["equilibrium", "adjoint_solve", "EquilibriumRecord", "solve_fixed_point"]


class EquilibriumRecord:
    """Where the forward and backward statistics of one differentiable solve are left for the caller."""

    def __init__(self):
        self.forward: SolverStats | None = None
        self.backward: SolverStats | None = None


def adjoint_solve(A, Jd: torch.Tensor, G: torch.Tensor, *, method: str = "average",
                  tol: float | None = None, max_iter: int = 1000, strict: bool = False,
                  check_every: int | None = None) -> tuple[torch.Tensor, SolverStats]:
    """Solve s = g + Aᵀ J s for every sample; return ``(S, stats)``.

    ``A`` is a weight operator or an (n, n) matrix; ``Jd`` holds the diagonals of J and G the upstream
    gradients, both of the state's shape (batch, *state_shape). "average": S⁺ = S + α*(G + Aᵀ(Jd ⊙ S) − S),
    stopping when ‖S − G − Aᵀ(Jd ⊙ S)‖₁ ≤ tol · ‖G‖₁ per sample (checked every ``check_every``
    iterations). "direct": a batched LU solve of (I − AᵀJ)s = g on the dense matrix (small n only).
    """
    op = as_operator(A)
    if tol is None:
        tol = 1e-12 if G.dtype == torch.float64 else 1e-6
    batch = G.shape[0]
    if method == "direct":
        M0 = op.as_matrix()
        n = M0.shape[0]
        Gf, Jf = G.reshape(batch, n), Jd.reshape(batch, n)
        M = torch.eye(n, dtype=M0.dtype, device=M0.device) - M0.t().unsqueeze(0) * Jf.unsqueeze(1)
        Sf = torch.linalg.solve(M, Gf.unsqueeze(-1)).squeeze(-1)
        res = (Sf - Gf - (Jf * Sf) @ M0).abs().sum(-1)
        ok = torch.isfinite(res)
        stats = SolverStats("direct", 1, res, ok, torch.ones_like(res, dtype=torch.long), None, 1)
        report(stats, strict, "adjoint (backward)")
        return Sf.reshape(G.shape), stats
    if method != "average":
        raise ValueError(f"backward: expected 'average' or 'direct', got {method!r}")
    alpha = op.average_step()
    thr = G.reshape(batch, -1).abs().sum(-1).mul_(tol)        # per-sample tolerance tol·‖g‖₁
    mon = _Monitor("adjoint_average", batch, G.device, 0.0, tol, max_iter, False, alpha, check_every)
    S = G.clone()
    while True:
        T = op.raffine(Jd * S, G)
        mon.evaluations += 1
        if mon.due() and mon.update((S - T).reshape(batch, -1).abs().sum(-1), None, threshold=thr):
            break
        S.lerp_(T, alpha)
        mon.k += 1
    stats = mon.stats()
    report(stats, strict, "adjoint (backward)")
    return S, stats


class _EquilibriumFunction(torch.autograd.Function):
    """X*(weight, Q) with the operator's structure in ``opts["op"]``; gradients by the adjoint solve."""

    @staticmethod
    def forward(ctx, weight, Q, opts):
        act: Activation = opts["act"]
        op = opts["op"]
        with torch.no_grad():
            x0 = opts["x0"] if opts["x0"] is not None else torch.zeros_like(Q)
            X, stats = get_solver(opts["method"])(
                op, Q, act, x0, alpha=opts["alpha"], tol=opts["tol"], rtol=opts["rtol"],
                max_iter=opts["max_iter"], trace=opts["trace"], check_every=opts["check_every"])
        opts["record"].forward = stats
        ctx.opts = opts
        Z = stats.preactivation
        ctx.save_for_backward(Q, X, Z if Z is not None else Q)
        ctx.has_z = Z is not None
        return X

    @staticmethod
    def backward(ctx, G):
        Q, X, Z = ctx.saved_tensors
        opts = ctx.opts
        op = opts["op"]
        with torch.no_grad():
            Jd = opts["act"].derivative(Z if ctx.has_z else op.affine(X, Q))
            S, stats = adjoint_solve(op, Jd, G, method=opts["backward"], tol=opts["backward_tol"],
                                     max_iter=opts["backward_max_iter"], strict=opts["strict"],
                                     check_every=opts["check_every"])
            opts["record"].backward = stats
            V = S.mul_(Jd)
            grad_w = op.weight_grad(V, X) if ctx.needs_input_grad[0] else None
        return grad_w, V, None


def equilibrium(A, Q: torch.Tensor, act: Activation, *, method: str = "average",
                alpha: float | None = None, tol: float | None = None, rtol: float | None = None,
                max_iter: int = 1000, x0: torch.Tensor | None = None, strict: bool = False,
                trace: bool = False, backward: str = "average", backward_tol: float | None = None,
                backward_max_iter: int | None = None, record: EquilibriumRecord | None = None,
                check_every: int | None = None):
    """Differentiable solution X of X = Φ(A X + Q); returns ``(X, stats)``.

    ``A`` is a :class:`~linf_opt.operators.base.WeightOperator` (differentiable in its ``weight``) or an
    (n, n) matrix; Q (batch, *state_shape). Validation is the caller's job (see :func:`solve_fixed_point`).
    Non-convergence warns, or raises in ``strict`` mode. ``record`` (optional) receives the backward
    stats when gradients are computed later. ``check_every``: iterations between convergence checks
    (forward and backward; default :data:`~linf_opt.equilibrium.solvers.CHECK_EVERY`).
    """
    if backward not in ("average", "direct"):
        raise ValueError(f"backward: expected 'average' or 'direct', got {backward!r}")
    op = as_operator(A)
    weight = op.weight
    d_tol, d_rtol = default_tol(Q.dtype)
    record = record if record is not None else EquilibriumRecord()
    opts = dict(act=act, op=op, method=method, alpha=alpha, tol=d_tol if tol is None else tol,
                rtol=d_rtol if rtol is None else rtol, max_iter=max_iter, x0=x0, trace=trace,
                backward=backward, backward_tol=backward_tol, strict=strict, check_every=check_every,
                backward_max_iter=max_iter if backward_max_iter is None else backward_max_iter, record=record)
    if torch.is_grad_enabled() and (weight.requires_grad or Q.requires_grad):
        X = _EquilibriumFunction.apply(weight, Q, opts)
    else:
        X = _EquilibriumFunction.forward(_NoCtx(), weight, Q, opts)
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
        A: (n, n), or a :class:`~linf_opt.operators.base.WeightOperator` (x then has its state shape,
            (batch, *state_shape)); B: (n, r); u: (batch, r) or (r,); b: (n,) or None. numpy or torch.
        activation: a name from :data:`linf_opt.equilibrium.activations.ACTIVATIONS` or an :class:`Activation`.
        method: a registered solver name ("average", "picard", "anderson", "forward_backward",
            "peaceman_rachford").
        alpha: step; default α* for average/anderson, 1 for picard and peaceman_rachford.
        tol, rtol: stop when ‖x − Φ(Ax + Bu + b)‖∞ ≤ tol + rtol·‖x‖∞ (defaults by dtype, see default_tol).
        max_iter: iteration limit; reaching it unconverged warns (``ConvergenceWarning``) or, with
            ``strict=True``, raises :class:`~linf_opt.errors.ConvergenceError`. A step outside (0, α*]
            also raises in strict mode.
        x0: initial point (batch, n), default zero.
        trace: record the maximum residual after every iteration in ``stats.trace``.
        backward, backward_tol: how gradients are computed when an input requires grad (exact implicit
            differentiation, :mod:`linf_opt.equilibrium.implicit`): "average" (adjoint average iteration in ℓ1) or "direct".

    Returns:
        x of shape (batch, n) (or (n,) for a single sample) in the caller's type, and the stats.

        >>> A = np.array([[-3.0, 1.0], [0.5, 0.2]]); B = np.eye(2)
        >>> x, st = solve_fixed_point(A, B, np.array([1.0, -1.0]))
    """
    op = A if isinstance(A, WeightOperator) else None
    At, Bt, ut, bt, was_numpy, single = prepare_inputs(A, B, u, b)
    act = get_activation(activation)
    get_solver(method)
    alpha = check_step(alpha, At, method, strict)
    d_tol, d_rtol = default_tol(Bt.dtype)
    tol = d_tol if tol is None else check_scalar(tol, "tol", low=0.0)
    rtol = d_rtol if rtol is None else check_scalar(rtol, "rtol", low=0.0)
    max_iter = int(check_scalar(max_iter, "max_iter", low=0))
    Q = ut @ Bt.t() if bt is None else torch.addmm(bt, ut, Bt.t())
    if op is not None:
        Q = Q.reshape(Q.shape[0], *op.state_shape)
    if x0 is not None:
        x0, _ = to_torch(x0, "x0", dtype=Bt.dtype, device=Bt.device)
        x0 = x0.reshape(Q.shape) if x0.numel() == Q.numel() else None
        if x0 is None:
            raise ShapeError(f"x0: expected shape {tuple(Q.shape)}")
        check_finite(x0, "x0")
    x, stats = equilibrium(At, Q, act, method=method, alpha=alpha, tol=tol, rtol=rtol, max_iter=max_iter,
                           x0=x0, strict=strict, trace=trace, backward=backward, backward_tol=backward_tol)
    if single:
        x = x.squeeze(0)
    return like_input(x, was_numpy), stats
