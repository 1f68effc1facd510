import json

import numpy as np
import pytest
import torch

from linf_opt import ConfigError, InvariantError, mu_2, mu_inf, norm_inf
from linf_opt.training.checkpoint import load_checkpoint
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import NonFiniteLossError, Trainer, load_run, train
from helpers import tiny_mnist

BASE = {
    "name": "tiny", "seed": 3, "dtype": "float64",
    "data": {"kind": "function_estimation", "n_train": 48, "n_test": 64},
    "model": {"hidden": 8},
    "constraint": {"set": "mu_inf", "enforce": "project", "gamma": 0.5},
    "optimizer": {"name": "adam", "lr": 0.05, "lr_step": 2, "lr_decay": 0.5},
    "training": {"epochs": 3, "batch_size": 16, "loss": "mse"},
    "solver": {"tol": 1e-8, "max_iter": 2000, "backward_tol": 1e-10},
}


def problem(**dotted):
    return override(load_problem(BASE), **dotted)


def independent_check(set_name, gamma, m, A, eta=None):
    """Membership computed without the set objects."""
    A = A.detach().double()
    tol = 1e-9 * (1 + float(A.abs().sum(1).max()))
    if set_name in ("mu_inf", "weighted_mu_inf"):
        return float(mu_inf(A, eta)) <= gamma + tol
    if set_name == "norm_inf":
        return float(norm_inf(A)) <= gamma + tol
    if set_name == "monotone":
        return float(mu_2(A)) <= 1 - m + tol
    raise AssertionError(set_name)


CASES = [("mu_inf", "project"), ("mu_inf", "reparam"), ("weighted_mu_inf", "project"),
         ("weighted_mu_inf", "reparam"), ("norm_inf", "project"), ("monotone", "project"),
         ("monotone", "reparam")]


@pytest.mark.parametrize("set_name,enforce", CASES)
def test_invariant_holds_after_every_step(set_name, enforce, monkeypatch):
    p = problem(**{"constraint.set": set_name, "constraint.enforce": enforce, "constraint.m": 0.3})
    trainer = Trainer(p, progress=False)
    seen = []
    original = Trainer._check_invariant

    def spy(self):
        original(self)
        eta = self.net.eta if set_name == "weighted_mu_inf" else None
        seen.append(independent_check(set_name, 0.5, 0.3, self.net.A, eta))

    monkeypatch.setattr(Trainer, "_check_invariant", spy)
    result = trainer.fit()
    assert len(seen) == 3 * 3 and all(seen)
    assert all(h["in_set"] for h in result.history)
    assert np.isfinite(result.history[-1]["test_mse"])


def test_weighted_training_learns_weights():
    p = problem(**{"constraint.set": "weighted_mu_inf", "model.init_scale": 3.0})
    result = Trainer(p, progress=False).fit()
    h = result.history[-1]
    assert h["mu_inf_weighted"] <= 0.5 + 1e-9
    assert result.net.eta is not None and bool((result.net.eta > 0).all())


def test_free_training_reports_membership():
    p = problem(**{"constraint.set": "none", "constraint.enforce": "free", "optimizer.lr": 0.2})
    result = Trainer(p, progress=False).fit()
    assert "in_set" not in result.history[-1]
    p = problem(**{"constraint.enforce": "free", "optimizer.lr": 0.2})
    result = Trainer(p, progress=False).fit()
    assert "in_set" in result.history[-1]


def test_broken_projection_is_caught(monkeypatch):
    trainer = Trainer(problem(**{"optimizer.lr": 0.5}), progress=False)
    for name in ("project", "project_"):  # out of place and in place: both leave A where the step put it
        monkeypatch.setattr(type(trainer.set), name, lambda self, A, method=None: A)
    with pytest.raises(InvariantError, match="left the feasible set"):
        trainer.fit()


