"""Study 2: two-dimensional slices A₀ + sD₁ + tD₂ of matrix space with every set drawn on the same axes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from linf_opt._tensor import as_matrix
from linf_opt.plots import plot_slices
from linf_opt.sets.sdp import diagonal_metric_value_2x2
from linf_opt.compare.sets import comparison_sets, memberships

__all__ = ["SliceStudy", "slice_study", "standard_slices", "slices_figure"]


@dataclass
class SliceStudy:
    """Study 2: the plane A(s, t) = A₀ + s D₁ + t D₂ on a grid; ``margins[name]`` (len(t), len(s)) is
    bound − value (≥ 0 inside), ``inside[name]`` the membership."""

    title: str
    A0: np.ndarray
    D1: np.ndarray
    D2: np.ndarray
    s: np.ndarray
    t: np.ndarray
    margins: dict[str, np.ndarray]
    inside: dict[str, np.ndarray]
    gamma: float
    axis_labels: tuple[str, str] = ("s", "t")
    points: dict[str, tuple[float, float]] = field(default_factory=dict)

    def area_fractions(self) -> dict[str, float]:
        """Fraction of the drawn window inside each set."""
        return {k: float(v.mean()) for k, v in self.inside.items()}


def slice_study(A0, D1, D2, *, extent=(-3.0, 3.0, -3.0, 3.0), resolution: int = 161, gamma: float = 0.9,
                title: str = "", axis_labels=("s", "t"), points=None, progress: bool = False) -> SliceStudy:
    """Evaluate every set on the grid A₀ + s D₁ + t D₂, (s, t) in ``extent`` = (s₀, s₁, t₀, t₁).

    For n = 2 the diagonal metric uses its closed form (exact, fast); for larger n its membership comes
    from :meth:`~linf_opt.sets.feasible.DiagonalMetricSet.contains` (SDPs only for undecided points) and its
    margin is ±1 (inside/outside). ``points`` marks named matrices: {label: (s, t)}.
    """
    A0, D1, D2 = (np.asarray(as_matrix(M, name)[0].double().numpy()) for M, name in
                  ((A0, "A0"), (D1, "D1"), (D2, "D2")))
    if not (A0.shape == D1.shape == D2.shape) or A0.ndim != 2:
        raise ValueError(f"A0, D1, D2: expected three n×n matrices of one shape, got {A0.shape}, {D1.shape}, {D2.shape}")
    s0, s1, t0, t1 = (float(v) for v in extent)
    s = np.linspace(s0, s1, resolution)
    t = np.linspace(t0, t1, resolution)
    S, T = np.meshgrid(s, t)
    grid = A0[None, None] + S[..., None, None] * D1 + T[..., None, None] * D2
    flat = torch.as_tensor(grid.reshape(-1, *A0.shape))
    sets = comparison_sets(gamma)
    margins, inside = {}, {}
    for name, Sset in sets.items():
        if name == "diagonal_metric":
            if A0.shape[0] == 2:
                val = diagonal_metric_value_2x2(flat.numpy())
                m = Sset.bound - val
                inside[name] = (m >= -1e-9 * np.maximum(1, np.abs(flat.numpy()).sum(-1).max(-1))).reshape(S.shape)
            else:
                flags = memberships(flat, {name: Sset}, progress=progress)[name]
                inside[name] = flags.reshape(S.shape)
                m = np.where(flags, 1.0, -1.0)
            margins[name] = np.asarray(m).reshape(S.shape)
        else:
            margins[name] = np.asarray(torch.as_tensor(Sset.margin(flat))).reshape(S.shape)
            inside[name] = np.asarray(torch.as_tensor(Sset.contains(flat))).reshape(S.shape)
    return SliceStudy(title, A0, D1, D2, s, t, margins, inside, gamma, tuple(axis_labels), dict(points or {}))


def standard_slices(gamma: float = 0.9, *, n: int = 6, resolution: int = 161, seed: int = 0,
                    progress: bool = False) -> list[SliceStudy]:
    """The report's slices: three 2×2 planes (exact) and one through a random n×n matrix.

    1. off-diagonal plane [[0, s], [t, 0]]: μ∞ is a square, weighted/PF a hyperbolic cross, monotone a
       band around s = −t (it ignores skew parts), the diagonal metric all of st ≤ 0 and the cross;
    2. diagonal plane [[s, 2], [0.5, t]] (asymmetric off-diagonal): the norm ball is empty, PF bounded,
       μ∞ and weighted unbounded toward negative diagonals;
    3. [[s, t], [0, 0]] through the [[−10, 9.9], [0, 0]]: μ∞ is a wedge |t| ≤ γ − s, monotone a
       parabola |t| ≤ 2√(γ(γ − s)): the ℓ∞ polytope grows linearly with the negative diagonal;
    4. random n×n: A = N + s I + t K with N a random matrix and K a random skew-symmetric matrix
       (‖K‖∞ = 1): the skew direction is free for the monotone set and costs |t| for μ∞.
    """
    E = lambda i, j: np.eye(2)[:, [i]] @ np.eye(2)[[j], :]  # noqa: E731  (the unit matrix eᵢeⱼᵀ)
    out = [
        slice_study(np.zeros((2, 2)), E(0, 1), E(1, 0), extent=(-4, 4, -4, 4), resolution=resolution, gamma=gamma,
                    title="A = [[0, s], [t, 0]]", axis_labels=("s = a₁₂", "t = a₂₁"),
                    points={"skew": (3.0, -3.0)}),
        slice_study(np.array([[0.0, 2.0], [0.5, 0.0]]), E(0, 0), E(1, 1), extent=(-6, 2, -6, 2),
                    resolution=resolution, gamma=gamma, title="A = [[s, 2], [0.5, t]]",
                    axis_labels=("s = a₁₁", "t = a₂₂")),
        slice_study(np.zeros((2, 2)), E(0, 0), E(0, 1), extent=(-12, 2, -12, 12), resolution=resolution,
                    gamma=gamma, title="A = [[s, t], [0, 0]]", axis_labels=("s = a₁₁", "t = a₁₂"),
                    points={"[[−10, 9.9], [0, 0]]": (-10.0, 9.9)}),
    ]
    if n > 2:
        rng = np.random.default_rng(seed)
        N = rng.standard_normal((n, n)) / math.sqrt(n)
        K = rng.standard_normal((n, n))
        K = K - K.T
        K /= np.abs(K).sum(1).max()
        out.append(slice_study(N, np.eye(n), K, extent=(-4, 1, -4, 4), resolution=max(41, resolution // 3),
                               gamma=gamma, title=f"random n={n}: A = N + s·I + t·K (K skew)",
                               axis_labels=("s (diagonal shift)", "t (skew part)"), progress=progress))
    return out


def slices_figure(slices: Sequence[SliceStudy], ncols: int = 2) -> Figure:
    """All slices on one figure, every set drawn on the same axes of each panel (:func:`linf_opt.plots.plot_slices`)."""
    return plot_slices(slices, ncols=ncols)
