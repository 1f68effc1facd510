"""Output fit for logs: ``training.log_every`` selects the printed epoch lines (0: about 20 a run), every
epoch stays in history.jsonl and in the logger; optional TensorBoard scalars."""
import json
import logging
import pathlib
import sys
import warnings

import pytest

from linf_opt import ConfigError
from linf_opt.cli import main
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer, printed_epoch, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = {
    "name": "tiny", "seed": 0, "dtype": "float64",
    "data": {"kind": "function_estimation", "n_train": 24, "n_test": 20},
    "model": {"hidden": 4},
    "constraint": {"set": "mu_inf", "enforce": "project", "gamma": 0.5},
    "optimizer": {"name": "adam", "lr": 0.01, "lr_step": 0},
    "training": {"epochs": 40, "batch_size": 24, "loss": "mse"},
}


def tiny(**dotted):
    return override(load_problem(TINY), **dotted)


def test_printed_epochs_rule():
    auto = [e for e in range(1, 301) if printed_epoch(e, 300)]
    assert auto == [1, *range(15, 301, 15)]                    # 21 lines for 300 epochs
    assert [e for e in range(1, 21) if printed_epoch(e, 20)] == list(range(1, 21))   # short runs: every epoch
    assert [e for e in range(1, 11) if printed_epoch(e, 10, 4)] == [1, 4, 8, 10]
    assert printed_epoch(7, 300, warned=True) and not printed_epoch(7, 300)
    assert printed_epoch(121, 300, first=121)                  # the first epoch after a resume
    for epochs in (1, 7, 19, 20, 21, 99, 1000, 12345):
        assert 1 <= sum(printed_epoch(e, epochs) for e in range(1, epochs + 1)) <= 22


def test_main_job_redirected_output_is_short(tmp_path, capsys, monkeypatch):
    """The README's main job, redirected (not a terminal: no bars), prints < 100 lines; history keeps all."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "fe"
    assert main(["train", "problems/function_estimation.toml", "--overwrite", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert len(lines) < 100, "\n".join(lines)
    epochs = load_problem(ROOT / "problems/function_estimation.toml").training.epochs
    assert sum(line.startswith("epoch ") for line in lines) <= 25
    assert f"epoch {epochs}/{epochs}" in captured.out
    assert len((out / "history.jsonl").read_text().splitlines()) == epochs


def test_log_every_levels_and_warned_epochs(caplog):
    printed = []

    def warn_in_epoch_12(trainer, info):       # a warning shown during the 12th epoch (epoch index 11)
        if info["epoch"] == 11:
            warnings.warn("something to look at", UserWarning)

    caplog.set_level(logging.DEBUG, logger="linf_opt.training")
    with pytest.warns(UserWarning, match="something to look at"):
        result = Trainer(tiny(**{"training.log_every": 5}), progress=False, log=printed.append,
                         callbacks=[warn_in_epoch_12]).fit()
    assert [int(line.split()[1].split("/")[0]) for line in printed] == [1, 5, 10, 12, 15, 20, 25, 30, 35, 40]
    records = [r for r in caplog.records if r.name == "linf_opt.training" and r.getMessage().startswith("epoch ")]
    assert len(records) == 40 == len(result.history)
    assert [r.getMessage() for r in records if r.levelno == logging.INFO] == printed
    assert all(r.levelno == logging.DEBUG for r in records if r.getMessage() not in printed)


def test_log_every_is_resumable(tmp_path):
    out = tmp_path / "run"
    train(tiny(**{"training.epochs": 3}), out, progress=False)
    printed = []
    result = train(tiny(**{"training.epochs": 5, "training.log_every": 2}), out, resume=True, progress=False,
                   log=printed.append)
    assert [line.split()[1] for line in printed] == ["4/5", "5/5"]   # first after the resume, and the last
    assert len(result.history) == 5


def test_tensorboard_missing_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)    # as if tensorboard were not installed
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        Trainer(tiny(), progress=False, tensorboard=tmp_path / "tb")
    assert main(["train", str(ROOT / "problems/function_estimation.toml"), "--out", str(tmp_path / "run"),
                 "--tensorboard", str(tmp_path / "tb"), "training.epochs=1", "data.n_train=16",
                 "data.n_test=16", "model.hidden=4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorboard" in err[0] and "not installed" in err[0], err
    assert not (tmp_path / "tb").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tiny(**{"training.epochs": 3}), progress=False, tensorboard=tmp_path / "tb")
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "test/mse", "constraint/mu_inf", "solver/forward_iterations",
                "solver/backward_iterations", "time/epoch_s", "time/projection_share"):
        assert tag in tags, tags
    mu = acc.Scalars("constraint/mu_inf")
    assert [e.step for e in mu] == [1, 2, 3]
    assert mu[-1].value == pytest.approx(result.history[-1]["mu_inf"], rel=1e-6)
    json.dumps(result.summary)
