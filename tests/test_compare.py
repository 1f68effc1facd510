"""The feasible-set comparison studies (linf_opt.compare.studies) and the `linf-opt compare` command."""
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from linf_opt import mu_2, mu_inf
from linf_opt.cli import main
from linf_opt.compare.studies import (NESTING, SET_ORDER, COUNTER_EXAMPLES, EnsembleSpec, check_nesting, comparison_sets,
                              containment_study, default_ensembles, distance_study, load_training_study,
                              memberships, random_ensemble, slice_study, spec_examples_table, standard_slices,
                              training_study, volume_study, write_report)


def test_nesting_holds_on_random_ensembles():
    ens = default_ensembles(4, samples=40) + [EnsembleSpec("dense", 3, 1.0, -0.5, 40),
                                              EnsembleSpec("sparse", 5, 1.0, 1.0, 40, dominant=True)]
    study = containment_study(ens, gamma=0.9, seed=1)
    assert study.violations == [], study.violations          # a violation fails the test
    names = study.set_names
    for sub, sup in NESTING:                                 # counts are ordered as the sets are
        assert (study.counts[:, names.index(sub)] <= study.counts[:, names.index(sup)]).all()
    # both directions of non-nesting between the ℓ∞ polytope and the monotone set are exhibited
    A = study.examples["mu_inf_not_monotone"]
    assert mu_inf(A) <= 0.9 + 1e-9 < mu_2(A)
    B = study.examples["monotone_not_mu_inf"]
    assert mu_2(B) <= 0.9 + 1e-9 < mu_inf(B)
    assert study.linf_only.sum() > 0 and study.monotone_only.sum() > 0
    assert isinstance(study.figure, Figure)
    assert study.table().count("\n") == len(ens) + 1


def test_check_nesting_reports_violations():
    member = {"norm_inf": np.array([True, True, False]), "mu_inf": np.array([True, False, False])}
    (v,) = check_nesting(member)
    assert (v.subset, v.superset, v.indices) == ("norm_inf", "mu_inf", [1])


def test_spec_counter_examples_land_in_the_right_regions():
    expected = {  # norm, μ∞, PF, weighted, monotone, diagonal metric (γ = 0.9)
        "skew [[0, 3], [−3, 0]]": (False, False, False, False, True, True),
        "negative diagonal [[−10, 9.9], [0, 0]]": (False, True, False, True, False, True),
        "asymmetric [[0, 10], [0.01, 0]]": (False, False, True, True, False, True),
    }
    rows = {r["matrix"]: r for r in spec_examples_table(0.9)}
    assert set(rows) == set(COUNTER_EXAMPLES) == set(expected)
    for name, flags in expected.items():
        assert tuple(rows[name][s] for s in SET_ORDER) == flags, name
    assert rows["skew [[0, 3], [−3, 0]]"]["mu_inf_value"] == pytest.approx(3.0)
    assert rows["negative diagonal [[−10, 9.9], [0, 0]]"]["monotone_value"] == pytest.approx(2.0358, abs=1e-4)
    assert rows["asymmetric [[0, 10], [0.01, 0]]"]["monotone_value"] == pytest.approx(5.005)


def test_random_ensembles_are_reproducible_and_shaped():
    spec = EnsembleSpec("triangular", 5, 2.0, 1.0, 7, dominant=True)
    A = random_ensemble(spec, seed=3)
    assert A.shape == (7, 5, 5) and np.array_equal(A, random_ensemble(spec, seed=3))
    assert np.allclose(np.tril(A + np.eye(5), -1), 0)
    assert (mu_inf(torch.as_tensor(A)) <= 1.0 - 1.0 + 1e-12).all()   # dominant: μ∞ = max u − shift ≤ 1 − 1
    with pytest.raises(ValueError, match="kind"):
        random_ensemble(EnsembleSpec("banded", 3, 1.0, 0.0, 2))


