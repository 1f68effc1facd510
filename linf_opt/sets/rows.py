"""Batched exact Euclidean projection of rows onto the weighted ℓ1-type constraint (docs/mathematics.md §6).

The rows V (N, m) are projected independently: row v, with its linear coordinate at idx = i (None: the ℓ1
ball) and weights wⱼ (W, None: all ones), goes to the nearest point of {x : xᵢ + Σ_{j≠i} wⱼ|xⱼ| ≤ γ},
xᵢ = vᵢ − λ and xⱼ = sign(vⱼ)(|vⱼ| − λwⱼ)⁺, where λ = 0 on a feasible row and is otherwise the root of
the decreasing piecewise-linear g(λ) = vᵢ − λ + Σ_{j≠i} wⱼ(|vⱼ| − λwⱼ)⁺ − γ, found exactly by selecting
its active set: sorted breakpoints |vⱼ|/wⱼ (``"sort"``), Newton pivoting over all rows at once
(``"pivot"``), or the compiled kernel of :mod:`linf_opt.sets._row_kernel` (``"exact"``), dispatched
here; ``"cvxpy"`` goes to :mod:`linf_opt.sets.reference`. The torch forms repair round-off so that
every computed row value is ≤ γ in the rows' dtype. ``_project_rows`` is what the projections of
:mod:`linf_opt.sets.projections` call (they add the guard by the library's measure).
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch

from linf_opt._tensor import check_finite
from linf_opt.errors import NonFiniteError, ProjectionError
from linf_opt.sets.reference import _rows_cvxpy

__all__ = ["prepare_kernels", "EXACT_SORT_MAX_ROW", "HOST_KERNEL_MAX_ENTRIES"]

#: ``"exact"`` sorts rows of at most this length and pivots longer ones: sorting 64 numbers is cheap,
#: while each Newton pass costs a dozen small tensor operations (see ``bench/projection.py``).
EXACT_SORT_MAX_ROW = 64
#: ``"exact"`` on an accelerator copies matrices of at most this many entries to the CPU kernel and back:
#: at training sizes a tensor form's many small launches and synchronisations cost more than the two
#: copies (measured on an H100 in ``bench/projection.py --device cuda``).
HOST_KERNEL_MAX_ENTRIES = 1 << 17  # n ≤ 362; H100: the round trip wins at n = 300 (1.5–1.7×), the device sort at 500
_PIVOT_MAX_ITER = 40
_COMPACT_MIN = 1 << 16  # below this many entries, gathering the unfinished rows costs more than it saves


# ---------------------------------------------------------------------------------------------------
# row problems: V (N, m) rows; idx (N, 1) position of the linear coordinate, or None for the ℓ1 ball;
# W (N, m) weights or None (all ones). The entry of W at idx is never used.
# ---------------------------------------------------------------------------------------------------

def _resolve(method: str, m: int) -> str:
    """The closed form behind ``"exact"`` for rows of length m."""
    if method != "exact":
        return method
    return "sort" if m <= EXACT_SORT_MAX_ROW else "pivot"


@functools.lru_cache(maxsize=32)
def _diagonal_index(n: int, rows: int, device: torch.device) -> torch.Tensor:
    """Column of the diagonal entry for each of ``rows`` stacked rows of n×n matrices, shape (rows, 1)."""
    return torch.arange(n, device=device).repeat(rows // n).unsqueeze(-1)


def _level(value: float, like: torch.Tensor) -> torch.Tensor:
    """γ in A's dtype, rounded down when not representable (so "≤ level" in float32 implies "≤ γ")."""
    g = torch.tensor(value, dtype=like.dtype, device=like.device)
    if float(g) > value:
        g = torch.nextafter(g, torch.tensor(-math.inf, dtype=like.dtype, device=like.device))
    return g


_LEVELS: dict = {}


