"""Semidefinite programs of the ℓ2 well-posedness conditions (docs/mathematics.md §7), solved with CVXPY + Clarabel.

Two ℓ2 conditions are compared with the ℓ∞ polytope; both are decided by small SDPs:

    monotone set        {A : μ₂(A) ≤ b},  b = 1 − m         projection: argmin ‖X − A‖_F s.t. X + Xᵀ ⪯ 2bI
    diagonal metric     {A : ∃ diagonal Λ ≻ 0 with ΛA + AᵀΛ ⪯ 2γΛ}   (Lipschitz-bounded equilibrium
                        networks use γ = 1 with strict inequality)

The diagonal-metric condition is measured by the *diagonally scaled ℓ2 measure*

    ν(A) = inf over diagonal D ≻ 0 of μ₂(D A D⁻¹) = inf { c : ∃ Λ = D² with ΛA + AᵀΛ ⪯ 2cΛ },

the ℓ2 analogue of inf_η μ_{∞,η}(A) = α(M(A)). It is bracketed by cheap quantities,

    α(A) ≤ ν(A) ≤ min( μ₂(A) [Λ = I],  μ₂(D_P A D_P⁻¹) [Λ = D_P² = diag(w/v)] ) ≤ α(M(A)),

with v, w the right and left Perron vectors of the Metzler majorant M(A) (the last inequality:
xᵀΛAx ≤ |x|ᵀΛM(A)|x|), and computed by bisection on c with one margin SDP per step,
t*(c) = min t s.t. ΛA + AᵀΛ − 2cΛ ⪯ tI over diagonal Λ ⪰ 0 with tr Λ = n (t*(c) < 0 ⇔ ν(A) < c;
always feasible, so Clarabel never has to certify infeasibility). For n = 2 it has a closed form:
ν(A) = λ_max(A) when a₁₂a₂₁ > 0, else max(a₁₁, a₂₂) (diagonal stability of 2×2 matrices).

Every certificate is verified in float64 (eigenvalues of the scaled matrix) before it is returned.
A solve that ends in a status other than optimal or infeasible raises
:class:`~linf_opt.errors.ProjectionError` carrying the status. SDPs grow fast (Clarabel's cost for an
n×n semidefinite cone grows about like n⁴): a solve whose estimated time exceeds ``max_seconds`` is
refused with :class:`SDPTooLargeError` (a ``ValueError``) naming the estimate, unless ``force=True``.

    >>> cert = diagonal_metric_certificate(np.array([[0.0, 10.0], [0.01, 0.0]]), gamma=0.9)
    >>> cert.feasible, cert.level        # Λ = cert.Lambda satisfies ΛA + AᵀΛ ⪯ 2·level·Λ, level < γ
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from linf_opt._tensor import as_matrix, check_scalar
from linf_opt.errors import LinfOptError, ProjectionError
from linf_opt.sets.reference import _clarabel

__all__ = [
    "SDPTooLargeError", "estimate_sdp_seconds", "check_sdp_size", "project_monotone_sdp",
    "DiagonalMetricCertificate", "diagonal_metric_certificate", "diagonal_metric_value",
    "diagonally_scaled_mu_2", "perron_metric", "diagonal_metric_value_2x2", "DEFAULT_MAX_SECONDS",
]

#: SDPs estimated to take longer than this (seconds) are refused unless ``force=True``.
DEFAULT_MAX_SECONDS = 60.0

# Time model t(n) = c·nᵖ, fitted on the development machine (2 shared CPU cores; single-threaded
# Clarabel 0.x through CVXPY, compile included): monotone projection 8.3 s at n = 50, 27 s at n = 70,
# 129 s at n = 100 (p ≈ 4); diagonal-metric margin SDP 0.03 s at n = 20, 2.2 s at n = 40, 14 s at
# n = 60 (p ≈ 5), compile excluded.
_TIME_MODEL = {
    "monotone_projection": (1.33e-6, 4.0),
    "diagonal_metric": (2.0e-8, 5.0),
}


class SDPTooLargeError(LinfOptError, ValueError):
    """An SDP was refused because its estimated solve time exceeds the limit (pass ``force=True``).

    ``n`` is the matrix size and ``estimate`` the estimated time in seconds.
    """

    def __init__(self, message: str, n: int, estimate: float):
        super().__init__(message)
        self.n, self.estimate = n, estimate


def estimate_sdp_seconds(kind: str, n: int, solves: int = 1) -> float:
    """Rough wall-clock estimate (seconds) of ``solves`` SDPs of ``kind`` for n×n matrices.

    ``kind`` is ``"monotone_projection"`` (model 1.3e-6·n⁴ s per solve) or ``"diagonal_metric"``
    (2e-8·n⁵ s), fitted on a shared 2-core development machine: treat it as an order of magnitude.
    """
    if kind not in _TIME_MODEL:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, _TIME_MODEL))}, got {kind!r}")
    c, p = _TIME_MODEL[kind]
    return solves * c * float(n) ** p


def check_sdp_size(kind: str, n: int, *, force: bool = False, max_seconds: float | None = None,
                   solves: int = 1) -> float:
    """Refuse (``SDPTooLargeError``) an SDP whose estimated time exceeds ``max_seconds``; return the estimate."""
    limit = DEFAULT_MAX_SECONDS if max_seconds is None else check_scalar(max_seconds, "max_seconds", low=0.0)
    est = estimate_sdp_seconds(kind, n, solves)
    if est > limit and not force:
        raise SDPTooLargeError(
            f"A: the {kind.replace('_', ' ')} SDP{'s' if solves > 1 else ''} for n = {n} "
            f"{'are' if solves > 1 else 'is'} estimated to take about {est:.3g} s (> max_seconds = {limit:g}); "
            f"pass force=True to solve anyway" + (", or use the closed form" if kind == "monotone_projection" else ""),
            n=n, estimate=est)
    return est


def _clarabel_settings(tol: float | None) -> dict:
    tol = 1e-9 if tol is None else check_scalar(tol, "tol", low=0.0, low_open=True)
    return dict(tol_feas=tol, tol_gap_abs=tol, tol_gap_rel=tol, tol_infeas_abs=tol, tol_infeas_rel=tol,
                max_iter=200)


def _run(prob, opts: dict, what: str) -> str:
    import cvxpy as cp

    try:
        return _clarabel(prob, opts)  # "solution may be inaccurate": the status is checked by the caller
    except cp.error.SolverError as exc:
        raise ProjectionError(f"{what}: Clarabel failed ({exc})", status="solver_error") from exc


# ---------------------------------------------------------------------------------------------------
# the monotone projection
# ---------------------------------------------------------------------------------------------------

def project_monotone_sdp(A, bound, *, force: bool = False, max_seconds: float | None = None, tol=None):
    """Euclidean projection onto {X : μ₂(X) ≤ b} solved as the SDP  min ‖X − A‖_F²  s.t.  (X + Xᵀ)/2 ⪯ bI.

    The reference for the closed form (keep the skew part, clip the eigenvalues of the symmetric part at
    b; :func:`~linf_opt.sets.projections.project_mu_2`), which it matches to about 1e-10. Delegates to
    ``project_mu_2(method="cvxpy")`` after the size check: a solve estimated above ``max_seconds``
    (default 60 s; n ≳ 80) raises :class:`SDPTooLargeError` unless ``force=True``. A non-optimal solve
    raises :class:`~linf_opt.errors.ProjectionError` with the solver status. Caller's type back.

        >>> X = project_monotone_sdp(np.random.randn(20, 20), bound=0.9)
    """
    from linf_opt.sets.projections import project_mu_2

    t, _ = as_matrix(A, "A")
    batch = int(np.prod(t.shape[:-2])) if t.ndim > 2 else 1
    check_sdp_size("monotone_projection", t.shape[-1], force=force, max_seconds=max_seconds, solves=batch)
    return project_mu_2(A, bound, method="cvxpy", tol=tol)


# ---------------------------------------------------------------------------------------------------
# the diagonal metric
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiagonalMetricCertificate:
    """The answer to "∃ diagonal Λ ≻ 0 with ΛA + AᵀΛ ≺ 2γΛ?".

    feasible  whether a certificate was found and verified (level < γ − ε/2).
    lam       the diagonal of Λ, shape (n,), scaled so that min λᵢ = 1 (None when not feasible).
    level     μ₂(Λ^{1/2} A Λ^{-1/2}), recomputed in float64: the smallest c with ΛA + AᵀΛ ⪯ 2cΛ for this
              Λ (None when not feasible). ``feasible`` means level < γ − ε/2: the inequality is strict.
    gamma     the level γ asked for.
    source    where Λ came from: "identity" (μ₂(A) < γ), "perron" (Λ = diag(w/v) from the Perron vectors
              of M(A)), "closed_form" (n = 2), "sdp"; for infeasible answers "eigenvalue" (α(A) ≥ γ
              rules it out), "closed_form" or "sdp".
    status    the solver status for "sdp" ("optimal", "optimal_inaccurate"), else "certified",
              "obstructed" or "not_solved".
    sdp_objective  for "sdp": t* = min t s.t. ΛA + AᵀΛ − 2(γ − ε)Λ ⪯ tI over diagonal Λ ⪰ 0 with
              tr Λ = n; negative exactly when a certificate exists (None otherwise).
    """

    feasible: bool
    lam: np.ndarray | None
    level: float | None
    gamma: float
    source: str
    status: str
    sdp_objective: float | None = None

    @property
    def Lambda(self) -> np.ndarray | None:
        """Λ = diag(lam) as a matrix."""
        return None if self.lam is None else np.diag(self.lam)

    def violation(self, A) -> float:
        """λ_max(Λ^{-1/2}(ΛA + AᵀΛ − 2γΛ)Λ^{-1/2}) / 2 = level − γ: negative when the certificate holds."""
        if self.lam is None:
            raise ValueError("the certificate is infeasible: there is no Λ to check")
        return diagonally_scaled_mu_2(A, self.lam) - self.gamma


def _np64(A, name: str = "A") -> np.ndarray:
    t, _ = as_matrix(A, name)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected one square matrix of shape (n, n), got shape {tuple(t.shape)}")
    return t.detach().cpu().double().numpy()


def diagonally_scaled_mu_2(A, lam) -> float:
    """μ₂(D A D⁻¹) with D = diag(√λ): the least c with ΛA + AᵀΛ ⪯ 2cΛ for Λ = diag(λ), λ > 0 (float64)."""
    a = _np64(A)
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    if lam.shape != (a.shape[0],) or not np.all(np.isfinite(lam)) or not np.all(lam > 0):
        raise ValueError(f"lam: expected {a.shape[0]} finite positive diagonal entries, got {lam!r}")
    d = np.sqrt(lam)
    S = a * d[:, None] / d[None, :]
    return float(np.linalg.eigvalsh((S + S.T) / 2)[-1])


def perron_metric(A, eps: float = 1e-9) -> np.ndarray:
    """Λ = diag(w/v) from the right (v) and left (w) Perron vectors of the Metzler majorant M(A).

    It certifies ΛA + AᵀΛ ⪯ 2α(M(A))Λ, so ν(A) ≤ α(M(A)) (xᵀΛAx ≤ |x|ᵀΛM(A)|x|). To make M(A)
    irreducible, ``eps``·max|M| is added to every off-diagonal entry first (the Λ is verified by the
    caller anyway). Returns the diagonal (n,), scaled to min 1.
    """
    a = _np64(A)
    n = a.shape[0]
    off = ~np.eye(n, dtype=bool)
    M = np.where(off, np.abs(a), a) + eps * max(float(np.abs(a).max()), 1.0) * off

    def perron(X: np.ndarray) -> np.ndarray:
        vals, vecs = np.linalg.eig(X)
        v = np.abs(vecs[:, int(np.argmax(vals.real))].real)
        return np.maximum(v / v.max(), np.finfo(float).tiny)

    lam = perron(M.T) / perron(M)
    return lam / lam.min()


def diagonal_metric_value_2x2(A):
    """ν(A) for 2×2 matrices in closed form: λ_max(A) when a₁₂a₂₁ > 0, else max(a₁₁, a₂₂).

    (γI − A is diagonally stable iff γ > a₁₁, γ > a₂₂ and det(γI − A) > 0; the infimum over γ is this.)
    Batched over leading dimensions: a float for one matrix, a float64 ndarray of shape (...) otherwise.
    """
    t, _ = as_matrix(A, "A")
    if t.shape[-2:] != (2, 2):
        raise ValueError(f"A: expected 2×2 matrices, got shape {tuple(t.shape)}")
    a = t.detach().cpu().double().numpy()
    a11, a12, a21, a22 = a[..., 0, 0], a[..., 0, 1], a[..., 1, 0], a[..., 1, 1]
    p = a12 * a21
    real_root = (a11 + a22) / 2 + np.sqrt(((a11 - a22) / 2) ** 2 + np.maximum(p, 0.0))
    nu = np.where(p > 0, real_root, np.maximum(a11, a22))
    return float(nu) if nu.ndim == 0 else nu


def _certificate_2x2(a: np.ndarray, gamma: float) -> np.ndarray | None:
    """Λ = diag(1, d) with ΛB + BᵀΛ ≻ 0 for B = γI − A (d maximizes 4d·b₁₁b₂₂ − (b₁₂ + d·b₂₁)²), or None."""
    b = gamma * np.eye(2) - a
    if not (b[0, 0] > 0 and b[1, 1] > 0 and np.linalg.det(b) > 0):
        return None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        d = (2 * b[0, 0] * b[1, 1] - b[0, 1] * b[1, 0]) / b[1, 0] ** 2 if b[1, 0] != 0 else np.inf
        if not (np.isfinite(d) and d > 0):   # b₂₁ = 0, or so small that b₂₁² underflows
            d = max(b[0, 1] ** 2 / (2 * b[0, 0] * b[1, 1]), 1.0)
    if not np.isfinite(d):
        return None
    lam = np.array([1.0, d])
    return lam / lam.min()


@functools.lru_cache(maxsize=8)
def _metric_program(n: int):
    import cvxpy as cp

    lam = cp.Variable(n)
    t = cp.Variable()
    A = cp.Parameter((n, n))
    c = cp.Parameter()
    L = cp.diag(lam)
    G = L @ A + A.T @ L - 2 * c * L
    prob = cp.Problem(cp.Minimize(t), [lam >= 0, cp.sum(lam) == n, (G + G.T) / 2 << t * np.eye(n)])
    assert prob.is_dpp()
    return prob, lam, t, A, c


def _sdp_metric(a: np.ndarray, level: float, tol, strict: bool = True) -> tuple[str, np.ndarray | None, float | None]:
    """The margin SDP at ``level`` c (A scaled to unit size):

        t* = min t  s.t.  ΛA + AᵀΛ − 2cΛ ⪯ tI,  Λ = diag(λ) ⪰ 0,  tr Λ = n.

    Always feasible and bounded, so no infeasibility certificate is needed (Clarabel is unreliable at
    those for semidefinite cones). t* < 0 ⇔ some diagonal Λ ≻ 0 gives ΛA + AᵀΛ ≺ 2cΛ (a zero λᵢ
    would make the (i, i) entry 0 > t*). Returns (status, λ scaled to min 1 or None, t* in A's units);
    λ is None when t* ≥ 0. Failed solves raise ProjectionError, or with ``strict=False`` come back as
    (status, None, None): "not certified".
    """
    import cvxpy as cp

    n = a.shape[0]
    scale = max(float(np.abs(a).max()), abs(level), np.finfo(float).tiny)
    prob, lam, t, Ap, c = _metric_program(n)
    Ap.value, c.value = a / scale, level / scale
    status = _run(prob, _clarabel_settings(tol), f"diagonal-metric SDP at level {level:g} (n = {n})")
    if status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) and t.value is not None:
        tstar = float(t.value) * scale
        x = np.asarray(lam.value, dtype=np.float64)
        if tstar < 0 and np.all(np.isfinite(x)):
            x = np.maximum(x, np.finfo(float).tiny)
            return status, x / x.min(), tstar
        return status, None, tstar
    if not strict:
        return status, None, None
    raise ProjectionError(f"diagonal-metric SDP at level {level:g} (n = {n}): Clarabel ended with status "
                          f"{status!r}; loosen tol or check A for huge or tiny entries", status=status)


def _cheap_metrics(a: np.ndarray, stop_below: float = -np.inf) -> list[tuple[str, np.ndarray, float]]:
    """(source, λ, level) of Λ = I and of the Perron metric, best first (Perron skipped when Λ = I
    already reaches a level below ``stop_below``)."""
    out = [("identity", np.ones(a.shape[0]), float(np.linalg.eigvalsh((a + a.T) / 2)[-1]))]
    if a.shape[0] > 1 and out[0][2] >= stop_below:
        lam = perron_metric(a)
        if np.all(np.isfinite(lam)):
            out.append(("perron", lam, diagonally_scaled_mu_2(a, lam)))
    return sorted(out, key=lambda r: r[2])


def diagonal_metric_certificate(A, gamma: float = 1.0, *, eps: float = 1e-6, use_sdp: bool = True,
                                force: bool = False, max_seconds: float | None = None,
                                tol=None) -> DiagonalMetricCertificate:
    """Decide ∃ diagonal Λ ≻ 0: ΛA + AᵀΛ ≺ 2γΛ (i.e. ν(A) < γ) and return a verified certificate.

    Cheap certificates first (Λ = I; the Perron metric; the closed form for n = 2); the spectral
    obstruction α(A) ≥ γ answers "infeasible" without a solve. Otherwise the margin SDP
    t* = min t s.t. ΛA + AᵀΛ − 2(γ − ε)Λ ⪯ tI, Λ = diag(λ) ⪰ 0, tr Λ = n  is solved (always feasible,
    so no infeasibility certificate is needed; ``use_sdp=False`` skips it and reports "undecided").
    t* < 0 gives Λ. The margin ``eps`` ≥ 0 makes strictness meaningful: the solver aims at γ − ε,
    and any Λ (cheap or not) is accepted only if its recomputed level is < γ − ε/2, so a returned
    certificate satisfies ΛA + AᵀΛ ⪯ 2(γ − ε/2)Λ ≺ 2γΛ with room for round-off. "infeasible" means
    ν(A) ≥ γ − ε up to the solver tolerance ``tol`` (default 1e-9).

    Raises :class:`SDPTooLargeError` when the SDP is estimated above ``max_seconds`` (unless ``force``),
    :class:`~linf_opt.errors.ProjectionError` (with ``status``) when Clarabel fails or returns a point
    that does not verify.

        >>> diagonal_metric_certificate(np.array([[-10.0, 9.9], [0.0, 0.0]]), gamma=0.9).feasible
        True
    """
    a = _np64(A)
    gamma = check_scalar(gamma, "gamma")
    eps = check_scalar(eps, "eps", low=0.0)
    n = a.shape[0]
    accept = gamma - eps / 2   # a certificate must clear γ by half the margin (strict, beyond round-off)
    level = float(np.linalg.eigvalsh((a + a.T) / 2)[-1])
    if level < accept:
        return DiagonalMetricCertificate(True, np.ones(n), level, gamma, "identity", "certified")
    if float(np.linalg.eigvals(a).real.max()) >= gamma:
        return DiagonalMetricCertificate(False, None, None, gamma, "eigenvalue", "obstructed")
    src, lam, level = _cheap_metrics(a)[0]
    if level < accept:
        return DiagonalMetricCertificate(True, lam, level, gamma, src, "certified")
    if n == 2:
        nu = diagonal_metric_value_2x2(a)
        if nu >= gamma:
            return DiagonalMetricCertificate(False, None, None, gamma, "closed_form", "obstructed")
        lam2 = _certificate_2x2(a, (nu + gamma) / 2)   # strictly inside: level < (ν + γ)/2 < γ
        if lam2 is not None:
            level2 = diagonally_scaled_mu_2(a, lam2)
            if level2 < accept:
                return DiagonalMetricCertificate(True, lam2, level2, gamma, "closed_form", "certified")
    if not use_sdp:
        return DiagonalMetricCertificate(False, None, None, gamma, "undecided", "not_solved")
    check_sdp_size("diagonal_metric", n, force=force, max_seconds=max_seconds)
    status, lam, tstar = _sdp_metric(a, gamma - eps, tol)
    if lam is None:
        return DiagonalMetricCertificate(False, None, None, gamma, "sdp", status, tstar)
    level = diagonally_scaled_mu_2(a, lam)
    if level < accept:
        return DiagonalMetricCertificate(True, lam, level, gamma, "sdp", status, tstar)
    if tstar > -1e3 * _clarabel_settings(tol)["tol_feas"] * max(1.0, float(np.abs(a).max()), abs(gamma)):
        # t* is zero to solver accuracy: A is on the boundary, no strict certificate
        return DiagonalMetricCertificate(False, None, None, gamma, "sdp", status, tstar)
    raise ProjectionError(f"diagonal-metric SDP (n = {n}): Clarabel returned Λ with level {level:.10g} ≥ γ = "
                          f"{gamma:g} although t* = {tstar:.3g} < 0 (status {status!r}); tighten tol or raise eps",
                          status=status)


def diagonal_metric_value(A, *, rtol: float = 1e-5, force: bool = False, max_seconds: float | None = None,
                          tol=None, max_steps: int = 60) -> tuple[float, np.ndarray]:
    """ν(A) = inf over diagonal Λ ≻ 0 of the least c with ΛA + AᵀΛ ⪯ 2cΛ, and a Λ attaining ≈ it.

    Bisection on c in [α(A), min(μ₂(A), Perron level)] with one margin SDP per step, until the
    bracket is below ``rtol``·max(1, |c|). The value returned is the upper end: a level certified by
    the returned Λ (recomputed in float64), within the bracket width of ν(A) provided the solver's
    infeasibility verdicts are right (a solve that fails, which happens only very close to ν, counts
    as "not certified" and moves the lower end up). n = 2 uses the closed form (Λ from the 2×2 certificate, or from
    the bisection brackets when ν is not attained). The SDP budget is checked for the whole bisection.

        >>> value, lam = diagonal_metric_value(np.random.randn(5, 5))
    """
    a = _np64(A)
    rtol = check_scalar(rtol, "rtol", low=0.0, low_open=True)
    n = a.shape[0]
    cheap = _cheap_metrics(a)
    _, lam_hi, hi = cheap[0]
    lo = float(np.linalg.eigvals(a).real.max())
    if n == 2:
        lo = max(lo, diagonal_metric_value_2x2(a))
    width = lambda: hi - lo <= rtol * max(1.0, abs(hi))  # noqa: E731
    if width() or n == 1:
        return (hi if n > 1 else float(a[0, 0])), lam_hi
    if n == 2:  # the closed form tells ν; a certificate slightly above it
        c = lo + rtol * max(1.0, abs(lo)) / 2
        lam = _certificate_2x2(a, c)
        if lam is not None:
            lev = diagonally_scaled_mu_2(a, lam)
            if lev < hi:
                return lev, lam
        return hi, lam_hi
    steps = max(1, math.ceil(math.log2(max((hi - lo) / (rtol * max(1.0, abs(hi))), 2.0))))
    check_sdp_size("diagonal_metric", n, force=force, max_seconds=max_seconds, solves=steps)
    for _ in range(max_steps):
        if width():
            break
        mid = (lo + hi) / 2
        status, lam, _ = _sdp_metric(a, mid, tol, strict=False)  # a failed solve near ν: not certified
        if lam is not None:
            lev = diagonally_scaled_mu_2(a, lam)
            if lev < hi:
                hi, lam_hi = lev, lam
            if lev > mid + rtol * max(1.0, abs(mid)):
                lo = mid  # the solver claimed feasibility it could not deliver: treat as not certified
        else:
            lo = mid
    return hi, lam_hi

