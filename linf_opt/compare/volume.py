"""Study 3: Monte-Carlo volume fractions of the sets in a box of matrices, with Wilson confidence
intervals and the ratios between sets."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm as _normal

from linf_opt._tensor import check_scalar
from linf_opt.plots import SET_SHORT as _SHORT
from linf_opt.plots import plot_volumes
from linf_opt.sets.sdp import diagonal_metric_value_2x2
from linf_opt.compare.sets import comparison_sets, memberships

__all__ = ["VolumeStudy", "volume_study", "volume_table"]


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
