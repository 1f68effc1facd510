"""The robustness report and the ``linf-opt certify`` command on a tiny MNIST-format data set."""
import json

import pytest
import torch

from linf_opt import ImplicitNetwork
from linf_opt.cli import main
from linf_opt.training.config import load_problem, override
from linf_opt.robustness.input_space import MNIST
from linf_opt.reports.robustness import evaluate_robustness, format_table
from linf_opt.training.trainer import train
from helpers import tiny_mnist


def test_report_rows_and_monotone_accuracy():
    g = torch.Generator().manual_seed(0)
    net = ImplicitNetwork(784, 12, 10, gamma=0.9, generator=g)
    pixels = torch.rand(24, 784, generator=g)
    labels = net(MNIST.to_model(pixels)).argmax(1)
    rep = evaluate_robustness(net, pixels, labels, [0.001, 0.01], certify_eps=[0.001],
                              methods=["lipschitz", "mixed_monotone", "mixed_monotone_relative"],
                              pgd_steps=3, batch_size=10)
    assert rep.get("clean", 0.0).accuracy == 1.0
    assert {(r.name, r.eps) for r in rep.records if r.kind == "attack"} == {
        (a, e) for a in ("fgsm", "pgd") for e in (0.001, 0.01)}
    assert rep.get("pgd", 0.01).accuracy <= rep.get("pgd", 0.001).accuracy + 1e-12
    assert rep.get("mixed_monotone_relative", 0.001).accuracy >= rep.get("mixed_monotone", 0.001).accuracy
    assert rep.get("mixed_monotone", 0.01) is None and all(r.time >= 0 for r in rep.records)
    table = format_table(rep)
    assert "| 0.001 |" in table and "mixed_monotone / lipschitz" in table
    with pytest.raises(ValueError, match="methods"):
        evaluate_robustness(net, pixels, labels, [0.1], methods=["bogus"])
    with pytest.raises(ValueError, match="eps_values"):
        evaluate_robustness(net, pixels, labels, [-0.1])


def test_certify_command_on_a_trained_run(tmp_path, capsys):
    data = tiny_mnist(tmp_path / "mnist", n_train=40, n_test=40, noise=40)
    p = override(load_problem("problems/mnist_fc_robust.toml"),
                 **{"data.data_dir": str(data), "model.hidden": 8, "training.epochs": 1,
                    "training.batch_size": 20})
    train(p, tmp_path / "run", progress=False)
    code = main(["certify", str(tmp_path / "run"), "--eps", "0.01", "0.05", "--certify-eps", "0.01",
                 "--limit", "12", "--pgd-steps", "2", "--batch-size", "5"])
    assert code == 0
    out = capsys.readouterr().out
    for name in ("clean", "fgsm", "pgd", "lipschitz", "lipschitz_paper", "mixed_monotone",
                 "mixed_monotone_relative", "ibp"):
        assert name in out
    rep = json.loads((tmp_path / "run" / "robustness.json").read_text())
    assert rep["samples"] == 12 and len(rep["records"]) == 1 + 2 * 2 + 5
    assert (tmp_path / "run" / "robustness.png").stat().st_size > 1000
    # a wrong data directory is an error, not a traceback
    assert main(["certify", str(tmp_path / "run"), "--eps", "0.01", "--data-dir", str(tmp_path / "nope")]) == 1
