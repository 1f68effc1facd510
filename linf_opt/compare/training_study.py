"""Study 5: one training problem trained under each set (and unconstrained) with the same budget:
accuracy or error, certified Lipschitz bound, measure, and time per variant and seed."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from linf_opt.plots import plot_training_study
from linf_opt.operators.measures import metzler_majorant, mu_2, mu_inf, spectral_abscissa

__all__ = ["TRAINING_VARIANTS", "TrainingStudy", "training_study", "load_training_study"]


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
