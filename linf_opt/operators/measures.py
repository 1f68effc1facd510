"""Matrix norms and matrix measures (log-norms) that decide well-posedness (docs/mathematics.md §2).

For A ∈ ℝ^{n×n} and positive weights η (η = 1 when omitted):

    ‖A‖_{∞,η}  = maxᵢ Σⱼ |aᵢⱼ| ηⱼ / ηᵢ                      (induced weighted ℓ∞ norm)
    μ_{∞,η}(A) = maxᵢ ( aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ / ηᵢ )       (ℓ∞ matrix measure)
    μ₂(A)      = λ_max((A + Aᵀ)/2),   μ₁(A) = μ∞(Aᵀ)
    M(A)       : diagonal aᵢᵢ, off-diagonal |aᵢⱼ|          (Metzler majorant)
    inf_η μ_{∞,η}(A) = α(M(A))                             (spectral abscissa; `optimal_weights`)

Every function accepts a numpy array or a torch tensor, batched over leading dimensions, and returns
the caller's type (a Python float for a single numpy matrix).

    >>> import numpy as np; from linf_opt import mu_inf, norm_inf
    >>> A = np.array([[-2.0, 1.0], [0.5, 0.1]]); mu_inf(A), norm_inf(A)
    (0.6, 3.0)
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components

from linf_opt._tensor import as_matrix, as_weights, check_scalar, like_input, to_torch, check_finite

__all__ = [
    "mu_inf", "norm_inf", "mu_1", "mu_2", "norm_inf_rect", "metzler_majorant", "spectral_abscissa",
    "optimal_weights", "average_step", "contraction_factor", "row_measures",
]


def _scaled(A: torch.Tensor, eta: torch.Tensor | None) -> torch.Tensor:
    """diag(η)⁻¹ A diag(η): the similarity that turns weighted quantities into unweighted ones.

    Computed as A ⊙ (ηⱼ/ηᵢ): one rounding per entry, and the diagonal is kept exactly (ηᵢ/ηᵢ = 1).
    """
    if eta is None:
        return A
    return A * (eta.unsqueeze(-2) / eta.unsqueeze(-1))


_EYE: dict = {}


def _eye_mask(n: int, device) -> torch.Tensor:
    key = (n, str(device))
    m = _EYE.get(key)
    if m is None:
        m = _EYE[key] = torch.eye(n, dtype=torch.bool, device=device)
    return m


def _row_parts(A: torch.Tensor, eta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(d, s) in float64: dᵢ = aᵢᵢ and sᵢ = Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ, shapes (..., n).

    The one computation behind every μ∞ value of this module (``mu_inf``, ``row_measures``,
    ``contraction_factor``, the operators' ``mu_inf``): float64 accumulation for every input dtype (a
    float32 row of 1e6-sized entries that cancel to O(1) keeps its accuracy), the diagonal masked out
    of the sum (so sᵢ does not depend on aᵢᵢ, and rᵢ = dᵢ + sᵢ is monotone in it), and the rows made
    contiguous before the reduction (one summation order per row length on a given device). The
    projections (:mod:`linf_opt.sets.projections`) decide feasibility and repair their round-off with
    this function, so that ``mu_inf(project_mu_inf(A, γ)) <= γ`` holds as computed.
    """
    A64 = A.to(torch.float64)
    Q = A64.abs()
    if eta is not None:
        e = eta.to(device=A.device, dtype=torch.float64)
        Q = Q * (e.unsqueeze(-2) / e.unsqueeze(-1))
    if Q.requires_grad:
        Q = torch.where(_eye_mask(A.shape[-1], A.device), 0.0, Q)
    else:  # the same values, without a second temporary
        Q = Q.contiguous()
        torch.diagonal(Q, dim1=-2, dim2=-1).zero_()
    return torch.diagonal(A64, dim1=-2, dim2=-1), Q.contiguous().sum(-1)


def _row_values64(A: torch.Tensor, eta: torch.Tensor | None = None) -> torch.Tensor:
    """rᵢ = dᵢ + sᵢ of :func:`_row_parts`, float64."""
    d, s = _row_parts(A, eta)
    return d + s


def _weights64(eta, n: int, like: torch.Tensor) -> torch.Tensor | None:
    """η validated and converted to float64 on ``like``'s device (None for η = 1)."""
    if eta is None:
        return None
    return as_weights(eta, n, torch.empty(0, dtype=torch.float64, device=like.device))


