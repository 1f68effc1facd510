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

:func:`write_report` (this module) runs them and writes ``report.md`` with PNG figures (``linf-opt
compare``). Each study is a module of :mod:`linf_opt.compare` (``sets``, ``containment``, ``slices``,
``volume``, ``distance``, ``training_study``); every public name is importable from here too.

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
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from linf_opt._tensor import check_scalar
from linf_opt.operators.measures import mu_2, mu_inf
from linf_opt.plots import SET_SHORT as _SHORT, plot_volumes
from linf_opt.compare.sets import (COUNTER_EXAMPLES, NESTING, SET_LABELS, SET_ORDER, check_nesting, comparison_sets, memberships)
from linf_opt.compare.containment import (ContainmentStudy, EnsembleSpec, containment_study, default_ensembles,
                                          random_ensemble, spec_examples_table)
from linf_opt.compare.slices import SliceStudy, slice_study, slices_figure, standard_slices
from linf_opt.compare.volume import VolumeStudy, volume_study, volume_table
from linf_opt.compare.distance import DistanceStudy, distance_study, distance_training_size, train_unconstrained_matrix
from linf_opt.compare.training_study import TRAINING_VARIANTS, TrainingStudy, load_training_study, training_study

__all__ = [
    "SET_ORDER", "SET_LABELS", "NESTING", "COUNTER_EXAMPLES", "comparison_sets", "memberships", "check_nesting",
    "EnsembleSpec", "default_ensembles", "random_ensemble", "ContainmentStudy", "containment_study",
    "spec_examples_table", "SliceStudy", "slice_study", "standard_slices", "slices_figure", "VolumeStudy",
    "volume_study", "volume_table", "DistanceStudy", "distance_study", "train_unconstrained_matrix",
    "distance_training_size", "TRAINING_VARIANTS",
    "TrainingStudy", "training_study", "load_training_study", "write_report",
]


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
