"""Exact Euclidean projections onto the well-posedness sets (docs/mathematics.md §6, §7).

Every function returns the nearest point in the Frobenius norm, in the caller's type, dtype and device:

    project_mu_inf(A, γ, η)     argmin_X ‖X − A‖_F  s.t.  μ_{∞,η}(X) ≤ γ   (the polytope P(γ, η))
    project_norm_inf(A, γ)      argmin_X ‖X − A‖_F  s.t.  ‖X‖∞ ≤ γ         (El Ghaoui's norm ball)
    project_mu_2(A, b)          argmin_X ‖X − A‖_F  s.t.  μ₂(X) ≤ b         (the monotone set)
    project_conv_kernel(K, γ)   the μ∞ projection of a circular convolution, one row per output channel
    project_operator(op, γ)     the μ∞ projection of a weight operator, through its constraint rows

The first two split into independent row problems. Row v with its "diagonal" (linear) coordinate at
position i and weights wⱼ = ηⱼ/ηᵢ is projected onto { x : xᵢ + Σ_{j≠i} wⱼ |xⱼ| ≤ γ } by

    xᵢ = vᵢ − λ,   xⱼ = sign(vⱼ) · max(|vⱼ| − λ wⱼ, 0)        (j ≠ i)

with λ = 0 when v is feasible, else the unique root of the convex, piecewise-linear, strictly decreasing

    g(λ) = vᵢ − λ + Σ_{j≠i} wⱼ (|vⱼ| − λ wⱼ)⁺ − γ.

On the piece whose active set (the j with |vⱼ| > λ wⱼ) is S, λ = (vᵢ − γ + Σ_S wⱼ|vⱼ|) / (1 + Σ_S wⱼ²).
The ℓ1 ball (‖X‖∞ ≤ γ) is the same problem without the linear coordinate (the "1 +" disappears).
Methods for finding λ, all exact (they select the active set, then apply the formula above; the row
machinery is :mod:`linf_opt.sets.rows`, the CVXPY backend :mod:`linf_opt.sets.reference`):

- ``"pivot"``: Newton's method on g, vectorised over all rows (Michelot/Condat-style pivoting): each
  step is one masked pass over the matrix, λₖ₊₁ = (vᵢ − γ + Σ_{Sₖ} wⱼ|vⱼ|)/(1 + Σ_{Sₖ} wⱼ²) with
  Sₖ = {j : |vⱼ| > λₖ wⱼ}. g is convex, so after at most one step the iterates increase monotonically
  to the root and the active sets shrink; a row is done when its active set stops changing (then λ is
  exact). Typically 3 to 8 passes; rows still running after ``max_iter`` steps finish with ``"sort"``.
  Rows that are already feasible, and rows that converged, are dropped from later passes.
- ``"sort"``: sort the breakpoints |vⱼ|/wⱼ of every row (``torch.sort``) and locate the piece with
  cumulative sums: O(n² log n) per matrix, one pass whatever the data.
- ``"exact"`` (default): on CPU, the compiled kernel of :mod:`linf_opt.sets._row_kernel` (numba): the
  same Newton pivoting one row at a time in scalar loops, with row sums in float64, 10–20× faster
  than the tensor forms at training sizes, where operator dispatch dominates them. On an accelerator
  (CUDA), matrices of at most ``HOST_KERNEL_MAX_ENTRIES`` entries make a round trip to the same kernel,
  larger ones take the faster tensor form for the row length: ``"sort"`` for rows of at most
  ``EXACT_SORT_MAX_ROW`` = 64 entries, ``"pivot"`` above (measured in ``bench/projection.py``).
- ``"cvxpy"``: the reference backend. The row problem as the convex program
  minimize ‖x − v‖² s.t. xᵢ + Σ_{j≠i} wⱼ tⱼ ≤ γ, −t ≤ x_{−i} ≤ t, compiled once per row length with
  CVXPY parameters (DPP) and solved by Clarabel row after row (each row permuted so that its diagonal
  comes first; each row scaled to unit size before the solve). A solve that does not end ``optimal``
  raises :class:`ProjectionError` with the status; so does a result that violates the constraint by
  more than ``check_tol``.

Guarantees (every method, and the in-place ``project_`` and ``project_operator`` routes): the final
word is the library's own measure. A row that ``linf_opt.mu_inf`` finds ≤ γ comes back bit-identical;
every returned row reads ≤ γ as ``mu_inf`` computes it (float64 sums, in the input's dtype: ≤ the
largest value of that dtype not above γ), so ``mu_inf(X) <= γ`` and ``MuInfPolytope(γ).contains(X,
tol=0)`` hold, and projecting twice returns the first result bit for bit. The backends' own row sums
(the kernel's fixed-order float64 sums, the torch forms' sums in A's dtype) differ from the measure's
by round-off. The compiled kernel (``"exact"``, the matrix routes) settles this itself: it bounds the
difference between any two float64 summation orders of a row by δ = 2(n + 2)·2⁻⁵³·(|xᵢᵢ| + sᵢ),
leaves rows with rᵢ + δ ≤ γ unchanged, and lowers xᵢᵢ on every projected row until rᵢ + δ ≤ γ: exact
up to a relative 2(n + 2)·2⁻⁵³ of the row mass inside γ (2.3e-14 at n = 100), with no pass of the
measure after it, except on the rare rows within δ of γ that the kernel did not project (the measure
decides them). The torch and CVXPY forms, and the operators' constraint rows, get a final step instead:
xᵢᵢ lowered by the excess on the rows the measure finds above γ (for an operator, the diagonal entry
of each constraint row, against ``op.mu_inf``). Results are detached from autograd (projected gradient
steps do not differentiate through the projection).

    >>> import numpy as np; from linf_opt import project_mu_inf, mu_inf
    >>> X = project_mu_inf(np.array([[1.0, 2.0], [0.5, -3.0]]), gamma=0.5)   # row 0 moves, row 1 stays
    >>> X.tolist(), mu_inf(X)
    ([[-0.25, 0.75], [0.5, -3.0]], 0.5)
"""
from __future__ import annotations

