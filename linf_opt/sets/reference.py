"""The CVXPY + Clarabel reference backend of the projections (``method="cvxpy"``; docs/mathematics.md §6, §7).

Row v of a row problem (linear coordinate i, weights w; see :mod:`linf_opt.sets.rows`) is projected by
solving the convex program

    minimize ‖x − v‖²  s.t.  xᵢ + Σ_{j≠i} wⱼ tⱼ ≤ γ,  −t ≤ x_{−i} ≤ t        (the ℓ1 ball: without xᵢ)

compiled once per row length with CVXPY parameters (DPP), row after row, each row permuted so that its
linear coordinate comes first and scaled to unit size (the projection is positively homogeneous). The
μ₂ projection is the SDP  minimize ‖X − A‖_F²  s.t.  (X + Xᵀ)/2 ⪯ bI,  one matrix at a time. Clarabel
runs at feasibility tolerance ``tol`` and tighter gap tolerances, relaxed once on a stalled solve; a
solve that does not end ``optimal``, or a point that violates the constraint by more than ``check_tol``,
raises :class:`~linf_opt.errors.ProjectionError` with the solver status.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from linf_opt._tensor import check_scalar
from linf_opt.errors import ProjectionError

__all__ = ["DEFAULT_CVXPY_TOL", "DEFAULT_SDP_TOL"]

#: Clarabel's gap and feasibility tolerances used by the ``"cvxpy"`` backends unless ``tol`` is given.
DEFAULT_CVXPY_TOL = 1e-11  # feasibility; the gap tolerances are tol·1e-4 (see _clarabel_options)
#: the same for the SDP of ``project_mu_2(method="cvxpy")`` (gap tolerances tol·1e-3).
DEFAULT_SDP_TOL = 1e-10


# ---------------------------------------------------------------------------------------------------
# Clarabel: settings and the solve with one retry
# ---------------------------------------------------------------------------------------------------

def _clarabel_options(tol, solver_options, sdp: bool = False) -> dict:
    default = DEFAULT_SDP_TOL if sdp else DEFAULT_CVXPY_TOL
    tol = default if tol is None else check_scalar(tol, "tol", low=0.0, low_open=True)
    # The duality gap decides the accuracy of x: about √gap at degenerate points (a breakpoint exactly
    # at the root, common with ties), so it is set to tol·1e-4 (SDP: tol·1e-3). Clarabel stalls when
    # asked for feasibility below about 1e-11 (SDP: 1e-10) but closes the gap further without trouble.
    ratio = 1e-3 if sdp else 1e-4
    opts = dict(tol_gap_abs=tol * ratio, tol_gap_rel=tol * ratio, tol_feas=tol,
                tol_ktratio=min(1e-6, max(1e-8, 1e3 * tol)), max_iter=200)
    retry = True
    if solver_options is not None:
        if not isinstance(solver_options, dict):
            raise TypeError(f"solver_options: expected a dict of Clarabel settings, got {type(solver_options).__name__}")
        opts.update(solver_options)
        retry = not any(key.startswith("tol_gap") for key in solver_options)  # the caller's gap is final
    return opts, retry


def _clarabel(prob, opts: dict) -> str:
    """Solve ``prob`` with Clarabel under the settings ``opts``; returns the status. cvxpy's "solution may
    be inaccurate" warning is silenced (the callers check the status); its ``SolverError`` propagates."""
    import cvxpy as cp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prob.solve(solver=cp.CLARABEL, **opts)
    return prob.status


def _solve_once(prob, opts) -> str:
    import cvxpy as cp

    try:
        return _clarabel(prob, opts)
    except cp.error.SolverError:
        return "solver_error"


def _solve(prob, opts, what: str, retry: bool = True):
    """Solve with Clarabel; raise :class:`ProjectionError` (with the status) unless it ends optimal.

    The default gap tolerances sit near what Clarabel can reach; on rare rows it stops short of them
    (``optimal_inaccurate`` or a numerical failure). Unless the caller set the gap tolerances in
    ``solver_options``, such a solve is repeated once with the gap tolerances ×100 (the feasibility
    tolerance unchanged) before giving up.
    """
    status = _solve_once(prob, opts)
    if status != "optimal" and retry and status not in ("infeasible", "unbounded"):
        relaxed = dict(opts, tol_gap_abs=opts["tol_gap_abs"] * 100, tol_gap_rel=opts["tol_gap_rel"] * 100)
        status = _solve_once(prob, relaxed)
    if status != "optimal":
        raise ProjectionError(f"{what}: Clarabel ended with status {status!r}, not 'optimal' "
                              f"(loosen tol or raise max_iter in solver_options)", status=status)


