"""The toolkit's plots: small functions that take data and return a matplotlib ``Figure``.

Every figure is built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``, so no
backend is selected, nothing is shown and no global figure state is touched: the functions work under
``Agg`` (scripts, tests) and in notebooks alike (a returned Figure that ends a cell is drawn inline;
``fig.savefig(path)`` writes it). Axis labels and units are the same everywhere:

=====================  ===================================================================
``epoch``               training epochs (1-based, as in a run's ``history``)
``iteration``           solver iterations
``max residual``        ‖x − Φ(Ax + q)‖∞, the worst sample of the batch
``μ∞(A)``               the ℓ∞ matrix measure
``ε``                   ℓ∞ radius at the attack scale (pixels for MNIST)
``accuracy (%)``        percentages, 0–100
=====================  ===================================================================

    >>> fig = plot_training_curves(result.history, gamma=0.95); fig.savefig("curves.png")
    >>> fig = plot_residual_traces({"average": st.trace}, rate=0.9)

The figures of the feasible-set comparison come with their studies (:mod:`linf_opt.compare.studies`:
``study.figure``, :func:`~linf_opt.compare.studies.slices_figure`); :func:`plot_volumes` draws the
volume studies, which carry no figure of their own.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_training_curves", "plot_step_curves", "plot_fit", "plot_lipschitz", "plot_residual_traces", "plot_accuracy_vs_eps",
           "accuracy_curves", "plot_boxes", "plot_matrix_rows", "plot_volumes"]


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
    a_loss.set_ylabel("loss")
    a_loss.legend(fontsize=8)
    if "test_accuracy" in history[0]:
        a_metric.plot(ep, [100 * v for v in get("test_accuracy")], marker=".", label="test")
        if "train_accuracy" in history[0]:
            a_metric.plot(ep, [100 * v for v in get("train_accuracy")], marker=".", label="train")
        a_metric.set_ylabel("accuracy (%)")
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
    a_mu.set_ylabel("μ∞(A)")
    a_mu.legend(fontsize=8)
    a_it.plot(ep, get("fwd_iters_mean"), marker=".", label="forward")
    a_it.plot(ep, get("bwd_iters_mean"), marker=".", label="backward")
    a_it.set_ylabel("solver iterations (mean per sample)")
    a_it.legend(fontsize=8)
    for ax in (a_loss, a_metric, a_mu, a_it):
        ax.set_xlabel("epoch")
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
    a_loss.set_ylabel("loss")
    for name, v in mus.items():
        a_mu.plot(np.arange(1, len(v) + 1), v, lw=1.2, label=name)
    values = np.concatenate(list(mus.values()))
    top = max(float(values.max()), gamma if gamma is not None else -math.inf)
    if gamma is not None:
        a_mu.axhline(gamma, color="k", ls="--", lw=1, label=f"γ = {gamma:g}")
    a_mu.set_ylim(float(values.min()) - 0.05, top + 0.05)
    a_mu.ticklabel_format(axis="y", useOffset=False)
    a_mu.set_ylabel("μ∞(A)")
    a_mu.legend(fontsize=8)
    for ax in (a_loss, a_mu):
        ax.set_xlabel("optimizer step")
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
    ax.set_ylabel("Lipschitz constant (ℓ∞ → ℓ∞)")
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
    ax.set_xlabel("iteration")
    ax.set_ylabel("max residual ‖x − Φ(Ax + q)‖∞")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------
# Robustness
# ----------------------------------------------------------------------------------------------------

def accuracy_curves(report, *, prefix: str = "") -> dict[str, tuple[list[float], list[float]]]:
    """{name: (ε values, accuracies)} from a :class:`~linf_opt.reports.robustness.RobustnessReport`,
    each curve starting at ε = 0 with the clean accuracy; names get ``prefix``."""
    clean = next((r.accuracy for r in report.records if r.kind == "clean"), None)
    names: list[str] = []
    for r in report.records:
        if r.kind != "clean" and r.name not in names:
            names.append(r.name)
    out = {}
    for name in names:
        pts = sorted((r.eps, r.accuracy) for r in report.records if r.name == name)
        if clean is not None and (not pts or pts[0][0] > 0):
            pts = [(0.0, clean)] + pts
        out[prefix + name] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def plot_accuracy_vs_eps(curves, *, title: str = "accuracy against ε", dashed: Sequence[str] = ("fgsm", "pgd"),
                         xlabel: str = "ε (ℓ∞ radius, pixel scale)") -> Figure:
    """Accuracy against the radius ε: ``curves`` = {label: (ε values, accuracies in [0, 1])} or a
    :class:`~linf_opt.reports.robustness.RobustnessReport` (see :func:`accuracy_curves`).

    Labels containing one of ``dashed`` (the attacks: empirical upper bounds on robust accuracy) are
    dashed; the others (certificates: lower bounds) solid. Accuracies are plotted in %.
    """
    if hasattr(curves, "records"):
        curves = accuracy_curves(curves)
    fig, (ax,) = _figure(1, width=6.4, height=4.2)
    for label, (eps, acc) in curves.items():
        style = "--" if any(d in label for d in dashed) else "-"
        ax.plot(_np(eps), 100 * _np(acc), style, marker="o", ms=4, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title + " (dashed: attacks, solid: certified)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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


def plot_volumes(studies) -> Figure:
    """Volume fractions of the feasible sets with their confidence intervals, one panel per
    :class:`~linf_opt.compare.studies.VolumeStudy` (the figure of ``linf-opt compare``)."""
    from linf_opt.compare.studies import _volume_figure
    studies = [studies] if hasattr(studies, "fraction") else list(studies)
    if not studies:
        raise ValueError("studies: expected at least one volume study")
    return _volume_figure(studies)