import math

import numpy as np
import torch

from linf_opt._tensor import as_matrix, as_weights, check_finite, check_scalar, check_square, like_input, to_torch
from linf_opt.errors import ProjectionError, ShapeError
from linf_opt.operators.base import WeightOperator
from linf_opt.operators.dense import DenseOperator
from linf_opt.operators.measures import _row_parts, _weights64
from linf_opt.sets.reference import DEFAULT_CVXPY_TOL, DEFAULT_SDP_TOL, _project_mu2_cvxpy
from linf_opt.sets.rows import (EXACT_SORT_MAX_ROW, HOST_KERNEL_MAX_ENTRIES, _NO_VECTOR, _PIVOT_MAX_ITER, _as_numpy,
                                _cpu_kernel, _diagonal_index, _kernel_inputs, _kernel_route, _level, _level64,
                                _project_rows, _project_rows_compiled, _run_kernel)
from linf_opt.sets.rows import prepare_kernels  # noqa: F401 - re-exported (linf_opt.training.trainer imports it here)

__all__ = [
    "project_mu_inf", "project_norm_inf", "project_mu_2", "project_conv_kernel", "project_operator", "MuInfProjector",
    "MU_INF_METHODS", "NORM_INF_METHODS", "MU_2_METHODS", "DEFAULT_CVXPY_TOL", "DEFAULT_SDP_TOL",
    "EXACT_SORT_MAX_ROW", "HOST_KERNEL_MAX_ENTRIES",
]

MU_INF_METHODS = ("exact", "pivot", "sort", "cvxpy")
NORM_INF_METHODS = MU_INF_METHODS
MU_2_METHODS = ("eig", "cvxpy")


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------

def _check_method(method: str, valid: tuple[str, ...], name: str = "method") -> str:
    if not isinstance(method, str) or method not in valid:
        raise ValueError(f"{name}: expected one of {', '.join(repr(v) for v in valid)}, got {method!r}")
    return method


def _as_square(A, name: str) -> tuple[torch.Tensor, bool]:
    """``as_matrix`` without its elementwise finiteness pass: the row projections test finiteness on
    the row sums they compute anyway (see ``_project_rows``)."""
    t, was_numpy = to_torch(A, name)
    check_square(t, name)
    _check_float(t, name)
    return t, was_numpy


def _check_float(t: torch.Tensor, name: str) -> None:
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {t.dtype} "
                        f"(convert it, e.g. A.double())")


def _check_solver_args(method: str, tol, solver_options, check_tol) -> None:
    if method != "cvxpy" and (tol is not None or solver_options is not None or check_tol is not None):
        raise ValueError(f"tol, solver_options and check_tol apply to method='cvxpy' only, not {method!r}")


# ---------------------------------------------------------------------------------------------------
# consistency with the library's measure: mu_inf(X) ≤ γ as ``linf_opt.mu_inf`` computes it
# ---------------------------------------------------------------------------------------------------
# The backends decide and repair feasibility with their own row sums (the kernel: float64 in a fixed
# interleaved order; the torch forms: in A's dtype). ``mu_inf`` sums in float64 in torch's order
# (``measures._row_parts``), which may round a boundary row a few ulps above γ. These steps make the
# final word the measure's: a row that the measure finds feasible in the input comes back unchanged,
# and a projected row whose measured value exceeds the level has its diagonal lowered by the excess
# (by round-off: sᵢ does not involve the diagonal, so one or two steps suffice).

def _measured_feasible(t: torch.Tensor, w64, L: float) -> torch.Tensor:
    """Rows (..., n) of t whose value, as ``mu_inf`` computes it, is ≤ L."""
    d, s = _row_parts(t, w64)
    return (d + s) <= L


