"""linf_opt.plots (public name linf_opt.reports.plots): every function draws on small data and returns a Figure
with the promised axes, the comparison studies' and the robustness report's figures included."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from linf_opt.reports import plots
from linf_opt.reports.robustness import RobustnessRecord, RobustnessReport


def _history(task="classification", epochs=3):
    out = []
    for e in range(1, epochs + 1):
        h = {"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.2 / e, "mu_inf": 0.95, "fwd_iters_mean": 10.0 + e,
             "bwd_iters_mean": 12.0 + e}
        if task == "classification":
            h.update(test_accuracy=0.5 + 0.1 * e, train_accuracy=0.55 + 0.1 * e)
        else:
            h.update(test_mse=0.1 / e)
        out.append(h)
    return out


def _close(fig):
    assert isinstance(fig, Figure)
    fig.canvas.draw()        # renders without a display (the Agg canvas)
    fig.clear()


def test_training_curves_classification():
    fig = plots.plot_training_curves(_history(), gamma=0.95, title="t")
    axes = fig.axes
    assert len(axes) == 4
    assert [a.get_xlabel() for a in axes] == ["epoch"] * 4
    assert axes[1].get_ylabel() == "accuracy (%)"
    assert axes[2].get_ylabel() == "μ∞(A)"
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), [60, 70, 80])
    assert any(np.allclose(l.get_ydata(), 0.95) for l in axes[2].lines)   # the bound γ
    np.testing.assert_allclose(axes[3].lines[0].get_ydata(), [11, 12, 13])
    _close(fig)


def test_training_curves_regression_and_empty():
    fig = plots.plot_training_curves(_history("regression"))
    assert fig.axes[1].get_ylabel() == "test MSE"
    _close(fig)
    with pytest.raises(ValueError):
        plots.plot_training_curves([])


def test_step_curves():
    fig = plots.plot_step_curves([1.0, 0.5, 0.25], [0.7, 0.9, 0.9], gamma=0.9, title="t")
    a_loss, a_mu = fig.axes
    assert [a.get_xlabel() for a in fig.axes] == ["optimizer step"] * 2
    assert a_mu.get_ylabel() == "μ∞(A)"
    np.testing.assert_allclose(a_loss.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(a_mu.lines[0].get_ydata(), [0.7, 0.9, 0.9])
    assert any(np.allclose(l.get_ydata(), 0.9) for l in a_mu.lines)      # the bound γ
    _close(fig)
    fig = plots.plot_step_curves(torch.tensor([1.0, 0.5]), {"a": [0.1, 0.2], "b": torch.tensor([0.3, 0.4])})
    assert len(fig.axes[1].lines) == 2
    _close(fig)
    with pytest.raises(ValueError, match="at least one step"):
        plots.plot_step_curves([], [])


def test_fit():
    u = torch.linspace(-1, 1, 5).unsqueeze(1)
    fig = plots.plot_fit(u, {"a": u * 2, "b": u ** 2}, target=u, train=(u, u + 0.1))
    (ax,) = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("input u", "output y")
    labels = [l.get_label() for l in ax.lines]
    assert labels == ["training data", "target", "a", "b"]
    np.testing.assert_allclose(ax.lines[2].get_ydata(), 2 * np.linspace(-1, 1, 5), atol=1e-6)
    _close(fig)


def test_lipschitz():
    fig = plots.plot_lipschitz([0, 0.01], [100.0, 10.0], [3.0, 2.5], true=3.5)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "Lipschitz constant (ℓ∞ → ℓ∞)"
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [2.5, 3.0, 10.0, 100.0]
    assert np.allclose(ax.lines[0].get_ydata(), 3.5)
    _close(fig)
    with pytest.raises(ValueError):
        plots.plot_lipschitz([0, 1], [1.0], None)


def test_residual_traces():
    tr = {"average": [1.0, 0.5, 0.25, 0.125], "picard": [1.0, 2.0]}
    fig = plots.plot_residual_traces(tr, rate=0.5, tol=1e-3, a_priori=6)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "iteration"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0, 1, 2, 3])   # trace[k] is iterate k
    rate_line = ax.lines[2]
    np.testing.assert_allclose(rate_line.get_ydata(), 0.5 ** np.arange(7))   # r₀ρᵏ up to the a-priori count
    assert "ρ = 0.5" in rate_line.get_label()
    _close(fig)
    fig = plots.plot_residual_traces(tr, rate={"α*": 0.5, "α*/2": 0.75}, start=2.0)
    np.testing.assert_allclose(fig.axes[0].lines[3].get_ydata()[:2], [2.0, 1.5])
    _close(fig)


def _report():
    rep = RobustnessReport(10)
    rep.records += [RobustnessRecord("clean", "clean", 0.0, 0.9, 0.1),
                    RobustnessRecord("attack", "pgd", 0.1, 0.5, 0.1), RobustnessRecord("attack", "pgd", 0.2, 0.2, 0.1),
                    RobustnessRecord("certificate", "lipschitz", 0.1, 0.3, 0.1),
                    RobustnessRecord("certificate", "lipschitz", 0.2, 0.0, 0.1)]
    return rep


def test_accuracy_vs_eps():
    curves = plots.accuracy_curves(_report(), prefix="m: ")
    assert curves["m: pgd"] == ([0.0, 0.1, 0.2], [0.9, 0.5, 0.2])
    assert list(plots.accuracy_curves(_report(), kind="certificate")) == ["lipschitz"]
    fig = plots.plot_accuracy_vs_eps(_report())          # the figure of `linf-opt certify`: attacks | certificates
    att, cert = fig.axes
    assert att.get_xlabel() == cert.get_xlabel() == plots.LABELS["eps"]
    assert (att.get_ylabel(), cert.get_ylabel()) == ("accuracy under attack (%)", "certified accuracy (%)")
    (pgd,), (lip,) = att.lines, cert.lines
    assert pgd.get_label() == "pgd" and lip.get_label() == "lipschitz"
    np.testing.assert_allclose(pgd.get_ydata(), [90, 50, 20])
    np.testing.assert_allclose(lip.get_ydata(), [90, 30, 0])
    assert "10 samples" in fig.get_suptitle()
    _close(fig)


def test_accuracy_vs_eps_of_curves_from_several_models():
    both = {**plots.accuracy_curves(_report(), prefix="a: "), **plots.accuracy_curves(_report(), prefix="b: ")}
    fig = plots.plot_accuracy_vs_eps(both, title="a vs b")
    att, cert = fig.axes
    assert [l.get_label() for l in att.lines] == ["a: pgd", "b: pgd"]       # split by the attack names
    assert [l.get_label() for l in cert.lines] == ["a: lipschitz", "b: lipschitz"]
    styles = {(l.get_marker(), str(l.get_linestyle())) for l in cert.lines}
    assert len(styles) == 2                                                # one marker and style per curve
    assert fig.get_suptitle() == "a vs b"
    zero = {"x": ([0.0, 0.1], [0.9, 0.0]), "y": ([0.0, 0.1], [0.9, 0.0])}     # 0% at every ε > 0: drawn apart
    fig = plots.plot_accuracy_vs_eps(zero)
    ys = [l.get_ydata() for l in fig.axes[1].lines]
    assert ys[0][0] == ys[1][0] == 90 and 0 < ys[0][1] < ys[1][1]
    assert all("0% at every ε" in l.get_label() for l in fig.axes[1].lines)
    assert "none measured" in fig.axes[0].get_title()
    _close(fig)


def test_robustness_report_figure_is_the_plots_figure():
    from linf_opt.reports.robustness import accuracy_figure, plot_accuracy
    a, b = accuracy_figure(_report(), "t"), plots.plot_accuracy_vs_eps(_report(), title="t")
    for x, y in zip(a.axes, b.axes, strict=True):
        assert [l.get_label() for l in x.lines] == [l.get_label() for l in y.lines]
        assert (x.get_xlabel(), x.get_ylabel(), x.get_title()) == (y.get_xlabel(), y.get_ylabel(), y.get_title())
        for lx, ly in zip(x.lines, y.lines):
            np.testing.assert_allclose(lx.get_ydata(), ly.get_ydata())
    _close(a)
    _close(b)


def test_boxes():
    lo = np.array([[0.0, -1.0, -2.0], [1.0, 0.0, 0.5]])
    hi = lo + 1.0
    fig = plots.plot_boxes(lo, hi, points=lo + 0.5, labels=[0, 2], hidden_lower=np.zeros((2, 5)),
                           hidden_upper=np.ones((2, 5)))
    assert len(fig.axes) == 2
    assert fig.axes[0].get_ylabel() == "certified output interval [y̲, ȳ]"
    assert fig.axes[1].get_ylabel() == "certified hidden interval [x̲, x̄]"
    assert len(fig.axes[0].containers) == 2      # one error-bar group per sample
    colours = [c.lines[2][0].get_color() for c in fig.axes[0].containers]
    assert len({tuple(np.ravel(c)) for c in colours}) == 2                  # one colour per sample
    _close(fig)
    fig = plots.plot_boxes(lo, hi, hidden_lower=np.zeros((2, 3, 2, 2)), hidden_upper=np.ones((2, 3, 2, 2)),
                           max_hidden=10)     # image-shaped states (a convolutional model) are flattened
    assert [len(c.get_paths()) for c in fig.axes[1].collections] == [1, 1]
    np.testing.assert_allclose(fig.axes[1].collections[0].get_paths()[0].vertices[:, 0].max(), 9)   # units 0..9
    _close(fig)
    fig = plots.plot_boxes(torch.tensor(lo), torch.tensor(hi))
    assert len(fig.axes) == 1
    _close(fig)


def test_matrix_rows():
    A = np.array([[-1.0, 0.5, 0.2], [0.1, 0.3, -0.4], [0.0, 0.0, 0.9]])
    fig = plots.plot_matrix_rows({"A": A, "2A": 2 * A}, gamma=0.9)
    heat = [a for a in fig.axes if a.images]
    assert len(heat) == 2
    scatter = fig.axes[2]
    assert scatter.get_xlabel() == "diagonal aᵢᵢ"
    offsets = scatter.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], np.diag(A))
    np.testing.assert_allclose(offsets[:, 1], [0.7, 0.5, 0.0])
    line = scatter.lines[0]
    np.testing.assert_allclose(line.get_xdata() + line.get_ydata(), 0.9)   # aᵢᵢ + Σ|aᵢⱼ| = γ
    _close(fig)
    with pytest.raises(ValueError):
        plots.plot_matrix_rows({"bad": np.ones((2, 3))})


def test_volumes():
    from linf_opt.compare.studies import volume_study
    st = volume_study(2, 200)
    fig = plots.plot_volumes([st])
    assert len(fig.axes) == 1
    assert fig.axes[0].get_xlabel() == "volume fraction of the box (95% CI)"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [plots.SET_SHORT[s] for s in st.set_names]
    np.testing.assert_allclose(sorted(p.get_width() for p in fig.axes[0].patches), sorted(st.fraction))
    _close(fig)
    assert isinstance(st.figure, Figure) and len(st.figure.axes) == 1         # the study carries its figure
    assert len(plots.plot_volumes([st, volume_study(3, 50, figure=False)]).axes) == 2
    assert volume_study(2, 20, figure=False).figure is None
    with pytest.raises(ValueError):
        plots.plot_volumes([])


# ----------------------------------------------------------------------------------------------------
# The comparison figures (linf_opt.compare.studies draws its .figure attributes with these)
# ----------------------------------------------------------------------------------------------------

def test_containment():
    from linf_opt.compare.studies import containment_study, default_ensembles
    st = containment_study(default_ensembles(2, samples=5), figure=False)
    assert st.figure is None
    fig = plots.plot_containment(st)
    heat, bars = fig.axes[:2]
    assert [t.get_text() for t in heat.get_xticklabels()] == [plots.SET_SHORT[s] for s in st.set_names]
    np.testing.assert_allclose(heat.images[0].get_array(), st.counts / 5)
    assert bars.get_xlabel() == "fraction of the ensemble"
    assert len(bars.patches) == 3 * len(st.ensembles)          # both | μ∞ only | monotone only, per ensemble
    _close(fig)


def test_slices():
    from linf_opt.compare.studies import slice_study, slices_figure
    E = lambda i, j: np.eye(2)[:, [i]] @ np.eye(2)[[j], :]       # noqa: E731
    st = slice_study(np.zeros((2, 2)), E(0, 1), E(1, 0), resolution=11, title="off-diagonal",
                     axis_labels=("a₁₂", "a₂₁"), points={"skew": (1.0, -1.0)})
    fig = plots.plot_slices([st, st], ncols=2)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("a₁₂", "a₂₁", "off-diagonal")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [l.split(" (")[0] for l in legend] == [plots.SET_SHORT[s] for s in st.inside]   # one entry per set
    assert "γ = 0.9" in fig.get_suptitle()
    _close(fig)
    assert len([a for a in plots.plot_slices(st).axes if a.get_visible()]) == 1   # one slice, one panel
    assert len([a for a in slices_figure([st] * 3).axes if a.get_visible()]) == 3


def test_distances():
    from linf_opt.compare.studies import distance_study
    st = distance_study(np.array([[0.5, 2.0], [-1.0, 0.3]]), gamma=0.8, source="a test matrix")
    assert isinstance(st.figure, Figure) and st.gamma == 0.8
    fig = plots.plot_distances(st)
    (ax,) = fig.axes
    assert ax.get_xlabel().startswith("Frobenius distance")
    assert ax.get_title() == "distance from a test matrix to each set (γ = 0.8)"
    widths = [p.get_width() for p in ax.patches[:len(st.rows)]]
    np.testing.assert_allclose(widths, [r["distance"] for r in st.rows])
    _close(fig)


def _training_rows(task):
    rows = []
    for seed in (0, 1):
        for variant, set_, lip in (("mu_inf/project", "mu_inf", 3.0), ("none/free", "none", None)):
            r = {"variant": variant, "set": set_, "enforce": variant.split("/")[1], "solver": "average/avg",
                 "seed": seed, "lipschitz_optimal_eta": lip, "mu_inf": 0.9}
            if task == "classification":
                r.update(test_accuracy=0.9 + 0.02 * seed, test_mse=None)
            else:
                r.update(test_accuracy=None, test_mse=0.01 * (1 + seed))
            rows.append(r)
    return rows


def test_training_study():
    from linf_opt.compare.studies import TrainingStudy
    st = TrainingStudy("p", "classification", _training_rows("classification"))
    fig = plots.plot_training_study(st)
    err, lip = fig.axes
    assert err.get_xlabel() == "test error (%)"
    assert lip.get_xscale() == "log" and plots.LABELS["lipschitz"] in lip.get_xlabel()
    assert [t.get_text() for t in err.get_yticklabels()] == ["mu_inf/project", "none/free"]
    np.testing.assert_allclose([p.get_width() for p in err.patches], [9.0, 9.0])     # 100·(1 − mean accuracy)
    assert any("none" in t.get_text() for t in lip.texts)                          # no certificate: said so
    assert err.patches[0].get_facecolor() != err.patches[1].get_facecolor()        # μ∞ blue, unconstrained red
    _close(fig)
    fig = plots.plot_training_study(TrainingStudy("p", "regression", _training_rows("regression")))
    assert fig.axes[0].get_xlabel() == "test MSE"
    _close(fig)


def test_one_module_no_pyplot_state():
    import sys

    import linf_opt.plots
    import linf_opt.reports
    assert plots.plot_volumes is linf_opt.plots.plot_volumes              # the notebooks' name is the module
    assert set(linf_opt.plots.__all__) <= set(dir(linf_opt.reports))
    if "matplotlib.pyplot" in sys.modules:                                # nothing drawn here went through pyplot
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
