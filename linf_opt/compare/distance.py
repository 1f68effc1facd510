"""Study 4: the Frobenius distance from a (trained, unconstrained) matrix A to each set, through each
set's exact or reference projection."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from linf_opt._tensor import as_matrix
from linf_opt.plots import plot_distances
from linf_opt.operators.measures import mu_2
from linf_opt.sets.sdp import SDPTooLargeError, diagonal_metric_certificate, diagonally_scaled_mu_2, perron_metric
from linf_opt.compare.sets import SET_LABELS, comparison_sets

__all__ = ["DistanceStudy", "distance_study", "train_unconstrained_matrix", "distance_training_size"]


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