def test_memberships_match_each_set():
    mats = random_ensemble(EnsembleSpec("dense", 3, 1.0, 0.5, 20))
    sets = comparison_sets(0.9)
    mem = memberships(mats, sets)
    for name, S in sets.items():
        assert mem[name].shape == (20,)
        assert [bool(S.contains(a)) for a in mats] == mem[name].tolist()
    with pytest.raises(ValueError, match="matrices"):
        memberships(mats[0], sets)


def test_slice_agrees_with_membership():
    E12, E21 = np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]])
    st = slice_study(np.zeros((2, 2)), E12, E21, extent=(-3, 3, -3, 3), resolution=31, gamma=0.9)
    assert st.inside["mu_inf"].shape == (31, 31)
    sets = comparison_sets(0.9)
    for i, j in [(0, 0), (15, 15), (10, 22), (30, 5), (12, 17)]:
        A = np.array([[0.0, st.s[j]], [st.t[i], 0.0]])
        for name, S in sets.items():
            assert st.inside[name][i, j] == S.contains(A), (name, A)
    fr = st.area_fractions()
    assert fr["norm_inf"] <= fr["mu_inf"] <= fr["weighted_mu_inf"] <= fr["diagonal_metric"]
    # μ∞ on this plane is the square max(|s|, |t|) ≤ γ
    assert fr["mu_inf"] == pytest.approx(np.mean(np.maximum(*np.meshgrid(abs(st.s), abs(st.t))) <= 0.9))


def test_standard_slices_and_figure(tmp_path):
    from linf_opt.compare.studies import slices_figure

    sl = standard_slices(0.9, n=3, resolution=41)
    assert len(sl) == 4 and sl[3].A0.shape == (3, 3)
    fig = slices_figure(sl)
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_volume_study_intervals_and_ratios():
    vs = volume_study(2, 3000, diag_range=(-3, 1), gamma=0.9, seed=0)
    names = vs.set_names
    assert (vs.ci_low <= vs.fraction).all() and (vs.fraction <= vs.ci_high).all()
    i = names.index
    assert vs.hits[i("norm_inf")] <= vs.hits[i("mu_inf")] <= vs.hits[i("weighted_mu_inf")] <= vs.hits[i("diagonal_metric")]
    assert vs.ratio[i("monotone")] == pytest.approx(1.0)
    assert vs.ratio_low[i("mu_inf")] < vs.ratio[i("mu_inf")] < vs.ratio_high[i("mu_inf")]
    # n = 3 goes through the SDP-backed membership; the same ordering holds
    v3 = volume_study(3, 300, diag_range=(-3, 1), gamma=0.9, seed=1)
    j = v3.set_names.index
    assert v3.hits[j("monotone")] <= v3.hits[j("diagonal_metric")] and v3.hits[j("mu_inf")] <= v3.hits[j("weighted_mu_inf")]


def test_distance_study():
    A = np.random.default_rng(0).standard_normal((6, 6))
    st = distance_study(A, gamma=0.9, source="random")
    rows = {r["set"]: r for r in st.rows}
    sets = comparison_sets(0.9)
    for name in ("norm_inf", "mu_inf", "monotone"):
        assert rows[name]["exact"] and rows[name]["distance"] == pytest.approx(float(sets[name].distance(A)))
    assert rows["weighted_mu_inf"]["distance"] <= rows["mu_inf"]["distance"] + 1e-12
    assert rows["diagonal_metric"]["distance"] <= min(rows["monotone"]["distance"],
                                                      rows["weighted_mu_inf"]["distance"]) + 1e-12
    assert rows["norm_inf"]["distance"] >= rows["mu_inf"]["distance"] - 1e-12
    assert "≤" in st.table() and isinstance(st.figure, Figure)
    # when the SDP guard refuses the bisection, the cheap upper bound is reported instead
    rng = np.random.default_rng(7)
    B = rng.standard_normal((4, 4)) * 1.5 - 0.8 * np.eye(4)
    refused = {r["set"]: r for r in distance_study(B, max_seconds=0, figure=False).rows}["diagonal_metric"]
    assert refused["value_note"] == "≤ " and refused["value"] >= np.linalg.eigvals(B).real.max()
    inside = distance_study(np.zeros((3, 3)), figure=False)
    assert all(r["distance"] == 0 and r["exact"] and r["inside"] for r in inside.rows)


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    out = tmp_path_factory.mktemp("study5")
    over = {"training.epochs": 2, "data.n_train": 40, "data.n_test": 50, "model.hidden": 8}
    st = training_study("problems/function_estimation.toml", variants=["mu_inf/project", "monotone/project",
                                                                       "none/free"],
                        out_dir=out, overrides=over, seeds=[0, 1])
    return st, out


