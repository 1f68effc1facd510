"""The library's figures: small functions that take data and return a matplotlib ``Figure``.

This module is the one home of every figure ``linf_opt`` draws: the notebooks (through its public
name :mod:`linf_opt.reports.plots`), the robustness report behind ``linf-opt certify``
(:func:`plot_accuracy_vs_eps`) and the feasible-set comparison behind ``linf-opt compare``
(:func:`plot_containment`, :func:`plot_slices`, :func:`plot_volumes`, :func:`plot_distances`,
:func:`plot_training_study`, which the studies' ``.figure`` attributes are built with). It imports
nothing from the rest of the package (layer 0): it reads the data it is given (arrays, tensors,
histories, reports and study objects, by their attributes), so every layer may use it.

Every figure is built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so no
backend is selected, nothing is shown and no global figure state is touched: the functions work under
``Agg`` (scripts, tests) and in notebooks alike (a returned Figure that ends a cell is drawn inline;
``fig.savefig(path)`` writes it). Axis labels and units are the same everywhere (:data:`LABELS`):

=====================  ===================================================================
``epoch``               training epochs (1-based, as in a run's ``history``)
``iteration``           solver iterations
``max residual``        ‖x − Φ(Ax + q)‖∞, the worst sample of the batch
``μ∞(A)``               the ℓ∞ matrix measure
``ε``                   ℓ∞ radius at the attack scale (pixels for MNIST)
``accuracy (%)``        percentages, 0–100
``Lipschitz constant``  ℓ∞ → ℓ∞, log scale
=====================  ===================================================================

The feasible sets have one short label and one colour in every comparison figure and table
(:data:`SET_SHORT`, :data:`SET_COLORS`).

    >>> fig = plot_training_curves(result.history, gamma=0.95); fig.savefig("curves.png")
    >>> fig = plot_residual_traces({"average": st.trace}, rate=0.9)
    >>> fig = plot_accuracy_vs_eps(report)            # attacks | certificates, as `linf-opt certify` writes it
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

__all__ = ["LABELS", "SET_SHORT", "SET_COLORS", "plot_training_curves", "plot_step_curves", "plot_fit",
           "plot_lipschitz", "plot_residual_traces", "accuracy_curves", "plot_accuracy_vs_eps", "plot_boxes",
           "plot_matrix_rows", "plot_containment", "plot_slices", "plot_volumes", "plot_distances",
           "plot_training_study"]

#: the axis labels (with their units) every figure uses.
LABELS = {
    "epoch": "epoch",
    "step": "optimizer step",
    "iteration": "iteration",
    "residual": "max residual ‖x − Φ(Ax + q)‖∞",
    "mu_inf": "μ∞(A)",
    "loss": "loss",
    "accuracy": "accuracy (%)",
    "attack_accuracy": "accuracy under attack (%)",
    "certified_accuracy": "certified accuracy (%)",
    "eps": "ε (ℓ∞ radius, pixel scale)",
    "lipschitz": "Lipschitz constant (ℓ∞ → ℓ∞)",
}

#: short labels of the feasible sets (registry names of :mod:`linf_opt.sets.feasible`), smallest family first.
SET_SHORT = {"norm_inf": "norm", "mu_inf": "μ∞", "perron_frobenius": "PF", "weighted_mu_inf": "weighted μ∞",
             "monotone": "monotone", "diagonal_metric": "diag. metric"}
#: one colour per feasible set; anything else (e.g. the unconstrained "none") is drawn in :data:`_OTHER_COLOR`.
SET_COLORS = {"norm_inf": "tab:gray", "mu_inf": "tab:blue", "perron_frobenius": "tab:purple",
              "weighted_mu_inf": "tab:cyan", "monotone": "tab:orange", "diagonal_metric": "tab:green"}
_OTHER_COLOR = "tab:red"


def _short(name: str) -> str:
    return SET_SHORT.get(name, name)


def _color(name: str) -> str:
    return SET_COLORS.get(name, _OTHER_COLOR)

def _np(x) -> np.ndarray:
    """A float numpy array from a tensor (detached, on the CPU), an array or a sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _figure(n_axes: int, width: float = 4.2, height: float = 3.3, ncols: int | None = None):
    ncols = n_axes if ncols is None else ncols
    nrows = math.ceil(n_axes / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axes[n_axes:]:
        fig.delaxes(ax)
    return fig, list(axes[:n_axes])


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------

def plot_training_curves(history: Sequence[Mapping[str, Any]], *, gamma: float | None = None,
                         title: str = "") -> Figure:
    """Training curves of a run's ``history`` (one dict per epoch, as :func:`linf_opt.train` returns).

    Four panels against the epoch: train and test loss; the test metric (accuracy in % for
    classification, MSE for regression; train accuracy too where recorded); μ∞(A) with the bound γ
    (dashed, when given); mean forward and backward solver iterations per sample.
    """
    if not history:
        raise ValueError("history: expected at least one epoch record")
    ep = [h["epoch"] for h in history]
    get = lambda k: [h.get(k) for h in history]   # noqa: E731
    fig, (a_loss, a_metric, a_mu, a_it) = _figure(4, width=3.6, height=3.0)
    a_loss.plot(ep, get("train_loss"), marker=".", label="train")
    if all(v is not None for v in get("test_loss")):
        a_loss.plot(ep, get("test_loss"), marker=".", label="test")
    a_loss.set_yscale("log")
    a_loss.set_ylabel(LABELS["loss"])
    a_loss.legend(fontsize=8)
    if "test_accuracy" in history[0]:
        a_metric.plot(ep, [100 * v for v in get("test_accuracy")], marker=".", label="test")
        if "train_accuracy" in history[0]:
            a_metric.plot(ep, [100 * v for v in get("train_accuracy")], marker=".", label="train")
        a_metric.set_ylabel(LABELS["accuracy"])
        a_metric.legend(fontsize=8)
    else:
        a_metric.plot(ep, get("test_mse"), marker=".", label="test")
        a_metric.set_yscale("log")
        a_metric.set_ylabel("test MSE")
    mus = get("mu_inf")
    a_mu.plot(ep, mus, marker=".", label="μ∞(A)")
    if gamma is not None:
        a_mu.axhline(gamma, color="k", ls="--", lw=1, label=f"γ = {gamma:g}")
    top = max(mus + ([gamma] if gamma is not None else []))
    a_mu.set_ylim(min(mus) - 0.05, top + 0.05)        # round-off below γ is not a trend: no offset axis
    a_mu.ticklabel_format(axis="y", useOffset=False)
    a_mu.set_ylabel(LABELS["mu_inf"])
    a_mu.legend(fontsize=8)
    a_it.plot(ep, get("fwd_iters_mean"), marker=".", label="forward")
    a_it.plot(ep, get("bwd_iters_mean"), marker=".", label="backward")
    a_it.set_ylabel("solver iterations (mean per sample)")
    a_it.legend(fontsize=8)
    for ax in (a_loss, a_metric, a_mu, a_it):
        ax.set_xlabel(LABELS["epoch"])
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_step_curves(loss: Sequence[float], mu, *, gamma: float | None = None, title: str = "") -> Figure:
    """Loss and μ∞(A) after every optimizer step of your own training loop (two panels).

    ``loss``: one value per step; ``mu``: one μ∞(A) per step, or {layer name: values per step} (e.g.
    the ``constraint.mu()`` of :func:`~linf_opt.models.constraint.keep_well_posed` recorded after each
    step). ``gamma``: the bound, drawn dashed. The μ∞ axis is not offset, so that round-off just below
    γ shows as the flat line it is.
    """
    loss = _np(loss).reshape(-1)
    mus = {k: _np(v).reshape(-1) for k, v in mu.items()} if isinstance(mu, Mapping) else {"μ∞(A)": _np(mu).reshape(-1)}
    if not len(loss) or not mus or any(not len(v) for v in mus.values()):
        raise ValueError("loss, mu: expected at least one step")
    fig, (a_loss, a_mu) = _figure(2, width=4.6, height=3.3)
    a_loss.plot(np.arange(1, len(loss) + 1), loss, lw=1.2)
    a_loss.set_yscale("log")
    a_loss.set_ylabel(LABELS["loss"])
    for name, v in mus.items():
        a_mu.plot(np.arange(1, len(v) + 1), v, lw=1.2, label=name)
    values = np.concatenate(list(mus.values()))
    top = max(float(values.max()), gamma if gamma is not None else -math.inf)
    if gamma is not None:
        a_mu.axhline(gamma, color="k", ls="--", lw=1, label=f"γ = {gamma:g}")
    a_mu.set_ylim(float(values.min()) - 0.05, top + 0.05)
    a_mu.ticklabel_format(axis="y", useOffset=False)
    a_mu.set_ylabel(LABELS["mu_inf"])
    a_mu.legend(fontsize=8)
    for ax in (a_loss, a_mu):
        ax.set_xlabel(LABELS["step"])
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_fit(u, predictions: Mapping[str, Any], *, target=None, train=None, title: str = "fit") -> Figure:
    """Regression fits y(u) of one-dimensional inputs: one line per entry of ``predictions``.

    ``u``: (N,) or (N, 1) evaluation points; ``predictions``: {label: (N,) or (N, 1) outputs};
    ``target``: the true function at ``u`` (black, dashed); ``train``: (u_train, y_train) as dots.
    """
    u = _np(u).reshape(-1)
    order = np.argsort(u)
    fig, (ax,) = _figure(1, width=6.0, height=3.8)
    if train is not None:
        ax.plot(_np(train[0]).reshape(-1), _np(train[1]).reshape(-1), ".", ms=3, color="0.6",
                label="training data")
    if target is not None:
        ax.plot(u[order], _np(target).reshape(-1)[order], "k--", lw=1.2, label="target")
    for label, y in predictions.items():
        ax.plot(u[order], _np(y).reshape(-1)[order], lw=1.5, label=label)
    ax.set_xlabel("input u")
    ax.set_ylabel("output y")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_lipschitz(labels: Sequence[Any], certified: Sequence[float], empirical: Sequence[float] | None = None,
                   *, true: float | None = None, xlabel: str = "λ (Lipschitz weight)",
                   title: str = "ℓ∞ Lipschitz constant") -> Figure:
    """Certified upper bounds against empirical lower bounds (and the true constant), one group per label.

    Bars on a log scale: ``certified`` (e.g. :func:`~linf_opt.models.lipschitz.lipschitz_bound`) and
    ``empirical`` (:func:`~linf_opt.models.lipschitz.empirical_lipschitz`); ``true`` is drawn as a
    dashed horizontal line. Every true Lipschitz constant lies between the two bars.
    """
    names = [str(v) for v in labels]
    if len(certified) != len(names) or (empirical is not None and len(empirical) != len(names)):
        raise ValueError("labels, certified, empirical: expected sequences of one length")
    x = np.arange(len(names))
    w = 0.38 if empirical is not None else 0.6
    fig, (ax,) = _figure(1, width=max(4.5, 1.2 * len(names) + 2), height=3.8)
    ax.bar(x - (w / 2 if empirical is not None else 0), certified, w, label="certified upper bound")
    if empirical is not None:
        ax.bar(x + w / 2, empirical, w, label="empirical lower bound")
    if true is not None:
        ax.axhline(true, color="k", ls="--", lw=1.2, label=f"true constant ({true:g})")
    ax.set_xticks(x, names)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(LABELS["lipschitz"])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------
# Solvers
# ----------------------------------------------------------------------------------------------------

def plot_residual_traces(traces: Mapping[str, Sequence[float]], *, rate: float | Mapping[str, float] | None = None,
                         start: float | None = None, tol: float | None = None,
                         a_priori: int | None = None, title: str = "fixed-point residual") -> Figure:
    """Residual traces of fixed-point solvers (``SolverStats.trace``) on a log scale, one line per method.

    ``trace[k]`` is the residual of iterate k (k = 0: the initial point), as the solvers record it.

    ``rate``: a guaranteed contraction factor ρ (or {label: ρ}), drawn as the dotted line
    ``start · ρᵏ`` (``start`` defaults to the first residual of the first trace); ``tol``: the
    tolerance (horizontal line); ``a_priori``: the a-priori iteration count (vertical line).
    """
    fig, (ax,) = _figure(1, width=6.0, height=3.8)
    longest = 1
    for label, tr in traces.items():
        tr = _np(tr)
        longest = max(longest, len(tr))
        ax.semilogy(np.arange(len(tr)), tr, lw=1.5, label=label)
    if rate is not None:
        first = next(iter(traces.values()), None)
        r0 = float(start) if start is not None else (float(_np(first)[0]) if first is not None and len(first) else 1.0)
        rates = {"guaranteed r₀ρᵏ": rate} if not isinstance(rate, Mapping) else rate
        k = np.arange(0, max(longest, int(a_priori) + 1 if a_priori is not None and math.isfinite(a_priori) else 0))
        for (label, rho), style in zip(rates.items(), (":", "-.", (0, (1, 3)), (0, (5, 5)))):
            rho = float(rho)
            ax.semilogy(k, r0 * rho ** k, linestyle=style, color="k", lw=1.2, label=f"{label}, ρ = {rho:.4g}")
    if tol is not None:
        ax.axhline(tol, color="0.4", ls="--", lw=1, label=f"tolerance {tol:g}")
    if a_priori is not None and math.isfinite(a_priori):
        ax.axvline(a_priori, color="0.4", ls="-.", lw=1, label=f"a-priori bound: {int(a_priori)} iterations")
    ax.set_xlabel(LABELS["iteration"])
    ax.set_ylabel(LABELS["residual"])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------
# Robustness
# ----------------------------------------------------------------------------------------------------

def accuracy_curves(report, *, prefix: str = "", kind: str | None = None
                    ) -> dict[str, tuple[list[float], list[float]]]:
    """{name: (ε values, accuracies)} from a :class:`~linf_opt.reports.robustness.RobustnessReport`,
    each curve starting at ε = 0 with the clean accuracy; names get ``prefix``. ``kind``: only the
    records of that kind ("attack" or "certificate"; default: both)."""
    clean = next((r.accuracy for r in report.records if r.kind == "clean"), None)
    names: list[str] = []
    for r in report.records:
        if r.kind != "clean" and (kind is None or r.kind == kind) and r.name not in names:
            names.append(r.name)
    out = {}
    for name in names:
        pts = sorted((r.eps, r.accuracy) for r in report.records
                     if r.name == name and (kind is None or r.kind == kind))
        if clean is not None and (not pts or pts[0][0] > 0):
            pts = [(0.0, clean)] + pts
        out[prefix + name] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))


