"""Tests of linf_opt.training.config: strict loading, type and choice checks, cross-field rules, round trips."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import torch

from linf_opt.training.config import (ConstraintConfig, DataConfig, ModelConfig, OptimizerConfig, Problem, RobustConfig,
                             TrainingConfig, _Section, from_dict, load_problem, override, parse_assignment,
                             problem_to_dict, problem_to_toml, to_dict, to_toml)
from linf_opt.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
PROBLEM_FILES = sorted((REPO_ROOT / "problems").glob("*.toml"))


def error_of(data) -> str:
    with pytest.raises(ConfigError) as err:
        load_problem(data)
    return str(err.value)


# ---------------------------------------------------------------------------------------------------
# Defaults and the problem files
# ---------------------------------------------------------------------------------------------------

def test_defaults_are_valid_and_match_the_schema():
    p = Problem()
    assert load_problem({}) == p
    assert (p.name, p.seed, p.device, p.dtype) == ("", 0, "cpu", "float32")
    assert p.torch_dtype is torch.float32
    assert p.data == DataConfig(kind="function_estimation", data_dir="", n_train=200, n_test=1000, noise=0.05,
                                train_limit=0, test_limit=0)
    assert (p.model.hidden, p.model.activation, p.model.feedthrough) == (40, "relu", False)
    c = p.constraint
    assert (c.set, c.enforce, c.gamma, c.m, c.eta, c.backend) == ("mu_inf", "project", 0.95, 0.05, (), "exact")
    assert (p.optimizer.name, p.optimizer.lr, p.optimizer.lr_step, p.optimizer.lr_decay) == ("adam", 1e-3, 10, 0.1)
    assert (p.training.epochs, p.training.batch_size) == (20, 100)
    assert (p.solver.method, p.solver.tol, p.solver.max_iter, p.solver.backward) == ("average", 1e-4, 500, "average")
    assert (p.robust.enabled, p.robust.eps, p.robust.mix) == (False, 0.1, 0.5)


def test_the_two_reference_problem_files_exist():
    names = {p.name for p in PROBLEM_FILES}
    assert {"function_estimation.toml", "mnist_fc.toml"} <= names


@pytest.mark.parametrize("path", PROBLEM_FILES, ids=[p.name for p in PROBLEM_FILES])
def test_every_problem_file_loads_and_round_trips(path):
    p = load_problem(path)
    assert load_problem(problem_to_dict(p)) == p
    assert load_problem(tomllib.loads(problem_to_toml(p))) == p


def test_reference_problems_follow_spec_section_9():
    fe = load_problem(REPO_ROOT / "problems" / "function_estimation.toml")
    assert fe.data.kind == "function_estimation" and fe.model.hidden == 40 and fe.training.loss == "mse"
    assert (fe.constraint.set, fe.constraint.enforce, fe.constraint.gamma) == ("mu_inf", "project", 0.95)
    mn = load_problem(REPO_ROOT / "problems" / "mnist_fc.toml")
    assert mn.data.kind == "mnist" and mn.model.hidden == 100 and mn.training.loss == "cross_entropy"
    assert (mn.optimizer.name, mn.optimizer.lr, mn.optimizer.lr_step, mn.optimizer.lr_decay) == ("adam", 1e-3, 10, 0.1)
    assert (mn.training.batch_size, mn.training.epochs) == (100, 20)


# ---------------------------------------------------------------------------------------------------
# Unknown keys
# ---------------------------------------------------------------------------------------------------

def test_unknown_key_names_it_its_table_the_valid_keys_and_a_suggestion():
    msg = error_of({"constraint": {"gama": 0.9}})
    assert 'unknown key "gama" in [constraint]' in msg
    assert '(did you mean "gamma"?)' in msg
    assert "Valid keys in [constraint]: set, enforce, gamma, m, eta, learn_weights, backend, check_tol" in msg


def test_unknown_key_at_top_level_points_to_its_section():
    msg = error_of({"epochs": 3})
    assert 'unknown key "epochs" at the top level' in msg and '"epochs" is a key of [training]' in msg
    assert "Valid keys at the top level: name, seed, device, dtype, data, model" in msg
    msg = error_of({"training": {"lr": 0.1}})
    assert '"lr" is a key of [optimizer]' in msg


def test_unknown_section_and_several_unknown_keys():
    msg = error_of({"trainer": {}})
    assert '"trainer"' in msg and '(did you mean "training"?)' in msg
    msg = error_of({"model": {"hiden": 3, "actvation": "relu", "zzz": 1}})
    assert '"hiden"' in msg and '"actvation"' in msg and '"zzz"' in msg
    assert '(did you mean "hidden"?)' in msg and '(did you mean "activation"?)' in msg


def test_case_mistake_gets_a_suggestion():
    assert '(did you mean "batch_size"?)' in error_of({"training": {"Batch_Size": 3}})


# ---------------------------------------------------------------------------------------------------
# Types, choices and ranges
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, fragment", [
    ({"training": {"epochs": "3"}}, 'training.epochs: expected an integer, got string "3"'),
    ({"training": {"epochs": 3.0}}, "training.epochs: expected an integer, got float 3.0"),
    ({"training": {"epochs": True}}, "training.epochs: expected an integer, got boolean True"),
    ({"optimizer": {"lr": "1e-3"}}, 'optimizer.lr: expected a number, got string "1e-3"'),
    ({"optimizer": {"lr": True}}, "optimizer.lr: expected a number, got boolean True"),
    ({"optimizer": {"lr": float("inf")}}, "optimizer.lr: expected a finite number"),
    ({"model": {"feedthrough": 1}}, "model.feedthrough: expected a boolean (true or false), got integer 1"),
    ({"name": 3}, "name: expected a string, got integer 3"),
    ({"constraint": {"eta": 1.0}}, "constraint.eta: expected an array, got float 1.0"),
    ({"model": {"hidden": 2}, "constraint": {"eta": [1.0, "a"]}}, "constraint.eta[1]: expected a number"),
    ({"data": 3}, "data: expected a table [data], got integer 3"),
    ({"data": {"kind": 3}}, "data.kind: integer 3 is not one of the allowed values"),
])
def test_wrong_types(data, fragment):
    assert fragment in error_of(data)


def test_ints_are_accepted_for_floats_and_stored_as_floats():
    p = load_problem({"optimizer": {"lr": 1}, "constraint": {"gamma": 0}, "model": {"hidden": 2},
                      "data": {"noise": 0}})
    assert p.optimizer.lr == 1.0 and type(p.optimizer.lr) is float and type(p.constraint.gamma) is float
    q = load_problem({"model": {"hidden": 2}, "constraint": {"eta": [1, 2.5]}})
    assert q.constraint.eta == (1.0, 2.5) and all(type(v) is float for v in q.constraint.eta)


@pytest.mark.parametrize("section, key, value, allowed", [
    ("model", "activation", "relux", '"relu", "leaky_relu", "tanh", "sigmoid"'),
    ("constraint", "set", "muinf", '"mu_inf", "weighted_mu_inf", "norm_inf", "monotone", "none"'),
    ("constraint", "enforce", "projection", '"project", "reparam", "free"'),
    ("constraint", "backend", "cvx", '"exact", "cvxpy", "sort", "pivot"'),
    ("regularizer", "surrogate", "product", '"norm_product", "sum_of_squares"'),
    ("optimizer", "name", "adamw", '"adam", "sgd"'),
    ("training", "loss", "ce", '"cross_entropy", "mse"'),
    ("solver", "method", "anderson_accel", '"average", "picard", "anderson", "forward_backward", "peaceman_rachford"'),
    ("solver", "backward", "implicit", '"average", "direct"'),
    ("data", "kind", "MNIST", '"function_estimation", "mnist"'),
])
def test_bad_choice_names_field_value_and_allowed_values(section, key, value, allowed):
    msg = error_of({section: {key: value}})
    assert f'{section}.{key}: string "{value}" is not one of the allowed values {allowed}' in msg


def test_bad_choice_suggests_a_close_value():
    assert '(did you mean "mnist"?)' in error_of({"data": {"kind": "MNIST"}})
    assert '(did you mean "relu"?)' in error_of({"model": {"activation": "relux"}})
    assert 'dtype: string "float16" is not one of the allowed values "float32", "float64"' in error_of(
        {"dtype": "float16"})


@pytest.mark.parametrize("data, fragment", [
    ({"seed": -1}, "seed: expected a value ≥ 0, got -1"),
    ({"data": {"n_train": 0}}, "data.n_train: expected a value ≥ 1"),
    ({"data": {"noise": -0.1}}, "data.noise: expected a value ≥ 0.0"),
    ({"data": {"train_limit": -5}}, "data.train_limit: expected a value ≥ 0"),
    ({"model": {"hidden": 0}}, "model.hidden: expected a value ≥ 1"),
    ({"model": {"negative_slope": 1.5}}, "model.negative_slope: expected a value ≤ 1.0"),
    ({"model": {"init_scale": 0}}, "model.init_scale: expected a value > 0.0"),
    ({"constraint": {"m": 0}}, "constraint.m: expected a value > 0.0"),
    ({"constraint": {"m": 1.5}}, "constraint.m: expected a value ≤ 1.0"),
    ({"constraint": {"check_tol": -1e-9}}, "constraint.check_tol: expected a value ≥ 0.0"),
    ({"model": {"hidden": 2}, "constraint": {"eta": [1, 0]}}, "constraint.eta[1]: expected a value > 0.0, got 0.0"),
    ({"regularizer": {"lipschitz_weight": -1}}, "regularizer.lipschitz_weight: expected a value ≥ 0.0"),
    ({"optimizer": {"lr": 0}}, "optimizer.lr: expected a value > 0.0, got 0.0"),
    ({"optimizer": {"name": "sgd", "momentum": 1.0}}, "optimizer.momentum: expected a value < 1.0"),
    ({"optimizer": {"lr_step": -1}}, "optimizer.lr_step: expected a value ≥ 0"),
    ({"optimizer": {"lr_decay": 0}}, "optimizer.lr_decay: expected a value > 0.0"),
    ({"training": {"epochs": 0}}, "training.epochs: expected a value ≥ 1, got 0"),
    ({"training": {"batch_size": 0}}, "training.batch_size: expected a value ≥ 1"),
    ({"solver": {"tol": 0}}, "solver.tol: expected a value > 0.0"),
    ({"solver": {"max_iter": 0}}, "solver.max_iter: expected a value ≥ 1"),
    ({"robust": {"eps": -0.1}}, "robust.eps: expected a value ≥ 0.0"),
    ({"robust": {"mix": 1.5}}, "robust.mix: expected a value ≤ 1.0"),
    ({"robust": {"warmup_epochs": -1}}, "robust.warmup_epochs: expected a value ≥ 0"),
])
def test_out_of_range(data, fragment):
    assert fragment in error_of(data)


def test_device_strings():
    for device in ("cpu", "cuda", "cuda:0", "cuda:1", "mps", "meta"):
        assert load_problem({"device": device}).device == device  # availability is not checked
    assert 'device: "gpu" is not a torch device string' in error_of({"device": "gpu"})
    assert 'device: "cuda:x"' in error_of({"device": "cuda:x"})


# ---------------------------------------------------------------------------------------------------
# Cross-field rules
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("constraint, fragment", [
    ({"gamma": 1.0}, 'constraint.gamma: expected γ < 1 for set "mu_inf"'),
    ({"set": "monotone", "gamma": 1.2}, 'expected γ < 1 for set "monotone"'),
    ({"set": "norm_inf", "gamma": -0.1}, "the norm ball ‖A‖∞ ≤ γ is empty"),
    ({"set": "none"}, 'constraint.enforce: set "none" has nothing to enforce: use enforce = "free"'),
    ({"set": "none", "enforce": "reparam"}, "constraint.enforce"),
    ({"set": "norm_inf", "enforce": "reparam"}, '"reparam" is available for set "mu_inf", "weighted_mu_inf", '
                                                '"monotone", not for "norm_inf"'),
    ({"set": "monotone", "eta": [1.0] * 40}, 'constraint.eta: weights apply to the ℓ∞ sets'),
    ({"set": "none", "enforce": "free", "learn_weights": True}, "constraint.learn_weights"),
])
def test_constraint_rules(constraint, fragment):
    assert fragment in error_of({"constraint": constraint})


@pytest.mark.parametrize("constraint", [
    {"set": "none", "enforce": "free", "gamma": 5.0},
    {"set": "mu_inf", "enforce": "free"},
    {"set": "mu_inf", "enforce": "reparam"},
    {"set": "weighted_mu_inf", "enforce": "reparam", "learn_weights": True},
    {"set": "monotone", "enforce": "reparam", "m": 1.0},
    {"set": "monotone", "enforce": "project"},
    {"set": "norm_inf", "enforce": "project", "gamma": 0.0},
    {"set": "mu_inf", "gamma": -0.5},
])
def test_valid_constraint_combinations(constraint):
    assert load_problem({"constraint": constraint}).constraint.set == constraint["set"]


def test_problem_level_rules():
    assert "constraint.eta: has 3 weights but model.hidden = 40" in error_of({"constraint": {"eta": [1, 2, 3]}})
    assert load_problem({"model": {"hidden": 3}, "constraint": {"eta": [1, 2, 3]}}).constraint.eta == (1.0, 2.0, 3.0)
    # "cross_entropy" with the [data] section's regression data is the trainer's error (it sees the data,
    # which may be your own): tests/test_training_data.py::test_loss_must_fit_the_task
    assert load_problem({"training": {"loss": "cross_entropy"}}).training.loss == "cross_entropy"
    assert load_problem({"data": {"kind": "mnist"}, "training": {"loss": "mse"}}).training.loss == "mse"
    assert "robust.enabled: robust training certifies class margins" in error_of({"robust": {"enabled": True}})
    msg = error_of({"constraint": {"set": "none", "enforce": "free", "gamma": 1.0},
                    "regularizer": {"lipschitz_weight": 0.1}})
    assert "regularizer.lipschitz_weight: the surrogate divides by 1 − γ" in msg
    msg = error_of({"solver": {"method": "peaceman_rachford"}, "model": {"activation": "tanh"}})
    assert 'solver.method: the splitting "peaceman_rachford"' in msg
    assert 'optimizer.momentum: applies to "sgd" only' in error_of({"optimizer": {"momentum": 0.9}})
    assert load_problem({"optimizer": {"name": "sgd", "momentum": 0.9}}).optimizer.momentum == 0.9


# ---------------------------------------------------------------------------------------------------
# Direct construction, immutability
# ---------------------------------------------------------------------------------------------------

def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match=r"ConstraintConfig\.gamma: expected γ < 1"):
        ConstraintConfig(gamma=2)
    with pytest.raises(ConfigError, match=r"TrainingConfig\.epochs: expected an integer"):
        TrainingConfig(epochs="2")
    with pytest.raises(ConfigError, match=r"Problem\.constraint\.eta: has 2 weights"):
        Problem(constraint=ConstraintConfig(eta=[1, 2]))
    assert ConstraintConfig(eta=[1, 2]).eta == (1.0, 2.0)
    assert Problem(training={"epochs": 2}).training == TrainingConfig(epochs=2)  # a mapping is loaded strictly
    with pytest.raises(ConfigError, match='unknown key "epoch" in \\[training\\]'):
        Problem(training={"epoch": 2})


def test_sections_are_frozen_and_hashable():
    p = Problem()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.training.epochs = 3
    assert hash(p) == hash(Problem())


# ---------------------------------------------------------------------------------------------------
# Files, round trips and overrides
# ---------------------------------------------------------------------------------------------------

def test_load_problem_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such problem file") as err:
        load_problem(missing)
    assert str(missing) in str(err.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nepochs = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_problem(bad)
    assert str(bad) in str(err.value)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[training]\nepoch = 3\n")
    with pytest.raises(ConfigError) as err:
        load_problem(wrong)
    assert str(err.value).startswith(f"{wrong}: unknown key \"epoch\" in [training]")
    with pytest.raises(TypeError):
        load_problem(3)


def test_round_trip_of_a_non_default_problem(tmp_path):
    p = load_problem({"name": "round-trip_1.0", "seed": 3, "dtype": "float64",
                      "model": {"hidden": 3, "activation": "leaky_relu", "negative_slope": 0.2, "feedthrough": True},
                      "constraint": {"set": "weighted_mu_inf", "eta": [1, 0.5, 2e-7], "learn_weights": True},
                      "optimizer": {"name": "sgd", "lr": 1e-12, "momentum": 0.9},
                      "solver": {"method": "anderson", "strict": True},
                      "data": {"kind": "mnist", "data_dir": '/tmp/x y, quote " and \\ backslash, ünïcode\ttab\x7f'},
                      "training": {"loss": "cross_entropy"},
                      "robust": {"enabled": True, "eps": 0.3}})
    d = problem_to_dict(p)
    assert d["constraint"]["eta"] == [1.0, 0.5, 2e-7] and isinstance(d["constraint"]["eta"], list)
    assert load_problem(d) == p
    path = tmp_path / "p.toml"
    path.write_text(problem_to_toml(p), encoding="utf-8")
    assert load_problem(path) == p
    assert p.torch_dtype is torch.float64


def test_override_returns_a_new_validated_problem():
    p = Problem()
    q = override(p, seed=5, **{"training.epochs": 3, "constraint.gamma": 0.5})
    assert (q.seed, q.training.epochs, q.constraint.gamma) == (5, 3, 0.5)
    assert p == Problem()  # unchanged
    r = override(p, training={"batch_size": 7})  # a mapping merges into the section
    assert r.training.batch_size == 7 and r.training.epochs == 20
    s = override(p, training=TrainingConfig(epochs=4))
    assert s.training == TrainingConfig(epochs=4)
    t = override(p, **{"data.kind": "mnist", "training.loss": "cross_entropy"})  # applied together
    assert t.training.loss == "cross_entropy"


def test_override_errors():
    p = Problem()
    with pytest.raises(ConfigError, match=r'unknown key "epoch" in \[training\] \(did you mean "epochs"\?\)'):
        override(p, **{"training.epoch": 3})
    with pytest.raises(ConfigError, match=r'unknown key "traning" at the top level \(did you mean "training"\?\)'):
        override(p, **{"traning.epochs": 3})
    with pytest.raises(ConfigError, match="training.epochs: expected an integer"):
        override(p, **{"training.epochs": "x"})
    with pytest.raises(ConfigError, match="seed is a value, not a table"):
        override(p, **{"seed.x": 1})
    with pytest.raises(ConfigError, match="expected a TrainingConfig"):
        override(p, training=DataConfig())
    with pytest.raises(ConfigError, match="robust.enabled"):
        override(p, **{"robust.enabled": True})  # cross-field rules run on the result


def test_parse_assignment():
    assert parse_assignment("training.epochs=3") == ("training.epochs", 3)
    assert parse_assignment(" optimizer.lr = 1e-3 ") == ("optimizer.lr", 1e-3)
    assert parse_assignment("model.feedthrough=true") == ("model.feedthrough", True)
    assert parse_assignment("constraint.eta=[1, 2.5]") == ("constraint.eta", [1, 2.5])
    assert parse_assignment("device=cuda:0") == ("device", "cuda:0")
    assert parse_assignment("constraint.set=none") == ("constraint.set", "none")
    assert parse_assignment('name="my run"') == ("name", "my run")
    assert parse_assignment("name=123") == ("name", "123")  # a string field keeps the text
    assert parse_assignment("data.data_dir=") == ("data.data_dir", "")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("training.epochs")
    with pytest.raises(ConfigError, match='did you mean "epochs"'):
        parse_assignment("training.epoch=3")
    key, value = parse_assignment("training.epochs=3")
    assert override(Problem(), **{key: value}).training.epochs == 3


# ---------------------------------------------------------------------------------------------------
# The loader is generic over any dataclass tree
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Inner(_Section):
    depth: int = 1
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class _Middle(_Section):
    inner: _Inner = field(default_factory=_Inner)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Root(_Section):
    middle: _Middle = field(default_factory=_Middle)
    flag: bool = False


def test_generic_loader_on_a_deeper_tree():
    r = from_dict(_Root, {"flag": True, "middle": {"tags": ["x", "y"], "inner": {"depth": 3, "mode": "b"}}})
    assert r.middle.inner.depth == 3 and r.middle.tags == ("x", "y")
    assert from_dict(_Root, tomllib.loads(to_toml(r))) == r
    assert "[middle.inner]" in to_toml(r)
    assert to_dict(r) == {"middle": {"inner": {"depth": 3, "mode": "b"}, "tags": ["x", "y"]}, "flag": True}
    with pytest.raises(ConfigError, match=r'unknown key "dept" in \[middle\.inner\] \(did you mean "depth"\?\)'):
        from_dict(_Root, {"middle": {"inner": {"dept": 3}}})
    with pytest.raises(ConfigError, match=r"middle\.inner\.mode: string \"c\" is not one of"):
        from_dict(_Root, {"middle": {"inner": {"mode": "c"}}})
    with pytest.raises(ConfigError, match=r"middle\.tags\[1\]: expected a string"):
        from_dict(_Root, {"middle": {"tags": ["x", 1]}})
    assert override(r, **{"middle.inner.depth": 5}).middle.inner.depth == 5
