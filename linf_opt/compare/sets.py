"""The six feasible sets the comparison puts side by side (docs/mathematics.md §7), at one level γ: their
names and labels, the nesting that holds for every A, the counter-examples to the others, and the
membership of many matrices at once (:func:`memberships`, checked against :data:`NESTING`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from linf_opt._tensor import as_matrix, check_scalar
from linf_opt.sets.feasible import (DiagonalMetricSet, FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall,
                                    PerronFrobeniusSet, WeightedMuInf)

__all__ = ["SET_ORDER", "SET_LABELS", "NESTING", "COUNTER_EXAMPLES", "comparison_sets", "memberships", "NestingViolation", "check_nesting"]


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
