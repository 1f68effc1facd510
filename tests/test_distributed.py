"""Data-parallel training (linf_opt.training.distributed): 2 CPU processes with gloo equal one process with
the same global batch, every rank stays in μ∞ ≤ γ, and a run killed mid-epoch resumes on another
number of processes."""
import json
import os

import pytest
import torch

from linf_opt import mu_inf
from linf_opt.training import distributed
from linf_opt.training.checkpoint import load_checkpoint
from linf_opt.training.config import load_problem, override, problem_to_dict
from linf_opt.training.trainer import Trainer, train

GAMMA = 0.95
BASE = {"training.epochs": 3, "data.n_train": 60, "data.n_test": 40, "model.hidden": 10,
        "training.batch_size": 16, "dtype": "float64", "solver.tol": 1e-11, "solver.backward_tol": 1e-12,
        "solver.max_iter": 5000}


def problem(**kw):
    return override(load_problem("problems/function_estimation.toml"), **{**BASE, **kw})


def _worker(rank, problem_dict, out_dir, report_dir, kill_at_step, resume):
    """Train in a process group; record μ∞ after every step and the final parameters of this rank."""
    p = load_problem(problem_dict)
    mus = []

    def spy(trainer, info):
        mus.append(float(mu_inf(trainer.net.A.detach())))
        if kill_at_step and info["step"] == kill_at_step and rank == 1:
            os._exit(9)                 # a hard kill of one worker in the middle of an epoch

    trainer = Trainer(p, out_dir, progress=False, callbacks=[spy])
    if resume:
        trainer.resume()
    trainer.fit()
    average = None if trainer.average is None else {k: v.clone() for k, v in trainer.average.module.state_dict().items()}
    torch.save({"state": {k: v.clone() for k, v in trainer.net.state_dict().items()}, "mus": mus,
                "average": average, "history": trainer.history}, os.path.join(report_dir, f"rank{rank}.pt"))


def test_two_gloo_processes_equal_one_process_and_stay_feasible(tmp_path):
    p = problem()
    single = train(p, progress=False)
    distributed.launch(_worker, 2, problem_to_dict(p), None, str(tmp_path), 0, False)
    reports = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for rep in reports:
        assert len(rep["mus"]) == 3 * 4 and max(rep["mus"]) <= GAMMA + 1e-12     # every rank, every step
        for name, value in single.net.state_dict().items():
            torch.testing.assert_close(rep["state"][name], value, rtol=1e-7, atol=1e-8, msg=name)
    for name in reports[0]["state"]:
        assert torch.equal(reports[0]["state"][name], reports[1]["state"][name]), name   # identical replicas


def test_augmented_images_two_processes_equal_one_process(tmp_path):
    """training.augment_shift draws the offsets for the global batch from the trainer's generator, the
    same on every rank, before sharding: two processes still equal one."""
    from helpers import tiny_mnist
    d = tiny_mnist(tmp_path / "mnist", n_train=32, n_test=16)
    p = override(load_problem("problems/mnist_fc.toml"),
                 **{"data.data_dir": str(d), "model.hidden": 12, "training.epochs": 2, "training.batch_size": 16,
                    "training.augment_shift": 2, "dtype": "float64", "solver.tol": 1e-11,
                    "solver.backward_tol": 1e-12, "solver.max_iter": 5000})
    single = train(p, progress=False)
    unshifted = train(override(p, **{"training.augment_shift": 0}), progress=False)
    assert not torch.equal(single.net.B, unshifted.net.B)
    distributed.launch(_worker, 2, problem_to_dict(p), None, str(tmp_path), 0, False)
    for r in (0, 1):
        rep = torch.load(tmp_path / f"rank{r}.pt")
        for name, value in single.net.state_dict().items():
            torch.testing.assert_close(rep["state"][name], value, rtol=1e-7, atol=1e-8, msg=name)


def test_weight_average_two_processes_equal_one_process(tmp_path):
    """training.ema_decay: every rank averages its (identical) replica; the averages and the reported
    metrics equal the single process's."""
    p = problem(**{"training.ema_decay": 0.8})
    single = Trainer(p, progress=False)
    single.fit()
    distributed.launch(_worker, 2, problem_to_dict(p), None, str(tmp_path), 0, False)
    for r in (0, 1):
        rep = torch.load(tmp_path / f"rank{r}.pt")
        for name, value in single.average.module.state_dict().items():
            torch.testing.assert_close(rep["average"][name], value, rtol=1e-7, atol=1e-8, msg=name)
        for h1, h2 in zip(rep["history"], single.history):
            assert h1["test_mse"] == pytest.approx(h2["test_mse"], rel=1e-7)
            assert h1["test_mse_iterate"] == pytest.approx(h2["test_mse_iterate"], rel=1e-7)


def test_killed_run_resumes_with_another_process_count(tmp_path):
    p = problem()
    full = train(p, progress=False)
    run = tmp_path / "run"
    with pytest.raises(Exception):          # rank 1 is killed in epoch 3 (steps 9–12): the launch fails
        distributed.launch(_worker, 2, problem_to_dict(p), str(run), str(tmp_path), 10, False)
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2       # written by rank 0 alone
    # resume on one process (the stale lock of the dead run is taken over)
    resumed = train(p, run, resume=True, progress=False)
    for name, value in full.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[name], value, rtol=1e-7, atol=1e-8, msg=name)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # and a one-process checkpoint resumes on two processes
    run1 = tmp_path / "run1"
    train(override(p, **{"training.epochs": 2}), run1, progress=False)
    distributed.launch(_worker, 2, problem_to_dict(p), str(run1), str(tmp_path), 0, True)
    state = torch.load(tmp_path / "rank0.pt")["state"]
    for name, value in full.net.state_dict().items():
        torch.testing.assert_close(state[name], value, rtol=1e-7, atol=1e-8, msg=name)
    assert json.loads((run1 / "summary.json").read_text())["epoch"] == 3


def test_diverging_replicas_are_caught():
    class Fake:
        rank, world = 0, 1
    net = torch.nn.Linear(2, 2)
    distributed.check_replicas(net, None, 3)            # no group: nothing to compare
    assert distributed.shard(torch.arange(10), None).tolist() == list(range(10))
    ctx = distributed.DistContext(1, 3, 1, "gloo")
    assert distributed.shard(torch.arange(10), ctx).tolist() == [1, 4, 7]
    with pytest.raises(ValueError, match="nproc"):
        distributed.launch(_worker, 0)


def _diverge_worker(rank, report_dir):
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(float(rank))
    ctx = distributed.current()
    try:
        distributed.check_replicas(net, ctx, 17)
    except distributed.RankDivergenceError as exc:
        with open(os.path.join(report_dir, f"err{rank}.txt"), "w") as f:
            f.write(str(exc))


def test_check_replicas_names_the_step_and_the_parameter(tmp_path):
    distributed.launch(_diverge_worker, 2, str(tmp_path))
    text = (tmp_path / "err0.txt").read_text()
    assert "step 17" in text and "weight" in text and "rank 1" in text


def test_cli_nproc_trains(tmp_path, capsys):
    from linf_opt.cli import main
    out = tmp_path / "run"
    assert main(["train", "problems/function_estimation.toml", "--out", str(out), "--nproc", "2", "--no-progress",
                 "training.epochs=2", "data.n_train=32", "data.n_test=20", "model.hidden=6"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epoch"] == 2 and summary["mu_inf"] <= GAMMA + 1e-6
