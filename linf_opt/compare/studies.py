"""Comparing the feasible sets (docs/mathematics.md §7): is the ℓ∞ search space larger than the ℓ2 / SDP alternatives?

Six conditions on the hidden-to-hidden matrix A, all at the same level γ (the monotone set with
m = 1 − γ), each one :mod:`linf_opt.sets.feasible` object:

    norm_inf           ‖A‖∞ ≤ γ                        El Ghaoui's norm ball
    mu_inf             μ∞(A) ≤ γ                       the ℓ∞ polytope
    perron_frobenius   ρ(|A|) ≤ γ
    weighted_mu_inf    α(M(A)) ≤ γ                     ∃η: μ_{∞,η}(A) ≤ γ
    monotone           μ₂(A) ≤ γ                       monotone equilibrium networks
    diagonal_metric    ∃ diagonal Λ ≻ 0: ΛA + AᵀΛ ⪯ 2γΛ   Lipschitz-bounded equilibrium networks

Known nesting (:data:`NESTING`): norm ⊂ μ∞ ⊂ weighted ⊂ diagonal metric; norm ⊂ Perron–Frobenius ⊂
weighted; monotone ⊂ diagonal metric. μ∞ and monotone are not nested either way.

Five studies, each a function returning a dataclass with the data and a matplotlib ``Figure``
(``.figure``, drawn by :mod:`linf_opt.plots`, the module every figure of the library comes from;
created without pyplot, so no backend is touched and nothing is shown):

1. :func:`containment_study`: membership counts on random ensembles; nesting checked; counter-examples.
2. :func:`slice_study`: two-dimensional slices A₀ + sD₁ + tD₂ with every set on the same axes.
3. :func:`volume_study`: Monte-Carlo volume fractions in a box, with confidence intervals and ratios.
4. :func:`distance_study`: the distance from a (trained, unconstrained) A to each set.
5. :func:`training_study`: one training problem trained under each set with the same budget.

:func:`write_report` runs them and writes ``report.md`` with PNG figures (``linf-opt compare``).

    >>> from linf_opt.compare.studies import containment_study, default_ensembles
    >>> study = containment_study(default_ensembles(5, samples=100)); study.violations
    []
    >>> study.figure.savefig("containment.png")
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import norm as _normal
from tqdm.auto import tqdm

from linf_opt._tensor import as_matrix, check_scalar
from linf_opt.plots import SET_COLORS as _COLORS, SET_SHORT as _SHORT
from linf_opt.plots import plot_containment, plot_distances, plot_slices, plot_training_study, plot_volumes
from linf_opt.operators.measures import metzler_majorant, mu_2, mu_inf, spectral_abscissa
from linf_opt.sets.sdp import (SDPTooLargeError, diagonal_metric_certificate, diagonal_metric_value_2x2, diagonally_scaled_mu_2,
                  perron_metric)
from linf_opt.sets.feasible import (DiagonalMetricSet, FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall, PerronFrobeniusSet,
                   WeightedMuInf)

__all__ = [
    "SET_ORDER", "SET_LABELS", "NESTING", "COUNTER_EXAMPLES", "comparison_sets", "memberships", "check_nesting",
    "EnsembleSpec", "default_ensembles", "random_ensemble", "ContainmentStudy", "containment_study",
    "spec_examples_table", "SliceStudy", "slice_study", "standard_slices", "slices_figure", "VolumeStudy",
    "volume_study", "volume_table", "DistanceStudy", "distance_study", "train_unconstrained_matrix",
    "distance_training_size", "TRAINING_VARIANTS",
    "TrainingStudy", "training_study", "load_training_study", "write_report",
]

#: the sets, from the smallest to the largest family, in the order tables list them.
SET_ORDER = ("norm_inf", "mu_inf", "perron_frobenius", "weighted_mu_inf", "monotone", "diagonal_metric")
SET_LABELS = {
    "norm_inf": "norm ball ‖A‖∞ ≤ γ",
    "mu_inf": "ℓ∞ polytope μ∞(A) ≤ γ",
    "perron_frobenius": "Perron–Frobenius ρ(|A|) ≤ γ",
    "weighted_mu_inf": "weighted ℓ∞ α(M(A)) ≤ γ",
    "monotone": "monotone μ₂(A) ≤ γ",
    "diagonal_metric": "diagonal metric ΛA + AᵀΛ ⪯ 2γΛ",
}
# the short labels and colours of the sets (tables and figures alike) are linf_opt.plots.SET_SHORT / SET_COLORS
#: (subset, superset) pairs that hold for every A at the same γ (docs/mathematics.md §7; ρ(|A|) ≤ ‖A‖∞ for the second).
NESTING = (("norm_inf", "mu_inf"), ("norm_inf", "perron_frobenius"), ("mu_inf", "weighted_mu_inf"),
           ("perron_frobenius", "weighted_mu_inf"), ("weighted_mu_inf", "diagonal_metric"),
           ("monotone", "diagonal_metric"))
#: the counter-examples of docs/mathematics.md §7 (μ∞ and monotone are not nested either way).
COUNTER_EXAMPLES = {
    "skew [[0, 3], [−3, 0]]": np.array([[0.0, 3.0], [-3.0, 0.0]]),
    "negative diagonal [[−10, 9.9], [0, 0]]": np.array([[-10.0, 9.9], [0.0, 0.0]]),
    "asymmetric [[0, 10], [0.01, 0]]": np.array([[0.0, 10.0], [0.01, 0.0]]),
}


def comparison_sets(gamma: float = 0.9, *, names: Iterable[str] = SET_ORDER, force: bool = False,
                    max_seconds: float | None = None) -> dict[str, FeasibleSet]:
    """The six sets at the common level γ (monotone: m = 1 − γ), keyed by registry name.

    ``force`` and ``max_seconds`` go to :class:`~linf_opt.sets.feasible.DiagonalMetricSet` (SDP size guard).
    """
    gamma = check_scalar(gamma, "gamma")
    make = {
        "norm_inf": lambda: NormInfBall(max(gamma, 0.0)),
        "mu_inf": lambda: MuInfPolytope(gamma),
        "perron_frobenius": lambda: PerronFrobeniusSet(max(gamma, 0.0)),
        "weighted_mu_inf": lambda: WeightedMuInf(gamma),
        "monotone": lambda: MonotoneSet(1.0 - gamma),
        "diagonal_metric": lambda: DiagonalMetricSet(gamma, force=force, max_seconds=max_seconds),
    }
    out = {}
    for name in names:
        if name not in make:
            raise ValueError(f"names: unknown set {name!r}; valid: {', '.join(SET_ORDER)}")
        out[name] = make[name]()
    return out


def memberships(matrices, sets: Mapping[str, FeasibleSet], *, tol: float = 1e-9,
                progress: bool = False) -> dict[str, np.ndarray]:
    """``{name: bool array (K,)}``: whether each of K matrices (K, n, n) lies in each set.

    Vectorised for the closed-form sets; the diagonal-metric set is decided matrix by matrix (cheap
    certificates first, an SDP only for the undecided ones).
    """
    t, _ = as_matrix(matrices, "matrices")
    if t.ndim != 3:
        raise ValueError(f"matrices: expected a batch of shape (K, n, n), got shape {tuple(t.shape)}")
    t = t.detach().double()
    out = {}
    for name, S in sets.items():
        if isinstance(S, DiagonalMetricSet):
            flags = np.zeros(t.shape[0], dtype=bool)
            for k in tqdm(range(t.shape[0]), desc="diagonal metric", leave=False, disable=not progress):
                flags[k] = S.contains(t[k].numpy(), tol=tol)
            out[name] = flags
        else:
            out[name] = np.asarray(torch.as_tensor(S.contains(t, tol=tol)).cpu().numpy(), dtype=bool).reshape(-1)
    return out


@dataclass
class NestingViolation:
    """Matrices in ``subset`` but not in ``superset`` (indices into the ensemble)."""

    subset: str
    superset: str
    indices: list[int]


def check_nesting(member: Mapping[str, np.ndarray], pairs=NESTING) -> list[NestingViolation]:
    """The pairs of :data:`NESTING` that some matrix violates (an empty list when the theory holds)."""
    out = []
    for sub, sup in pairs:
        if sub in member and sup in member:
            bad = np.flatnonzero(member[sub] & ~member[sup])
            if bad.size:
                out.append(NestingViolation(sub, sup, bad.tolist()))
    return out


# ---------------------------------------------------------------------------------------------------
# study 1: random ensembles
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnsembleSpec:
    """A random ensemble: A = scale · G − shift · I with G of the given ``kind``, normalised per size.

    kind      "dense": G = N(0, 1) entries / √n (μ₂ stays O(1) as n grows, μ∞ grows like √n);
              "sparse": 2 non-zero N(0, 1) off-diagonal entries per row (no diagonal);
              "triangular": strictly upper-triangular N(0, 1)/√n entries (feed-forward networks, α(M) = 0).
    dominant  replace the diagonal (before the shift) by aᵢᵢ = −Σ_{j≠i}|aᵢⱼ| + uᵢ, uᵢ ~ U(−0.5, 1):
              row-diagonally dominant matrices, like those ℓ∞ training produces (the projection puts
              rows on the boundary of the polytope; μ∞(A) = maxᵢ uᵢ).
    """

    kind: str
    n: int
    scale: float
    shift: float
    samples: int
    dominant: bool = False

    @property
    def label(self) -> str:
        return (f"{self.kind}{' dominant' if self.dominant else ''} n={self.n} σ={self.scale:g} "
                f"shift={self.shift:g}")


_KINDS = ("dense", "sparse", "triangular")


def random_ensemble(spec: EnsembleSpec, seed: int = 0) -> np.ndarray:
    """K = spec.samples matrices (K, n, n) of the ensemble, float64, reproducible from ``seed``."""
    if spec.kind not in _KINDS:
        raise ValueError(f"spec.kind: expected one of {', '.join(map(repr, _KINDS))}, got {spec.kind!r}")
    if spec.n < 1 or spec.samples < 1:
        raise ValueError(f"spec: expected n ≥ 1 and samples ≥ 1, got n={spec.n}, samples={spec.samples}")
    kind_id = _KINDS.index(spec.kind)
    rng = np.random.default_rng([seed, spec.n, kind_id, int(spec.dominant), int(round(1000 * spec.scale)),
                                 int(round(1000 * abs(spec.shift))), int(spec.shift < 0)])
    n, K = spec.n, spec.samples
    G = rng.standard_normal((K, n, n))
    if spec.kind == "dense":
        G /= math.sqrt(n)
    elif spec.kind == "triangular":
        G = np.triu(G, 1) / math.sqrt(n)
    else:
        mask = np.zeros((K, n, n), dtype=bool)
        for k in range(K):
            for i in range(n):
                others = [j for j in range(n) if j != i]
                if others:
                    mask[k, i, rng.choice(others, size=min(2, len(others)), replace=False)] = True
        G = np.where(mask, G, 0.0)
    A = spec.scale * G
    if spec.dominant:
        idx = np.arange(n)
        A[:, idx, idx] = 0.0
        A[:, idx, idx] = -np.abs(A).sum(-1) + rng.uniform(-0.5, 1.0, size=(K, n))
    return A - spec.shift * np.eye(n)


def default_ensembles(n: int = 6, samples: int = 200) -> list[EnsembleSpec]:
    """The report's ensembles: sizes 2 and n; every kind (dense only for n = 2) with σ ∈ {0.5, 2} and
    shift ∈ {0, 2}; and, for size n, the row-dominant version of every kind (shift 0)."""
    sizes = sorted({2, int(n)})
    out = []
    for size in sizes:
        for kind in _KINDS:
            if kind != "dense" and size == 2:
                continue
            for scale in (0.5, 2.0):
                for shift in (0.0, 2.0):
                    out.append(EnsembleSpec(kind, size, scale, shift, samples))
    if n > 2:
        for kind in _KINDS:
            for scale in (0.5, 2.0):
                out.append(EnsembleSpec(kind, int(n), scale, 0.0, samples, dominant=True))
    return out


@dataclass
class ContainmentStudy:
    """Study 1. ``counts[e, s]``: matrices of ensemble e in set s (``set_names`` order); ``violations``
    lists nesting violations (empty when the theory holds); ``examples`` holds matrices that are
    ℓ∞-feasible but not monotone (``"mu_inf_not_monotone"``) and vice versa, where found."""

    gamma: float
    ensembles: list[EnsembleSpec]
    set_names: tuple[str, ...]
    counts: np.ndarray
    linf_only: np.ndarray
    monotone_only: np.ndarray
    violations: list[dict[str, Any]]
    examples: dict[str, np.ndarray]
    seconds: float
    figure: Figure | None = None

    def table(self) -> str:
        """Markdown: one row per ensemble, membership counts per set, μ∞-only and monotone-only counts."""
        head = ["ensemble", "K"] + [_SHORT[s] for s in self.set_names] + ["μ∞ not mono", "mono not μ∞"]
        rows = [head, ["---"] * len(head)]
        for e, spec in enumerate(self.ensembles):
            rows.append([spec.label, str(spec.samples)] + [str(int(c)) for c in self.counts[e]]
                        + [str(int(self.linf_only[e])), str(int(self.monotone_only[e]))])
        return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def containment_study(ensembles: Sequence[EnsembleSpec] | None = None, *, gamma: float = 0.9, seed: int = 0,
                      tol: float = 1e-9, progress: bool = False, figure: bool = True) -> ContainmentStudy:
    """Membership counts of every set on random ensembles; nesting checked; counter-examples kept.

    A nesting violation (a matrix in a subset of :data:`NESTING` but not in its superset) is recorded
    in ``violations`` with the matrix, never dropped.
    """
    ensembles = list(default_ensembles() if ensembles is None else ensembles)
    sets = comparison_sets(gamma)
    names = tuple(sets)
    counts = np.zeros((len(ensembles), len(names)), dtype=np.int64)
    linf_only = np.zeros(len(ensembles), dtype=np.int64)
    mono_only = np.zeros(len(ensembles), dtype=np.int64)
    violations: list[dict[str, Any]] = []
    examples: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for e, spec in enumerate(tqdm(ensembles, desc="containment", disable=not progress, unit="ensemble")):
        mats = random_ensemble(spec, seed)
        mem = memberships(mats, sets, tol=tol)
        counts[e] = [int(mem[s].sum()) for s in names]
        lo = mem["mu_inf"] & ~mem["monotone"]
        mo = mem["monotone"] & ~mem["mu_inf"]
        linf_only[e], mono_only[e] = int(lo.sum()), int(mo.sum())
        if lo.any() and "mu_inf_not_monotone" not in examples:
            examples["mu_inf_not_monotone"] = mats[np.flatnonzero(lo)[0]]
        if mo.any() and "monotone_not_mu_inf" not in examples:
            examples["monotone_not_mu_inf"] = mats[np.flatnonzero(mo)[0]]
        for v in check_nesting(mem):
            violations.append({"ensemble": spec.label, "subset": v.subset, "superset": v.superset,
                               "count": len(v.indices), "matrix": mats[v.indices[0]].tolist()})
    study = ContainmentStudy(gamma, ensembles, names, counts, linf_only, mono_only, violations, examples,
                             time.perf_counter() - t0)
    if figure:
        study.figure = plot_containment(study)
    return study


def spec_examples_table(gamma: float = 0.9) -> list[dict[str, Any]]:
    """Membership and value of each docs/mathematics.md §7 counter-example in each set (rows of dicts)."""
    sets = comparison_sets(gamma)
    rows = []
    for label, A in COUNTER_EXAMPLES.items():
        row: dict[str, Any] = {"matrix": label}
        for name, S in sets.items():
            row[name] = bool(S.contains(A))
            row[name + "_value"] = float(S.value(A))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------
# study 2: slices
# ---------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------
# study 3: Monte-Carlo volume
# ---------------------------------------------------------------------------------------------------

def _wilson(k: np.ndarray, N: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    p = k / N
    d = 1 + z * z / N
    c = (p + z * z / (2 * N)) / d
    h = z * np.sqrt(p * (1 - p) / N + z * z / (4 * N * N)) / d
    return np.clip(np.minimum(c - h, p), 0, 1), np.clip(np.maximum(c + h, p), 0, 1)


@dataclass
class VolumeStudy:
    """Study 3: fraction of the box [diag_range] × [off_range] occupied by each set.

    ``fraction``, ``ci_low``, ``ci_high`` (Wilson interval at ``confidence``); ``ratio[name]`` =
    fraction / fraction of ``reference`` with a delta-method interval on the log ratio (paired
    samples), NaN where the reference has no hits.
    """

    n: int
    samples: int
    diag_range: tuple[float, float]
    off_range: tuple[float, float]
    gamma: float
    set_names: tuple[str, ...]
    hits: np.ndarray
    fraction: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    reference: str
    ratio: np.ndarray
    ratio_low: np.ndarray
    ratio_high: np.ndarray
    confidence: float
    seconds: float
    figure: Figure | None = None

    @property
    def label(self) -> str:
        return (f"n={self.n}, diag ∈ [{self.diag_range[0]:.3g}, {self.diag_range[1]:.3g}], "
                f"off ∈ [{self.off_range[0]:.3g}, {self.off_range[1]:.3g}]")


def volume_study(n: int = 2, samples: int = 20000, *, diag_range=(-1.0, 1.0), off_range=(-1.0, 1.0),
                 gamma: float = 0.9, reference: str = "monotone", confidence: float = 0.95, seed: int = 0,
                 progress: bool = False, figure: bool = True) -> VolumeStudy:
    """Monte-Carlo volume of each set inside a box (diagonal and off-diagonal entries uniform).

    With k hits of N samples the fraction is k/N with a Wilson interval; ratios to ``reference`` use
    the delta method on log(p̂ₛ/p̂ᵣ) with the paired covariance, Var ≈ (1/pₛ + 1/pᵣ − 2pₛᵣ/(pₛpᵣ))/N.
    ``figure``: draw ``.figure`` (:func:`linf_opt.plots.plot_volumes` of this box; several boxes on one
    figure: ``plot_volumes([st1, st2, …])``).
    """
    if samples < 1 or n < 1:
        raise ValueError(f"samples, n: expected positive integers, got samples={samples}, n={n}")
    confidence = check_scalar(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = np.random.default_rng([seed, n, samples])
    A = rng.uniform(off_range[0], off_range[1], size=(samples, n, n))
    idx = np.arange(n)
    A[:, idx, idx] = rng.uniform(diag_range[0], diag_range[1], size=(samples, n))
    sets = comparison_sets(gamma)
    if reference not in sets:
        raise ValueError(f"reference: expected one of {', '.join(sets)}, got {reference!r}")
    t0 = time.perf_counter()
    if n == 2:  # exact and fast: the closed form of the diagonal metric
        mem = memberships(A, {k: v for k, v in sets.items() if k != "diagonal_metric"})
        mem["diagonal_metric"] = diagonal_metric_value_2x2(A) <= gamma
    else:
        mem = memberships(A, sets, progress=progress)
    names = tuple(sets)
    M = np.stack([mem[s] for s in names])
    hits = M.sum(1)
    z = float(_normal.ppf(0.5 + confidence / 2))
    lo, hi = _wilson(hits, samples, z)
    r = names.index(reference)
    pr = hits[r] / samples
    ratio = np.full(len(names), np.nan)
    rlo, rhi = ratio.copy(), ratio.copy()
    for s in range(len(names)):
        ps = hits[s] / samples
        if hits[r] == 0 or hits[s] == 0:
            if hits[r] > 0:
                ratio[s], rlo[s] = 0.0, 0.0
                rhi[s] = (3.0 / samples) / pr   # rule of three for zero hits
            continue
        psr = float((M[s] & M[r]).mean())
        var = max((1 / ps + 1 / pr - 2 * psr / (ps * pr)) / samples, 0.0)
        ratio[s] = ps / pr
        rlo[s], rhi[s] = ratio[s] * math.exp(-z * math.sqrt(var)), ratio[s] * math.exp(z * math.sqrt(var))
    st = VolumeStudy(n, samples, tuple(diag_range), tuple(off_range), gamma, names, hits, hits / samples, lo, hi,
                     reference, ratio, rlo, rhi, confidence, time.perf_counter() - t0)
    if figure:
        st.figure = plot_volumes(st)
    return st


def volume_table(studies: Sequence[VolumeStudy]) -> str:
    """Markdown: per box, each set's volume fraction [CI] and ratio to the reference set [CI]."""
    lines = ["| box | set | fraction | 95% CI | ratio to " + (studies[0].reference if studies else "") + " | 95% CI |",
             "|---|---|---|---|---|---|"]
    for st in studies:
        for s, name in enumerate(st.set_names):
            r = "—" if np.isnan(st.ratio[s]) else f"{st.ratio[s]:.3g}"
            rci = "—" if np.isnan(st.ratio_low[s]) else f"[{st.ratio_low[s]:.3g}, {st.ratio_high[s]:.3g}]"
            lines.append(f"| {st.label} (N={st.samples}) | {_SHORT[name]} | {st.fraction[s]:.4f} | "
                         f"[{st.ci_low[s]:.4f}, {st.ci_high[s]:.4f}] | {r} | {rci} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# study 4: distance from an unconstrained A
# ---------------------------------------------------------------------------------------------------

@dataclass
class DistanceStudy:
    """Study 4: for each set, value(A), membership, and the Frobenius distance from A.

    ``rows``: dicts with set, value (``value_note`` "≤ " when only an upper bound was computed), bound,
    inside (None when undecided), distance, relative (distance / ‖A‖_F) and exact
    (True for the convex sets' exact projections; False where the distance is the upper bound
    ‖A − feasible_point(A)‖_F of a non-convex set); ``gamma`` the level of the sets (in the figure's title).
    """

    A: np.ndarray
    rows: list[dict[str, Any]]
    source: str = ""
    figure: Figure | None = None
    gamma: float | None = None

    def table(self) -> str:
        lines = ["| set | value(A) | bound | A inside | distance ‖A − Π(A)‖_F | relative |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            d = ("" if r["exact"] else "≤ ") + f"{r['distance']:.4g}"
            inside = {True: "yes", False: "no"}.get(r["inside"], "undecided (SDP refused)")
            lines.append(f"| {SET_LABELS[r['set']]} | {r.get('value_note', '')}{r['value']:.4g} | {r['bound']:.4g} "
                         f"| {inside} | {d} | {('' if r['exact'] else '≤ ') + format(r['relative'], '.3g')} |")
        return "\n".join(lines)


def distance_study(A, *, gamma: float = 0.9, source: str = "", max_seconds: float | None = None,
                   figure: bool = True) -> DistanceStudy:
    """Distance from A to each set: exact (projection) for the convex ones, an upper bound otherwise.

    The diagonal-metric value needs an SDP bisection for n > 2; when the size guard refuses it, the
    value reported is the cheap upper bound min(μ₂(A), Perron level) (marked "≤") and membership
    comes from the cheap certificates alone.
    """
    a = np.asarray(as_matrix(A, "A")[0].detach().double().numpy())
    if a.ndim != 2:
        raise ValueError(f"A: expected one n×n matrix, got shape {a.shape}")
    sets = comparison_sets(gamma, max_seconds=max_seconds)
    rows = []
    fro = float(np.linalg.norm(a))
    for name, S in sets.items():
        value_note = ""
        try:
            inside, value = bool(S.contains(a)), float(S.value(a))
        except SDPTooLargeError:
            # too large for the SDP bisection: the cheap certificates give an upper bound on ν(A)
            cert = diagonal_metric_certificate(a, S.bound, use_sdp=False)
            value = min(float(mu_2(a)), diagonally_scaled_mu_2(a, perron_metric(a)))
            inside, value_note = (None if cert.source == "undecided" else cert.feasible), "≤ "
        if S.has_projection:
            d, exact = float(S.distance(a)), True
        elif inside:
            d, exact = 0.0, True
        else:
            d, exact = float(np.linalg.norm(a - np.asarray(S.feasible_point(a)))), False
        rows.append({"set": name, "value": value, "value_note": value_note, "bound": S.bound, "inside": inside,
                     "distance": d, "relative": d / fro if fro > 0 else 0.0, "exact": exact})
    st = DistanceStudy(a, rows, source, gamma=gamma)
    if figure:
        st.figure = plot_distances(st)
    return st


def distance_training_size(n: int) -> tuple[int, int]:
    """(hidden units, epochs) of the unconstrained network that study 4 trains when no matrix is given,
    proportional to the report's matrix size n: hidden = min(40, 8n), epochs = min(300, 50n). n = 6
    (the default report) gives the problem file's own 40 units and 300 epochs; n = 3 gives 24 and 150."""
    n = int(n)
    return max(2, min(40, 8 * n)), max(1, min(300, 50 * n))


def train_unconstrained_matrix(problem="problems/function_estimation.toml", *, progress: bool = False,
                               epochs: int | None = None, hidden: int | None = None, **overrides) -> np.ndarray:
    """Train ``problem`` with ``constraint.set = "none"`` (free A) and return the trained A (float64).

    ``epochs``/``hidden`` override ``training.epochs``/``model.hidden`` (default: the problem's own).
    """
    from linf_opt.training.config import load_problem, override
    from linf_opt.training.trainer import train

    extra = {}
    if epochs is not None:
        extra["training.epochs"] = int(epochs)
    if hidden is not None:
        extra["model.hidden"] = int(hidden)
    p = override(load_problem(problem), **{"constraint.set": "none", "constraint.enforce": "free",
                                           "solver.backward": "direct", **extra, **overrides})
    res = train(p, progress=progress)
    return res.net.A.detach().double().numpy()


# ---------------------------------------------------------------------------------------------------
# study 5: training under each set
# ---------------------------------------------------------------------------------------------------

#: the variants of study 5: problem overrides per set. Every variant keeps the problem's budget (epochs,
#: batch size, optimizer, seed); the monotone and unconstrained variants use their own solvers
#: (Peaceman–Rachford and a direct backward solve), since the average iteration is guaranteed only
#: under the ℓ∞ conditions.
TRAINING_VARIANTS: dict[str, dict[str, Any]] = {
    "mu_inf/project": {"constraint.set": "mu_inf", "constraint.enforce": "project"},
    "weighted_mu_inf/project": {"constraint.set": "weighted_mu_inf", "constraint.enforce": "project"},
    "norm_inf/project": {"constraint.set": "norm_inf", "constraint.enforce": "project"},
    "monotone/project": {"constraint.set": "monotone", "constraint.enforce": "project",
                         "solver.method": "peaceman_rachford", "solver.backward": "direct"},
    "monotone/reparam": {"constraint.set": "monotone", "constraint.enforce": "reparam",
                         "solver.method": "peaceman_rachford", "solver.backward": "direct"},
    "none/free": {"constraint.set": "none", "constraint.enforce": "free", "solver.backward": "direct"},
}


@dataclass
class TrainingStudy:
    """Study 5: one row per (variant, seed) (see :func:`training_study` for the keys)."""

    problem: str
    task: str
    rows: list[dict[str, Any]]
    figure: Figure | None = None

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per variant: the mean over seeds of every numeric column (None when any seed has
        None), plus ``metric_std`` and ``seeds``."""
        key = "test_accuracy" if self.task == "classification" else "test_mse"
        out: dict[str, dict[str, Any]] = {}
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in self.rows:
            groups.setdefault(r["variant"], []).append(r)
        for name, rs in groups.items():
            agg = {k: rs[0][k] for k in ("variant", "set", "enforce", "solver")}
            for k, v in rs[0].items():
                if k in agg or k == "seed" or not (v is None or isinstance(v, (int, float))):
                    continue
                vals = [r.get(k) for r in rs]
                agg[k] = None if any(x is None for x in vals) else float(np.mean(vals))
            ms = [r[key] for r in rs if r.get(key) is not None]
            agg["metric_std"] = float(np.std(ms, ddof=1)) if len(ms) > 1 else None
            agg["seeds"] = len(rs)
            out[name] = agg
        return list(out.values())

    def table(self) -> str:
        """Markdown, one row per variant (means over seeds; ± the standard deviation across seeds).

        "unconverged" counts the samples whose solve hit the iteration limit: forward or backward
        during training (summed over epochs), and forward on the test set with the final network
        (means over seeds); "—" in a Lipschitz column means no ℓ∞ certificate exists (μ ≥ 1)."""
        cls = self.task == "classification"
        rows = self.summary_rows()
        seeds = max((r["seeds"] for r in rows), default=1)
        metric = ("test accuracy" if cls else "test MSE") + (f" (mean ± sd, {seeds} seeds)" if seeds > 1 else "")
        lines = [f"| set / enforcement | solver | {metric} | ℓ∞ Lipschitz bound | bound, optimal η | μ∞(A) | α(M(A)) "
                 f"| μ₂(A) | fwd iters | bwd iters | unconverged (train / test) | s / epoch |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        f = lambda v, spec=".3g": "—" if v is None else format(v, spec)  # noqa: E731
        for r in rows:
            m = r["test_accuracy"] if cls else r["test_mse"]
            spec = ".4f" if cls else ".3g"
            ms = f(m, spec) + ("" if r["metric_std"] is None else f" ± {r['metric_std']:{'.4f' if cls else '.2g'}}")
            lines.append(f"| {r['variant']} | {r['solver']} | {ms} | {f(r['lipschitz_bound'])} "
                         f"| {f(r['lipschitz_optimal_eta'])} | {f(r['mu_inf'])} | {f(r['alpha_metzler'])} "
                         f"| {f(r['mu_2'])} | {f(r['fwd_iters_mean'], '.1f')} | {f(r['bwd_iters_mean'], '.1f')} "
                         f"| {f(r['not_converged'], '.3g')} / {f(r.get('test_not_converged'), '.3g')} "
                         f"| {f(r['epoch_time_mean'], '.2f')} |")
        return "\n".join(lines)


def _row_from_run(variant: str, summary: Mapping[str, Any], net, problem) -> dict[str, Any]:
    from linf_opt.models.lipschitz import lipschitz_bound

    A = net.A.detach().double().cpu()
    try:
        lip_opt = float(lipschitz_bound(net, eta="optimal").detach())
    except ValueError:
        lip_opt = None
    lip = summary.get("lipschitz_bound")
    return {
        "variant": variant, "set": problem.constraint.set, "enforce": problem.constraint.enforce,
        "solver": f"{problem.solver.method}/{problem.solver.backward}", "seed": problem.seed,
        "test_accuracy": summary.get("test_accuracy"), "test_mse": summary.get("test_mse"),
        "test_loss": summary.get("test_loss"),
        "lipschitz_bound": None if lip is None else float(lip), "lipschitz_optimal_eta": lip_opt,
        "mu_inf": float(mu_inf(A)), "alpha_metzler": float(spectral_abscissa(metzler_majorant(A))),
        "mu_2": float(mu_2(A)), "fwd_iters_mean": summary.get("fwd_iters_mean"),
        "bwd_iters_mean": summary.get("bwd_iters_mean"), "epoch_time_mean": summary.get("epoch_time_mean"),
        "epochs": summary.get("epoch"), "not_converged": summary.get("not_converged"),
        "true_lipschitz": summary.get("true_lipschitz"),
    }


def training_study(problem, *, variants: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
                   out_dir: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                   seeds: Sequence[int] | None = None, progress: bool = False, resume: bool = True,
                   figure: bool = True) -> TrainingStudy:
    """Train ``problem`` once per variant of :data:`TRAINING_VARIANTS` (or the given ones) and seed.

    Every variant gets the same budget: ``overrides`` apply to all of them first (e.g. a reduced MNIST
    budget); ``seeds`` (default: the problem's seed) repeat the whole study with ``seed = s`` (data
    noise, initialisation, batching). With ``out_dir`` each run trains in ``out_dir/<set>_<enforce>``
    (``…_seed<s>`` for several seeds); a finished run is reused when ``resume``, and ``results.json``
    collects the rows: variant, set, enforce, solver, seed, test_accuracy / test_mse, lipschitz_bound
    (the trainer's certified ℓ∞ bound, None when μ_{∞,η}(A) ≥ 1), lipschitz_optimal_eta (the same
    bound with the Perron weights of M(A), None when α(M(A)) ≥ 1), μ∞, α(M(A)), μ₂ of the final A,
    mean forward/backward solver iterations, mean epoch time (s), not_converged (training solves that
    hit the iteration limit) and test_not_converged (test samples, final network).
    """
    from linf_opt.training.config import load_problem, override, problem_to_dict
    from linf_opt.data.datasets import load_dataset
    from linf_opt.errors import ConfigError
    from linf_opt.errors import ConvergenceWarning
    from linf_opt.training.trainer import Trainer, evaluate, load_run

    base = load_problem(problem)
    if overrides:
        base = override(base, **dict(overrides))
    if variants is None:
        variants = TRAINING_VARIANTS
    elif not isinstance(variants, Mapping):
        unknown = [v for v in variants if v not in TRAINING_VARIANTS]
        if unknown:
            raise ValueError(f"variants: unknown {', '.join(map(repr, unknown))}; valid: {', '.join(TRAINING_VARIANTS)}")
        variants = {v: TRAINING_VARIANTS[v] for v in variants}
    seeds = [base.seed] if seeds is None else [int(x) for x in seeds]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    root = None if out_dir is None else Path(out_dir)
    rows = []
    jobs = [(sd, name, ov) for sd in seeds for name, ov in variants.items()]
    data, data_seed = None, None
    for sd, name, ov in tqdm(jobs, desc="training study", disable=not progress, unit="run"):
        p = override(base, seed=sd, **dict(ov))
        if data_seed != sd:
            data, data_seed = load_dataset(p), sd
        run = None
        if root is not None:
            run = root / (name.replace("/", "_") + (f"_seed{sd}" if len(seeds) > 1 else ""))
        if run is not None and resume and (run / "summary.json").is_file():
            net, stored = load_run(run, map_location="cpu")
            if problem_to_dict(stored) != problem_to_dict(p):
                raise ConfigError(f"out_dir: {run} holds a finished run of a different problem (another "
                                  f"budget or variant); use a new out_dir or pass resume=False")
            summary = json.loads((run / "summary.json").read_text())
        else:
            trainer = Trainer(p, run, data=data, progress=progress)
            if run is not None and resume:
                trainer.resume()
            res = trainer.fit()
            net, summary = res.net, res.summary
        row = _row_from_run(name, summary, net, p)
        with warnings.catch_warnings():   # counted here instead
            warnings.simplefilter("ignore", ConvergenceWarning)
            row["test_not_converged"] = int(evaluate(net, data.test_inputs, data.test_targets, data.task)
                                            ["eval_not_converged"])
        rows.append(row)
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            (root / "results.json").write_text(json.dumps({"problem": base.name, "task": data.task, "rows": rows},
                                                          indent=2) + "\n")
    st = TrainingStudy(base.name, data.task, rows)
    if figure:
        st.figure = plot_training_study(st)
    return st


def load_training_study(path: str | os.PathLike, figure: bool = True) -> TrainingStudy:
    """A :class:`TrainingStudy` from the ``results.json`` that :func:`training_study` wrote (file or dir)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise FileNotFoundError(f"path: no training-study results at {p}")
    d = json.loads(p.read_text())
    st = TrainingStudy(d["problem"], d["task"], d["rows"])
    if figure:
        st.figure = plot_training_study(st)
    return st


# ---------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------

def _md_examples(rows: list[dict[str, Any]]) -> str:
    head = "| matrix | " + " | ".join(_SHORT[s] for s in SET_ORDER) + " |"
    lines = [head, "|---" * (len(SET_ORDER) + 1) + "|"]
    for r in rows:
        cells = [("✓" if r[s] else "✗") + f" ({r[s + '_value']:.3g})" for s in SET_ORDER]
        lines.append(f"| {r['matrix']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: str | os.PathLike = "reports/compare", *, n: int = 6, samples: int = 200,
                 gamma: float = 0.9, seed: int = 0, volume_samples: int | None = None,
                 training_results: str | os.PathLike | None = None, train_problem: str | None = None,
                 distance_matrix=None, distance_epochs: int | None = None, distance_hidden: int | None = None,
                 slice_resolution: int = 161, progress: bool | None = None) -> Path:
    """Run studies 1–4 (and 5 when asked) and write ``report.md`` plus PNG figures to ``out_dir``.

    n: the largest matrix size of the ensembles, of the random slice and of the third volume box.
    samples: matrices per ensemble (study 1); ``volume_samples`` (default 10·samples) for study 3;
    ``slice_resolution`` grid points per axis of the 2×2 slices (study 2).
    training_results: a directory or results.json of :func:`training_study` to include as study 5;
    train_problem: a problem file to train under every set now (study 5; minutes).
    distance_matrix: the A of study 4 (default: the unconstrained A of study 5's "none/free" run if
    available, else a function-estimation network trained unconstrained now, announced on stderr
    and in the report).
    distance_epochs, distance_hidden: that network's epochs and hidden units (default
    :func:`distance_training_size` (n): min(300, 50n) epochs, min(40, 8n) units, about a second per
    10 epochs at n = 6 on one core); ``distance_epochs=0`` trains nothing and uses a seeded random
    n×n matrix (entries N(0, 1)/√n) instead.
    progress: tqdm bars (None: only when stderr is a terminal); without bars, one line per finished
    study is printed instead (fit for logs).
    Returns the path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vs = 10 * samples if volume_samples is None else int(volume_samples)
    progress = sys.stderr.isatty() if progress is None else bool(progress)
    steps = tqdm(total=5, desc="compare", disable=not progress, unit="study")
    t_start = time.perf_counter()
    t_step = [t_start]

    def done(name: str) -> None:
        steps.update()
        if not progress:
            now = time.perf_counter()
            print(f"compare: {name} done in {now - t_step[0]:.1f} s", flush=True)
            t_step[0] = now
    md = [f"# Feasible-set comparison (γ = {gamma:g}, n = {n}, samples = {samples}, seed = {seed})", "",
          "Every set at the same level γ (monotone: m = 1 − γ). Nesting that must hold: "
          + "; ".join(f"{_SHORT[a]} ⊂ {_SHORT[b]}" for a, b in NESTING) + ".", ""]

    md += ["## docs/mathematics.md §7 counter-examples", "", "✓ = in the set (value in parentheses).", "",
           _md_examples(spec_examples_table(gamma)), ""]

    steps.set_postfix_str("containment")
    cont = containment_study(default_ensembles(n, samples), gamma=gamma, seed=seed, progress=progress)
    cont.figure.savefig(out / "containment.png", dpi=110)
    md += ["## 1. Containment on random ensembles", "", cont.table(), "",
           f"Nesting violations: **{len(cont.violations)}**" + (" (the theory holds on every sample)."
                                                               if not cont.violations else ":"), ""]
    for v in cont.violations:
        md.append(f"- {v['ensemble']}: {v['count']} in {v['subset']} but not in {v['superset']}, e.g. {v['matrix']}")
    for key, label in (("mu_inf_not_monotone", "ℓ∞-feasible, not monotone"),
                       ("monotone_not_mu_inf", "monotone, not ℓ∞-feasible")):
        if key in cont.examples:
            A = cont.examples[key]
            md.append(f"- {label}: μ∞ = {mu_inf(A):.3f}, μ₂ = {mu_2(A):.3f}, A = {np.round(A, 3).tolist()}")
    md += ["", "![containment](containment.png)", ""]
    done("study 1 (containment)")

    steps.set_postfix_str("slices")
    sl = standard_slices(gamma, n=n, resolution=slice_resolution, seed=seed, progress=progress)
    slices_figure(sl).savefig(out / "slices.png", dpi=100)
    md += ["## 2. Two-dimensional slices", "", "| slice | " + " | ".join(_SHORT[s] for s in SET_ORDER) + " |",
           "|---" * (len(SET_ORDER) + 1) + "|"]
    for st in sl:
        fr = st.area_fractions()
        md.append(f"| {st.title} | " + " | ".join(f"{100 * fr[s]:.1f}%" for s in SET_ORDER) + " |")
    md += ["", "Share of each drawn window inside each set.", "", "![slices](slices.png)", ""]
    done("study 2 (slices)")

    steps.set_postfix_str("volume")
    boxes = [(2, (-1.0, 1.0), (-1.0, 1.0)), (2, (-4.0, 1.0), (-1.0, 1.0)), (3, (-4.0, 1.0), (-1.0, 1.0))]
    if n > 3:
        boxes.append((n, (-4.0, 1.0), (-1.0 / math.sqrt(n), 1.0 / math.sqrt(n))))
    vols = [volume_study(m, vs, diag_range=d, off_range=o, gamma=gamma, seed=seed, progress=progress, figure=False)
            for m, d, o in boxes]
    plot_volumes(vols).savefig(out / "volume.png", dpi=100)
    md += ["## 3. Monte-Carlo volume inside a box", "", volume_table(vols), "", "![volume](volume.png)", ""]
    done("study 3 (volume)")

    study5 = None
    if training_results is not None:
        study5 = load_training_study(training_results)
    elif train_problem is not None:
        study5 = training_study(train_problem, out_dir=out / "training", progress=progress)

    steps.set_postfix_str("distance")
    source = "the given matrix"
    if distance_matrix is None and training_results is not None:
        root = Path(training_results)
        root = root if root.is_dir() else root.parent
        runs = [root / "none_free"] + sorted(root.glob("none_free_seed*"))
        run = next((r for r in runs if (r / "checkpoint.pt").is_file()), None)
        if run is not None:
            from linf_opt.training.trainer import load_run
            net, _ = load_run(run, map_location="cpu")
            distance_matrix, source = net.A.detach().double().numpy(), f"the unconstrained A of {run}"
    if distance_matrix is None:
        hidden, epochs = distance_training_size(n)
        if distance_hidden is not None:
            hidden = int(check_scalar(distance_hidden, "distance_hidden", low=1))
        if distance_epochs is not None:
            epochs = int(check_scalar(distance_epochs, "distance_epochs", low=0))
        if epochs == 0:
            rng = np.random.default_rng(seed)
            distance_matrix = rng.standard_normal((n, n)) / math.sqrt(n)
            source = f"a random {n}×{n} matrix (N(0, 1)/√n entries, seed {seed}; no training)"
        else:
            note = (f"compare: study 4 trains an unconstrained function-estimation network ({hidden} hidden units) "
                    f"for {epochs} epochs to get its A (distance_epochs={epochs}; pass distance_matrix or "
                    f"distance_epochs=0 to skip)")
            tqdm.write(note, file=sys.stderr)
            t_train = time.perf_counter()
            distance_matrix = train_unconstrained_matrix(progress=progress, epochs=epochs, hidden=hidden)
            source = (f"an unconstrained function-estimation A ({hidden} hidden units, {epochs} epochs, "
                      f"trained here in {time.perf_counter() - t_train:.1f} s)")
    dist = distance_study(distance_matrix, gamma=gamma, source=source)
    dist.figure.savefig(out / "distance.png", dpi=100)
    md += ["## 4. Distance from an unconstrained trained A", "", f"A: {source} (n = {dist.A.shape[0]}).", "",
           dist.table(), "", "![distance](distance.png)", ""]
    done("study 4 (distance)")

    md += ["## 5. Training under each set (same budget)", ""]
    if study5 is not None:
        study5.figure.savefig(out / "training.png", dpi=100)
        md += [f"Problem: {study5.problem}.", "", study5.table(), "", "![training](training.png)", ""]
    else:
        md += ["Not run: pass `--training-results DIR` (written by `bench/compare_training.py`) or "
               "`--train PROBLEM`.", ""]
    done("study 5 (training)" if study5 is not None else "report")
    steps.close()
    md += [f"_Generated in {time.perf_counter() - t_start:.0f} s._", ""]
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    (out / "report.json").write_text(json.dumps({
        "gamma": gamma, "n": n, "samples": samples, "seed": seed,
        "containment": {"ensembles": [e.label for e in cont.ensembles], "sets": list(cont.set_names),
                        "counts": cont.counts.tolist(), "violations": cont.violations},
        "volume": [{"box": v.label, "samples": v.samples, "fraction": dict(zip(v.set_names, v.fraction.tolist()))}
                   for v in vols],
        "distance": dist.rows,
        "training": None if study5 is None else study5.rows,
    }, indent=2, default=float) + "\n", encoding="utf-8")
    return path
