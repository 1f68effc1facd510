"""Weight averaging (linf_opt.training.averaging, training.ema_decay): the recursion against a brute-force
sum, feasibility of the average after every step (checked independently, dense and conv), what the run
reports and returns, bit-exact resume, and the refused combinations."""
import pytest
import torch

from linf_opt import ConfigError, DataError, mu_inf
from linf_opt.training.averaging import WeightAverage, ema_factor
from linf_opt.training.checkpoint import load_checkpoint, save_atomic
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer, evaluate, load_run, train
from helpers import tiny_mnist
from test_training import BASE, conv_problem

EMA = {"training.ema_decay": 0.9, "training.epochs": 3}


def problem(**dotted):
    return override(load_problem(BASE), **{**EMA, **dotted})


def test_ema_factor_has_the_warm_up_then_the_decay():
    assert ema_factor(0.999, 1) == pytest.approx(2 / 11)
    assert ema_factor(0.999, 10) == pytest.approx(11 / 20)
    assert ema_factor(0.9, 10 ** 6) == 0.9
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(torch.nn.Linear(2, 2), 1.0)


def test_update_equals_the_weighted_sum_of_the_iterates():
    """θ̄_T = Π β_t θ_0 + Σ_t (1 − β_t) Π_{s>t} β_s θ_t, summed directly over the recorded iterates."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    avg = WeightAverage(net, 0.8)
    iterates = [[p.detach().clone() for p in net.parameters()]]
    for _ in range(25):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        iterates.append([p.detach().clone() for p in net.parameters()])
        avg.update()
    T = len(iterates) - 1
    betas = [ema_factor(0.8, t) for t in range(1, T + 1)]
    for i, q in enumerate(avg.module.parameters()):
        expected = torch.zeros_like(q)
        for t in range(T + 1):
            w = 1.0 if t == 0 else 1 - betas[t - 1]
            for s in range(t + 1, T + 1):
                w *= betas[s - 1]
            expected += w * iterates[t][i]
        torch.testing.assert_close(q, expected, rtol=1e-12, atol=1e-12)
        assert not q.requires_grad
    assert avg.updates == T


def test_float32_average_accumulates_in_float64_and_stays_in_the_polytope():
    """Every iterate is a float32 matrix on the boundary of μ∞ ≤ γ (as projected training rows are); the
    average is the float64 recursion rounded once, so it stays in the set, which a float32 lerp does not
    guarantee (its round-off accumulates over the ~1/(1 − β) remembered steps)."""
    from linf_opt import project_mu_inf
    torch.manual_seed(1)
    gamma, n = 0.95, 40
    lin = torch.nn.Linear(n, n, bias=False)
    avg = WeightAverage(lin, 0.999)
    ref = lin.weight.detach().double().clone()
    for t in range(1, 1501):
        with torch.no_grad():
            lin.weight.copy_(project_mu_inf(3 * torch.randn(n, n), gamma))
        avg.update()
        ref.lerp_(lin.weight.detach().double(), 1 - ema_factor(0.999, t))
    A = avg.module.weight
    assert A.dtype == torch.float32
    assert torch.equal(A, ref.float())                        # the float64 recursion, rounded once
    assert float(mu_inf(A.double())) <= gamma + 2 ** -24 * float(A.double().abs().sum(1).max())


@pytest.mark.parametrize("set_name,enforce", [("mu_inf", "project"), ("norm_inf", "project"),
                                              ("monotone", "project"), ("mu_inf", "reparam")])
def test_the_average_stays_in_the_set_after_every_step(set_name, enforce, monkeypatch):
    from test_training import independent_check
    p = problem(**{"constraint.set": set_name, "constraint.enforce": enforce, "constraint.m": 0.3,
                   "optimizer.lr": 0.2})
    seen, moved = [], []
    original = Trainer._check_invariant

    def spy(self, net=None, what="A"):
        original(self, net, what)
        if net is not None:
            seen.append(independent_check(set_name, 0.5, 0.3, net.A))
            moved.append(float((net.A - self.net.A).detach().abs().max()))

    monkeypatch.setattr(Trainer, "_check_invariant", spy)
    result = Trainer(p, progress=False).fit()
    assert len(seen) == 3 * 3 and all(seen)
    assert max(moved) > 1e-3                     # the average is not the iterate
    assert result.history[-1]["in_set"]


def test_the_run_reports_and_returns_the_average(tmp_path):
    res = train(problem(), tmp_path, progress=False)
    t = Trainer(problem(), tmp_path, progress=False)
    assert t.resume()
    assert res.net is not t.net
    for a, b in zip(res.net.parameters(), t.average.module.parameters()):
        assert torch.equal(a, b)
    h = res.history[-1]
    # the reported metrics are the average's, the iterate's are kept beside them; both recomputed here
    assert h["test_mse"] == pytest.approx(evaluate(t.average.module, t.data)["mse"], rel=1e-12)
    assert h["test_mse_iterate"] == pytest.approx(evaluate(t.net, t.data)["mse"], rel=1e-12)
    assert h["test_mse"] != h["test_mse_iterate"]
    assert h["mu_inf"] == pytest.approx(float(mu_inf(t.average.module.A.detach())), rel=1e-12)
    assert h["mu_inf_iterate"] == pytest.approx(float(mu_inf(t.net.A.detach())), rel=1e-12)
    assert res.summary["test_mse_iterate"] == h["test_mse_iterate"]
    assert 0 < h["average_share"] < 1 and 0 < res.summary["average_share"] < 1
    u = torch.linspace(-2, 2, 9, dtype=torch.float64).unsqueeze(1)
    net, _ = load_run(tmp_path)
    torch.testing.assert_close(net(u), res.net(u), rtol=0, atol=0)
    last, _ = load_run(tmp_path, average=False)
    torch.testing.assert_close(last(u), t.net(u), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])   # float32: the float64 accumulator is resumed too
def test_resume_with_averaging_is_bit_exact(tmp_path, dtype):
    tols = {} if dtype == "float64" else {"solver.tol": 1e-5, "solver.backward_tol": 1e-5}
    p = problem(dtype=dtype, **tols)
    full = Trainer(p, tmp_path / "full", progress=False)
    full.fit()
    Trainer(p, tmp_path / "part", progress=False).fit(2)
    resumed = Trainer(p, tmp_path / "part", progress=False)
    assert resumed.resume() and resumed.average.updates == 2 * 3
    resumed.fit()
    for m1, m2 in ((full.net, resumed.net), (full.average.module, resumed.average.module)):
        for (n1, p1), (n2, p2) in zip(m1.state_dict().items(), m2.state_dict().items()):
            assert n1 == n2 and torch.equal(p1, p2), n1
    assert [h["test_mse"] for h in full.history] == [h["test_mse"] for h in resumed.history]
    for a1, a2 in zip(full.average.accumulator, resumed.average.accumulator):
        assert a1.dtype == torch.float64 and torch.equal(a1, a2)


def test_conv_average_keeps_mu_inf_after_every_step(tmp_path, monkeypatch):
    d = tiny_mnist(tmp_path / "mnist")
    seen = []
    original = Trainer._check_invariant

    def spy(self, net=None, what="A"):
        original(self, net, what)
        if net is not None:
            seen.append(float(mu_inf(net.operator.as_matrix().detach())))   # the dense operator, independently

    monkeypatch.setattr(Trainer, "_check_invariant", spy)
    res = train(conv_problem(d, **{"training.ema_decay": 0.5, "optimizer.lr": 0.05}), progress=False)
    assert len(seen) == 2 * 3 and max(seen) <= 0.95 + 1e-12
    assert "test_accuracy_iterate" in res.history[-1] and res.history[-1]["in_set"]


def test_refused_combinations_and_broken_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match="training.ema_decay"):
        problem(**{"constraint.set": "weighted_mu_inf"})
    with pytest.raises(ConfigError, match="training.ema_decay"):
        problem(**{"constraint.learn_weights": True})
    with pytest.raises(ConfigError, match="training.ema_decay"):
        problem(**{"training.ema_decay": 1.0})
    with pytest.raises(ConfigError, match="training.ema_decay"):
        problem(**{"training.ema_decay": -0.1})
    # a checkpoint whose average was lost, or moved outside the set, is refused on resume
    train(problem(**{"training.epochs": 1}), tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    state = load_checkpoint(path)
    save_atomic({**state, "average": None}, path)
    with pytest.raises(DataError, match="average"):
        Trainer(problem(**{"training.epochs": 1}), tmp_path, progress=False).resume()
    state["average"]["model"]["A"] = 3 * state["average"]["model"]["A"]
    save_atomic(state, path)
    from linf_opt import InvariantError
    with pytest.raises(InvariantError, match="weight average"):
        Trainer(problem(**{"training.epochs": 1}), tmp_path, progress=False).resume()
    with pytest.raises(InvariantError, match="weight average"):
        load_run(tmp_path)