def _lower_diagonal(X: torch.Tensor, w64, L: float, what: str = "A") -> None:
    """Lower xᵢᵢ (in place) on every row whose measured value dᵢ + sᵢ exceeds L, so that it does not.

    sᵢ does not involve xᵢᵢ (``_row_parts`` masks the diagonal out of the sum) and is recomputed
    identically by every later measurement, so one step is exact: the new xᵢᵢ is the largest value of
    X's dtype that is at most fl(L − sᵢ) less one float64 ulp, whence xᵢᵢ + sᵢ < L in exact arithmetic
    and fl(xᵢᵢ + sᵢ) ≤ L (L is a float64 number). Rows already ≤ L are not touched.
    """
    d, s = _row_parts(X, w64)
    bad = (d + s) > L
    if not bool(bad.any()):
        return
    ninf = torch.full_like(s, -math.inf)
    target = torch.nextafter(L - s, ninf)
    cand = target.to(X.dtype)
    cand = torch.where(cand.to(torch.float64) > target, torch.nextafter(cand, ninf.to(X.dtype)), cand)
    diag = torch.diagonal(X, dim1=-2, dim2=-1)
    cur = diag.clone()
    new = torch.minimum(cand, torch.nextafter(cur, ninf.to(X.dtype)))
    diag.copy_(torch.where(bad, new, cur))


def _guard_mu_inf(t: torch.Tensor | None, X: torch.Tensor, w64, gamma: float,
                  feasible: torch.Tensor | None = None) -> torch.Tensor:
    """X (the projection of t, shape (..., n, n)) made consistent with ``mu_inf``: rows feasible in t by
    the measure are restored, and every row is made ≤ the level. Returns X (written in place unless
    rows are restored out of place)."""
    L = _level64(gamma, X.dtype)
    if t is not None:
        if feasible is None:
            feasible = _measured_feasible(t, w64, L)
        if bool(feasible.any()):
            X = torch.where(feasible.unsqueeze(-1), t, X)
    _lower_diagonal(X, w64, L)
    return X


def _guard_operator(op: WeightOperator, X: torch.Tensor, e, gamma: float) -> torch.Tensor:
    """The projected weight X (op.weight's shape) made consistent with ``op.mu_inf(η)`` (float64): the
    diagonal entry of every constraint row whose measured rows exceed γ is lowered until they do not.
    (Which rows are feasible stays the constraint rows' decision: for a convolution on small circular
    images the operator's rows can be ≤ γ while the kernel row, the set being projected onto, is not.)
    Applies to operators whose measure rows group by constraint row (dense, convolution); others get
    the whole-operator check (every row's diagonal lowered while op.mu_inf(η) > γ)."""
    rows = op.constraint_rows(e)
    N = rows.values.shape[0]
    idx = rows.diagonal.reshape(-1, 1).to(device=X.device, dtype=torch.long)
    e64 = None if e is None else e.detach().to(torch.float64)

    def measured(W):
        rm = op.with_weight(W.detach().to(torch.float64)).row_measures(e64).detach()
        if rm.numel() % max(N, 1) == 0 and rm.shape[0] == N:
            return rm.reshape(N, -1).amax(-1)
        return rm.amax().expand(N)

    X = X.detach().clone() if not X.is_contiguous() else X
    Xr = X.view(N, -1)
    for k in range(32):
        r = measured(X)
        bad = r > gamma
        if not bool(bad.any()):
            return X
        cur = Xr.gather(-1, idx).squeeze(-1)
        target = cur.to(torch.float64) - (r - gamma) * 2.0 ** k
        cand = target.to(X.dtype)
        cand = torch.where(cand.to(torch.float64) > target, torch.nextafter(cand, torch.full_like(cand, -math.inf)), cand)
        new = torch.minimum(cand, torch.nextafter(cur, torch.full_like(cur, -math.inf)))
        Xr.scatter_(-1, idx, torch.where(bad, new, cur).unsqueeze(-1))
    raise ProjectionError(f"{_weight_name(op)}: the round-off repair of a projected row did not converge (γ = {gamma!r})")


# ---------------------------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------------------------

def _weights_matrix(eta: torch.Tensor, shape) -> torch.Tensor:
    """wᵢⱼ = ηⱼ/ηᵢ broadcast to the batch shape of A."""
    return (eta.unsqueeze(-2) / eta.unsqueeze(-1)).expand(shape)


def _mu_inf_rows(t: torch.Tensor, w: torch.Tensor | None):
    n = t.shape[-1]
    V = t if t.ndim == 2 else t.reshape(-1, n)
    idx = _diagonal_index(n, V.shape[0], t.device)
    W = None if w is None else _weights_matrix(w, t.shape).reshape(-1, n)
    return V, W, idx


