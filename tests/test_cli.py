import json

import pytest

from linf_opt.cli import main

TINY = ["training.epochs=2", "data.n_train=32", "data.n_test=40", "model.hidden=6", "training.batch_size=16"]


def test_train_evaluate_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "problems/function_estimation.toml", "--out", str(out), "--no-progress", *TINY]) == 0
    text = capsys.readouterr().out
    assert "summary" in text and "lipschitz_bound" in text
    assert (out / "checkpoint.pt").is_file() and (out / "summary.json").is_file()
    # an existing run is not silently overwritten
    assert main(["train", "problems/function_estimation.toml", "--out", str(out), "--no-progress", *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "problems/function_estimation.toml", "--out", str(out), "--no-progress", "--resume",
                 "--epochs", "3", *TINY[1:]]) == 0
    assert "resuming" in capsys.readouterr().out
    assert len((out / "history.jsonl").read_text().splitlines()) == 3
    assert main(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["mu_inf"] <= 0.95 + 1e-5 and ev["lipschitz_tight"] > 0


def test_bad_override_and_missing_data_are_clear(tmp_path, capsys):
    assert main(["train", "problems/function_estimation.toml", "--out", str(tmp_path), "constraint.gama=0.5"]) == 1
    err = capsys.readouterr().err
    assert "gama" in err and "gamma" in err
    assert main(["train", "problems/mnist_fc.toml", "--out", str(tmp_path), "--data-dir", str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "train" in out and "evaluate" in out


def test_certify_works_on_a_conv_run(tmp_path, capsys):
    from helpers import tiny_mnist
    d = tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "run"
    assert main(["train", "problems/mnist_conv.toml", "--out", str(out), "--no-progress", "--data-dir", str(d),
                 "model.channels=4", "training.epochs=1", "training.batch_size=20"]) == 0
    capsys.readouterr()
    assert main(["certify", str(out), "--eps", "0.01", "--limit", "10", "--data-dir", str(d), "--no-plot"]) == 0
    text = capsys.readouterr().out
    assert "mixed_monotone" in text