def test_training_study(tiny_training):
    st, out = tiny_training
    assert len(st.rows) == 6 and {r["seed"] for r in st.rows} == {0, 1}
    by = {(r["variant"], r["seed"]): r for r in st.rows}
    r = by[("mu_inf/project", 0)]
    assert r["mu_inf"] <= 0.95 + 1e-5 and r["lipschitz_bound"] is not None and r["test_mse"] > 0
    assert by[("monotone/project", 1)]["mu_2"] <= 0.95 + 1e-5
    assert by[("monotone/project", 0)]["solver"] == "peaceman_rachford/direct"
    summary = st.summary_rows()
    assert [s["variant"] for s in summary] == ["mu_inf/project", "monotone/project", "none/free"]
    assert summary[0]["seeds"] == 2 and summary[0]["metric_std"] is not None
    assert "± " in st.table()
    again = load_training_study(out)
    assert again.rows == json.loads((out / "results.json").read_text())["rows"]
    # finished runs are reused, not retrained
    assert training_study("problems/function_estimation.toml", variants=["none/free"], out_dir=out,
                          overrides={"training.epochs": 2, "data.n_train": 40, "data.n_test": 50,
                                     "model.hidden": 8}, seeds=[0, 1], figure=False).rows[0] == by[("none/free", 0)]
    with pytest.raises(ValueError, match="different problem"):   # another budget in the same directory
        training_study("problems/function_estimation.toml", variants=["none/free"], out_dir=out,
                       overrides={"training.epochs": 3, "data.n_train": 40, "data.n_test": 50, "model.hidden": 8},
                       seeds=[0, 1], figure=False)
    with pytest.raises(ValueError, match="variants"):
        training_study("problems/function_estimation.toml", variants=["spectral/project"])


def test_cli_writes_the_report(tiny_training, tmp_path, capsys):
    _, runs = tiny_training
    out = tmp_path / "report"
    rc = main(["compare", "--n", "3", "--samples", "8", "--out", str(out), "--training-results", str(runs),
               "--no-progress"])
    assert rc == 0 and "report written" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    for section in ("## 1. Containment", "## 2. Two-dimensional slices", "## 3. Monte-Carlo volume",
                    "## 4. Distance", "## 5. Training", "Nesting violations: **0**"):
        assert section in text
    for png in ("containment.png", "slices.png", "volume.png", "distance.png", "training.png"):
        assert (out / png).stat().st_size > 1000
    data = json.loads((out / "report.json").read_text())
    assert data["containment"]["violations"] == [] and data["distance"][0]["set"] == "norm_inf"
    assert "none_free_seed0" in text   # study 4 used the unconstrained trained A of study 5
    assert main(["compare", "--n", "1", "--out", str(out)]) == 2


def test_write_report_without_training(tmp_path):
    path = write_report(tmp_path, n=2, samples=5, volume_samples=50, slice_resolution=21,
                        distance_matrix=np.eye(2) * 2, progress=False)
    text = path.read_text()
    assert "Not run" in text and "| ℓ∞ polytope μ∞(A) ≤ γ | 2 |" in text


def test_cli_distance_epochs_zero_skips_training(tmp_path, capsys):
    from linf_opt.cli import main
    assert main(["compare", "--n", "2", "--samples", "10", "--out", str(tmp_path), "--distance-epochs", "0"]) == 0
    out = capsys.readouterr()
    assert "trains" not in out.err and "study 4 (distance) done" in out.out
    assert "random 2×2 matrix" in (tmp_path / "report.md").read_text()
