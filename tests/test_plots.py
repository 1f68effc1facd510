"""linf_opt.reports.plots: every function draws on small data and returns a Figure with the promised axes."""
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
    fig = plots.plot_accuracy_vs_eps(_report())
    (ax,) = fig.axes
    assert ax.get_ylabel() == "accuracy (%)" and ax.get_xlabel().startswith("ε")
    pgd, lip = ax.lines
    assert pgd.get_linestyle() == "--" and lip.get_linestyle() == "-"
    np.testing.assert_allclose(pgd.get_ydata(), [90, 50, 20])
    _close(fig)


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
    fig = plots.plot_volumes([volume_study(2, 200)])
    assert len(fig.axes) == 1
    assert fig.axes[0].get_xlabel().startswith("volume fraction")
    _close(fig)