def project_mu_inf(A, gamma, eta=None, method: str = "exact", *, tol=None, solver_options=None,
                   check_tol=None):
    """Euclidean projection onto the ℓ∞ polytope P(γ, η) = {X : μ_{∞,η}(X) ≤ γ} (docs/mathematics.md §6).

    Solves  argmin_X ‖X − A‖_F  s.t.  xᵢᵢ + Σ_{j≠i} |xᵢⱼ| ηⱼ/ηᵢ ≤ γ for every row i,  row by row: a
    feasible row is returned bit-identical, an infeasible one becomes xᵢᵢ = aᵢᵢ − λᵢ,
    xᵢⱼ = sign(aᵢⱼ)(|aᵢⱼ| − λᵢηⱼ/ηᵢ)⁺ with the multiplier λᵢ > 0 that puts the row on the boundary.

    A: (..., n, n) numpy array or torch tensor (float32/float64), batched over leading dimensions;
    never modified. gamma: the level γ (any finite real; the set is never empty). eta: optional
    positive weights (n,) or (..., n). method: ``"exact"`` (the compiled kernel on CPU; elsewhere
    ``"sort"`` for n ≤ 64, ``"pivot"`` above), ``"pivot"``, ``"sort"``, or ``"cvxpy"`` (reference; ``tol`` sets
    Clarabel's feasibility tolerance, default ``DEFAULT_CVXPY_TOL`` = 1e-11, and its duality-gap
    tolerances to tol·1e-4, relaxed ×100 for one retry on the rare row where Clarabel stalls;
    ``solver_options`` passes further Clarabel settings; ``check_tol`` bounds the accepted relative
    constraint violation, default 1e3·tol). Returns X in A's type, dtype and
    device, detached from autograd. Raises ``ValueError`` (ShapeError, NonFiniteError) for non-square
    or non-finite A, NaN γ, non-positive η or an unknown method, ``TypeError`` for integer or half
    precision A, and :class:`ProjectionError` when the CVXPY solve fails or its point is infeasible.

        >>> X = project_mu_inf(torch.randn(100, 100), gamma=0.9)
        >>> bool(mu_inf(X) <= 0.9 + 1e-6)
        True
    """
    t, was_numpy = _as_square(A, "A")
    gamma = check_scalar(gamma, "gamma")
    w = as_weights(eta, t.shape[-1], t)
    m = _check_method(method, MU_INF_METHODS)
    _check_solver_args(m, tol, solver_options, check_tol)
    X, _ = _project_mu_inf(t.detach(), gamma, w, m, tol=tol, solver_options=solver_options, check_tol=check_tol,
                           w64=_weights64(eta, t.shape[-1], t))
    return like_input(X, was_numpy)


def _project_mu_inf(t, gamma, w, method, lam0=None, info=None, w64=None, **kw):
    """(X, λ) for a matrix or batch t; ``w64``: the weights as the measure uses them (float64; default
    ``w`` converted). The compiled kernel runs in its measure mode (the measure's weights, level
    ``_level64``) and needs the measure only for the rows it leaves undecided; the other backends are
    guarded by it (``_guard_mu_inf``)."""
    if t.numel() == 0:
        return t.clone(), None
    if w64 is None and w is not None:
        w64 = w.to(torch.float64)
    if _kernel_route(t, method):
        V, W, idx = _mu_inf_rows(t, w64)
        L = _level64(gamma, t.dtype)
        info = {} if info is None else info
        if V.device.type == "cpu":
            X, lam = _project_rows_compiled(V, W, idx, gamma, lam0=lam0, info=info, level=L)
        else:  # small accelerator matrices: a round trip to the kernel
            X, lam = _project_rows_compiled(V.cpu(), None if W is None else W.cpu(), idx.cpu(), gamma,
                                            lam0=None if lam0 is None else lam0.cpu(), info=info, level=L)
            X = X.to(t.device)
        X = X if t.ndim == 2 else X.reshape(t.shape)
        if info["ambiguous"]:
            _lower_diagonal(X, w64, L)  # rows within δ of L that the kernel left as they were
        return X, lam
    V, W, idx = _mu_inf_rows(t, w)
    X, lam = _project_rows(V, W, idx, gamma, method, lam0=lam0, info=info, **kw)
    X = X if t.ndim == 2 else X.reshape(t.shape)
    return _guard_mu_inf(t, X, w64, gamma), lam


def project_norm_inf(A, gamma, method: str = "exact", *, tol=None, solver_options=None, check_tol=None):
    """Euclidean projection onto El Ghaoui's norm ball {X : ‖X‖∞ ≤ γ} (each row onto an ℓ1 ball).

    Solves  argmin_X ‖X − A‖_F  s.t.  Σⱼ |xᵢⱼ| ≤ γ for every row i: a row inside the ball is returned
    bit-identical, one outside becomes xᵢⱼ = sign(aᵢⱼ)(|aᵢⱼ| − λᵢ)⁺ with λᵢ > 0 such that Σⱼ|xᵢⱼ| = γ.
    A: (..., p, q) (rectangular allowed), γ ≥ 0 (the ball is empty for γ < 0: ``ValueError``).
    Methods and solver arguments as in :func:`project_mu_inf`.

        >>> project_norm_inf(np.array([[3.0, -1.0], [0.2, 0.1]]), gamma=1.0).tolist()
        [[1.0, 0.0], [0.2, 0.1]]
    """
    t, was_numpy = to_torch(A, "A")
    if t.ndim < 2:
        raise ShapeError(f"A: expected a matrix of shape (..., p, q), got shape {tuple(t.shape)}")
    _check_float(t, "A")  # finiteness: tested on the row sums (see _project_rows)
    gamma = check_scalar(gamma, "gamma")
    if gamma < 0:
        raise ValueError(f"gamma: the ball ‖X‖∞ ≤ γ is empty for γ < 0, got {gamma}")
    m = _check_method(method, NORM_INF_METHODS)
    _check_solver_args(m, tol, solver_options, check_tol)
    t = t.detach()
    if t.numel() == 0:
        return like_input(t.clone(), was_numpy)
    X, _ = _project_rows(t.reshape(-1, t.shape[-1]), None, None, gamma, m, tol=tol,
                         solver_options=solver_options, check_tol=check_tol)
    return like_input(X.reshape(t.shape), was_numpy)