def _level64(gamma: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` that is ≤ γ, as a float: a row value r ≤ it (float64) rounds to
    ≤ γ in ``dtype``, so ``mu_inf(X) <= γ`` holds however the caller compares."""
    key = (gamma, dtype)
    L = _LEVELS.get(key)
    if L is None:
        L = _LEVELS[key] = float(_level(gamma, torch.empty(0, dtype=dtype)))
    return L


def _weighted_abs(X: torch.Tensor, W: torch.Tensor | None, idx: torch.Tensor | None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """wⱼ |xⱼ| with the linear coordinate zeroed. The one routine behind every feasibility decision."""
    Q = X.abs() if out is None else torch.abs(X, out=out)
    if W is not None:
        Q.mul_(W)
    if idx is not None:
        Q.scatter_(-1, idx, 0.0)
    return Q


def _row_values(X, W, idx, out=None):
    """Row values r = xᵢ + s with s = Σ_{j≠i} wⱼ|xⱼ| (r = s without a linear coordinate).

    Returns (r, Q, d, s): Q holds wⱼ|xⱼ| (the linear coordinate zeroed), d the linear coordinates xᵢ
    (None without them).
    """
    Q = _weighted_abs(X, W, idx, out)
    s = Q.sum(-1)
    if idx is None:
        return s, Q, None, s
    d = X.gather(-1, idx).squeeze(-1)
    return d + s, Q, d, s


def _multipliers_sort(T, c, P, Wsq, linear: bool) -> torch.Tensor:
    """λ per row by sorting the breakpoints T (descending) and cumulative sums (docs/mathematics.md §6)."""
    m = T.shape[-1]
    if Wsq is None:
        Ts = torch.sort(T, dim=-1, descending=True).values
        cs1 = Ts.cumsum(-1)
        cs2 = torch.arange(1, m + 1, dtype=T.dtype, device=T.device).expand_as(Ts)
    else:
        Ts, order = torch.sort(T, dim=-1, descending=True)
        cs1 = P.gather(-1, order).cumsum(-1)
        cs2 = Wsq.gather(-1, order).cumsum(-1)
    den = cs2 + 1 if linear else cs2
    # Piece k (the k largest breakpoints active) is the right one iff t_(k) > λ_k; this holds for a prefix.
    K = (Ts > (c.unsqueeze(-1) + cs1) / den).sum(-1, keepdim=True)
    at = (K - 1).clamp(min=0)
    S1 = torch.where(K > 0, cs1.gather(-1, at), 0.0).squeeze(-1)
    S2 = torch.where(K > 0, cs2.gather(-1, at), 0.0).squeeze(-1)
    if linear:
        lam = (c + S1) / (1 + S2)
    else:  # no active breakpoint: only possible for γ = 0, where λ = max breakpoint zeroes the row
        lam = torch.where(K.squeeze(-1) > 0, (c + S1) / S2.clamp(min=torch.finfo(T.dtype).tiny), Ts[:, 0])
    return lam.clamp(min=0)


def _multipliers_pivot(T, c, Wsq, linear: bool, lam: torch.Tensor, tol_g: torch.Tensor,
                       max_iter: int, work: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """λ per row by vectorised Newton steps on g, starting from ``lam`` (any λ ≥ 0).

    Each step is one pass over the rows: H = (T − λ)⁺, g(λ) = c − λ + Σ w²H, slope −(1 + Σ_{H>0} w²),
    λ ← λ + g/(1 + Σ_{H>0} w²). (Masked sums through ``torch.where`` cost 3 to 10 times more than
    these elementwise passes on CPU.) A row stops when its active set did not change over the last
    step (then λ is the exact root) or when |g(λ)| is at round-off level (ties at the root). Returns
    (λ, number of passes).
    """
    out = lam.clone()
    rows = None  # indices into ``out`` of the rows still iterating (None: all of them)
    cnt_prev = None
    n_rows, m = T.shape
    # One work buffer for every pass: on CPU a fresh large tensor costs more in page faults than the
    # arithmetic of a pass (measured: ~2.5× an in-place pass at n = 1000).
    H = torch.empty_like(T) if work is None else work
    for it in range(1, max_iter + 1):
        torch.sub(T, lam.unsqueeze(-1), out=H).clamp_(min=0)
        if Wsq is None:
            g = H.sum(-1)
            cnt = den = H.sign_().sum(-1)
        else:
            g = torch.linalg.vecdot(H, Wsq)
            cnt = H.sign_().sum(-1)
            den = torch.linalg.vecdot(H, Wsq)
        g += c
        if linear:
            g -= lam
            new = torch.addcdiv(lam, g, den + 1)
        else:  # slope 0 only beyond the last breakpoint, reachable for γ = 0 where that is a root
            new = torch.where(den > 0, torch.addcdiv(lam, g, den.clamp(min=torch.finfo(T.dtype).tiny)), lam)
        # λ ≥ 0 (KKT): a step from the right of the root (a warm start) may overshoot left of 0, and a
        # row whose root is 0 (feasible) must stay at 0 rather than follow g to a negative root.
        new.clamp_(min=0)
        if it == 1:
            lam, cnt_prev, out = new, cnt, new  # no row can be certified before its second pass
            continue
        # Consecutive iterates bracket nested active sets, so equal counts mean equal sets: λ is exact.
        done = cnt == cnt_prev
        if it > 3:  # ties at the root can make the counts flicker: accept |g| at round-off level
            done |= g.abs() <= tol_g
        new = torch.where(done, lam, new)
        if rows is None:
            out = new
        else:
            out.index_copy_(0, rows, new)
        n_done = int(done.sum())
        if n_done == n_rows:
            return out, it
        if 2 * n_done >= n_rows and n_rows * m >= _COMPACT_MIN:  # drop finished rows from later passes
            keep = (~done).nonzero().squeeze(-1)
            n_rows -= n_done
            rows = keep if rows is None else rows.index_select(0, keep)
            T, c, tol_g = T.index_select(0, keep), c.index_select(0, keep), tol_g.index_select(0, keep)
            Wsq = None if Wsq is None else Wsq.index_select(0, keep)
            new, cnt = new.index_select(0, keep), cnt.index_select(0, keep)
            H = H[:n_rows]
        lam, cnt_prev = new, cnt
    # Safety net (Newton may need up to m steps on adversarial breakpoints): finish these rows by sorting.
    P = T if Wsq is None else T * Wsq
    fin = _multipliers_sort(T, c, P, Wsq, linear)
    if rows is None:
        return fin, max_iter
    return out.index_copy_(0, rows, fin), max_iter


def _shrink(V, W, idx, lam, work=None):
    """xⱼ = sign(vⱼ)(|vⱼ| − λwⱼ)⁺ off the linear coordinate, xᵢ = vᵢ − λ on it."""
    L = lam.unsqueeze(-1)
    if W is not None:
        L = L * W
    X = V - (torch.clamp(V, -L, L) if work is None else torch.clamp(V, -L, L, out=work))
    if idx is not None:
        X.scatter_(-1, idx, V.gather(-1, idx) - lam.unsqueeze(-1))
    return X


def _repair(X, W, idx, g: torch.Tensor, work=None) -> None:
    """Make the computed row value fl(r) ≤ γ hold exactly on every row of X (in place).

    Exact arithmetic puts projected rows on the boundary; floating point leaves some a few ulps above.
    With a linear coordinate, r = xᵢ + s where s does not involve xᵢ: xᵢ ← fl(γ − s), stepped down
    an ulp while the sum still rounds above γ (rounding is monotone: one or two steps). Without one
    (ℓ1 ball): one more soft-threshold step by the excess over the active weights, and an ulp off the
    largest entry, until the sum is ≤ γ. Entries move by round-off only; rows already ≤ γ are never
    touched. The row values come from the routine behind the feasibility test, on the whole X (the
    shape a later call sees) and then on the rows being fixed (on CPU a row's sum does not depend on
    the other rows).
    """
    r, Q, d, s = _row_values(X, W, idx, out=work)
    bad = r > g
    if not bool(bad.any()):
        return
    if idx is not None:  # O(rows): only diagonal entries change, s stays as computed
        new = torch.where(bad, torch.minimum(g - s, torch.nextafter(d, torch.full_like(d, -math.inf))), d)
        for _ in range(4):
            over = new + s > g
            if not bool(over.any()):
                break
            new = torch.where(over, torch.nextafter(new, torch.full_like(new, -math.inf)), new)
        X.scatter_(-1, idx, new.unsqueeze(-1))
        return
    rows = bad.nonzero().squeeze(-1)
    rr, Qr = r.index_select(0, rows), Q.index_select(0, rows)
    for _ in range(8):
        Xr = X.index_select(0, rows)
        Wr = None if W is None else W.index_select(0, rows)
        mag = Xr.abs()
        S2 = mag.sign().sum(-1) if Wr is None else (mag.sign() * Wr * Wr).sum(-1)
        delta = ((rr - g) / S2.clamp(min=torch.finfo(X.dtype).tiny)).unsqueeze(-1)
        new = (mag - (delta if Wr is None else delta * Wr)).clamp_(min=0)
        j = Qr.argmax(-1, keepdim=True)
        top = torch.nextafter(mag.gather(-1, j), torch.zeros_like(delta))
        new.scatter_(-1, j, torch.minimum(new.gather(-1, j), top))
        Xr = torch.copysign(new, Xr)
        X.index_copy_(0, rows, Xr)
        rr, Qr, _, _ = _row_values(Xr, Wr, None)
        still = rr > g
        if not bool(still.any()):
            return
        rows, rr, Qr = rows[still], rr[still], Qr[still]


# ---------------------------------------------------------------------------------------------------
# the compiled kernel on CPU, and the dispatch of the methods
# ---------------------------------------------------------------------------------------------------

@functools.cache
def _cpu_kernel():
    """The compiled row kernel (:mod:`linf_opt.sets._row_kernel`), or None where numba is unavailable."""
    try:
        import linf_opt.sets._row_kernel as _row_kernel
    except ImportError:  # pragma: no cover - numba is a dependency; the torch closed forms remain
        return None
    except Exception as exc:  # pragma: no cover - e.g. numba finds no writable cache directory
        warnings.warn(f"the compiled projection kernel is unavailable ({type(exc).__name__}: {exc}); "
                      f"method='exact' falls back to the torch closed forms (about 10x slower at n = 100). "
                      f"Setting NUMBA_CACHE_DIR to a writable directory usually fixes this.", RuntimeWarning)
        return None
    return _row_kernel


def prepare_kernels(dtype: torch.dtype = torch.float32) -> bool:
    """Compile the CPU kernels for ``dtype`` now (or load them from numba's on-disk cache).

    The first call of a kernel for a dtype compiles it (seconds; once per installation, then cached);
    the trainer calls this before its timed steps. Returns whether the kernels are available.
    """
    kernel = _cpu_kernel()
    if kernel is None or dtype not in _KERNEL_DTYPES:
        return kernel is not None
    V = torch.zeros(2, 2, dtype=dtype)
    _project_rows_compiled(V, None, _diagonal_index(2, 2, V.device), 1.0, out=V.clone(),
                           level=_level64(1.0, dtype))
    kernel.mu_inf_stats(V.numpy(), _NO_VECTOR)
    kernel.mu_inf_certified(V.numpy(), _NO_VECTOR, 1.0)
    return True


def _non_finite(V, name: str):
    """The error for rows whose value is not finite: NaN/Inf entries, or an overflowing row sum."""
    check_finite(V, name)  # NaN or ±Inf entries: the usual NonFiniteError
    return NonFiniteError(f"{name}: the weighted row sums of |{name}| overflow "
                          f"{str(V.dtype).replace('torch.', '')} (max |entry| = {float(V.abs().max()):.3g}); "
                          f"rescale it: the projection is positively homogeneous, Π_γ(A) = s·Π_(γ/s)(A/s)")


def _kernel_error(status: int, V: torch.Tensor, gamma: float, name: str) -> Exception:
    if status == _cpu_kernel().NON_FINITE:
        return _non_finite(V, name)
    # never observed: the round-off repair converges in a step or two
    return ProjectionError(f"{name}: the round-off repair of a projected row did not converge (γ = {gamma!r})")


def _kernel_inputs(V, W, idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's arrays for rows V (N, m), weights W (passed in float64) and linear-coordinate columns
    idx (or None)."""
    return (_as_numpy(V), _NO_WEIGHTS if W is None else _as_numpy(W, torch.float64),
            _NO_INDEX if idx is None else _as_numpy(idx).reshape(-1))


def _kernel_slack(Vn: np.ndarray, Wn: np.ndarray, In: np.ndarray) -> float:
    """The relative round-off between the kernel's row values and ``mu_inf``'s (a bound on the
    difference): two float64 summation orders of m terms, and the weights rounded to the rows' dtype. 0 for
    the ℓ1 ball (no linear coordinate), which keeps the kernel's own test."""
    if In.shape[0] == 0:
        return 0.0
    m = Vn.shape[1]
    return 4 * (m + 2) * 2.0 ** -53 + (4 * float(np.finfo(Vn.dtype).eps) if Wn.shape[0] > 0 else 0.0)


def _run_kernel(Vn, Wn, In, gamma: float, lam0: np.ndarray, max_iter: int, Xn, lam: np.ndarray, *,
                info: dict | None, name: str, slack: float | None = None, level: float = math.nan) -> int:
    """One call of the row kernel (X into ``Xn``, λ into ``lam``), its status turned into an error.

    ``level``: L = ``_level64(γ, dtype)`` for the measure mode of the μ∞ matrix projections (Wn then
    holds the measure's float64 weights ηⱼ/ηᵢ); NaN for the slack mode. Returns the number of rows the
    kernel left to the measure (within δ of L and not projected; 0 in the slack mode).
    """
    if slack is None:
        slack = 0.0 if level == level else _kernel_slack(Vn, Wn, In)
    status, n_bad, passes, n_amb = _cpu_kernel().project_rows(Vn, Wn, In, float(gamma), lam0, int(max_iter), Xn,
                                                              lam, float(slack), float(level))
    if status != 0:
        raise _kernel_error(status, torch.from_numpy(Vn), gamma, name)
    if info is not None:
        info.update(rows=Vn.shape[0], projected=int(n_bad), passes=int(passes), ambiguous=int(n_amb))
    return n_amb


def _project_rows_compiled(V, W, idx, gamma: float, *, lam0=None, max_iter=_PIVOT_MAX_ITER,
                           info: dict | None = None, name: str = "A", out: torch.Tensor | None = None,
                           level: float = math.nan):
    """``_project_rows`` for ``method="exact"`` on CPU: the compiled kernel, one row at a time.

    Same mathematics and guarantees as the torch closed forms (see :mod:`linf_opt.sets._row_kernel`), with
    the row values accumulated in float64 for either dtype; 4–30× faster than them at n = 50 to 2000
    (``bench/projection.py``). Returns (X, λ) with λ in float64.
    ``out``: a contiguous CPU tensor of V's shape and dtype to write X into; it may be V itself (the
    kernel reads each entry before it writes it), which projects in place. ``level``: see ``_run_kernel``
    (the number of rows left to the measure goes into ``info["ambiguous"]``).
    """
    Vn, Wn, In = _kernel_inputs(V, W, idx)
    L0 = _NO_VECTOR if lam0 is None else _as_numpy(lam0, torch.float64)
    Xn = np.empty_like(Vn) if out is None else out.numpy()
    lam = np.empty(Vn.shape[0])
    _run_kernel(Vn, Wn, In, gamma, L0, max_iter, Xn, lam, info=info, name=name, level=level)
    return (torch.from_numpy(Xn) if out is None else out), torch.from_numpy(lam)


# The dtypes the kernels are compiled for; placeholders for their optional arguments (no weights, no
# linear coordinate, no warm start / no η), and the conversion of their inputs (CPU tensors): a
# handful of calls per projection, since each tensor operation costs microseconds at this size.
_KERNEL_DTYPES = (torch.float32, torch.float64)
_NO_WEIGHTS = np.empty((0, 0))  # the kernel reads its weights in float64 (one compiled version per row dtype)
_NO_INDEX = np.empty(0, dtype=np.int64)
_NO_VECTOR = np.empty(0)


def _as_numpy(t: torch.Tensor, dtype: torch.dtype | None = None) -> np.ndarray:
    if t.requires_grad:
        t = t.detach()
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def _kernel_route(t: torch.Tensor, method: str) -> bool:
    """Whether ``"exact"`` runs the compiled kernel for t (CPU, or a small accelerator matrix)."""
    return (method == "exact" and _cpu_kernel() is not None
            and (t.device.type == "cpu" or t.numel() <= HOST_KERNEL_MAX_ENTRIES))


def _project_rows(V, W, idx, gamma: float, method: str, *, lam0=None, max_iter=_PIVOT_MAX_ITER,
                  tol=None, solver_options=None, check_tol=None, info: dict | None = None, name: str = "A"):
    """Project every row of V (N, m); returns (X, λ) with λ = 0 on feasible rows.

    Raises :class:`NonFiniteError` (naming ``name``) for NaN/Inf entries or overflowing row sums.
    """
    N, m = V.shape
    if method == "exact" and _cpu_kernel() is not None:
        if V.device.type == "cpu":
            return _project_rows_compiled(V, W, idx, gamma, lam0=lam0, max_iter=max_iter, info=info, name=name)
        if V.numel() <= HOST_KERNEL_MAX_ENTRIES:  # small accelerator matrices: a round trip to the kernel
            X, lam = _project_rows_compiled(V.cpu(), None if W is None else W.cpu(), None if idx is None else idx.cpu(),
                                            gamma, lam0=None if lam0 is None else lam0.cpu(), max_iter=max_iter,
                                            info=info, name=name)
            return X.to(V.device), lam
    method = _resolve(method, m)
    g = _level(gamma, V)
    linear = idx is not None
    r, Q, d, s = _row_values(V, W, idx)
    # The finiteness test of the input rides on the row values (every entry enters r): an elementwise
    # torch.isfinite costs ~20 passes of arithmetic on CPU (measured), this test costs none.
    if not bool(torch.isfinite(r).all()):
        raise _non_finite(V, name)
    infeasible = r > g
    n_bad = int(infeasible.sum())
    lam_full = torch.zeros(N, dtype=V.dtype, device=V.device)
    if info is not None:
        info.update(rows=N, projected=n_bad, passes=0)
    if n_bad == 0:
        return V.clone(), lam_full
    if n_bad == N or (method != "cvxpy" and N * m < _COMPACT_MIN):
        # Small problems: selecting the infeasible rows costs more than projecting every row; feasible
        # rows get λ = 0 (the multipliers are clamped at 0), so they come back bit-identical.
        rows = None
        Vs, Ws, Qs, ids, ds, ss = V, W, Q, idx, d, s
    else:
        rows = infeasible.nonzero().squeeze(-1)
        Vs, Qs, ss = V.index_select(0, rows), Q.index_select(0, rows), s.index_select(0, rows)
        Ws = None if W is None else W.index_select(0, rows)
        ids = None if idx is None else idx.index_select(0, rows)
        ds = None if idx is None else d.index_select(0, rows)
    if method == "cvxpy":
        Xs = _rows_cvxpy(Vs, Ws, ids, gamma, tol=tol, solver_options=solver_options, check_tol=check_tol,
                         row_ids=rows, total=N)
        lam_s = None
    else:
        c = (ds - g) if linear else (-g).expand(Vs.shape[0])
        if Ws is None:
            T, P, Wsq = Qs, Qs, None
        else:
            Wsq = Ws * Ws
            if linear:
                Wsq.scatter_(-1, ids, 0.0)
            P = Qs
            T = Qs / Wsq.clamp(min=torch.finfo(V.dtype).tiny)  # |v|/w on the entries that matter
        if method == "sort":
            lam_s = _multipliers_sort(T, c, P, Wsq, linear)
            work = None
        else:
            # A lower bound on the root: the Newton step from λ = 0 with every entry counted active.
            den = float(m - 1 if linear else m) if Wsq is None else Wsq.sum(-1)
            lam_init = ((c + ss) / ((1 + den) if linear else den)).clamp_(min=0)
            if lam0 is not None:
                # Warm start: the previous multiplier where it is larger (any start converges; this one
                # was never worse than the lower bound alone in the training-like runs of the benchmark).
                lam0 = lam0.to(V.device, V.dtype)
                lam_init = torch.maximum(lam_init, lam0 if rows is None else lam0.index_select(0, rows))
            tol_g = (c.abs() + ss).add_(abs(gamma)).mul_(4 * torch.finfo(V.dtype).eps)
            work = torch.empty_like(Vs)
            lam_s, passes = _multipliers_pivot(T, c, Wsq, linear, lam_init, tol_g, max_iter, work)
            if info is not None:
                info["passes"] = passes
        if rows is None and n_bad < N:  # feasible rows were carried along: their multiplier is 0
            lam_s = torch.where(infeasible, lam_s, 0.0)
        Xs = _shrink(Vs, Ws, ids, lam_s, work)
    if rows is None:
        X = Xs
        if lam_s is not None:
            lam_full = lam_s
    else:
        X = V.clone().index_copy_(0, rows, Xs)
        if lam_s is not None:
            lam_full.index_copy_(0, rows, lam_s)
    if method != "cvxpy":
        _repair(X, W, idx, g, work=Q)  # |V| is no longer needed: reuse its memory
    return X, lam_full