# ---------------------------------------------------------------------------------------------------
# the row problems
# ---------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _row_program(m: int, linear: bool, weighted: bool):
    """The compiled row problem for rows of length m (diagonal first), reused through its parameters."""
    import cvxpy as cp

    x = cp.Variable(m)
    v = cp.Parameter(m)
    g = cp.Parameter()
    w = None
    off = x[1:] if linear else x
    k = m - 1 if linear else m
    cons = []
    if k > 0:
        t = cp.Variable(k)
        if weighted:
            w = cp.Parameter(k, nonneg=True)
            total = w @ t
        else:
            total = cp.sum(t)
        cons += [off <= t, -t <= off]
    else:
        total = 0.0
    cons.append((x[0] + total if linear else total) <= g)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(x - v)), cons)
    assert prob.is_dpp()
    return prob, x, v, g, w


def _rows_cvxpy(V, W, idx, gamma, *, tol, solver_options, check_tol, row_ids=None, total=None) -> torch.Tensor:
    """Row-by-row CVXPY/Clarabel projection (reference backend) of the rows of V (all infeasible).

    ``row_ids``/``total`` only label error messages with the row's place in the caller's stack.
    """
    opts, retry = _clarabel_options(tol, solver_options)
    ctol = 1e3 * opts["tol_feas"] if check_tol is None else check_scalar(check_tol, "check_tol", low=0.0)
    Vn = V.detach().cpu().double().numpy()
    Wn = None if W is None else W.detach().cpu().double().numpy()
    In = None if idx is None else idx.cpu().numpy()[:, 0]
    N, m = Vn.shape
    linear = idx is not None
    prob, x, v, g, w = _row_program(m, linear, W is not None)
    out = np.empty_like(Vn)
    labels = range(N) if row_ids is None else row_ids.tolist()
    where = f" of {total if total is not None else N} stacked rows"
    for r, label in zip(range(N), labels):
        if linear:
            i = int(In[r])
            perm = np.concatenate(([i], np.arange(i), np.arange(i + 1, m)))
        else:
            perm = np.arange(m)
        vr = Vn[r, perm]
        wr = None if Wn is None else Wn[r, perm[1:] if linear else perm]
        # The projection is positively homogeneous: Π_γ(v) = s Π_{γ/s}(v/s). Solve at unit scale.
        scale = max(np.abs(vr).max(), abs(gamma), np.finfo(float).tiny)
        v.value = vr / scale
        g.value = gamma / scale
        if w is not None:
            w.value = wr
        _solve(prob, opts, f"project row {label}{where}", retry)
        xr = np.asarray(x.value, dtype=float)
        ww = np.ones(m - 1 if linear else m) if wr is None else wr
        val = (xr[0] if linear else 0.0) + float(np.abs(xr[1:] if linear else xr) @ ww)
        mass = (abs(vr[0]) if linear else 0.0) + float(np.abs(vr[1:] if linear else vr) @ ww)
        if val - gamma / scale > ctol * max(1.0, abs(gamma) / scale, mass / scale):
            raise ProjectionError(f"project row {label}{where}: the solver's point violates the constraint by "
                                  f"{(val - gamma / scale) * scale:.3g} (check_tol={ctol:.3g})", status=prob.status)
        out[r, perm] = xr * scale
    return torch.as_tensor(out, dtype=V.dtype, device=V.device)


# ---------------------------------------------------------------------------------------------------
# the SDP of the monotone set μ₂(X) ≤ b
# ---------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _sdp_program(n: int):
    import cvxpy as cp

    X = cp.Variable((n, n))
    A = cp.Parameter((n, n))
    b = cp.Parameter()
    prob = cp.Problem(cp.Minimize(cp.sum_squares(X - A)), [(X + X.T) / 2 << b * np.eye(n)])
    assert prob.is_dpp()
    return prob, X, A, b


def _project_mu2_cvxpy(t: torch.Tensor, bound: float, tol, solver_options, check_tol) -> torch.Tensor:
    opts, retry = _clarabel_options(tol, solver_options, sdp=True)
    ctol = 1e3 * opts["tol_feas"] if check_tol is None else check_scalar(check_tol, "check_tol", low=0.0)
    n = t.shape[-1]
    flat = t.detach().cpu().double().reshape(-1, n, n).numpy()
    out = flat.copy()
    prob, X, Ap, b = _sdp_program(n)
    for k, a in enumerate(flat):
        sym = (a + a.T) / 2
        if np.linalg.eigvalsh(sym)[-1] <= bound:
            continue  # already feasible: bit-identical, as in the closed form
        scale = max(np.abs(a).max(), abs(bound), np.finfo(float).tiny)
        Ap.value, b.value = a / scale, bound / scale
        _solve(prob, opts, f"project matrix {k} onto μ₂ ≤ {bound:g}", retry)
        x = np.asarray(X.value) * scale
        viol = np.linalg.eigvalsh((x + x.T) / 2)[-1] - bound
        if viol > ctol * max(1.0, abs(bound), scale):
            raise ProjectionError(f"project matrix {k}: the solver's point has μ₂ above the bound by {viol:.3g}",
                                  status=prob.status)
        out[k] = x
    return torch.as_tensor(out, dtype=t.dtype, device=t.device).reshape(t.shape)