def _conv_rows(t: torch.Tensor, centre):
    if t.ndim != 4:
        raise ShapeError(f"K: expected a convolution kernel of shape (C, C, kh, kw), got shape {tuple(t.shape)}")
    c_out, c_in, kh, kw = t.shape
    if c_out != c_in:
        raise ShapeError(f"K: an implicit convolutional layer maps C channels to C channels; got "
                         f"{c_out} output and {c_in} input channels (shape {tuple(t.shape)})")
    if centre is None:
        if kh % 2 == 0 or kw % 2 == 0:
            raise ShapeError(f"K: the centre tap of an even-sized kernel ({kh}×{kw}) is ambiguous; "
                             f"pass centre=(p, q), the tap that multiplies the output pixel itself")
        p, q = kh // 2, kw // 2
    else:
        try:
            p, q = (int(v) for v in centre)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"centre: expected a pair of ints (p, q), got {centre!r}") from exc
        if not (0 <= p < kh and 0 <= q < kw):
            raise ValueError(f"centre: expected 0 ≤ p < {kh} and 0 ≤ q < {kw}, got {(p, q)}")
    k2 = kh * kw
    idx = (torch.arange(c_out, device=t.device) * k2 + p * kw + q).unsqueeze(-1)
    return t.reshape(c_out, c_in * k2), idx


def project_conv_kernel(K, gamma, method: str = "exact", *, centre=None, tol=None, solver_options=None,
                        check_tol=None):
    """Project a convolution kernel so that its circular-padding operator has μ∞ ≤ γ (docs/mathematics.md §6).

    With circular padding every row of the operator of output channel c holds the same entries, so the
    polytope is one row constraint per output channel,

        K[c, c, p, q] + Σ_{(c′, p′, q′) ≠ (c, p, q)} |K[c, c′, p′, q′]| ≤ γ,

    with (p, q) the centre tap (the one multiplying the output pixel itself; (kh//2, kw//2) for odd
    sizes, else pass ``centre``). Solves argmin ‖K′ − K‖_F over kernels satisfying it (the Frobenius
    norm of the kernel, not of the operator: both give the same minimiser, the operator's being a
    fixed multiple). With zero padding border rows have fewer terms, so the bound still holds.
    K: (C, C, kh, kw); different input and output channel counts raise ``ValueError``.

        >>> K2 = project_conv_kernel(torch.randn(4, 4, 3, 3), gamma=0.5)
    """
    t, was_numpy = to_torch(K, "K")
    V, idx = _conv_rows(t, centre)
    _check_float(t, "K")  # finiteness: tested on the row sums (see _project_rows)
    gamma = check_scalar(gamma, "gamma")
    m = _check_method(method, MU_INF_METHODS)
    _check_solver_args(m, tol, solver_options, check_tol)
    if t.numel() == 0:
        return like_input(t.detach().clone(), was_numpy)
    X, _ = _project_rows(V.detach(), None, idx, gamma, m, tol=tol, solver_options=solver_options,
                         check_tol=check_tol, name="K")
    return like_input(X.reshape(t.shape), was_numpy)


def _operator_eta(op: WeightOperator, eta):
    """η for an operator: None, or positive weights reshaped to ``op.state_shape`` (any shape of n entries)."""
    if eta is None:
        return None
    e, _ = to_torch(eta, "eta", dtype=op.dtype, device=op.device)
    if e.numel() != op.n:
        raise ShapeError(f"eta: expected {op.n} positive weights (shape {tuple(op.state_shape)} or ({op.n},)) for "
                         f"{op!r}, got shape {tuple(e.shape)}")
    check_finite(e, "eta")
    if not bool((e > 0).all()):
        raise ValueError(f"eta: expected strictly positive weights, got minimum {float(e.min()):.3g}")
    return e.reshape(op.state_shape)


def _operator_rows(op: WeightOperator, eta):
    """(V, W, idx, name) of an operator's constraint rows, in the form of ``_project_rows``."""
    rows = op.constraint_rows(eta)
    V = rows.values.detach()
    W = None if rows.weights is None else rows.weights.detach().to(V.dtype)
    if W is not None and not W.is_contiguous():
        W = W.contiguous()
    idx = rows.diagonal.reshape(-1, 1).to(device=V.device, dtype=torch.long)
    return V, W, idx


def _weight_name(op: WeightOperator) -> str:
    return "A" if isinstance(op, DenseOperator) else "kernel" if hasattr(op, "kernel") else "weight"