def row_measures(A, eta=None):
    """Per-row terms of μ_{∞,η}: rᵢ = aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ, shape (..., n), in A's dtype
    (accumulated in float64). μ_{∞,η}(A) = maxᵢ rᵢ."""
    t, was_numpy = as_matrix(A, "A")
    w = _weights64(eta, t.shape[-1], t)
    return like_input(_row_values64(t, w).to(t.dtype), was_numpy)


def _row_measures(A: torch.Tensor) -> torch.Tensor:
    """rᵢ of an (already scaled) matrix, accumulated in float64 and returned in A's dtype (differentiable)."""
    return _row_values64(A).to(A.dtype)


def mu_inf(A, eta=None):
    """ℓ∞ matrix measure μ_{∞,η}(A) = maxᵢ (aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ); shape (...) for A of shape (..., n, n).

    Row sums are accumulated in float64 for every dtype (``_row_parts``) and the result is returned in
    A's dtype; the projections of :mod:`linf_opt.sets.projections` guarantee ``mu_inf(X) <= γ`` for
    their output X as computed here.
    """
    t, was_numpy = as_matrix(A, "A")
    w = _weights64(eta, t.shape[-1], t)
    return like_input(_row_values64(t, w).amax(-1).to(t.dtype), was_numpy)


def norm_inf(A, eta=None):
    """Induced weighted ℓ∞ norm ‖A‖_{∞,η} = maxᵢ Σⱼ |aᵢⱼ| ηⱼ/ηᵢ of a square matrix."""
    t, was_numpy = as_matrix(A, "A")
    w = as_weights(eta, t.shape[-1], t)
    return like_input(_scaled(t, w).abs().sum(-1).amax(-1), was_numpy)


def norm_inf_rect(M):
    """ℓ∞ operator norm of a rectangular matrix: the maximum absolute row sum maxᵢ Σⱼ |mᵢⱼ|."""
    t, was_numpy = to_torch(M, "M")
    if t.ndim < 2:
        raise ValueError(f"M: expected a matrix of shape (..., p, q), got shape {tuple(t.shape)}")
    check_finite(t, "M")
    return like_input(t.abs().sum(-1).amax(-1), was_numpy)


def mu_1(A):
    """ℓ1 matrix measure μ₁(A) = μ∞(Aᵀ) = maxⱼ (aⱼⱼ + Σ_{i≠j} |aᵢⱼ|) (column sums)."""
    t, was_numpy = as_matrix(A, "A")
    return like_input(_row_values64(t.transpose(-1, -2)).amax(-1).to(t.dtype), was_numpy)


def mu_2(A):
    """ℓ2 matrix measure μ₂(A) = λ_max((A + Aᵀ)/2)."""
    t, was_numpy = as_matrix(A, "A")
    return like_input(torch.linalg.eigvalsh((t + t.transpose(-1, -2)) / 2)[..., -1], was_numpy)


def metzler_majorant(A):
    """Metzler majorant M(A): the diagonal of A and the absolute values |aᵢⱼ| off the diagonal."""
    t, was_numpy = as_matrix(A, "A")
    return like_input(_metzler(t), was_numpy)


