"""The trainer on your own data (arrays, loaders, streams, factories) and its progress output for logs."""
import logging

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import linf_opt as lo
from linf_opt import ConfigError
from linf_opt.cli import main
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer, format_epoch, load_run, train

BASE = {
    "name": "own", "seed": 1, "dtype": "float64",
    "model": {"hidden": 6},
    "constraint": {"gamma": 0.6},
    "optimizer": {"name": "adam", "lr": 0.05},
    "training": {"epochs": 2, "batch_size": 16, "loss": "mse"},
    "solver": {"tol": 1e-8, "max_iter": 2000, "backward_tol": 1e-10},
}


def problem(**dotted):
    return override(load_problem(BASE), **dotted)


def blobs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    X = torch.randn(n, 4, generator=g) * 0.3 + torch.nn.functional.one_hot(y, 4).double() * 2
    return X, y


class Stream(IterableDataset):
    """Regression samples generated on the fly (the data never exist as a whole)."""

    def __init__(self, n, seed):
        self.n, self.seed = n, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.n):
            u = torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1
            yield u, torch.sin(3 * u[:1]) + u[1:]


def in_set(net, gamma):
    return float(net.operator.mu_inf().detach()) <= gamma + 1e-9


def test_train_on_arrays_classification():
    X, y = blobs(60)
    Xt, yt = blobs(30, seed=1)
    r = train(problem(**{"training.loss": "cross_entropy", "training.epochs": 3}), data=(X, y, Xt, yt), progress=False)
    assert r.net.in_features == 4 and r.net.out_features == 3
    assert r.history[-1]["test_accuracy"] > 0.6 and in_set(r.net, 0.6)


def test_train_on_dataloaders_and_a_stream():
    X, y = blobs(48)
    loaders = (DataLoader(TensorDataset(X, y), batch_size=12, shuffle=True), DataLoader(TensorDataset(X, y), batch_size=20))
    steps = []
    r = Trainer(problem(**{"training.loss": "cross_entropy"}), data=loaders, progress=False,
                callbacks=[lambda t, info: steps.append(info["step"])]).fit()
    assert steps == list(range(1, 9)) and "test_accuracy" in r.history[-1]      # 4 batches per epoch
    r = train(problem(), data=(Stream(40, 0), Stream(25, 1)), progress=False)
    assert r.net.in_features == 2 and "test_mse" in r.history[-1] and in_set(r.net, 0.6)
    assert r.history[-1]["epoch"] == 2


def test_dataloader_run_resumes_exactly(tmp_path):
    X, y = blobs(40)

    def data():
        return DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True), DataLoader(TensorDataset(X, y), batch_size=40)

    p = problem(**{"training.loss": "cross_entropy", "training.epochs": 4})
    full = train(p, tmp_path / "full", data=data(), progress=False)
    train(override(p, **{"training.epochs": 2}), tmp_path / "part", data=data(), progress=False)
    resumed = train(p, tmp_path / "part", data=data(), resume=True, progress=False)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_in_memory_own_data_matches_the_problem_data():
    p = override(load_problem(BASE), **{"data.n_train": 32, "data.n_test": 16})
    d = lo.load_dataset(p)
    a = train(p, progress=False)
    b = train(p, data=(d.train_inputs, d.train_targets, d.test_inputs, d.test_targets), progress=False)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_conv_model_takes_the_image_shape_from_the_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 1, 4, 6, generator=g, dtype=torch.float64)
    y = torch.arange(12) % 2
    p = problem(**{"model.kind": "conv", "model.channels": 2, "model.pool": 1, "training.loss": "cross_entropy",
                   "training.epochs": 1})
    r = train(p, tmp_path / "run", data=(X, y, X, y), progress=False)
    assert r.net.input_shape == (1, 4, 6) and r.net.state_shape == (2, 2, 3)
    net, _ = load_run(tmp_path / "run")
    torch.testing.assert_close(net(X), r.net(X))


FACTORY = '''
import torch

def load(config, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(config.n_train, 1, generator=g, dtype=dtype) * 2 - 1
    t = torch.linspace(-1, 1, config.n_test, dtype=dtype).unsqueeze(1)
    return u, u.abs(), t, t.abs()
'''


def test_problem_file_with_a_python_factory(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny_factory_data.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "p.toml"
    toml.write_text('name = "fac"\ndtype = "float64"\n[data]\nkind = "python"\nfactory = "tiny_factory_data:load"\n'
                    'n_train = 24\nn_test = 10\n[model]\nhidden = 5\n[training]\nepochs = 2\nbatch_size = 8\n')
    r = train(str(toml), tmp_path / "run", progress=False)
    assert r.history[-1]["epoch"] == 2 and r.net.in_features == 1
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    assert '"mse"' in capsys.readouterr().out


def test_loss_must_fit_the_task():
    X, y = torch.rand(8, 2), torch.rand(8, 1)
    with pytest.raises(ConfigError, match="the data given is a regression task"):
        Trainer(problem(**{"training.loss": "cross_entropy"}), data=(X, y, X, y))
    with pytest.raises(ConfigError, match='needs class labels, but data.kind = "function_estimation"'):
        Trainer(problem(**{"training.loss": "cross_entropy"}))


def test_one_line_per_epoch_when_bars_are_off(caplog):
    lines = []
    p = override(load_problem(BASE), **{"data.n_train": 16, "data.n_test": 8, "training.epochs": 3})
    with caplog.at_level(logging.INFO, logger="linf_opt.training"):
        r = train(p, log=lines.append)          # progress=None: stderr is not a terminal under pytest
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  train_loss ") and "mu_inf 0." in lines[0]
    assert "test_mse" in lines[0] and "iters " in lines[0] and lines[-1] == format_epoch(r.history[-1], 3)
    assert [rec.getMessage() for rec in caplog.records if rec.name == "linf_opt.training"] == lines
    forced = []
    train(p, log=forced.append, progress=True)     # bars forced on: no lines through log
    assert forced == []


def test_cli_output_is_one_line_per_epoch(tmp_path, capsys):
    args = ["train", "problems/function_estimation.toml", "--out", str(tmp_path / "run"), "training.epochs=4",
            "data.n_train=16", "data.n_test=8", "model.hidden=4", "training.batch_size=8"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 4 and epochs[-1].startswith("epoch 4/4")
    assert "\r" not in out and "\r" not in err and err == ""
    assert main(args[:4] + ["--overwrite", "--no-progress"] + args[4:]) == 0
    assert len([ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]) == 4