def _project_operator(op: WeightOperator, gamma: float, e, method: str, *, out: bool = False, **kw):
    """The projected weight of ``op`` (a new tensor; with ``out=True`` written into the weight when the
    rows are a contiguous CPU view of it and the compiled kernel runs, else copied back). The result is
    guarded by the operator's own measure (``_guard_operator``): ``op.mu_inf(η) ≤ γ`` as computed."""
    name = _weight_name(op)
    _check_float(op.weight, name)
    if op.weight.numel() == 0:
        return op.weight.detach().clone()
    V, W, idx = _operator_rows(op, e)
    if (out and method == "exact" and V.device.type == "cpu" and V.is_contiguous() and _cpu_kernel() is not None
            and V.data_ptr() == op.weight.data_ptr() and V.numel() == op.weight.numel()
            and op.weight.is_contiguous()):
        _project_rows_compiled(V, W, idx, gamma, name=name, out=V)  # reads each entry before writing it
        op.weight.detach().copy_(_guard_operator(op, op.weight.detach(), e, gamma))
        return op.weight
    X, _ = _project_rows(V, W, idx, gamma, method, name=name, **kw)
    X = _guard_operator(op, X.reshape(op.weight.shape).contiguous(), e, gamma)
    if out:
        op.weight.detach().copy_(X)
        return op.weight
    return X


def project_operator(op, gamma, method: str = "exact", *, eta=None, tol=None, solver_options=None,
                     check_tol=None) -> WeightOperator:
    """The operator with its weight projected onto the polytope of its constraint rows (a new operator).

    Each row of ``op.constraint_rows(η)`` (docs/mathematics.md §10) is projected exactly:
    argmin ‖V′ − V‖_F over V′[i, dᵢ] + Σ_{j≠dᵢ} wᵢⱼ |V′[i, j]| ≤ γ, with the methods and solver arguments
    of :func:`project_mu_inf` (``"cvxpy"``: the CVXPY/Clarabel reference backend, row by row).

    - :class:`~linf_opt.operators.dense.DenseOperator`: the rows are A's rows: the same result as
      :func:`project_mu_inf` on the matrix, the projection onto {μ_{∞,η}(A) ≤ γ}.
    - :class:`~linf_opt.operators.conv.Conv2dOperator`: one row per output channel, the kernel slice
      K[c] with the own-channel centre tap as the linear coordinate: the same result as
      :func:`project_conv_kernel`. It guarantees μ∞(A) ≤ γ for every image size and padding (border rows
      and aliased taps only lower the row values) and is exactly the Euclidean projection onto
      {μ∞(A) ≤ γ} in kernel space when H ≥ kh and W ≥ kw. On smaller images the kernel set is a strict
      subset of {K : μ∞(A) ≤ γ}: the result is feasible but may be farther than the nearest feasible kernel.
      ``eta`` (n weights, shape (C, H, W)) must be constant on each channel.

    Returns a new operator of the same structure (``op.with_weight``), weight detached; ``op`` is not
    modified. Raises ``TypeError`` for a non-operator or a non-float32/float64 weight, ``NonFiniteError``
    naming the weight (``A``/``kernel``) for NaN/Inf entries, ``ValueError`` for NaN γ or an unknown method.

        >>> P = project_operator(Conv2dOperator(torch.randn(4, 4, 3, 3), (8, 8)), gamma=0.5)
        >>> float(P.mu_inf()) <= 0.5 + 1e-6
        True
    """
    if not isinstance(op, WeightOperator):
        raise TypeError(f"op: expected a WeightOperator (DenseOperator, Conv2dOperator, …), got {type(op).__name__} "
                        f"(use project_mu_inf for a matrix)")
    gamma = check_scalar(gamma, "gamma")
    m = _check_method(method, MU_INF_METHODS)
    _check_solver_args(m, tol, solver_options, check_tol)
    e = _operator_eta(op, eta)
    if isinstance(op, DenseOperator):
        _check_float(op.weight, "A")
        X, _ = _project_mu_inf(op.weight.detach(), gamma, None if e is None else e.reshape(-1), m, tol=tol,
                               solver_options=solver_options, check_tol=check_tol)
        return op.with_weight(X)
    return op.with_weight(_project_operator(op, gamma, e, m, tol=tol, solver_options=solver_options,
                                            check_tol=check_tol))


# ---------------------------------------------------------------------------------------------------
# the monotone set μ₂(X) ≤ b
# ---------------------------------------------------------------------------------------------------

def _mu2(X: torch.Tensor) -> torch.Tensor:
    """λ_max of the symmetric part: the same computation as ``measures.mu_2`` (used for the repair)."""
    return torch.linalg.eigvalsh((X + X.transpose(-1, -2)) / 2)[..., -1]


def _project_mu2_eig(t: torch.Tensor, bound: float) -> torch.Tensor:
    bound = _level(bound, t)
    feasible = _mu2(t) <= bound  # the same test as the repair below and as measures.mu_2
    if bool(feasible.all()):
        return t.clone()
    vals, vecs = torch.linalg.eigh((t + t.transpose(-1, -2)) / 2)
    K = (t - t.transpose(-1, -2)) / 2
    X = K + (vecs * vals.clamp(max=bound).unsqueeze(-2)) @ vecs.transpose(-1, -2)
    # Round-off can leave the computed λ_max(sym X) a few ulps above the bound: shift the diagonal by
    # the excess, at least by the eigensolver's round-off level (smaller shifts drown in it).
    eye = torch.eye(t.shape[-1], dtype=t.dtype, device=t.device)
    floor = 4 * torch.finfo(t.dtype).eps * vals.abs().amax(-1).clamp(min=abs(float(bound)))
    for k in range(8):
        excess = (_mu2(X) - bound).clamp(min=0)
        shift = torch.where(feasible | (excess == 0), 0.0, torch.maximum(excess, floor) * 2.0 ** k)
        if not bool((shift > 0).any()):
            break
        X = X - shift.unsqueeze(-1).unsqueeze(-1) * eye
    return torch.where(feasible.unsqueeze(-1).unsqueeze(-1), t, X)