def _metzler(A: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(A.shape[-1], dtype=torch.bool, device=A.device)
    return torch.where(eye, A, A.abs())


def spectral_abscissa(A):
    """Spectral abscissa α(A) = max Re λ(A) (largest real part of an eigenvalue)."""
    t, was_numpy = as_matrix(A, "A")
    vals = torch.linalg.eigvals(t.to(torch.float64) if t.dtype in (torch.float16, torch.bfloat16) else t)
    return like_input(vals.real.amax(-1).to(t.dtype), was_numpy)


def _perron_weights(M: np.ndarray) -> np.ndarray:
    """Right Perron vector (entrywise positive) of an irreducible Metzler matrix M."""
    vals, vecs = np.linalg.eig(M)
    k = int(np.argmax(vals.real))
    v = np.abs(vecs[:, k].real)
    # A Perron vector has one sign; refine with a few inverse-iteration steps for accuracy.
    shift = vals[k].real + 1e-12 * max(1.0, np.abs(M).max())
    n = M.shape[0]
    try:
        for _ in range(2):
            w = np.linalg.solve(shift * np.eye(n) - M, v)
            if np.all(np.isfinite(w)) and np.all(w > 0):
                v = w
            v = v / v.max()
    except np.linalg.LinAlgError:
        pass
    return v / v.max()


def _optimal_weights_single(A: np.ndarray, eps: float) -> tuple[np.ndarray, float]:
    n = A.shape[0]
    M = np.where(np.eye(n, dtype=bool), A, np.abs(A))
    if n == 1:
        return np.ones(1), float(A[0, 0])
    off = (M != 0) & ~np.eye(n, dtype=bool)
    ncomp, _ = connected_components(off.astype(np.int8), directed=True, connection="strong")
    if ncomp > 1:
        # Reducible: the infimum need not be attained; perturb every off-diagonal entry (docs/mathematics.md §2).
        scale = max(np.abs(M).max(), 1.0)
        M = M + eps * scale * (~np.eye(n, dtype=bool))
    eta = _perron_weights(M)
    eta = np.maximum(eta, np.finfo(float).tiny)
    S = A * eta[None, :] / eta[:, None]
    value = float(np.max(np.diag(S) + np.abs(S).sum(1) - np.abs(np.diag(S))))
    return eta, value


def optimal_weights(A, eps: float = 1e-9):
    """Weights η > 0 that (nearly) minimize μ_{∞,η}(A), and the value reached.

    inf_{η>0} μ_{∞,η}(A) = α(M(A)), the spectral abscissa of the Metzler majorant. When M(A) is
    irreducible the infimum is attained at its right Perron vector, returned here (scaled so max η = 1).
    When M(A) is reducible, ``eps`` × max|M| is added to every off-diagonal entry first and the value
    actually reached, μ_{∞,η}(A) ≥ α(M(A)), is reported.

    Returns ``(eta, value)``; ``value`` is μ_{∞,η}(A) at the returned η. Batched for torch input.

        >>> eta, value = optimal_weights(np.array([[0.0, 10.0], [0.01, 0.0]]))   # value ≈ 0.316
    """
    t, was_numpy = as_matrix(A, "A")
    eps = check_scalar(eps, "eps", low=0.0, low_open=True)
    batch = t.shape[:-2]
    flat = t.detach().reshape(-1, t.shape[-1], t.shape[-1]).cpu().to(torch.float64).numpy()
    etas, values = zip(*(_optimal_weights_single(a, eps) for a in flat)) if len(flat) else ((), ())
    eta = torch.as_tensor(np.array(etas), dtype=t.dtype, device=t.device).reshape(*batch, t.shape[-1])
    val = torch.as_tensor(np.array(values), dtype=t.dtype, device=t.device).reshape(batch)
    return like_input(eta, was_numpy), like_input(val, was_numpy)


def _average_step(A: torch.Tensor) -> torch.Tensor:
    d = torch.diagonal(A, dim1=-2, dim2=-1)
    return 1.0 / (1.0 - d.clamp(max=0).amin(-1))


def average_step(A):
    """Optimal step of the average iteration, α* = 1 / (1 − minᵢ min(aᵢᵢ, 0)) ∈ (0, 1] (docs/mathematics.md §4)."""
    t, was_numpy = as_matrix(A, "A")
    return like_input(_average_step(t), was_numpy)


def contraction_factor(A, alpha=None, eta=None):
    """Guaranteed contraction factor of the average iteration in ‖·‖_{∞,η}: ρ(α) = 1 − α(1 − μ⁺).

    μ⁺ = max(μ_{∞,η}(A), 0) and α ∈ (0, α*] (default α*). A value ≥ 1 means no guarantee (μ ≥ 1).
    Raises ``ValueError`` for α outside (0, α*].
    """
    t, was_numpy = as_matrix(A, "A")
    w = _weights64(eta, t.shape[-1], t)
    mu_plus = _row_values64(t, w).amax(-1).to(t.dtype).clamp(min=0)
    a_star = _average_step(t)
    if alpha is None:
        a = a_star
    else:
        a_val = check_scalar(alpha, "alpha", low=0.0, low_open=True)
        if bool((a_val > a_star * (1 + 1e-12)).any()):
            raise ValueError(f"alpha: expected a step in (0, α*] with α* = {float(a_star.min()):.6g}, got {a_val}")
        a = torch.full_like(a_star, a_val)
    return like_input(1.0 - a * (1.0 - mu_plus), was_numpy)