def test_resume_reproduces_uninterrupted_run(tmp_path):
    full = train(problem(**{"training.epochs": 4}), tmp_path / "full", progress=False)
    part = train(problem(**{"training.epochs": 2}), tmp_path / "part", progress=False)
    assert part.history[-1]["epoch"] == 2
    resumed = train(problem(**{"training.epochs": 4}), tmp_path / "part", resume=True, progress=False)
    for (n1, p1), (n2, p2) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    lines = (tmp_path / "part" / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]


def test_cosine_schedule_rates_follow_the_closed_form_and_resume(tmp_path):
    import math
    lr, floor, E = 0.05, 0.005, 4
    p = problem(**{"training.epochs": E, "optimizer.schedule": "cosine", "optimizer.lr_min": floor})
    full = train(p, tmp_path / "full", progress=False)
    # history's "lr" is the rate after the epoch's scheduler step: the rate epoch e + 1 will run at
    expected = [floor + (lr - floor) * (1 + math.cos(math.pi * e / E)) / 2 for e in range(1, E + 1)]
    assert [h["lr"] for h in full.history] == pytest.approx(expected, rel=1e-12)
    assert full.history[-1]["lr"] == pytest.approx(floor, rel=1e-12)
    part = train(override(p, **{"training.epochs": 2}), tmp_path / "part", progress=False)
    assert part.history[-1]["lr"] == pytest.approx(floor + (lr - floor) * (1 + math.cos(math.pi * 2 / 2)) / 2)
    # resumed under the longer total, the cosine continues over 4 epochs from epoch 3 on
    t = Trainer(p, tmp_path / "part", progress=False)
    assert t.resume() and t.opt.param_groups[0]["lr"] == pytest.approx(expected[1], rel=1e-12)
    resumed = train(p, tmp_path / "part", resume=True, progress=False)
    assert [h["lr"] for h in resumed.history][2:] == pytest.approx(expected[2:], rel=1e-12)


def test_cosine_schedule_rejects_a_floor_at_or_above_lr():
    with pytest.raises(ConfigError, match="optimizer.lr_min"):
        problem(**{"optimizer.schedule": "cosine", "optimizer.lr_min": 0.05})
    with pytest.raises(ConfigError, match="optimizer.schedule"):
        problem(**{"optimizer.schedule": "linear"})


def test_interrupted_mid_epoch_resumes_from_last_checkpoint(tmp_path, monkeypatch):
    full = train(problem(), tmp_path / "full", progress=False)
    trainer = Trainer(problem(), tmp_path / "run", progress=False)
    original = Trainer._project
    calls = {"n": 0}

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == 8:           # during the third epoch
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(Trainer, "_project", interrupt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(Trainer, "_project", original)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    resumed = train(problem(), tmp_path / "run", resume=True, progress=False)
    for p1, p2 in zip(full.net.parameters(), resumed.net.parameters()):
        assert torch.equal(p1, p2)


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, monkeypatch):
    trainer = Trainer(problem(), tmp_path, progress=False)
    trainer.fit(epochs=1)
    before = load_checkpoint(tmp_path / "checkpoint.pt")
    import linf_opt.training.trainer as tr
    monkeypatch.setattr(tr, "_task_loss", lambda Y, T, kind: (Y * float("nan")).sum())
    with pytest.raises(NonFiniteLossError, match="non-finite training loss.*checkpoint"):
        trainer.fit(epochs=2)
    after = load_checkpoint(tmp_path / "checkpoint.pt")
    assert after["epoch"] == 1
    for k in before["model"]:
        assert torch.equal(before["model"][k], after["model"][k])


def test_load_run_round_trip(tmp_path):
    res = train(problem(**{"training.epochs": 1}), tmp_path, progress=False)
    net, prob = load_run(tmp_path)
    u = torch.linspace(-2, 2, 9, dtype=torch.float64).unsqueeze(1)
    torch.testing.assert_close(net(u), res.net(u))
    assert prob == res.problem


