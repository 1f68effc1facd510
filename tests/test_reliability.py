"""Faults a new user runs into: run directories shared or replaced, resumes with other settings,
diverged or non-finite training, bad problem files, and CLI errors that must stay one line."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import linf_opt as lo
from linf_opt.cli import main
from linf_opt.errors import ConfigError, DataError, InvariantError, NonFiniteError, ShapeError
from linf_opt.training.config import load_problem, override
from linf_opt.training.guards import NonFiniteParameterError, membership
from linf_opt.training.rundir import LOCK_NAME, RunExistsError, RunLock, RunLockedError, StaleLockWarning, _start_time
from linf_opt.training.trainer import Trainer, train

FE = "problems/function_estimation.toml"
TINY = ["training.epochs=2", "data.n_train=32", "data.n_test=40", "model.hidden=6", "training.batch_size=16"]


def tiny(**dotted):
    p = load_problem(FE)
    return override(p, **{"training.epochs": 2, "data.n_train": 32, "data.n_test": 40, "model.hidden": 6,
                          "training.batch_size": 16, **dotted})


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.startswith("linf-opt: error:")]
    assert len(lines) == 1, err
    return lines[0]


def run_cli(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def write_lock(run_dir, pid, start=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "start": start,
                                                 "since": "2024-01-01 00:00:00", "argv": ["linf-opt", "train"]}))


# ---- run directories -------------------------------------------------------------------------------

def test_second_run_into_a_locked_directory_is_refused_naming_the_holder(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "run"
        write_lock(out, holder.pid, _start_time(holder.pid))
        rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", *TINY)
        assert rc == 1
        line = one_error_line(err)
        assert f"PID {holder.pid}" in line and "in use" in line
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            train(tiny(), out, progress=False)
        assert not (out / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_exclusive_reentrant_and_released(tmp_path):
    with RunLock(tmp_path / "r") as lock:
        assert lock.path.is_file()
        with RunLock(tmp_path / "r"):             # the same process: re-entrant
            pass
        assert lock.path.is_file()
    assert not (tmp_path / "r" / LOCK_NAME).exists()
    res = train(tiny(), tmp_path / "r2", progress=False)
    assert res.summary["converged"] and not (tmp_path / "r2" / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    write_lock(out, dead.pid)
    with pytest.warns(StaleLockWarning, match=f"stale lock of PID {dead.pid}"):
        train(tiny(), out, progress=False)
    assert (out / "checkpoint.pt").is_file() and not (out / LOCK_NAME).exists()
    write_lock(out, dead.pid)
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--overwrite", *TINY)
    assert rc == 0 and "linf-opt: warning:" in err and "stale" in err


def test_overwrite_then_failing_run_leaves_the_old_run_intact(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", FE, "--out", str(out), "--no-progress", *TINY]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"problem.toml", "checkpoint.pt", "history.jsonl", "summary.json"}
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "train", "problems/mnist_fc.toml", "--out", str(out), "--overwrite",
                         "--data-dir", str(tmp_path / "missing"), "--no-progress")
    assert rc == 1 and "missing" in one_error_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a run that fails in its first epoch does not replace it either
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--overwrite", "--no-progress", "optimizer.lr=1e38",
                         *TINY)
    assert rc == 1 and "overflow" in one_error_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a successful overwrite replaces every file
    assert main(["train", FE, "--out", str(out), "--overwrite", "--no-progress", "seed=5", *TINY]) == 0
    assert "seed = 5" in (out / "problem.toml").read_text()


def test_failed_run_into_a_new_directory_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "new"
    rc, _, err = run_cli(capsys, "train", "problems/mnist_fc.toml", "--out", str(out),
                         "--data-dir", str(tmp_path / "missing"), "--no-progress")
    assert rc == 1 and not out.exists()


def test_train_api_refuses_an_existing_run_unless_resume_or_overwrite(tmp_path):
    train(tiny(), tmp_path, progress=False)
    with pytest.raises(RunExistsError, match="overwrite"):
        train(tiny(seed=1), tmp_path, progress=False)
    res = train(tiny(seed=1), tmp_path, progress=False, overwrite=True)
    assert res.summary["epoch"] == 2 and "seed = 1" in (tmp_path / "problem.toml").read_text()


# ---- resume ----------------------------------------------------------------------------------------

def test_resume_with_a_changed_learning_rate_is_refused_listing_the_key(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", FE, "--out", str(out), "--no-progress", *TINY]) == 0
    toml_before = (out / "problem.toml").read_text()
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--resume", *TINY,
                         "optimizer.lr=1e20", "constraint.gamma=0.5")
    line = one_error_line(err)
    assert rc == 1 and "optimizer.lr: 0.01 → 1e+20" in line and "constraint.gamma: 0.95 → 0.5" in line
    assert (out / "problem.toml").read_text() == toml_before
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--resume", *TINY[:3],
                         "model.hidden=7", "training.batch_size=16")
    assert rc == 1 and "model.hidden: 6 → 7" in one_error_line(err)
    # what may change: the number of epochs
    assert main(["train", FE, "--out", str(out), "--no-progress", "--resume", *TINY[1:], "training.epochs=3"]) == 0
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_resume_onto_a_checkpoint_that_violates_the_constraint_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(), out, progress=False)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    A = state["model"]["A"]
    A.zero_()
    A[0, 1] = 3.0                                  # μ∞(A) = 3 > γ = 0.95
    torch.save(state, out / "checkpoint.pt")
    with pytest.raises(InvariantError, match="violates"):
        train(tiny(**{"training.epochs": 3}), out, resume=True, progress=False)
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--resume", *TINY[1:],
                         "training.epochs=3")
    assert rc == 1 and "violates" in one_error_line(err)


def test_checkpoint_without_its_model_is_one_clear_line(tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(), out, progress=False)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["model"]
    torch.save(state, out / "checkpoint.pt")
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--resume", *TINY)
    assert rc == 1 and "'model'" in one_error_line(err)
    rc, _, err = run_cli(capsys, "evaluate", str(out))
    assert rc == 1 and "'model'" in one_error_line(err)


# ---- non-finite and diverged training ------------------------------------------------------------------

def test_nan_parameters_are_refused_by_the_forward_pass():
    net = lo.ImplicitNetwork(2, 5, 3, gamma=0.9)
    u = torch.randn(4, 2)
    net(u)
    with torch.no_grad():
        net.A[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"parameter A\b"):
        net(u)
    net2 = lo.ImplicitNetwork(2, 5, 3, gamma=0.9)
    with torch.no_grad():
        net2.C[1, 2] = float("inf")
    with pytest.raises(NonFiniteError, match=r"parameter C\b"):
        net2(u)
    with pytest.raises(ValueError, match="not finite"):
        lo.lipschitz_bound(net2)


def test_overflowing_learning_rate_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    trainer = Trainer(tiny(), tmp_path, progress=False)
    trainer.fit(epochs=1)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    for g in trainer.opt.param_groups:
        g["lr"] = 1e38                              # Adam's step overflows
    with pytest.raises(NonFiniteParameterError, match="overflowed.*checkpoint is kept"):
        trainer.fit(epochs=2)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    # a step that leaves a parameter infinite is caught before the projection acts on it
    trainer = Trainer(tiny(), tmp_path / "b", progress=False)
    step = trainer.opt.step

    def bad_step():
        step()
        with torch.no_grad():
            trainer.net.B[0, 0] = float("inf")
    trainer.opt.step = bad_step
    projected = []
    trainer._project = lambda: projected.append(1)
    with pytest.raises(NonFiniteParameterError, match=r"parameter B .*NaN or ±Inf"):
        trainer.fit(epochs=1)
    assert not projected


def test_diverged_run_does_not_report_success(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "optimizer.lr=1e8",
                         "training.epochs=2")
    line = one_error_line(err)
    assert rc == 1 and "did not converge" in line and "diverged" in line
    assert not (out / "summary.json").exists()
    # fewer failures than solver.max_unconverged: the run finishes, but says so everywhere
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(tmp_path / "r2"), "--no-progress", *TINY,
                         "solver.max_iter=2", "solver.max_unconverged=1.0")
    assert rc == 1 and "did not converge" in one_error_line(err)
    assert err.count("linf-opt: warning: epoch") == 2
    summary = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert summary["converged"] is False and summary["not_converged"] > 0
    history = [json.loads(l) for l in (tmp_path / "r2" / "history.jsonl").read_text().splitlines()]
    assert all(h["unconverged_fraction"] > 0 and h["test_not_converged"] > 0 for h in history)


def test_in_set_is_not_passed_on_scale_relative_slack():
    S = lo.MuInfPolytope(0.95)
    A = torch.full((40, 40), 1e8, dtype=torch.float32)
    A.fill_diagonal_(-39e8 + 256)                     # every row: μ∞ = 256, entries 1e8
    assert S.contains(A, tol=1e-6)                    # the per-step check's slack grows with ‖A‖
    value, inside = membership(S, A, 1e-6, torch.float32)
    assert value == pytest.approx(256) and not inside
    B = lo.project_mu_inf(torch.randn(40, 40), 0.95)
    assert membership(S, B, 1e-6, B.dtype)[1]


# ---- problem files -------------------------------------------------------------------------------------

def test_empty_problem_file_is_refused(tmp_path, capsys):
    f = tmp_path / "p.toml"
    f.write_text("# a problem file cut off after its comments\n\n")
    with pytest.raises(ConfigError, match="sets no keys"):
        load_problem(f)
    rc, _, err = run_cli(capsys, "train", str(f), "--out", str(tmp_path / "run"))
    assert rc == 1 and "sets no keys" in one_error_line(err)


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "x y", "/abs"])
def test_problem_names_that_are_not_plain_directory_names_are_refused(name, tmp_path, capsys):
    with pytest.raises(ConfigError, match="name"):
        tiny(name=name)
    rc, _, err = run_cli(capsys, "train", FE, f"name={name}", "--no-progress", *TINY)
    assert rc == 1 and "not a valid problem name" in one_error_line(err)
    assert tiny(name="mnist_fc-v1.2").name == "mnist_fc-v1.2"


# ---- data --------------------------------------------------------------------------------------------

def test_test_images_of_another_size_are_found_at_load_naming_the_file(tmp_path, capsys):
    from helpers import tiny_mnist
    from linf_opt.data.datasets import load_dataset, write_idx
    d = tiny_mnist(tmp_path / "mnist")
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((30, 27, 27), dtype=np.uint8))
    p = override(load_problem("problems/mnist_fc.toml"), **{"data.data_dir": str(d)})
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*27×27.*28×28"):
        load_dataset(p)
    rc, _, err = run_cli(capsys, "train", "problems/mnist_fc.toml", "--out", str(tmp_path / "run"),
                         "--data-dir", str(d), "--no-progress")
    assert rc == 1 and "t10k-images" in one_error_line(err)


def test_mse_loss_on_mnist_trains_against_one_hot_targets(tmp_path, capsys):
    from helpers import tiny_mnist
    d = tiny_mnist(tmp_path / "mnist")
    rc, out, err = run_cli(capsys, "train", "problems/mnist_fc.toml", "--out", str(tmp_path / "run"),
                           "--data-dir", str(d), "--no-progress", "training.loss=mse", "training.epochs=1",
                           "model.hidden=8")
    assert rc == 0 and "Traceback" not in err and "test_accuracy" in out


# ---- the CLI never prints a traceback ------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_on_a_cpu_only_torch_is_one_line(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(tmp_path / "r"), "--device", "cuda", *TINY)
    assert rc == 1 and "cuda" in one_error_line(err) and "not available" in err
    with pytest.raises(ConfigError, match="not available"):
        Trainer(tiny(device="cuda"), progress=False)


def test_out_naming_a_file_and_an_unwritable_directory_are_one_line(tmp_path, capsys, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(f), *TINY)
    assert rc == 1 and "is a file" in one_error_line(err)

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self.path))
    monkeypatch.setattr(RunLock, "_create", denied)
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(tmp_path / "ro"), *TINY)
    assert rc == 1 and "Permission denied" in one_error_line(err)


def test_unexpected_errors_are_one_line_unless_traceback_is_asked_for(tmp_path, capsys, monkeypatch):
    import linf_opt.training.trainer as tr

    def boom(*a, **k):
        raise RuntimeError("something inside torch broke")
    monkeypatch.setattr(tr.Trainer, "fit", boom)
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(tmp_path / "r"), *TINY)
    assert rc == 1 and "RuntimeError: something inside torch broke" in one_error_line(err)
    with pytest.raises(RuntimeError):
        main(["--traceback", "train", FE, "--out", str(tmp_path / "r2"), *TINY])
    monkeypatch.setenv("LINF_OPT_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["train", FE, "--out", str(tmp_path / "r3"), *TINY])


def test_certify_limit_zero_and_empty_inputs_are_clear(tmp_path, capsys):
    from helpers import tiny_mnist
    from linf_opt.robustness.certify import certify
    from linf_opt.robustness.input_space import InputSpace
    d = tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "run"
    assert main(["train", "problems/mnist_fc.toml", "--out", str(out), "--data-dir", str(d), "--no-progress",
                 "training.epochs=1", "model.hidden=8"]) == 0
    capsys.readouterr()
    rc, _, err = run_cli(capsys, "certify", str(out), "--eps", "0.01", "--limit", "0", "--data-dir", str(d),
                         "--no-plot")
    assert rc == 1 and "limit" in one_error_line(err)
    net = lo.ImplicitNetwork(4, 5, 3, gamma=0.9)
    with pytest.raises(ShapeError, match="empty"):
        certify(net, torch.rand(0, 4), torch.zeros(0, dtype=torch.long), 0.01, "lipschitz", space=InputSpace(0.0, 1.0))
    for f in (lo.mu_inf, lo.norm_inf):
        with pytest.raises(ShapeError, match="n ≥ 1"):
            f(torch.zeros(0, 0))


# ---- a loss that explodes, non-finite parameters in the bounds, --debug ----------------------------------

def test_a_loss_grown_by_orders_of_magnitude_stops_and_keeps_the_checkpoint(tmp_path, capsys):
    from linf_opt.training.trainer import DivergedLossError
    trainer = Trainer(tiny(), tmp_path, progress=False)
    trainer.fit(epochs=1)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    trainer.history[-1]["train_loss"] = 1e-9        # the smallest loss so far: epoch 2's is > 1e4 × larger
    with pytest.raises(DivergedLossError, match=r"max_loss_growth = 10000.*checkpoint is kept"):
        trainer.fit(epochs=2)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved and trainer.epoch == 1
    # through the command line, on resume (the rule reads the history): one line, the checkpoint kept
    out = tmp_path / "run"
    train(tiny(**{"training.epochs": 1}), out, progress=False)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["history"][-1]["train_loss"] = 1e-9
    torch.save(state, out / "checkpoint.pt")
    saved = (out / "checkpoint.pt").read_bytes()
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--resume", *TINY)
    assert rc == 1 and "training diverged" in one_error_line(err)
    assert (out / "checkpoint.pt").read_bytes() == saved
    # 0 disables the check (and may change on resume); a factor ≤ 1 is refused
    rc, _, err = run_cli(capsys, "train", FE, "--out", str(out), "--no-progress", "--resume", *TINY,
                         "training.max_loss_growth=0")
    assert rc == 0, err
    with pytest.raises(ConfigError, match="max_loss_growth"):
        tiny(**{"training.max_loss_growth": 0.5})


def test_non_finite_parameters_are_named_by_the_lipschitz_bound_and_the_certificates():
    from linf_opt.robustness.certify import METHODS, certify, reachable_box
    from linf_opt.robustness.input_space import InputSpace
    u = torch.rand(3, 4)
    for name in ("A", "B", "C"):
        net = lo.ImplicitNetwork(4, 5, 3, gamma=0.9)
        with torch.no_grad():
            getattr(net, name)[0, 1] = float("nan")
        with pytest.raises(NonFiniteError, match=rf"lipschitz_bound: parameter {name}\b"):
            lo.lipschitz_bound(net)
        with pytest.raises(NonFiniteError, match=rf"reachable_box: parameter {name}\b"):
            reachable_box(net, u - 0.01, u + 0.01)
        for method in METHODS:
            with pytest.raises(NonFiniteError, match=rf"certify: parameter {name}\b"):
                certify(net, u, torch.zeros(3, dtype=torch.long), 0.01, method, space=InputSpace(0.0, 1.0))


def test_evaluate_refuses_a_checkpoint_outside_the_constraint(tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(), out, progress=False)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"]["A"] *= 3.0 / float(lo.mu_inf(state["model"]["A"]))     # μ∞(A) = 3 > γ
    torch.save(state, out / "checkpoint.pt")
    rc, _, err = run_cli(capsys, "evaluate", str(out))
    assert rc == 1 and "violates" in one_error_line(err)


def test_debug_is_an_alias_of_traceback(tmp_path, capsys, monkeypatch):
    import linf_opt.training.trainer as tr

    def boom(*a, **k):
        raise RuntimeError("something inside torch broke")
    monkeypatch.setattr(tr.Trainer, "fit", boom)
    with pytest.raises(RuntimeError, match="inside torch"):
        main(["--debug", "train", FE, "--out", str(tmp_path / "r"), *TINY])


def test_load_run_prefers_the_checkpoints_problem_over_a_stale_problem_toml(tmp_path):
    """A run killed between its first checkpoint and problem.toml (an --overwrite of another run) leaves
    the old problem.toml beside the new checkpoint: load_run uses the problem the checkpoint stores."""
    import warnings as _w
    from linf_opt.training.config import load_problem as _lp, override as _ov, problem_to_toml
    from linf_opt.training.trainer import load_run as _load, train as _train
    p = _ov(_lp("problems/function_estimation.toml"), **{"training.epochs": 1, "data.n_train": 32,
                                                          "data.n_test": 20, "model.hidden": 6})
    res = _train(p, tmp_path, progress=False)
    (tmp_path / "problem.toml").write_text(problem_to_toml(_ov(p, **{"model.hidden": 9})))
    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        net, prob = _load(tmp_path)
    assert prob.model.hidden == 6 and any("differs" in str(w.message) for w in caught)
    u = torch.linspace(-1, 1, 5).unsqueeze(1)
    torch.testing.assert_close(net(u), res.net(u))
