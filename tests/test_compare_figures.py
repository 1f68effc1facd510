"""Study 4's training is announced and proportional; the containment and robustness figures are readable."""
import numpy as np
import pytest

from linf_opt.compare import studies
from linf_opt.compare.studies import containment_study, default_ensembles, distance_training_size, write_report
from linf_opt.reports.robustness import RobustnessRecord, RobustnessReport, accuracy_figure


def test_distance_training_is_proportional_and_announced(tmp_path, capsys, monkeypatch):
    assert distance_training_size(6) == (40, 300)          # the default report: the problem file's own size
    h3, e3 = distance_training_size(3)
    assert h3 < 40 and e3 <= 150                            # `compare --n 3` trains a smaller network, shorter
    calls = []

    def fake_train(progress=False, epochs=None, hidden=None, **kw):
        calls.append((epochs, hidden))
        return np.eye(hidden) * 2.0

    monkeypatch.setattr(studies, "train_unconstrained_matrix", fake_train)
    common = dict(n=3, samples=4, volume_samples=20, slice_resolution=11, progress=False)
    text = write_report(tmp_path / "a", **common).read_text()
    assert calls == [(e3, h3)]
    err = capsys.readouterr().err
    assert f"trains an unconstrained function-estimation network ({h3} hidden units) for {e3} epochs" in err
    assert f"{e3} epochs" in text
    write_report(tmp_path / "b", distance_epochs=7, distance_hidden=5, **common)
    assert calls[-1] == (7, 5) and "for 7 epochs" in capsys.readouterr().err
    text = write_report(tmp_path / "c", distance_epochs=0, **common).read_text()
    assert len(calls) == 2 and "no training" in text         # 0 epochs: a random matrix, nothing trained
    assert "trains" not in capsys.readouterr().err


def test_train_unconstrained_matrix_takes_epochs_and_hidden():
    A = studies.train_unconstrained_matrix(epochs=1, hidden=5)
    assert A.shape == (5, 5)


def test_containment_bars_align_with_heatmap_rows_and_are_labelled():
    st = containment_study(default_ensembles(2, samples=6))
    ax1, ax2 = st.figure.axes[:2]
    E = len(st.ensembles)
    assert ax2.get_ylim() == pytest.approx(ax1.get_ylim())  # same rows, same order (before: one row off)
    labels = [t.get_text() for t in ax2.get_yticklabels()]
    assert labels == [e.label for e in st.ensembles]           # before: no row labels
    centres = sorted({round(p.get_y() + p.get_height() / 2, 6) for p in ax2.patches})
    assert centres == pytest.approx(list(range(E)))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(st.figure).draw()
    leg = ax2.get_legend().get_window_extent()
    box = ax2.get_window_extent()
    assert leg.y1 <= box.y0                                    # the legend is outside (below) the bars


def _report():
    R = [RobustnessRecord("clean", "clean", 0.0, 0.98, 0.1)]
    for e, a in zip([0.01, 0.05], [0.9, 0.4]):
        R += [RobustnessRecord("attack", "fgsm", e, a, 1), RobustnessRecord("attack", "pgd", e, a - 0.1, 1)]
        for m in ("lipschitz", "lipschitz_paper", "ibp"):
            R.append(RobustnessRecord("certificate", m, e, 0.0, 0.1))
        R.append(RobustnessRecord("certificate", "mixed_monotone", e, a / 2, 0.1))
    return RobustnessReport(10, R)


def test_robustness_figure_separates_attacks_and_certificates(tmp_path):
    fig = accuracy_figure(_report())
    att, cert = fig.axes[:2]
    assert att.get_ylabel() != cert.get_ylabel()                 # before: one y-label for both kinds
    assert "attack" in att.get_ylabel() and "certified" in cert.get_ylabel()
    assert {l.get_label() for l in att.get_lines()} == {"fgsm", "pgd"}
    lines = cert.get_lines()
    assert len(lines) == 4
    styles = {(l.get_marker(), str(l.get_linestyle())) for l in lines}
    assert len(styles) == len(lines)                               # every curve its own marker and style
    zero = [l for l in lines if "0% at every ε" in l.get_label()]
    assert len(zero) == 3
    tails = {tuple(np.round(l.get_ydata()[1:], 6)) for l in zero}  # drawn apart, not on top of each other
    assert len(tails) == 3 and all(min(t) > 0 for t in tails)
    assert "0%" in cert.get_title()
