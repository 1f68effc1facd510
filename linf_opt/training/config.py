"""Training-problem configuration: frozen dataclasses that map one-to-one onto TOML tables.

A problem file has a few top-level keys (``name``, ``seed``, ``device``, ``dtype``) and one table per
section: ``[data]``, ``[model]``, ``[constraint]``, ``[regularizer]``, ``[optimizer]``, ``[training]``,
``[solver]``, ``[robust]``. Every key is optional (the dataclass default applies) and every key is
checked: an unknown key, a value of the wrong type, a choice outside its allowed values or a number
outside its range raises :class:`~linf_opt.errors.ConfigError` naming the key and what was expected.
Misspellings get a "did you mean" suggestion.

The strict loader (:func:`from_dict`, :func:`to_dict`, :func:`to_toml`) is generic over any tree of
dataclasses whose fields are bool, int, float, str, ``Literal[...]`` choices, ``tuple[T, ...]``
(a TOML array) or another such dataclass (a TOML table): a new section is one new field of
:class:`Problem`.

    >>> p = load_problem("problems/function_estimation.toml")
    >>> override(p, **{"training.epochs": 3}).training.epochs
    3
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import re
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin, get_type_hints

import torch

from linf_opt.errors import ConfigError

__all__ = [
    "Problem", "DataConfig", "ModelConfig", "ConstraintConfig", "RegularizerConfig", "OptimizerConfig",
    "TrainingConfig", "SolverConfig", "RobustConfig",
    "load_problem", "problem_to_dict", "problem_to_toml", "override", "parse_assignment",
    "from_dict", "to_dict", "to_toml", "check_device",
]

# ---------------------------------------------------------------------------------------------------
# The generic strict machinery
# ---------------------------------------------------------------------------------------------------


def _bounded(default, *, ge=None, gt=None, le=None, lt=None):
    """A dataclass field with a numeric range (applied to each element of a tuple field)."""
    return field(default=default, metadata={"bounds": (ge, gt, le, lt)})


class _Invalid(Exception):
    """Raised by validators with the offending key (relative to the object checked) and the reason."""

    def __init__(self, key: str, reason: str):
        super().__init__(key, reason)
        self.key, self.reason = key, reason


# The path of the section being built by `from_dict` (None: a dataclass constructed directly).
_CURRENT_PATH: ContextVar[tuple[str, ...] | None] = ContextVar("linf_opt_config_path", default=None)

_TOML_TYPE_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array",
                    tuple: "array", dict: "table"}


def _show(value: Any) -> str:
    kind = _TOML_TYPE_NAMES.get(type(value), "table" if isinstance(value, Mapping) else type(value).__name__)
    return f"{kind} {json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _suggest(word: str, options) -> str:
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {json.dumps(lowered[close[0]])}?)" if close else ""


def _table_name(path: tuple[str, ...]) -> str:
    return f"[{'.'.join(path)}]" if path else "the top level"


def _located(path: tuple[str, ...]) -> str:
    return f"in [{'.'.join(path)}]" if path else "at the top level"


def _coerce(value: Any, hint: Any, key: str, path: tuple[str, ...]) -> Any:
    """Check ``value`` against the type ``hint``; return it, converted where lossless (int → float)."""
    origin = get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise _Invalid(key, f"expected a boolean (true or false), got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(key, f"expected an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(key, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise _Invalid(key, f"expected a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _Invalid(key, f"expected a string, got {_show(value)}")
        return value
    if origin is Literal:
        choices = get_args(hint)
        if not isinstance(value, str) or value not in choices:
            allowed = ", ".join(json.dumps(c) for c in choices)
            hint_text = _suggest(value, choices) if isinstance(value, str) else ""
            raise _Invalid(key, f"{_show(value)} is not one of the allowed values {allowed}{hint_text}")
        return value
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise _Invalid(key, f"expected an array, got {_show(value)}")
        return tuple(_coerce(v, item, f"{key}[{i}]", path) for i, v in enumerate(value))
    if _is_section(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return from_dict(hint, value, _path=path + (key,))
        raise _Invalid(key, f"expected a table {_table_name(path + (key,))}, got {_show(value)}")
    raise TypeError(f"config field {key!r}: unsupported type annotation {hint!r}")


def _check_bounds(value: Any, bounds: tuple, key: str) -> None:
    ge, gt, le, lt = bounds
    for i, v in enumerate(value) if isinstance(value, tuple) else [(None, value)]:
        name = key if i is None else f"{key}[{i}]"
        for limit, bad, sign in ((ge, lambda a, b: a < b, "≥"), (gt, lambda a, b: a <= b, ">"),
                                 (le, lambda a, b: a > b, "≤"), (lt, lambda a, b: a >= b, "<")):
            if limit is not None and bad(v, limit):
                raise _Invalid(name, f"expected a value {sign} {limit}, got {v}")


def _validate(obj: Any) -> None:
    """Type-check, convert and range-check every field of ``obj``, then run its cross-field ``_check``."""
    path = _CURRENT_PATH.get()
    try:
        hints = _hints(type(obj))
        for f in _fields(type(obj)):
            value = _coerce(getattr(obj, f.name), hints[f.name], f.name, path or ())
            if "bounds" in f.metadata:
                _check_bounds(value, f.metadata["bounds"], f.name)
            object.__setattr__(obj, f.name, value)  # frozen: the converted value (int → float, list → tuple)
        check = getattr(obj, "_check", None)
        if check is not None:
            check()
    except _Invalid as exc:
        where = ".".join(path + (exc.key,)) if path is not None else f"{type(obj).__name__}.{exc.key}"
        raise ConfigError(f"{where}: {exc.reason}") from None


class _Section:
    """Mixin: validate on construction, so a directly built dataclass is checked like a loaded one."""

    def __post_init__(self):
        _validate(self)


def _where_else(root: type, key: str, path: tuple[str, ...] = ()) -> list[str]:
    """The tables of the tree rooted at ``root`` that have a key named ``key``."""
    found = []
    for f in _fields(root):
        hint = _hints(root)[f.name]
        if _is_section(hint):
            found += _where_else(hint, key, path + (f.name,))
        elif f.name == key:
            found.append(_table_name(path))
    return found


def _unknown_key_error(cls: type, keys: list[str], path: tuple[str, ...], root: type) -> ConfigError:
    valid = [f.name for f in _fields(cls)]
    lines = []
    for key in keys:
        text = f"unknown key {json.dumps(key)} {_located(path)}{_suggest(key, valid)}"
        elsewhere = [t for t in _where_else(root, key) if t != _table_name(path)]
        if elsewhere:
            text += f" ({json.dumps(key)} is a key of {' and '.join(elsewhere)})"
        lines.append(text)
    return ConfigError("; ".join(lines) + f". Valid keys {_located(path)}: {', '.join(valid)}")


def from_dict(cls: type, data: Mapping[str, Any], *, _path: tuple[str, ...] = (), _root: type | None = None):
    """Build the dataclass ``cls`` from a (nested) mapping such as ``tomllib.load`` returns.

    Strict: an unknown key raises :class:`ConfigError` naming it, its table and the valid keys (with a
    close match suggested); each value is checked by the dataclass's own validation. Missing keys take
    their defaults; nested dataclass fields take nested tables.

        >>> from_dict(TrainingConfig, {"epochs": 3}).epochs
        3
    """
    root = cls if _root is None else _root
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_table_name(_path)}: expected a table, got {_show(data)}")
    valid = {f.name for f in _fields(cls)}
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise _unknown_key_error(cls, unknown, _path, root)
    kwargs = {}
    for name, value in data.items():
        hint = _hints(cls)[name]
        if _is_section(hint) and isinstance(value, Mapping):
            value = from_dict(hint, value, _path=_path + (name,), _root=root)
        kwargs[name] = value
    token = _CURRENT_PATH.set(_path)
    try:
        return cls(**kwargs)
    finally:
        _CURRENT_PATH.reset(token)


def to_dict(obj: Any) -> dict[str, Any]:
    """The nested plain dictionary of a dataclass tree (tuples as lists): ``from_dict`` inverts it."""
    out = {}
    for f in _fields(type(obj)):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(obj: Any) -> str:
    """The TOML text of a dataclass tree: top-level keys first, then one table per section.

    ``from_dict(type(obj), tomllib.loads(to_toml(obj))) == obj``.
    """
    def emit(node: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
        scalars = {k: v for k, v in node.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in node.items() if isinstance(v, Mapping)}
        if path:
            lines.append(f"\n[{'.'.join(path)}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        for k, v in tables.items():
            emit(v, path + (k,), lines)

    lines: list[str] = []
    emit(to_dict(obj), (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------------

_WEIGHTED_SETS = ("mu_inf", "weighted_mu_inf", "norm_inf")
_REPARAM_SETS = ("mu_inf", "weighted_mu_inf", "monotone")
_FACTORY_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_RELU_ONLY_METHODS = ("forward_backward", "peaceman_rachford")  # Φ must be the projection onto x ≥ 0
_NAME = re.compile(r"[A-Za-z0-9._-]+")                           # Problem.name: a safe directory name


@dataclass(frozen=True)
class DataConfig(_Section):
    """``[data]``: which data set to train and test on.

    kind         "function_estimation" (f(u) = sin(3u) + 0.5u on [−2, 2], docs/mathematics.md §9), "mnist",
                 or "python" (your own data: the function named by ``factory``, docs/guide_own_data.md).
    factory      kind "python": "package.module:function", imported with importlib; called with this
                 [data] section (and ``seed``, ``dtype``, ``batch_size`` if it takes them), it returns
                 any form the trainer accepts (see ``linf_opt.data.sources``). The other keys of the
                 section are there for it to read (e.g. ``data_dir``).
    data_dir     MNIST directory; "" searches the default places (see ``data.resolve_data_dir``).
    n_train      function estimation: number of noisy training samples.
    n_test       function estimation: number of points of the noise-free test grid.
    noise        function estimation: standard deviation σ of the Gaussian label noise.
    train_limit  MNIST: keep only the first ``train_limit`` training images (0 = all 60,000).
    test_limit   MNIST: keep only the first ``test_limit`` test images (0 = all 10,000).
    """

    kind: Literal["function_estimation", "mnist", "python"] = "function_estimation"
    factory: str = ""
    data_dir: str = ""
    n_train: int = _bounded(200, ge=1)
    n_test: int = _bounded(1000, ge=1)
    noise: float = _bounded(0.05, ge=0.0)
    train_limit: int = _bounded(0, ge=0)
    test_limit: int = _bounded(0, ge=0)

    def _check(self) -> None:
        if self.kind == "python":
            if not _FACTORY_SPEC.match(self.factory):
                raise _Invalid("factory", 'data.kind = "python" needs factory = "package.module:function" (a '
                                          f"module path, a colon, a function name), got {json.dumps(self.factory)}")
        elif self.factory:
            raise _Invalid("factory", f'a factory is only used with kind = "python", but kind = {json.dumps(self.kind)}; '
                                      f'set kind = "python" or remove factory')


@dataclass(frozen=True)
class ModelConfig(_Section):
    """``[model]``: the implicit network x = Φ(Ax + Bu + b), y = Cx + Du + c (docs/mathematics.md §1, §10).

    kind            "dense" (A an n × n matrix) or "conv" (A a C → C convolution on images; the
                    :class:`~linf_opt.models.conv_network.ConvImplicitNetwork`).
    hidden          n, the dimension of the hidden state x ("dense").
    activation      φ: "relu", "leaky_relu", "tanh" or "sigmoid" (all slopes in [0, 1]).
    negative_slope  slope of leaky ReLU for negative inputs, in [0, 1] (used by "leaky_relu" only).
    feedthrough     whether the direct term D u is present (false: D = 0; "dense" only).
    init_scale      multiplier on the default initialization of the weights (> 0).

    For ``kind = "conv"``:

    channels               hidden channels C.
    kernel_size            odd size k of the implicit convolution.
    padding                "zeros" or "circular" (the implicit convolution).
    injection_kernel_size  odd size of the injection convolution; stride: its stride.
    pool                   the read-out's average-pooling window (must divide the state size).
    in_channels            channels of the input images; image_size: [H, W] ([] = square images
                           inferred from the input size).
    construction           "projection" (μ∞ ≤ γ by exact projection) or "authors" (the published
                           construction, no guarantee; needs constraint.set = "none").
    """

    kind: Literal["dense", "conv"] = "dense"
    hidden: int = _bounded(40, ge=1)
    activation: Literal["relu", "leaky_relu", "tanh", "sigmoid"] = "relu"
    negative_slope: float = _bounded(0.01, ge=0.0, le=1.0)
    feedthrough: bool = False
    init_scale: float = _bounded(1.0, gt=0.0)
    channels: int = _bounded(32, ge=1)
    kernel_size: int = _bounded(3, ge=1)
    padding: Literal["zeros", "circular"] = "zeros"
    injection_kernel_size: int = _bounded(3, ge=1)
    stride: int = _bounded(2, ge=1)
    pool: int = _bounded(2, ge=1)
    in_channels: int = _bounded(1, ge=1)
    image_size: tuple[int, ...] = _bounded((), ge=1)
    construction: Literal["projection", "authors"] = "projection"


@dataclass(frozen=True)
class ConstraintConfig(_Section):
    """``[constraint]``: the well-posedness condition on A and how training keeps it (docs/mathematics.md §3, §6, §7).

    set            "mu_inf": μ_{∞,η}(A) ≤ γ; "weighted_mu_inf": ∃η > 0 with μ_{∞,η}(A) ≤ γ;
                   "norm_inf": ‖A‖_{∞,η} ≤ γ (El Ghaoui); "monotone": μ₂(A) ≤ 1 − m; "none".
    enforce        "project": Euclidean projection after each optimizer step; "reparam": A is a
                   function of free parameters that lands in the set (mu_inf, weighted_mu_inf and
                   monotone only); "free": no enforcement, membership is only reported.
    gamma          γ, the bound on the measure or norm; < 1 for every set but "none" (≥ 0 for norm_inf).
    m              monotonicity margin m ∈ (0, 1] of the "monotone" set.
    eta            fixed weights η > 0, one per hidden unit; [] means unweighted (η = 1).
    learn_weights  whether η is trained as well (ℓ∞ sets only).
    backend        projection algorithm: "exact" (closed form), "cvxpy" (reference convex program),
                   "sort" or "pivot" (root-finding variants of the closed form).
    check_tol      tolerance of the membership check after each projection.
    """

    set: Literal["mu_inf", "weighted_mu_inf", "norm_inf", "monotone", "none"] = "mu_inf"
    enforce: Literal["project", "reparam", "free"] = "project"
    gamma: float = 0.95
    m: float = _bounded(0.05, gt=0.0, le=1.0)
    eta: tuple[float, ...] = _bounded((), gt=0.0)
    learn_weights: bool = False
    backend: Literal["exact", "cvxpy", "sort", "pivot"] = "exact"
    check_tol: float = _bounded(1e-6, ge=0.0)

    def _check(self) -> None:
        if self.set != "none" and self.gamma >= 1:
            raise _Invalid("gamma", f"expected γ < 1 for set {json.dumps(self.set)} (well-posedness needs a "
                                    f"measure below 1), got {self.gamma}")
        if self.set == "norm_inf" and self.gamma < 0:
            raise _Invalid("gamma", f"the norm ball ‖A‖∞ ≤ γ is empty for γ < 0, got {self.gamma}")
        if self.set == "none" and self.enforce != "free":
            raise _Invalid("enforce", f'set "none" has nothing to enforce: use enforce = "free", '
                                      f"got {json.dumps(self.enforce)}")
        if self.enforce == "reparam" and self.set not in _REPARAM_SETS:
            raise _Invalid("enforce", f'"reparam" is available for set {", ".join(map(json.dumps, _REPARAM_SETS))}'
                                      f", not for {json.dumps(self.set)}")
        if self.eta and self.set not in _WEIGHTED_SETS:
            raise _Invalid("eta", f"weights apply to the ℓ∞ sets {', '.join(map(json.dumps, _WEIGHTED_SETS))}, "
                                  f"not to {json.dumps(self.set)}; use eta = []")
        if self.learn_weights and self.set not in _WEIGHTED_SETS:
            raise _Invalid("learn_weights", f"weights apply to the ℓ∞ sets "
                                            f"{', '.join(map(json.dumps, _WEIGHTED_SETS))}, not to {json.dumps(self.set)}")


@dataclass(frozen=True)
class RegularizerConfig(_Section):
    """``[regularizer]``: the Lipschitz penalty λ · surrogate added to the loss (docs/mathematics.md §5, §6).

    lipschitz_weight  λ ≥ 0 (0 disables the penalty).
    surrogate         "norm_product": ‖C‖∞ ‖B‖∞ / (1 − γ); "sum_of_squares": (‖B‖∞² + ‖C‖∞²) / (2(1 − γ)),
                      a smooth upper bound of the product.
    """

    lipschitz_weight: float = _bounded(0.0, ge=0.0)
    surrogate: Literal["norm_product", "sum_of_squares"] = "norm_product"


@dataclass(frozen=True)
class OptimizerConfig(_Section):
    """``[optimizer]``: the torch optimizer and its learning-rate schedule (one value per epoch).

    name          "adam" or "sgd".
    lr            initial learning rate (> 0).
    momentum      SGD momentum in [0, 1) (must be 0 for Adam, whose moments are fixed by its betas).
    weight_decay  L2 weight decay ≥ 0.
    schedule      "step": multiply the rate by ``lr_decay`` every ``lr_step`` epochs (0 = never);
                  "cosine": epoch e (counted from 0) of E = ``training.epochs`` runs at
                  lr_min + (lr − lr_min)·(1 + cos(π e / E))/2, so the last epoch is near ``lr_min``
                  (``lr_step`` and ``lr_decay`` are not used). Extending a run (``--epochs`` with
                  ``--resume``) continues on the cosine over the new total.
    lr_step       the step schedule's period in epochs (0 = a constant rate).
    lr_decay      the step schedule's factor, in (0, 1].
    lr_min        the cosine schedule's final rate, in [0, lr).
    """

    name: Literal["adam", "sgd"] = "adam"
    lr: float = _bounded(1e-3, gt=0.0)
    momentum: float = _bounded(0.0, ge=0.0, lt=1.0)
    weight_decay: float = _bounded(0.0, ge=0.0)
    lr_step: int = _bounded(10, ge=0)
    lr_decay: float = _bounded(0.1, gt=0.0, le=1.0)
    schedule: Literal["step", "cosine"] = "step"
    lr_min: float = _bounded(0.0, ge=0.0)

    def _check(self) -> None:
        if self.lr_min >= self.lr:
            raise _Invalid("lr_min", f"expected a final rate below lr = {self.lr}, got {self.lr_min}")
        if self.name == "adam" and self.momentum != 0:
            raise _Invalid("momentum", f'applies to "sgd" only; Adam would ignore it, got {self.momentum}')


@dataclass(frozen=True)
class TrainingConfig(_Section):
    """``[training]``: the training loop.

    epochs      number of passes over the training set (≥ 1).
    batch_size  samples per optimizer step (≥ 1; a batch larger than the set is the whole set).
    loss        "cross_entropy" (classification) or "mse" (regression, or one-hot targets).
    log_every   epochs between printed progress lines (≥ 0; 0, the default: automatic, about 20 lines a
                run, every ⌈epochs / 20⌉ epochs); the first and the last epoch and any epoch with
                a warning are always printed, and every epoch stays in history.jsonl and in the logger
                ``linf_opt.training`` (DEBUG for the epochs not printed). May change on resume.
    max_loss_growth  stop training (DivergedLossError, the epoch unsaved, the last checkpoint kept) when an
                epoch's mean training loss exceeds ``max_loss_growth`` times the smallest epoch loss so far:
                a loss that grew by orders of magnitude is a divergence, not noise (default 1e4; 0 disables;
                otherwise > 1).
    augment_shift  translate each training image by a random offset in {−s, …, s}² pixels, edge pixels
                repeated (``linf_opt.data.augment``; 0, the default: no augmentation). Needs image
                inputs (the model's (C, H, W), or square single-channel images) larger than s.
    ema_decay   β of an exponential moving average of the weights, updated after every step
                (``linf_opt.training.averaging``; 0, the default: off; e.g. 0.999 averages over about
                1/(1 − β) = 1000 steps). When on, the averaged network is the one evaluated each epoch,
                checkpointed, reported and returned (the last iterate's test metric is kept as
                ``test_accuracy_iterate`` / ``test_mse_iterate``). The average of feasible iterates is
                feasible (the sets are convex), and it is checked after every step like the iterate.
                Not with learned weights η (``set = "weighted_mu_inf"``, ``learn_weights``): the set moves.
    """

    epochs: int = _bounded(20, ge=1)
    batch_size: int = _bounded(100, ge=1)
    loss: Literal["cross_entropy", "mse"] = "mse"
    log_every: int = _bounded(0, ge=0)
    max_loss_growth: float = _bounded(1e4, ge=0.0)
    augment_shift: int = _bounded(0, ge=0)
    ema_decay: float = _bounded(0.0, ge=0.0, lt=1.0)

    def _check(self) -> None:
        if 0 < self.max_loss_growth <= 1:
            raise _Invalid("max_loss_growth", f"expected 0 (no check) or a factor > 1, got {self.max_loss_growth} "
                                              f"(a factor ≤ 1 would stop any run whose loss does not decrease)")


@dataclass(frozen=True)
class SolverConfig(_Section):
    """``[solver]``: the fixed-point solver of the equilibrium and of its backward pass (docs/mathematics.md §4).

    method        "average" (x⁺ = (1 − α)x + αΦ(Ax + Bu + b) with α = α*), "picard" (α = 1),
                  "anderson" (accelerated average), "forward_backward", "peaceman_rachford"
                  (the monotone splittings, for the "monotone" set).
    tol           tolerance on the per-sample residual ‖x − Φ(Ax + Bu + b)‖∞.
    max_iter      iteration limit (≥ 1); hitting it is reported.
    backward      gradient solve s = g + AᵀJs: "average" iteration or "direct" linear solve.
    backward_tol  relative tolerance ‖r‖₁ ≤ backward_tol·‖g‖₁ of the iterative backward solve (default
                  1e-3: gradients within ~2e-4 of the exact ones, relative — far inside the minibatch
                  noise the optimizer sees — at 0.88× the step time of 1e-4 and 0.85× that of 1e-6,
                  with the same accuracy; measured by bench/train_step.py, recorded in the README).
                  Set it tight (1e-10 in float64) for exact gradients.
    strict        raise ConvergenceError on non-convergence (false: warn with ConvergenceWarning).
    check_every   the most iterations between two convergence checks (each check is one host
                  synchronisation; the checks are scheduled from the observed rate, docs/mathematics.md §4).
    max_unconverged  the largest fraction of an epoch's solves (training forward and backward, test) that
                  may stop at ``max_iter``; more stops training with ConvergenceError, the epoch unsaved
                  (enforce = "free" runs only report it: there non-convergence is the measured outcome).
                  Any unconverged solve is reported in the epoch record, the summary (converged = false)
                  and the exit status of ``linf-opt train``.
    """

    method: Literal["average", "picard", "anderson", "forward_backward", "peaceman_rachford"] = "average"
    tol: float = _bounded(1e-4, gt=0.0)
    max_iter: int = _bounded(500, ge=1)
    backward: Literal["average", "direct"] = "average"
    backward_tol: float = _bounded(1e-3, gt=0.0)
    strict: bool = False
    check_every: int = _bounded(8, ge=1)
    max_unconverged: float = _bounded(0.5, ge=0.0, le=1.0)


@dataclass(frozen=True)
class RobustConfig(_Section):
    """``[robust]``: certified-robust training with the embedded network bounds (docs/mathematics.md §8).

    enabled          whether the robust loss is used (classification only).
    eps              final ℓ∞ radius ε of the input box, at pixel scale [0, 1] (≥ 0).
    eps_ramp_epochs  epochs over which ε grows linearly from 0 to ``eps`` (0 = from the start).
    mix              weight κ ∈ [0, 1] of the robust loss at the end of its ramp: (1 − κ) clean + κ robust.
    mix_ramp_epochs  epochs over which the weight grows linearly from 0 to ``mix``.
    warmup_epochs    clean-only epochs before either ramp starts.
    """

    enabled: bool = False
    eps: float = _bounded(0.1, ge=0.0)
    eps_ramp_epochs: int = _bounded(5, ge=0)
    mix: float = _bounded(0.5, ge=0.0, le=1.0)
    mix_ramp_epochs: int = _bounded(5, ge=0)
    warmup_epochs: int = _bounded(0, ge=0)


@dataclass(frozen=True)
class Problem(_Section):
    """A whole training problem, one-to-one with a TOML problem file.

    name    label of the problem, used in logs and as the default run directory runs/<name>: letters,
            digits, "-", "_" and "." only (no path separators, not "." or "..").
    seed    seed of every random draw (data, initialization, batching), ≥ 0.
    device  any torch device string: "cpu", "cuda", "cuda:0", ... (checked for syntax, not availability).
    dtype   floating type of parameters and data: "float32" or "float64".
    """

    name: str = ""
    seed: int = _bounded(0, ge=0)
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    constraint: ConstraintConfig = field(default_factory=ConstraintConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]

    @property
    def learns_weights(self) -> bool:
        """Whether training re-estimates the weights η (weighted ℓ∞, docs/mathematics.md §2)."""
        c = self.constraint
        return c.set == "weighted_mu_inf" or (c.set == "mu_inf" and c.learn_weights)

    def _check(self) -> None:
        if self.name and (not _NAME.fullmatch(self.name) or self.name in (".", "..")):
            raise _Invalid("name", f"{json.dumps(self.name)} is not a valid problem name: it names the run "
                                   f"directory runs/<name>, so use letters, digits, '-', '_' and '.' only "
                                   f"(no '/', no '..')")
        try:
            torch.device(self.device)
        except (RuntimeError, ValueError, TypeError):
            raise _Invalid("device", f"{json.dumps(self.device)} is not a torch device string "
                                     f'(e.g. "cpu", "cuda", "cuda:0")') from None
        eta, n = self.constraint.eta, self.model.hidden
        m = self.model
        if m.kind == "conv":
            for key in ("kernel_size", "injection_kernel_size"):
                if getattr(m, key) % 2 == 0:
                    raise _Invalid(f"model.{key}", f"expected an odd size (the centre tap is the pixel itself), "
                                                   f"got {getattr(m, key)}")
            if m.image_size and len(m.image_size) != 2:
                raise _Invalid("model.image_size", f"expected [H, W] or [], got {list(m.image_size)}")
            if self.constraint.set not in ("mu_inf", "none"):
                raise _Invalid("constraint.set", f'a convolutional model supports "mu_inf" (by projection) or '
                                                 f'"none", got {json.dumps(self.constraint.set)}')
            if self.constraint.enforce == "reparam" or self.constraint.eta or self.constraint.learn_weights:
                raise _Invalid("constraint.enforce" if self.constraint.enforce == "reparam" else "constraint.eta",
                               'a convolutional model is kept in μ∞ ≤ γ by projection (enforce = "project"), '
                               "unweighted")
            if m.feedthrough:
                raise _Invalid("model.feedthrough", "a convolutional model has no feed-through term D u")
            if m.construction == "authors" and self.constraint.set != "none":
                raise _Invalid("model.construction", 'the authors\' construction does not keep μ∞ ≤ γ, so it is '
                                                     'trained without a feasible set: set constraint.set = "none"')
        elif m.construction != "projection":
            raise _Invalid("model.construction", 'only a convolutional model (model.kind = "conv") has a '
                                                 'construction option')
        if eta and len(eta) != n:
            raise _Invalid("constraint.eta", f"has {len(eta)} weights but model.hidden = {n}: give one weight per "
                                             f"hidden unit, or [] for unweighted")
        # training.loss = "cross_entropy" against regression targets is refused by the trainer, which sees
        # the data (the [data] section's, or your own passed to train(data=...), which this one does not describe)
        if self.solver.method in _RELU_ONLY_METHODS and self.model.activation != "relu":
            raise _Invalid("solver.method", f"the splitting {json.dumps(self.solver.method)} solves x = Φ(Ax + Bu + b) "
                                            f'only for model.activation = "relu", got '
                                            f"{json.dumps(self.model.activation)}")
        if self.robust.enabled and self.data.kind != "mnist":
            raise _Invalid("robust.enabled", f"robust training certifies class margins, but data.kind = "
                                             f"{json.dumps(self.data.kind)} is a regression task")
        if self.training.ema_decay > 0 and self.learns_weights:
            raise _Invalid("training.ema_decay", "weight averaging with learned weights η (set = "
                                                 '"weighted_mu_inf" or learn_weights = true): the '
                                                 "set P(γ, η) moves with η every epoch, and an average of "
                                                 "matrices from different sets need not lie in the current one; "
                                                 "use fixed weights (constraint.eta) or ema_decay = 0")
        if self.regularizer.lipschitz_weight > 0 and self.constraint.gamma >= 1:
            raise _Invalid("regularizer.lipschitz_weight", f"the surrogate divides by 1 − γ, which needs "
                                                           f"constraint.gamma < 1, got {self.constraint.gamma}")


# ---------------------------------------------------------------------------------------------------
# Loading, writing, overriding
# ---------------------------------------------------------------------------------------------------


def load_problem(source: str | os.PathLike | Mapping[str, Any] | Problem) -> Problem:
    """A validated :class:`Problem` from a TOML file path or an already parsed mapping.

    Raises :class:`ConfigError` for a missing or unparsable file (naming it) and for any invalid key or
    value (naming the key, its table and what was expected).

        >>> load_problem("problems/mnist_fc.toml").model.hidden
        100
    """
    if isinstance(source, Problem):
        return source
    if isinstance(source, Mapping):
        return from_dict(Problem, source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_problem: expected a path or a mapping, got {type(source).__name__}")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such problem file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the problem file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if not data:
        raise ConfigError(f"{path}: the problem file sets no keys (it is empty or holds only comments; "
                          f"truncated?); refusing to train the all-default problem. Start from a file in "
                          f"problems/")
    try:
        return from_dict(Problem, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The problem as nested plain dictionaries; ``load_problem(problem_to_dict(p)) == p``."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem_to_dict: expected a Problem, got {type(problem).__name__}")
    return to_dict(problem)


def problem_to_toml(problem: Problem) -> str:
    """The problem as the text of a TOML problem file (every key written, defaults included)."""
    if not isinstance(problem, Problem):
        raise TypeError(f"problem_to_toml: expected a Problem, got {type(problem).__name__}")
    return to_toml(problem)


def _resolve_key(cls: type, dotted: str) -> tuple[list[str], Any]:
    """Check a dotted key against the schema; return its parts and the type of the field it names."""
    parts = dotted.split(".")
    hint: Any = cls
    for i, part in enumerate(parts):
        if not _is_section(hint):
            raise ConfigError(f"{dotted}: {'.'.join(parts[:i])} is a value, not a table")
        if part not in {f.name for f in _fields(hint)}:
            raise _unknown_key_error(hint, [part], tuple(parts[:i]), cls)
        hint = _hints(hint)[part]
    return parts, hint


def override(problem, **assignments):
    """A new, validated problem with some keys replaced; the original is unchanged.

    Keys are dotted paths, e.g. ``override(p, seed=1, **{"training.epochs": 3})``; a section may also be
    given a mapping (merged into it) or a whole section dataclass. Unknown keys and invalid values raise
    :class:`ConfigError` as in :func:`load_problem`.
    """
    if not dataclasses.is_dataclass(problem) or isinstance(problem, type):
        raise TypeError(f"override: expected a configuration dataclass, got {type(problem).__name__}")
    cls = type(problem)
    tree = to_dict(problem)
    for dotted, value in assignments.items():
        parts, hint = _resolve_key(cls, dotted)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if not isinstance(value, hint):
                raise ConfigError(f"{dotted}: expected a {getattr(hint, '__name__', hint)}, "
                                  f"got a {type(value).__name__}")
            value = to_dict(value)
        node = tree
        for part in parts[:-1]:
            node = node[part]
        if _is_section(hint) and isinstance(value, Mapping):
            node[parts[-1]] = {**node[parts[-1]], **value}
        else:
            node[parts[-1]] = value
    return from_dict(cls, tree)


def parse_assignment(text: str, schema: type = Problem) -> tuple[str, Any]:
    """Parse ``"dotted.key=value"`` (a command-line override) into ``(key, value)``.

    The value is read as a TOML value (``3``, ``1e-3``, ``true``, ``[1.0, 2.0]``, ``"text"``); for a
    string field, or when it is not valid TOML, the text itself is the value (so ``device=cuda:0``
    and ``constraint.set=none`` need no quotes). The key is checked against ``schema``.

        >>> parse_assignment("training.epochs=3")
        ('training.epochs', 3)
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ConfigError(f"{text!r}: expected an assignment key=value, e.g. training.epochs=3")
    _, hint = _resolve_key(schema, key)
    if hint is str or get_origin(hint) is Literal:
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            try:
                return key, tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                pass
        return key, raw
    try:
        return key, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` unless the torch device ``device`` can be used by this torch build
    (e.g. "cuda" on a CPU-only torch, or "cuda:3" on a machine with one GPU)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device: {json.dumps(device)} is not a torch device string") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES?)")
            raise ConfigError(f"device: {json.dumps(device)} is not available: {why}; use device = \"cpu\"")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device: {json.dumps(device)} is not available: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"device: {json.dumps(device)} is not available on this machine")
