"""Study 1: membership counts of the sets on random ensembles of matrices (dense, sparse, triangular, at
several scales), the nesting checked on every sample, and the specification's example matrices."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from linf_opt.plots import SET_SHORT as _SHORT
from linf_opt.plots import plot_containment
from linf_opt.compare.sets import COUNTER_EXAMPLES, check_nesting, comparison_sets, memberships

__all__ = ["EnsembleSpec", "default_ensembles", "random_ensemble", "ContainmentStudy", "containment_study", "spec_examples_table"]


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

    A nesting violation (a matrix in a subset of :data:`~linf_opt.compare.sets.NESTING` but not in its superset) is recorded
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