def plot_accuracy_vs_eps(curves, *, title: str | None = None, attacks: Sequence[str] = ("fgsm", "pgd"),
                         xlabel: str = LABELS["eps"]) -> Figure:
    """Accuracy against the radius ε in two panels with their own y-labels: the attacks (left; empirical
    robustness, upper bounds on the robust accuracy) and the certificates (right; guaranteed, lower
    bounds). The true robust accuracy lies between the lowest curve on the left and the highest on the right.

    ``curves``: a :class:`~linf_opt.reports.robustness.RobustnessReport` (split by record kind; the
    figure ``linf-opt certify`` writes) or {label: (ε values, accuracies in [0, 1])} (e.g. several
    models' :func:`accuracy_curves` with prefixes), where a label containing one of ``attacks`` goes
    to the left panel. Accuracies are plotted in %. Every curve of a panel has its own marker and line
    style. Curves that are 0% at every ε > 0 would lie on top of each other on the axis: they are drawn
    a little above it, one offset each (the legend label says ``0% at every ε; drawn +k``), and the
    panel's title says so. ``title``: the figure's title (default: "accuracy against ε", with the
    number of samples of a report).
    """
    if hasattr(curves, "records"):
        report = curves
        panels = (accuracy_curves(report, kind="attack"), accuracy_curves(report, kind="certificate"))
        title = title or f"accuracy against ε ({report.samples} samples)"
    else:
        att, cert = {}, {}
        for label, c in curves.items():
            (att if any(a in str(label) for a in attacks) else cert)[label] = c
        panels = (att, cert)
        title = title or "accuracy against ε"
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=False)
    heads = ((LABELS["attack_accuracy"], "attacks (empirical robustness)"),
             (LABELS["certified_accuracy"], "certificates (guaranteed)"))
    for ax, panel, (ylabel, head) in zip(axes, panels, heads):
        zero_rank = 0
        for k, (label, (eps, acc)) in enumerate(panel.items()):
            xs, ys = _np(eps).reshape(-1), 100 * _np(acc).reshape(-1)
            label = str(label)
            measured = xs > 0
            if measured.any() and not ys[measured].any():
                zero_rank += 1
                off = 1.2 * zero_rank  # percentage points above the axis, one step per such curve
                ys = np.where(measured, ys + off, ys)
                label = f"{label} (0% at every ε; drawn +{off:.1f})"
            ax.plot(xs, ys, linestyle=_LINESTYLES[k % len(_LINESTYLES)], marker=_MARKERS[k % len(_MARKERS)],
                    markersize=6 if k % 2 == 0 else 5, fillstyle="full" if k < len(_MARKERS) else "none",
                    label=label, clip_on=False)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        note = "\ncurves at 0% at every ε are drawn slightly above the axis" if zero_rank else ""
        ax.set_title(head + ("" if panel else ": none measured") + note, fontsize=9)
        if panel:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_boxes(lower, upper, *, points=None, hidden_lower=None, hidden_upper=None, labels=None,
               names: Sequence[str] | None = None, max_hidden: int = 40, title: str = "reachable box") -> Figure:
    """Certified intervals of a few samples (e.g. a :class:`~linf_opt.robustness.certify.ReachableBox`).

    ``lower``, ``upper``: (S, q) output bounds; ``points``: (S, q) the outputs at the unperturbed
    inputs (dots); ``labels``: (S,) true classes (marked ★). With ``hidden_lower`` / ``hidden_upper``
    ((S, n), or image-shaped (S, C, H, W) states, flattened) a second panel draws the hidden-state
    intervals of the first ``max_hidden`` units.
    """
    lo, hi = np.atleast_2d(_np(lower)), np.atleast_2d(_np(upper))
    S, q = lo.shape
    hidden = hidden_lower is not None and hidden_upper is not None
    fig, axes = _figure(2 if hidden else 1, width=6.0, height=3.8)
    ax = axes[0]
    width = 0.8 / S
    x = np.arange(q)
    pts = None if points is None else np.atleast_2d(_np(points))
    for s in range(S):
        xs = x - 0.4 + width * (s + 0.5)
        mid = (lo[s] + hi[s]) / 2
        name = names[s] if names is not None else f"sample {s}"
        color = f"C{s % 10}"       # explicit: errorbar(fmt="none") does not advance the colour cycle
        ax.errorbar(xs, mid, yerr=(hi[s] - lo[s]) / 2, fmt="none", capsize=3, lw=1.5, color=color, label=name)
        if pts is not None:
            ax.plot(xs, pts[s], "o", ms=3, color=color)
        if labels is not None:
            t = int(_np(labels).reshape(-1)[s])
            ax.plot([xs[t]], [hi[s, t]], "*", ms=9, color=color)
    ax.set_xticks(x, [str(i) for i in range(q)])
    ax.set_xlabel("output (class)")
    ax.set_ylabel("certified output interval [y̲, ȳ]")
    ax.set_title(title + (" (★ true class, • unperturbed output)" if labels is not None else ""), fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    if hidden:
        hl, hh = (np.atleast_2d(_np(h)) for h in (hidden_lower, hidden_upper))
        hl, hh = hl.reshape(hl.shape[0], -1), hh.reshape(hh.shape[0], -1)     # (S, C, H, W) states: flattened
        m = min(hl.shape[1], max_hidden)
        ax2 = axes[1]
        for s in range(S):
            name = names[s] if names is not None else f"sample {s}"
            ax2.fill_between(np.arange(m), hl[s, :m], hh[s, :m], step="mid", alpha=0.35, label=name)
        ax2.set_xlabel(f"hidden unit (first {m})")
        ax2.set_ylabel("certified hidden interval [x̲, x̄]")
        ax2.set_title("hidden-state box", fontsize=9)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
    return fig


# ----------------------------------------------------------------------------------------------------
# Matrices and sets
# ----------------------------------------------------------------------------------------------------

def plot_matrix_rows(matrices: Mapping[str, Any], *, gamma: float | None = None, max_size: int = 60,
                     title: str = "") -> Figure:
    """Heat maps of A and the picture of the ℓ∞ polytope μ∞(A) ≤ γ row by row.

    One heat map per entry of ``matrices`` ({title: (n, n) matrix}, the leading ``max_size`` block,
    one shared symmetric colour scale), then a scatter of every row i of every matrix: diagonal
    aᵢᵢ (x) against the off-diagonal ℓ1 row sum Σ_{j≠i}|aᵢⱼ| (y). A row satisfies the constraint
    exactly when its point lies below the line aᵢᵢ + Σ|aᵢⱼ| = γ (drawn when ``gamma`` is given), so
    the projection moves the points onto or below it.
    """
    if not matrices:
        raise ValueError("matrices: expected at least one matrix")
    mats = {k: _np(v) for k, v in matrices.items()}
    for k, v in mats.items():
        if v.ndim != 2 or v.shape[0] != v.shape[1]:
            raise ValueError(f"matrices[{k!r}]: expected a square matrix, got shape {v.shape}")
    fig, axes = _figure(len(mats) + 1, width=3.9, height=3.5)
    vmax = max(float(np.abs(v[:max_size, :max_size]).max()) for v in mats.values()) or 1.0
    im = None
    for ax, (name, A) in zip(axes, mats.items()):
        im = ax.imshow(A[:max_size, :max_size], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("column j")
        ax.set_ylabel("row i")
    fig.colorbar(im, ax=axes[:len(mats)], shrink=0.8, label="aᵢⱼ")
    sc = axes[-1]
    lo_x, hi_x = math.inf, -math.inf
    for name, A in mats.items():
        d = np.diag(A)
        off = np.abs(A).sum(1) - np.abs(d)
        sc.scatter(d, off, s=10, alpha=0.7, label=name)
        lo_x, hi_x = min(lo_x, float(d.min())), max(hi_x, float(d.max()))
    if gamma is not None:
        xs = np.linspace(min(lo_x, gamma - 1), max(hi_x, gamma), 50)
        sc.plot(xs, gamma - xs, "k--", lw=1.2, label=f"aᵢᵢ + Σ|aᵢⱼ| = γ = {gamma:g}")
        sc.set_ylim(bottom=0)
    sc.set_xlabel("diagonal aᵢᵢ")
    sc.set_ylabel("off-diagonal row sum Σⱼ≠ᵢ |aᵢⱼ|")
    sc.set_title("rows of A against the polytope", fontsize=9)
    sc.grid(alpha=0.3)
    sc.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig



# ----------------------------------------------------------------------------------------------------
# The feasible-set comparison (linf_opt.compare.studies, `linf-opt compare`)
# ----------------------------------------------------------------------------------------------------

def plot_containment(study) -> Figure:
    """Study 1 (:class:`~linf_opt.compare.studies.ContainmentStudy`): the fraction of each random
    ensemble in each set (heat map, left) and, on the same rows, the ℓ∞ polytope against the monotone
    set (stacked bars, right: in both, μ∞ only, monotone only), legend below the bars."""
    E = len(study.ensembles)
    names = list(study.set_names)
    fig = Figure(figsize=(13, 0.42 * E + 2.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    K = np.array([s.samples for s in study.ensembles], dtype=float)[:, None]
    frac = np.asarray(study.counts) / K
    im = ax1.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for e in range(E):
        for s in range(len(names)):
            ax1.text(s, e, f"{frac[e, s]:.2f}", ha="center", va="center", fontsize=8,
                     color="white" if frac[e, s] > 0.6 else "black")
    ax1.set_xticks(range(len(names)), [_short(s) for s in names], rotation=20)
    ax1.set_yticks(range(E), [s.label for s in study.ensembles], fontsize=8)
    ax1.set_title(f"fraction of random matrices in each set (γ = {study.gamma:g})")
    fig.colorbar(im, ax=ax1, shrink=0.6)
    both = np.asarray(study.counts)[:, names.index("mu_inf")] - study.linf_only
    y = np.arange(E)
    ax2.barh(y, both / K[:, 0], color="tab:gray", label="both")
    ax2.barh(y, study.linf_only / K[:, 0], left=both / K[:, 0], color=_color("mu_inf"), label="μ∞ only")
    ax2.barh(y, study.monotone_only / K[:, 0], left=(both + study.linf_only) / K[:, 0], color=_color("monotone"),
             label="monotone only")
    # the same rows as the heatmap: row e at y = e, top to bottom, over the heatmap's y-range, labelled
    ax2.set_ylim(E - 0.5, -0.5)
    ax2.set_yticks(y, [s.label for s in study.ensembles], fontsize=8)
    ax2.yaxis.tick_right()
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("fraction of the ensemble")
    ax2.set_title("ℓ∞ polytope vs monotone set")
    # outside the axes, below them: no bar is covered
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07 - 0.6 / max(E, 1)), ncol=3, fontsize=8, frameon=False)
    return fig


def _draw_slice(ax, st, legend: bool = True) -> None:
    from matplotlib.patches import Patch

    ext = (st.s[0], st.s[-1], st.t[0], st.t[-1])
    handles = []
    order = [n for n in SET_SHORT if n in st.inside] + [n for n in st.inside if n not in SET_SHORT]
    for name in order:
        c = _color(name)
        m = st.margins[name]   # continuous (bound − value) where available: smooth boundaries
        if st.inside[name].any():
            ax.contourf(st.s, st.t, m, levels=[0.0, max(float(m.max()), 0.0) + 1.0], colors=[c], alpha=0.13)
        if st.inside[name].any() and not st.inside[name].all():
            ax.contour(st.s, st.t, m, levels=[0.0], colors=[c], linewidths=1.6,
                       linestyles="--" if name in ("perron_frobenius", "norm_inf") else "-")
        handles.append(Patch(facecolor=c, edgecolor=c, alpha=0.5,
                             label=f"{_short(name)} ({100 * st.inside[name].mean():.0f}%)"))
    for label, (ps, pt) in st.points.items():
        if ext[0] <= ps <= ext[1] and ext[2] <= pt <= ext[3]:
            ax.plot([ps], [pt], "k*", ms=9)
            ax.annotate(label, (ps, pt), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_xlabel(st.axis_labels[0])
    ax.set_ylabel(st.axis_labels[1])
    ax.set_title(st.title, fontsize=9)
    if legend:
        ax.legend(handles=handles, fontsize=7, loc="lower left", framealpha=0.85,
                  title="(% of window)", title_fontsize=7)


def plot_slices(slices, *, ncols: int = 2) -> Figure:
    """Study 2: two-dimensional slices (:class:`~linf_opt.compare.studies.SliceStudy`, one or a list),
    one panel each, every set drawn on the same axes of its panel (filled inside, outlined at its
    boundary; the legend gives each set's share of the window)."""
    slices = [slices] if hasattr(slices, "margins") else list(slices)
    rows = max(1, math.ceil(len(slices) / ncols))
    fig = Figure(figsize=(6 * ncols, 5.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, ncols)).ravel()
    for ax, st in zip(axes, slices):
        _draw_slice(ax, st)
    for ax in axes[len(slices):]:
        ax.set_visible(False)
    if slices:
        fig.suptitle(f"Two-dimensional slices; every set at level γ = {slices[0].gamma:g}")
    return fig


def plot_volumes(studies) -> Figure:
    """Study 3: volume fractions of the feasible sets with their confidence intervals, one panel per
    :class:`~linf_opt.compare.studies.VolumeStudy` (one or a list; the figure of ``linf-opt compare``)."""
    studies = [studies] if hasattr(studies, "fraction") else list(studies)
    if not studies:
        raise ValueError("studies: expected at least one volume study")
    fig = Figure(figsize=(6.5 * len(studies), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(studies)))
    for ax, st in zip(axes, studies):
        y = np.arange(len(st.set_names))
        frac = np.asarray(st.fraction, dtype=float)
        err = np.clip(np.vstack([frac - st.ci_low, st.ci_high - frac]), 0, None)
        ax.barh(y, frac, xerr=err, color=[_color(s) for s in st.set_names], capsize=3)
        ax.set_yticks(y, [_short(s) for s in st.set_names])
        ax.invert_yaxis()
        ax.set_xlabel(f"volume fraction of the box ({100 * getattr(st, 'confidence', 0.95):g}% CI)")
        ax.set_title(st.label, fontsize=9)
    return fig


def plot_distances(study, *, gamma: float | None = None) -> Figure:
    """Study 4 (:class:`~linf_opt.compare.studies.DistanceStudy`): the Frobenius distance from A to
    each set, one bar per set; hatched where it is an upper bound (a non-convex set, no exact
    projection). ``gamma`` (default: the study's) goes into the title."""
    rows, source = study.rows, getattr(study, "source", "")
    gamma = getattr(study, "gamma", None) if gamma is None else gamma
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y, [r["distance"] for r in rows], color=[_color(r["set"]) for r in rows], edgecolor="k", linewidth=0.3)
    for i, r in enumerate(rows):
        if not r["exact"]:
            ax.barh([i], [r["distance"]], fill=False, hatch="//", edgecolor="k", linewidth=0)
    ax.set_yticks(y, [_short(r["set"]) + ("" if r["exact"] else " (≤)") for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("Frobenius distance from A (hatched: upper bound)")
    ax.set_title(f"distance from {source or 'A'} to each set" + ("" if gamma is None else f" (γ = {gamma:g})"),
                 fontsize=9)
    return fig


def plot_training_study(study) -> Figure:
    """Study 5 (:class:`~linf_opt.compare.studies.TrainingStudy`): one training problem under each set
    with the same budget, one bar per variant (means over seeds): the test error in % (classification,
    ± the standard deviation across seeds) or the test MSE (left), and the certified ℓ∞ Lipschitz
    bound with the optimal weights η (right, log scale; "none" where α(M(A)) ≥ 1)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    rows = study.summary_rows()
    names = [r["variant"] for r in rows]
    colors = [_color(r["set"]) for r in rows]
    y = np.arange(len(names))
    sd = [r["metric_std"] or 0.0 for r in rows]
    if study.task == "classification":
        vals = [100 * (1 - (r["test_accuracy"] or 0)) for r in rows]
        sd = [100 * v for v in sd]
        ax1.set_xlabel("test error (%)")
    else:
        vals = [r["test_mse"] or 0 for r in rows]
        ax1.set_xlabel("test MSE")
    ax1.barh(y, vals, xerr=sd if any(sd) else None, color=colors, capsize=3)
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_title(f"{study.problem}: same budget under each set", fontsize=9)
    lips = [r["lipschitz_optimal_eta"] for r in rows]
    finite = [v for v in lips if v is not None]
    top = max(finite) * 3 if finite else 1.0
    ax2.barh(y, [v if v is not None else 0 for v in lips], color=colors)
    ax2.set_xscale("log")
    if finite:
        ax2.set_xlim(min(finite) / 3, top)
    ax2.xaxis.set_minor_formatter(NullFormatter())    # minor labels of a short log range overlap
    for i, v in enumerate(lips):
        if v is not None:
            ax2.text(v, i, f" {v:.3g}", va="center", fontsize=8)
        else:   # no bar: the note sits at the left edge of the panel (axes coordinates), inside it
            ax2.text(0.01, i, "none (α(M(A)) ≥ 1)", va="center", fontsize=8, transform=ax2.get_yaxis_transform())
    ax2.set_yticks(y, [])
    ax2.invert_yaxis()
    ax2.set_xlabel(f"certified {LABELS['lipschitz']}, optimal η")
    ax2.set_title("certified Lipschitz bound", fontsize=9)
    return fig