def test_reparam_load_run(tmp_path):
    train(problem(**{"training.epochs": 1, "constraint.enforce": "reparam"}), tmp_path, progress=False)
    net, _ = load_run(tmp_path)
    assert float(mu_inf(net.A.detach())) <= 0.5 + 1e-9


def test_regularizer_lowers_lipschitz_bound():
    plain = Trainer(problem(**{"training.epochs": 4}), progress=False).fit()
    reg = Trainer(problem(**{"training.epochs": 4, "regularizer.lipschitz_weight": 0.5}), progress=False).fit()
    assert reg.summary["lipschitz_bound"] < plain.summary["lipschitz_bound"]


def test_cvxpy_backend_gives_the_same_trajectory():
    """Both projection backends are the same method: identical trajectories up to solver tolerance."""
    kw = {"training.epochs": 2, "model.hidden": 6, "model.init_scale": 2.0}
    a = Trainer(problem(**kw), progress=False).fit()
    b = Trainer(problem(**kw, **{"constraint.backend": "cvxpy"}), progress=False).fit()
    for p1, p2 in zip(a.net.parameters(), b.net.parameters()):
        torch.testing.assert_close(p1, p2, atol=1e-6, rtol=1e-6)


def test_classification_end_to_end_on_tiny_idx_files(tmp_path):
    d = tiny_mnist(tmp_path / "mnist")
    p = load_problem("problems/mnist_fc.toml")
    p = override(p, **{"data.data_dir": str(d), "model.hidden": 16, "training.epochs": 3,
                       "training.batch_size": 20, "optimizer.lr": 0.01})
    res = train(p, tmp_path / "run", progress=False)
    h = res.history[-1]
    assert 0.0 <= h["test_accuracy"] <= 1.0 and "train_accuracy" in h
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert h["mu_inf"] <= 0.95 + 1e-5


def test_robust_problem_uses_the_robust_loss_once(tmp_path):
    """With [robust], the training loss is robust_loss's mixed loss itself (not mixed a second time)."""
    from linf_opt.data.datasets import eps_to_normalized, to_normalized
    from linf_opt.robustness.robust_training import robust_loss, robust_schedule

    d = tiny_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    p = override(load_problem("problems/mnist_fc_robust.toml"), **{
        "data.data_dir": str(d), "model.hidden": 8, "robust.warmup_epochs": 0, "robust.eps_ramp_epochs": 1,
        "robust.mix_ramp_epochs": 1})
    trainer = Trainer(p, progress=False)
    U, T = trainer.data.train_inputs[:10], trainer.data.train_targets[:10]
    loss, _, info = trainer._loss(U, T, 2.0)                    # past the ramps: ε and κ at their targets
    eps, mix = robust_schedule(p.robust, 2.0)
    assert eps == p.robust.eps and mix == p.robust.mix and info["robust_mix"] == mix
    expected, _ = robust_loss(trainer.net, U, T, eps_to_normalized(eps), mix,
                              lower=float(to_normalized(0.0)), upper=float(to_normalized(1.0)))
    torch.testing.assert_close(loss, expected)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@CUDA
@pytest.mark.parametrize("set_name,enforce", [("mu_inf", "project"), ("mu_inf", "reparam"),
                                              ("weighted_mu_inf", "project"), ("norm_inf", "project"),
                                              ("monotone", "project")])
