"""Compiled CPU kernel for the row projections of :mod:`linf_opt.sets.rows` (numba).

The vectorised torch closed forms (``"sort"``, ``"pivot"``) spend their time in operator dispatch on
the small matrices of training (n = 100: ~80 tensor operations of 5–10 µs each, 0.6 ms a projection,
16% of an MNIST step). This kernel runs the same mathematics one row at a time in compiled scalar
loops, with no temporaries, and is what ``method="exact"`` uses for CPU tensors.

Row v (length m), linear coordinate i (or none: the ℓ1 ball), weights wⱼ:

    r(v) = vᵢ + Σ_{j≠i} wⱼ|vⱼ|;  feasible when r ≤ γ, then returned unchanged (λ = 0);
    else λ > 0 is the root of g(λ) = vᵢ − λ + Σ_{j≠i} wⱼ(|vⱼ| − λwⱼ)⁺ − γ and
    xᵢ = vᵢ − λ,  xⱼ = sign(vⱼ)(|vⱼ| − λwⱼ)⁺.

λ by Newton pivoting: from a lower bound of the root (the zero of the line below g with every entry
active, or a warm start, whichever is larger), λₖ₊₁ = (vᵢ − γ + Σ_{Sₖ} wⱼ|vⱼ|)/(1 + Σ_{Sₖ} wⱼ²) with
Sₖ = {j : |vⱼ| > λₖwⱼ}; when Sₖ₊₁ = Sₖ, λₖ₊₁ is the exact root (g is linear on that piece). g is
convex and decreasing, so from the second step on the iterates increase to the root and the active
sets shrink. A row that has not settled after ``max_iter`` steps is finished by sorting its
breakpoints (exact in one pass).

Arithmetic: every row sum and λ is accumulated in float64, also for float32 rows, and the tests
compare with γ itself. After the shrink, the kernel recomputes r(x) in the same order and, if it
rounds above γ, lowers xᵢ by round-off (ℓ1 ball: one more soft-threshold step, then an ulp off the
largest entry) until r(x) ≤ γ holds exactly. Hence the output passes the feasibility test the kernel
applies to its input, and projecting twice returns the first result bit for bit.

The measure mode (``level`` = L, not NaN; the μ∞ projections of matrices) makes the output consistent
with ``linf_opt.mu_inf``, which sums the same float64 terms qⱼ = |xⱼ|·wⱼ (wⱼ = ηⱼ/ηᵢ in float64, the
diagonal masked out) in torch's order, not this kernel's. Any two float64 summation orders of a row of
m entries give values within

    δ = 2(m + 2)·u·(|xᵢ| + s),   u = 2⁻⁵³                                  (:func:`_order_bound`)

of each other (the sums differ by at most 2γ_{m−2}·s, the final additions and the comparison round by
u·(|xᵢ| + s) each; the constant leaves a margin). So a row with r + δ ≤ L reads ≤ L by the measure
whatever its order (it is left unchanged), a row with r − δ > L reads above L (it is projected), and a
projected row gets its xᵢ lowered until r + δ ≤ L holds as computed: the result lies inside γ by at
most a relative 2(m + 2)·2⁻⁵³ of its row mass (2.3e-14 at m = 100, 1.1e-13 at m = 500), and passes
the measure's test in every summation order (torch's on any device included). δ is taken as 0 for a
row whose sum is exact in every order, where both read the same value: on incoming rows within δ of L
by :func:`_exact_sum` (at most one nonzero off-diagonal term, or unweighted float32 entries within a
2²⁹ range), on projected rows when at most one off-diagonal term is left. Rows with
|r − L| ≤ δ, whose fate depends on the measure's order, are left unchanged and counted: the caller
decides them with the measure itself (rare: a row within 1e-13 of the boundary that this kernel did not
put there). L is γ rounded down to X's dtype, so that the measure's value in that dtype is ≤ γ too.

The slack mode (``level`` NaN; the operators' constraint rows) counts a row feasible when
r ≤ γ + slack·(|vᵢ| + s), and the caller repairs the rest against the operator's own measure.

Status codes returned by :func:`project_rows`: 0 success, 1 a non-finite row value (NaN/Inf entry or
overflow; the caller raises), 2 the round-off repair failed (never observed; the caller raises).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

OK, NON_FINITE, REPAIR_FAILED = 0, 1, 2


@njit(cache=True, nogil=True)
def _root_by_sort(a, w2, c, linear):
    """Root of g for one row by sorting the breakpoints aⱼ/wⱼ (a = wⱼ|vⱼ|, w2 = wⱼ²; float64)."""
    m = a.shape[0]
    t = np.empty(m)
    for j in range(m):
        t[j] = a[j] / w2[j] if w2[j] > 0.0 else 0.0
    order = np.argsort(-t)
    s1 = 0.0
    s2 = 1.0 if linear else 0.0
    lam = 0.0
    for k in range(m):
        j = order[k]
        if w2[j] <= 0.0 or t[j] <= 0.0:
            break
        cand = (c + s1 + a[j]) / (s2 + w2[j])
        if t[j] <= cand:  # the k-th breakpoint lies left of the piece's root: stop before it
            break
        s1 += a[j]
        s2 += w2[j]
    if s2 > 0.0:
        lam = (c + s1) / s2
    elif m > 0:  # ℓ1 ball with γ = 0 and no active breakpoint: zero the row
        lam = t[order[0]]
    return max(lam, 0.0)


@njit(cache=True, nogil=True)
def _sum(a):
    """Σ a in a fixed order (four interleaved partial sums): the one row sum of every feasibility test."""
    m = a.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    k = 0
    while k + 4 <= m:
        s0 += a[k]
        s1 += a[k + 1]
        s2 += a[k + 2]
        s3 += a[k + 3]
        k += 4
    while k < m:
        s0 += a[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


# Fast-math for the Newton passes only: reassociation lets the compiler vectorise the masked sums
# (8× faster at n = 100 than the sequential, branching loop), and the inputs are known finite. Only λ's
# last bits depend on the summation order; the active-set test that certifies λ counts exactly, and
# the feasibility of the result is decided and repaired by the fixed-order sums of ``project_rows``.
_NEWTON_MATH = {"reassoc", "nsz", "nnan", "ninf"}


@njit(cache=True, nogil=True, fastmath=_NEWTON_MATH)
def _newton(a, w2, c, lam, linear, max_iter):
    """Root of g by Newton pivoting from λ = ``lam`` (a lower bound of the root, or a warm start).

    a, w2: wⱼ|vⱼ| and wⱼ² (0 on the linear coordinate, which is then never active). Each pass sums
    over the active set Sₖ = {j : aⱼ > λₖwⱼ²} (i.e. |vⱼ| > λₖwⱼ) and steps to the root of its piece.
    Returns (λ, passes, settled); not settled after ``max_iter`` passes (or when nothing is active,
    the ℓ1 ball with γ ≤ 0) leaves the row to :func:`_root_by_sort`.
    """
    m = a.shape[0]
    cnt_prev = -1
    passes = 0
    while passes < max_iter:
        passes += 1
        s1 = 0.0
        s2 = 1.0 if linear else 0.0
        cnt = 0
        for k in range(m):
            x = a[k]
            y = w2[k]
            on = x > lam * y
            s1 += x if on else 0.0
            s2 += y if on else 0.0
            cnt += on
        if cnt == cnt_prev:  # the active set did not change: λ is the root of its piece
            return lam, passes, True
        if s2 <= 0.0:
            return lam, passes, False
        new = max((c + s1) / s2, 0.0)
        if passes > 1 and new <= lam:  # a tie at the root: no progress left in round-off
            return lam, passes, True
        lam = new
        cnt_prev = cnt
    return lam, passes, False


_U = 2.0 ** -53


@njit(cache=True, nogil=True)
def _order_bound(m):
    """δ/(|xᵢ| + s) for rows of m entries: the relative bound on the difference between any two
    float64 summation orders of a row value (see the module docstring)."""
    return 2.0 * (m + 2) * _U


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})  # a count and a minimum: exact in any order
def _exact_sum(a, s, f32):
    """Whether every float64 summation order of the terms a (≥ 0, sum s as computed) gives the exact sum,
    so that the measure's row value equals this kernel's bit for bit (δ = 0): at most one nonzero term,
    or (``f32``: the terms are float32 values) all of them multiples of the float32 ulp g of the
    smallest nonzero one with s ≤ 2⁵²·g (every partial sum is then an integer multiple of g below 2⁵³g)."""
    nz = 0
    qmin = np.inf
    for j in range(a.shape[0]):  # a count and a minimum: the same in any order (vectorised)
        q = a[j]
        nz += q > 0.0
        qmin = min(qmin, q if q > 0.0 else np.inf)
    return _exact_from(nz, qmin, s, f32)


@njit(cache=True, nogil=True)
def _few_nonzero(a):
    """Whether at most one of the terms a is nonzero (its sum is then exact in every order); stops at
    the second nonzero term."""
    nz = 0
    for j in range(a.shape[0]):
        if a[j] != 0.0:
            nz += 1
            if nz > 1:
                return False
    return True


@njit(cache=True, nogil=True)
def _exact_from(nz, qmin, s, f32):
    """:func:`_exact_sum` from the count and the smallest of the nonzero terms."""
    if nz <= 1:
        return True
    if not f32:
        return False
    e = math.frexp(qmin)[1]  # qmin ∈ [2^(e−1), 2^e): its float32 ulp is at least 2^(e−24)
    return s <= math.ldexp(1.0, e + 28)


@njit(cache=True, nogil=True)
def _same(X, V):
    """Whether X and V are the same memory (an in-place call)."""
    return X.ctypes.data == V.ctypes.data


@njit(cache=True, nogil=True)
def project_rows(V, W, idx, gamma, lam0, max_iter, X, lam_out, slack, level):
    """Project every row of V (N, m) into X; λ per row into ``lam_out`` (float64).

    ``level`` = L (not NaN; needs a linear coordinate): the measure mode of the module docstring. A row
    with r + δ ≤ L is copied unchanged; one with r − δ > L is projected (λ for the level γ) and its xᵢ
    lowered until r + δ ≤ L; one in between is copied unchanged and counted as ambiguous.
    ``level`` NaN: a row counts as feasible, and is copied unchanged, when r ≤ γ + slack·(|vᵢ| + s)
    (s = Σ_{j≠i} wⱼ|vⱼ|): ``slack`` > 0 is the relative round-off between this kernel's row sums and the
    caller's measure; rows within it are left to the caller. ``slack = 0``: the kernel's own test.

    X may be V itself (in place), and ``lam_out`` may be ``lam0``: each row reads its entries and its
    warm start before writing them.

    W: (N, m) weights, or shape (0, 0) for all ones. idx: (N,) column of each row's linear coordinate,
    or shape (0,) for the ℓ1 ball. lam0: (N,) warm-start multipliers, or shape (0,). Returns
    (status, number of projected rows, largest number of Newton passes, number of ambiguous rows).
    """
    N, m = V.shape
    weighted = W.shape[0] > 0
    linear = idx.shape[0] > 0
    warm = lam0.shape[0] > 0
    measure = linear and not math.isnan(level)
    rel = _order_bound(m)  # δ = rel·(|xᵢ| + s) in the measure mode
    f32 = V.itemsize == 4 and not weighted  # the terms |vⱼ| are float32 values (see _exact_sum)
    n_amb = 0
    a = np.empty(m)   # wⱼ|vⱼ| (0 on the linear coordinate)
    w2 = np.ones(m)   # wⱼ² (0 on the linear coordinate)
    n_bad = 0
    max_passes = 0
    # Validate first: a non-finite row value (NaN/Inf entry, overflow) stops the call before any row
    # of X is written, so an in-place projection (X is V) never leaves a half-projected matrix.
    values = np.empty(N)
    limits = np.empty(N)  # γ + slack·(|vᵢ| + s): the feasibility threshold of each row
    sums = np.empty(N)  # s = Σ_{j≠i} wⱼ|vⱼ| per row, reused by the projection of infeasible rows
    for r in range(N):
        i = idx[r] if linear else -1
        if weighted:
            for j in range(m):
                a[j] = np.float64(W[r, j]) * abs(np.float64(V[r, j]))
        else:
            for j in range(m):
                a[j] = abs(np.float64(V[r, j]))
        d = 0.0
        if linear:
            a[i] = 0.0
            d = np.float64(V[r, i])
        sums[r] = _sum(a)
        values[r] = d + sums[r]
        if measure:  # the row's δ (limits holds it here)
            limits[r] = rel * (abs(d) + sums[r])
        else:
            limits[r] = gamma + slack * (abs(d) + sums[r]) if slack > 0.0 else gamma
        if not math.isfinite(values[r]):
            return NON_FINITE, 0, 0, 0
    in_place = _same(X, V)
    for r in range(N):
        if measure:
            keep = values[r] + limits[r] <= level  # ≤ L in every summation order
            if not keep and not values[r] - limits[r] > level:  # within δ of L: is the sum exact?
                i = idx[r]
                for j in range(m):
                    a[j] = (np.float64(W[r, j]) if weighted else 1.0) * abs(np.float64(V[r, j]))
                a[i] = 0.0
                if _exact_sum(a, sums[r], f32):
                    keep = values[r] <= level  # the measure's value, bit for bit
                else:  # the measure's order decides: the caller's
                    keep = True
                    n_amb += 1
        else:
            keep = values[r] <= limits[r]
        if keep:  # feasible: unchanged, λ = 0
            if not in_place:
                for j in range(m):
                    X[r, j] = V[r, j]
            lam_out[r] = 0.0
            continue
        i = idx[r] if linear else -1
        if weighted:
            for j in range(m):
                wj = np.float64(W[r, j])
                a[j] = wj * abs(np.float64(V[r, j]))
                w2[j] = wj * wj
        else:
            for j in range(m):
                a[j] = abs(np.float64(V[r, j]))
                w2[j] = 1.0
        d = 0.0
        if linear:
            a[i] = 0.0
            w2[i] = 0.0
            d = np.float64(V[r, i])
        s = sums[r]
        n_bad += 1
        c = d - gamma
        # the zero of the line below g with every entry active: a lower bound of the root
        sw2 = _sum(w2)
        den = (1.0 + sw2) if linear else sw2
        lam = max((c + s) / den, 0.0) if den > 0.0 else 0.0
        if warm and lam0[r] > lam:
            lam = lam0[r]
        lam, passes, settled = _newton(a, w2, c, lam, linear, max_iter)
        if not settled:
            lam = _root_by_sort(a, w2, c, linear)
        if passes > max_passes:
            max_passes = passes
        lam_out[r] = lam
        # shrink: xⱼ = sign(vⱼ)(|vⱼ| − λwⱼ)⁺ in X's dtype; a ← wⱼ|xⱼ| exactly as the test computes it
        for j in range(m):
            v = np.float64(V[r, j])
            wj = np.float64(W[r, j]) if weighted else 1.0
            X[r, j] = math.copysign(max(abs(v) - lam * wj, 0.0), v)
            a[j] = wj * abs(np.float64(X[r, j]))
        if linear:
            a[i] = 0.0
            s = _sum(a)
            # xᵢ = vᵢ − λ, lowered by round-off (in X's dtype) until xᵢ + s ≤ γ holds as computed
            # (measure mode: until xᵢ + s + δ ≤ L, δ = rel·(|xᵢ| + s))
            X[r, i] = d - lam
            xi = X[r, i]
            ninf = X.dtype.type(-np.inf)
            # δ = 0 where at most one term is nonzero (the measure then reads x64 + s itself); the
            # float32 test of _exact_sum would cost a pass over the row and gain at most an ulp here
            exact = measure and _few_nonzero(a)
            k = 0
            while True:
                x64 = np.float64(xi)
                if measure:
                    dl = rel * (abs(x64) + s)
                    if x64 + s + dl <= level or (exact and x64 + s <= level):
                        break
                    target = (level - s) if exact else (level - dl - s)
                else:
                    if x64 + s <= gamma:
                        break
                    target = gamma - s
                k += 1
                if k > 64:
                    return REPAIR_FAILED, n_bad, max_passes, n_amb
                X[r, i] = np.nextafter(xi, ninf)
                below = X[r, i]
                X[r, i] = target  # the nearest value in X's dtype, possibly still too large
                if below < X[r, i]:
                    X[r, i] = below
                xi = X[r, i]
        else:
            s = _sum(a)
            k = 0
            while s > gamma:  # ℓ1 ball: one more soft-threshold step by the excess, an ulp off the top
                k += 1
                if k > 64:
                    return REPAIR_FAILED, n_bad, max_passes, n_amb
                act = 0.0
                top = 0
                for j in range(m):
                    if X[r, j] != 0.0:
                        act += w2[j]
                        if a[j] > a[top]:
                            top = j
                delta = (s - gamma) / act
                for j in range(m):
                    x0 = X[r, j]
                    if x0 != 0.0:
                        wj = np.float64(W[r, j]) if weighted else 1.0
                        mag = abs(np.float64(x0)) - delta * wj
                        if mag < 0.0:
                            mag = 0.0
                        X[r, j] = mag if x0 > 0.0 else -mag
                        if j == top and abs(X[r, j]) >= abs(x0):
                            X[r, j] = np.nextafter(x0, X.dtype.type(0.0))
                        a[j] = wj * abs(np.float64(X[r, j]))
                s = _sum(a)
    return OK, n_bad, max_passes, n_amb


@njit(cache=True, nogil=True)
def mu_inf_stats(A, eta):
    """(μ_{∞,η}(A), ‖A‖∞, ‖A‖₁) of one square matrix in one pass, accumulated in float64.

    eta: (n,) positive weights, or shape (0,) for η = 1 (the norms are unweighted either way).
    μ_{∞,η}(A) = maxᵢ (aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ); a NaN/Inf entry makes the results non-finite.
    """
    n = A.shape[0]
    weighted = eta.shape[0] > 0
    cols = np.zeros(n)
    mu = -np.inf
    rows = 0.0
    for i in range(n):
        s = 0.0
        sw = 0.0
        for j in range(n):
            q = abs(np.float64(A[i, j]))
            s += q
            cols[j] += q
            if weighted:
                sw += q * (np.float64(eta[j]) / np.float64(eta[i]))
        d = np.float64(A[i, i])
        r = d + ((sw if weighted else s) - abs(d))
        if not math.isfinite(s):  # a NaN/Inf entry (or an overflowing row): all three are undefined
            return np.nan, np.nan, np.nan
        mu = max(mu, r)
        rows = max(rows, s)
    return mu, rows, cols.max() if n > 0 else 0.0


@njit(cache=True, nogil=True)
def mu_inf_certified(A, eta, level):
    """Whether every row of the square matrix A reads ≤ ``level`` by ``linf_opt.mu_inf`` in every float64
    summation order: rᵢ + δᵢ ≤ L with the terms qⱼ = |aᵢⱼ|·(ηⱼ/ηᵢ) of the measure and δ of
    :func:`_order_bound` (δ = 0 where :func:`_exact_sum` holds). False means "not certified" (the caller
    asks the measure), also for NaN/Inf.
    eta: (n,) float64 weights, or shape (0,) for η = 1.
    """
    n = A.shape[0]
    weighted = eta.shape[0] > 0
    rel = _order_bound(n)
    f32 = A.itemsize == 4 and not weighted
    a = np.empty(n)
    for i in range(n):
        if weighted:
            ei = np.float64(eta[i])
            for j in range(n):
                a[j] = abs(np.float64(A[i, j])) * (np.float64(eta[j]) / ei)
        else:
            for j in range(n):
                a[j] = abs(np.float64(A[i, j]))
        a[i] = 0.0
        s = _sum(a)
        d = np.float64(A[i, i])
        if not (d + s + rel * (abs(d) + s) <= level):  # NaN compares False
            if not (math.isfinite(s) and d + s <= level and _exact_sum(a, s, f32)):
                return False
    return True
