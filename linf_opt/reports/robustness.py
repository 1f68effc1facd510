"""Robustness evaluation of a trained classifier: clean, FGSM, PGD and certified accuracy over ε, timed.

One table for a list of radii ε (attack scale, pixels for MNIST): the clean accuracy, the accuracy
under each attack (:mod:`linf_opt.robustness.attacks`) and the certified accuracy of each certificate
(:mod:`linf_opt.robustness.certify`), each with the wall-clock time it took over the whole set, plus a plot of
accuracy against ε (:func:`linf_opt.plots.plot_accuracy_vs_eps`, the figure the notebooks draw too).
``linf-opt certify RUN_DIR --eps ...`` runs it on a trained run's MNIST test set.

    >>> report = evaluate_robustness(net, pixels, labels, [0.01, 0.1], space=MNIST)
    >>> print(format_table(report)); plot_accuracy(report, "robustness.png")
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from linf_opt.plots import plot_accuracy_vs_eps
from linf_opt.robustness.attacks import ATTACKS, attack_accuracy
from linf_opt.robustness.certify import METHODS, certify
from linf_opt.robustness.input_space import MNIST, InputSpace, check_eps

__all__ = ["RobustnessRecord", "RobustnessReport", "evaluate_robustness", "format_table", "plot_accuracy",
           "accuracy_figure", "run_certify"]


@dataclass
class RobustnessRecord:
    """One measurement: ``kind`` "clean", "attack" or "certificate"; ``name`` the attack or method."""

    kind: str
    name: str
    eps: float
    accuracy: float
    time: float
    invalid: int = 0          # certificates: samples without valid bounds (not converged, or IBP not verified)
    not_converged: int = 0    # certificates: samples whose solve did not converge
    iterations: int = 0       # certificates: solver iterations (maximum over batches)


@dataclass
class RobustnessReport:
    """All measurements of :func:`evaluate_robustness` and the settings that produced them."""

    samples: int
    records: list[RobustnessRecord] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def get(self, name: str, eps: float) -> RobustnessRecord | None:
        for r in self.records:
            if r.name == name and abs(r.eps - eps) <= 1e-12:
                return r
        return None

    def to_dict(self) -> dict:
        return dict(samples=self.samples, settings=self.settings, records=[asdict(r) for r in self.records])


def evaluate_robustness(net, inputs, labels, eps_values: Sequence[float], *, space: InputSpace = MNIST,
                        certify_eps: Sequence[float] | None = None, methods: Sequence[str] = METHODS,
                        attacks: Sequence[str] = ("fgsm", "pgd"), pgd_steps: int = 40, pgd_restarts: int = 1,
                        seed: int = 0, batch_size: int = 2000,
                        log: Callable[[str], None] | None = None) -> RobustnessReport:
    """Measure clean, attacked and certified accuracy of ``net`` on (inputs, labels) for each ε.

    Args:
        inputs, labels: the evaluation set at the attack scale of ``space`` (MNIST pixels by default).
        eps_values: radii for the attacks (attack scale); certify_eps: radii for the certificates
            (default: the same).
        methods: certificates (see :data:`linf_opt.robustness.certify.METHODS`); attacks: "fgsm" and/or "pgd".
        pgd_steps, pgd_restarts, seed: PGD settings (step size 2.5 ε / steps).
        batch_size: samples per attack / certification batch.
        log: called with one line per measurement as it completes (e.g. ``print``).
    """
    eps_values = [check_eps(e, "eps_values") for e in eps_values]
    certify_eps = eps_values if certify_eps is None else [check_eps(e, "certify_eps") for e in certify_eps]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: expected names from {list(METHODS)}, got {m!r}")
    for a in attacks:
        if a not in ATTACKS:
            raise ValueError(f"attacks: expected names from {sorted(ATTACKS)}, got {a!r}")
    report = RobustnessReport(int(len(labels)), settings=dict(
        eps=eps_values, certify_eps=certify_eps, methods=list(methods), attacks=list(attacks),
        pgd_steps=pgd_steps, pgd_restarts=pgd_restarts, seed=seed, batch_size=batch_size))

    def add(rec: RobustnessRecord):
        report.records.append(rec)
        if log is not None:
            extra = (f", {rec.invalid} without valid bounds, {rec.not_converged} not converged"
                     if rec.invalid else "")
            log(f"  {rec.kind:<11} {rec.name:<24} ε = {rec.eps:<6g} accuracy {rec.accuracy:7.2%}  "
                f"({rec.time:.2f} s{extra})")

    def timed(fn):
        start = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - start

    acc, t = timed(lambda: attack_accuracy(net, inputs, labels, 0.0, space=space, batch_size=batch_size))
    add(RobustnessRecord("clean", "clean", 0.0, acc, t))
    for eps in eps_values:
        for a in attacks:
            opts = dict(steps=pgd_steps, restarts=pgd_restarts, seed=seed) if a == "pgd" else {}
            acc, t = timed(lambda: attack_accuracy(net, inputs, labels, eps, a, space=space,
                                                   batch_size=batch_size, **opts))
            add(RobustnessRecord("attack", a, eps, acc, t))
    for eps in certify_eps:
        for m in methods:
            res = certify(net, inputs, labels, eps, m, space=space, batch_size=batch_size)
            add(RobustnessRecord("certificate", m, eps, res.certified_accuracy, res.time, res.n_invalid,
                                 res.stats.n_not_converged, res.stats.iterations))
    return report


def format_table(report: RobustnessReport) -> str:
    """A markdown table: one row per ε, one column per attack and certificate ("accuracy (time)")."""
    names, eps_all = [], []
    for r in report.records:
        if r.kind != "clean" and r.name not in names:
            names.append(r.name)
        if r.kind != "clean" and r.eps not in eps_all:
            eps_all.append(r.eps)
    clean = next((r for r in report.records if r.kind == "clean"), None)
    lines = []
    if clean is not None:
        lines.append(f"clean accuracy {clean.accuracy:.2%} on {report.samples} samples ({clean.time:.2f} s)\n")
    lines.append("| ε | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for eps in sorted(eps_all):
        cells = []
        for n in names:
            r = report.get(n, eps)
            if r is None:
                cells.append("—")
            else:
                bad = f", {r.invalid} invalid / {r.not_converged} unconverged" if r.invalid else ""
                cells.append(f"{r.accuracy:.2%} ({r.time:.2f} s{bad})")
        lines.append(f"| {eps:g} | " + " | ".join(cells) + " |")
    ratios = []
    for eps in sorted(eps_all):
        mm, lip = report.get("mixed_monotone", eps), report.get("lipschitz", eps)
        if mm is not None and lip is not None and lip.time > 0:
            ratios.append(f"ε = {eps:g}: {mm.time / lip.time:.2f}×")
    if ratios:
        lines.append("\ncertification time, mixed_monotone / lipschitz: " + ", ".join(ratios))
    return "\n".join(lines)


def accuracy_figure(report: RobustnessReport, title: str = ""):
    """The figure of :func:`plot_accuracy`: :func:`linf_opt.plots.plot_accuracy_vs_eps` of the report,
    two panels with their own y-labels, attack accuracy (left) and certified accuracy (right), against
    ε, each curve starting from the clean accuracy at ε = 0.

    Every curve of a panel has its own marker and line style. Certificates that are 0% at every ε > 0
    would lie on top of each other on the axis: they are drawn a little above it, one offset each
    (the legend label says ``0% at every ε; drawn +k``), and the panel's title says so.
    Returns a matplotlib ``Figure`` (created without pyplot).
    """
    return plot_accuracy_vs_eps(report, title=title or None)


def plot_accuracy(report: RobustnessReport, path, title: str = "") -> Path:
    """Write :func:`accuracy_figure` (attacks | certificates) to ``path`` (PNG); returns the path."""
    fig = accuracy_figure(report, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def run_certify(args) -> int:
    """The ``linf-opt certify`` command: evaluate a run directory on its MNIST test set."""
    from linf_opt.data.datasets import load_mnist
    from linf_opt.training.trainer import load_run

    net, problem = load_run(args.run_dir, map_location="cpu")
    if problem.data.kind != "mnist":
        raise ValueError(f"{args.run_dir}: certify evaluates MNIST classifiers, but data.kind = "
                         f"{problem.data.kind!r}")
    data_dir = args.data_dir if args.data_dir is not None else (problem.data.data_dir or None)
    pixels, labels = load_mnist(data_dir, "test", normalize=False, limit=args.limit, dtype=net.dtype)
    out = Path(args.out) if args.out else Path(args.run_dir)
    print(f"robustness of {args.run_dir} on {len(labels)} MNIST test images (ε at pixel scale)")
    report = evaluate_robustness(
        net, pixels, labels, args.eps, space=MNIST, certify_eps=args.certify_eps,
        methods=args.methods or METHODS, attacks=args.attacks or ("fgsm", "pgd"), pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts, seed=args.seed, batch_size=args.batch_size, log=print)
    print()
    print(format_table(report))
    out.mkdir(parents=True, exist_ok=True)
    (out / "robustness.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if not args.no_plot:
        path = plot_accuracy(report, out / "robustness.png", title=f"{problem.name or args.run_dir}: accuracy against ε")
        print(f"\nplot: {path}")
    print(f"results: {out / 'robustness.json'}")
    return 0