def test_cuda_training_matches_cpu(set_name, enforce, tmp_path):
    """The same problem trained on the GPU follows the CPU trajectory (float64; the projections run the
    tensor closed forms there, the compiled kernel here), keeps the invariant, checkpoints and resumes."""
    p = problem(**{"constraint.set": set_name, "constraint.enforce": enforce, "training.epochs": 2})
    cpu = train(p, progress=False)
    gpu = train(override(p, device="cuda"), tmp_path / "run", progress=False)
    for (name, a), (_, b) in zip(cpu.net.state_dict().items(), gpu.net.state_dict().items()):
        assert b.is_cuda, name
        torch.testing.assert_close(b.cpu(), a, rtol=1e-7, atol=1e-9)
    assert all(h["in_set"] for h in gpu.history)
    assert gpu.history[-1]["test_mse"] == pytest.approx(cpu.history[-1]["test_mse"], rel=1e-6)
    resumed = train(override(p, device="cuda", **{"training.epochs": 3}), tmp_path / "run", resume=True,
                    progress=False)
    assert resumed.history[-1]["epoch"] == 3 and resumed.net.A.is_cuda
    net, _ = load_run(tmp_path / "run", map_location="cpu")
    assert not net.A.is_cuda


def conv_problem(data_dir, **dotted):
    p = load_problem("problems/mnist_conv.toml")
    return override(p, **{"data.data_dir": str(data_dir), "model.channels": 4, "training.epochs": 2,
                          "training.batch_size": 20, "optimizer.lr": 0.01, "dtype": "float64",
                          "solver.tol": 1e-8, "solver.backward_tol": 1e-10, **dotted})


def test_conv_training_keeps_mu_inf_after_every_step_and_resumes(tmp_path, monkeypatch):
    d = tiny_mnist(tmp_path / "mnist")
    seen, averaged = [], []          # the problem file averages the weights: the average is checked too
    original = Trainer._check_invariant

    def spy(self, net=None, what="A"):
        original(self, net, what)
        op = (self.net if net is None else net).operator
        (seen if net is None else averaged).append(float(mu_inf(op.as_matrix().detach())))   # the dense operator, independently

    monkeypatch.setattr(Trainer, "_check_invariant", spy)
    full = train(conv_problem(d, **{"training.epochs": 3}), tmp_path / "full", progress=False)
    assert len(seen) == 3 * 3 and max(seen) <= 0.95 + 1e-12
    assert len(averaged) == 3 * 3 and max(averaged) <= 0.95 + 1e-12
    assert full.history[-1]["mu_inf"] <= 0.95 + 1e-12 and full.history[-1]["in_set"]
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]
    monkeypatch.setattr(Trainer, "_check_invariant", original)
    # interrupted after 2 of the same 3 epochs (the cosine schedule depends on the total), then resumed
    Trainer(conv_problem(d, **{"training.epochs": 3}), tmp_path / "part", progress=False).fit(2)
    resumed = train(conv_problem(d, **{"training.epochs": 3}), tmp_path / "part", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for (n1, p1), (n2, p2) in zip(full.net.state_dict().items(), resumed.net.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    net, prob = load_run(tmp_path / "part")
    assert prob.model.kind == "conv"
    u = torch.rand(3, 784, dtype=torch.float64)
    torch.testing.assert_close(net(u), resumed.net(u))


def test_conv_problem_validation():
    with pytest.raises(ConfigError, match="kernel_size"):
        load_problem({"data": {"kind": "mnist"}, "model": {"kind": "conv", "kernel_size": 4}})
    with pytest.raises(ConfigError, match="constraint.set"):
        load_problem({"data": {"kind": "mnist"}, "model": {"kind": "conv"}, "constraint": {"set": "monotone"}})
    with pytest.raises(ConfigError, match="construction"):
        load_problem({"data": {"kind": "mnist"}, "model": {"kind": "conv", "construction": "authors"}})
    with pytest.raises(ConfigError, match="construction"):
        load_problem({"model": {"construction": "authors"}})


def test_conv_authors_construction_trains_and_reports_its_measure(tmp_path):
    d = tiny_mnist(tmp_path / "mnist")
    res = train(conv_problem(d, **{"model.construction": "authors", "constraint.set": "none", "constraint.enforce": "free",
                                   "training.epochs": 1}), progress=False)
    assert res.history[-1]["mu_inf"] > 1.0          # reported honestly, not assumed