def project_mu_2(A, bound, method: str = "eig", *, tol=None, solver_options=None, check_tol=None):
    """Euclidean projection onto the monotone set {X : μ₂(X) = λ_max((X + Xᵀ)/2) ≤ b} (docs/mathematics.md §7).

    Solves  argmin_X ‖X − A‖_F  s.t.  (X + Xᵀ)/2 ⪯ b I.  The Frobenius norm splits A into its symmetric
    part S and skew part K orthogonally and the constraint involves S only, so (``method="eig"``)
    X = K + Q min(Λ, b) Qᵀ with S = Q Λ Qᵀ: keep the skew part, clip the eigenvalues of the symmetric
    part at b. ``method="cvxpy"`` solves the SDP with CVXPY + Clarabel (reference; ``tol``,
    ``solver_options``, ``check_tol`` as in :func:`project_mu_inf`, default tol ``DEFAULT_SDP_TOL``). Monotone networks use b = 1 − m.
    Matrices already in the set come back bit-identical; batched over leading dimensions.

        >>> project_mu_2(np.array([[2.0, 1.0], [-1.0, 0.0]]), bound=1.0).tolist()
        [[1.0, 1.0], [-1.0, 0.0]]
    """
    t, was_numpy = as_matrix(A, "A")
    _check_float(t, "A")
    bound = check_scalar(bound, "bound")
    if not isinstance(method, str) or method not in MU_2_METHODS:
        raise ValueError(f"method: expected one of {', '.join(repr(v) for v in MU_2_METHODS)}, got {method!r}")
    _check_solver_args(method, tol, solver_options, check_tol)
    t = t.detach()
    if t.numel() == 0:
        return like_input(t.clone(), was_numpy)
    if method == "eig":
        X = _project_mu2_eig(t, bound)
    else:
        X = _project_mu2_cvxpy(t, bound, tol, solver_options, check_tol)
    return like_input(X, was_numpy)


# ---------------------------------------------------------------------------------------------------
# stateful projector (warm start across calls)
# ---------------------------------------------------------------------------------------------------

class MuInfProjector:
    """Repeated projection onto P(γ, η) with cached weights and an optional warm start.

    ``warm_start=True`` starts each row's Newton iteration (method ``"pivot"``, or ``"exact"`` on rows
    longer than ``EXACT_SORT_MAX_ROW``) from max(previous multiplier, cold lower bound) when the shape,
    dtype and device match. Exactness does not depend on the start (one Newton step from anywhere
    lands left of the root, then the iteration is monotone); in projected-gradient runs, where each
    call is a small correction of the last, it saves up to a quarter of the passes and was never worse
    (``bench/projection.py``). ``info`` holds the statistics of the last call: rows, rows projected,
    Newton passes.

        >>> proj = MuInfProjector(gamma=0.9)
        >>> A = proj(torch.randn(100, 100))        # every later call reuses the cached state
    """

    def __init__(self, gamma, eta=None, method: str = "exact", warm_start: bool = False):
        self.gamma = check_scalar(gamma, "gamma")
        self.method = _check_method(method, MU_INF_METHODS)
        if warm_start and self.method not in ("exact", "pivot"):
            raise ValueError(f"warm_start: only method 'pivot' (or 'exact') uses a warm start, got {method!r}")
        self.warm_start = bool(warm_start)
        if eta is not None:  # validate now (finite, positive), convert per dtype and device on use
            e, _ = to_torch(eta, "eta")
            as_weights(e, e.shape[-1] if e.ndim else 0, e.to(torch.float64))
        self._eta_raw = eta
        self._eta_cache: dict = {}
        self._lam = None
        self._lam_key = None
        self._inplace = None  # project_'s cached views: (tensor, data_ptr, shape, stride, dtype, kernel args)
        self._host = None     # project_'s host buffer for small accelerator matrices
        self.info: dict = {}

    def _eta(self, t: torch.Tensor):
        if self._eta_raw is None:
            return None
        key = (t.dtype, t.device, t.shape[-1])
        if key not in self._eta_cache:
            self._eta_cache[key] = as_weights(self._eta_raw, t.shape[-1], t)
        return self._eta_cache[key]

    def _eta64(self, t: torch.Tensor):
        """η in float64 on t's device: the weights of the measure that the result is guarded by."""
        if self._eta_raw is None:
            return None
        key = (torch.float64, t.device, t.shape[-1])
        if key not in self._eta_cache:
            self._eta_cache[key] = _weights64(self._eta_raw, t.shape[-1], t)
        return self._eta_cache[key]

    def reset(self) -> None:
        """Forget the warm-start multipliers and the cached views of ``project_``."""
        self._lam = self._lam_key = self._inplace = self._host = None

    def __call__(self, A):
        t, was_numpy = _as_square(A, "A")
        if t.requires_grad:
            t = t.detach()
        key = (t.shape, t.dtype, t.device)
        lam0 = self._lam if self.warm_start and self._lam_key == key else None
        info: dict = {}
        X, lam = _project_mu_inf(t, self.gamma, self._eta(t), self.method, lam0=lam0, info=info, w64=self._eta64(t))
        if self.warm_start:
            self._lam, self._lam_key = lam, key
        self.info = info
        return like_input(X, was_numpy)

    def project_(self, A: torch.Tensor) -> torch.Tensor:
        """Project the tensor A onto P(γ, η) in place (a parameter after an optimizer step); returns A.

        A 2-D contiguous CPU tensor with ``method="exact"`` is projected by the compiled kernel
        writing straight into A's memory. The numpy views of A and the kernel's arguments are kept
        between calls on the same tensor (same object, storage, shape, strides and dtype), so a
        training step pays one compiled call and a few attribute checks: the kernel's measure mode
        makes ``mu_inf(A) <= γ`` hold as computed without a pass of the measure (see the module
        docstring), which runs only when the kernel leaves rows within round-off of γ undecided. Any
        other input is projected out of place and copied back. Autograd does not see the change.
        """
        c = self._inplace
        if (c is not None and A is c[0] and A.data_ptr() == c[1] and A.shape == c[2] and A.stride() == c[3]
                and A.dtype == c[4]):
            Vn, Wn, In, lam, L = c[5]
            lam0 = lam if self.warm_start else _NO_VECTOR  # read row by row before it is overwritten
            self.info = {}
            if _run_kernel(Vn, Wn, In, self.gamma, lam0, _PIVOT_MAX_ITER, Vn, lam, info=self.info, name="A",
                           level=L) and c[7]:
                _lower_diagonal(c[6], c[8], L)  # the rows within δ of L: the measure decides
            return A
        return self._project_new_(A, guard=True)

    def _project_new_(self, A, guard: bool) -> torch.Tensor:
        """``project_`` on a tensor that the cache does not know. ``guard=False``: the measure is not run
        on the rows the kernel leaves undecided (``info["ambiguous"]``; the caller runs it on A's device)."""
        if not isinstance(A, torch.Tensor):
            raise TypeError(f"A: project_ works in place on a torch tensor, got {type(A).__name__} "
                            f"(call the projector itself for numpy arrays)")
        t, _ = _as_square(A, "A")
        t = t.detach()
        if (t.device.type != "cpu" and self.method == "exact" and t.ndim == 2 and 0 < t.numel() <= HOST_KERNEL_MAX_ENTRIES
                and _cpu_kernel() is not None):
            # a small matrix on an accelerator: through a (pinned) host buffer that the cached in-place
            # path knows, i.e. one copy each way around one compiled call
            buf = self._host
            if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
                buf = self._host = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.device.type == "cuda")
                self._inplace = None
            buf.copy_(t)  # waits for the queued work that produced A
            c = self._inplace
            if c is None or c[0] is not buf:
                self._project_new_(buf, guard=False)
                c = self._inplace
            else:
                Vn, Wn, In, lam, L = c[5]
                self.info = {}
                _run_kernel(Vn, Wn, In, self.gamma, lam if self.warm_start else _NO_VECTOR, _PIVOT_MAX_ITER, Vn,
                            lam, info=self.info, name="A", level=L)
            t.copy_(buf, non_blocking=True)
            if self.info.get("ambiguous"):  # the rows within δ of L: the measure on A's device decides
                _lower_diagonal(t, self._eta64(t), c[5][4])
            return A
        self._inplace = None
        if (self.method != "exact" or t.ndim != 2 or t.device.type != "cpu" or not t.is_contiguous()
                or t.numel() == 0 or _cpu_kernel() is None):
            t.copy_(self(t))
            return A
        key = (t.shape, t.dtype, t.device)
        lam0 = self._lam if self.warm_start and self._lam_key == key else None
        w64, L = self._eta64(t), _level64(self.gamma, t.dtype)
        Vn, Wn, In = _kernel_inputs(*_mu_inf_rows(t, w64))  # the measure's weights, in float64
        lam = np.empty(Vn.shape[0])
        self.info = {}
        if _run_kernel(Vn, Wn, In, self.gamma, _NO_VECTOR if lam0 is None else _as_numpy(lam0, torch.float64),
                       _PIVOT_MAX_ITER, Vn, lam, info=self.info, name="A", level=L) and guard:
            _lower_diagonal(t, w64, L)
        if self.warm_start:  # shares memory with the cached λ, which later calls update in place
            self._lam, self._lam_key = torch.from_numpy(lam), key
        self._inplace = (A, A.data_ptr(), A.shape, A.stride(), A.dtype, (Vn, Wn, In, lam, L), t, guard, w64)
        return A

    def __repr__(self) -> str:
        eta = "None" if self._eta_raw is None else "…"
        return f"MuInfProjector(gamma={self.gamma!r}, eta={eta}, method={self.method!r}, warm_start={self.warm_start})"
