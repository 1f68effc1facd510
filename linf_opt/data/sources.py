"""Bring your own data: arrays, torch datasets and data loaders, and data factories named in problem files.

The trainer accepts its data in any of these forms (docs/guide_own_data.md):

=============================================  ======================================================
form                                           becomes
=============================================  ======================================================
:class:`Dataset`                                used as is (in memory)
``(X_train, y_train, X_test, y_test)``          :func:`from_arrays`: a :class:`Dataset` (in memory)
  arrays, tensors or lists
``(train, test)`` with each a ``(X, y)`` pair    :func:`from_arrays`
``(train, test)`` with each a                   :func:`from_loaders`: a :class:`LoaderData` (streamed:
  ``torch.utils.data.DataLoader`` or a torch      the trainer iterates the training loader once per
  ``Dataset`` (map-style or ``IterableDataset``)   epoch and evaluation iterates the test loader)
:class:`LoaderData`                             used as is
=============================================  ======================================================

A ``TensorDataset`` of (inputs, targets) is read into memory (the fast path: the trainer shuffles by
indexing with its own generator, so that a resumed run is bit-exact). Any other torch ``Dataset`` is
batched by a ``DataLoader`` with the problem's ``training.batch_size`` (the training set shuffled when
it is map-style); a ``DataLoader`` is used as it is and must yield ``(inputs, targets)`` batches.

**What is inferred from the data.** Inputs are (N, *input_shape): vectors (N, r) — a 1-D array is N
samples of one feature — or images (N, C, H, W); ``input_dim`` = prod(input_shape). The task is
*classification* when the targets are integer class indices of shape (N,) (torch/numpy integer dtype),
else *regression* (float targets (N, q); a 1-D float array is (N, 1)). Pass ``task=`` to decide
explicitly (e.g. ``task="regression"`` for integer-valued regression targets). The number of classes
is ``num_classes`` when given, else ``len(dataset.classes)`` or ``dataset.num_classes`` when the
(training) dataset has one, else 1 + the largest label: of the arrays, or of one pass over the training
loader for streamed data.

**Data factories.** A problem file names a function that returns any of these forms::

    [data]
    kind = "python"
    factory = "my_package.my_data:load"     # module:function, imported with importlib (no eval)

:func:`load_factory` imports it and :func:`call_factory` calls it with the ``[data]`` configuration
as its one positional argument, plus the keyword arguments ``seed``, ``dtype`` (a torch dtype) and
``batch_size`` that its signature names (or all of them for ``**kwargs``).
"""
from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from torch.utils.data import Dataset as TorchDataset

from linf_opt.errors import ConfigError, DataError

__all__ = ["Dataset", "LoaderData", "infer_task", "normalize_targets", "from_arrays", "from_loaders", "as_data", "load_factory", "call_factory",
           "iterate_batches", "TASKS", "DATA_FORMS"]

TASKS = ("classification", "regression")
DATA_FORMS = ("a linf_opt.Dataset or LoaderData, (X_train, y_train, X_test, y_test) arrays or tensors, "
              "((X_train, y_train), (X_test, y_test)), or (train, test) torch DataLoaders or torch Datasets")
"""The accepted data forms, as error messages state them."""


@dataclass(frozen=True)
class Dataset:
    """A training problem's data, in memory: inputs of shape (N, *input_shape) and their targets.

    Inputs are vectors (N, input_dim) or images (N, C, H, W); ``input_dim`` = prod(input_shape).
    ``task`` is ``"classification"`` (targets: int64 class indices, shape (N,)) or ``"regression"``
    (targets: float, shape (N, output_dim)). ``output_dim`` is the network's output width (the number
    of classes for classification). ``target_lipschitz`` is the true function's Lipschitz constant
    where known (function estimation), else None. Build one from arrays with :func:`from_arrays`.

    Unpacks as the five-tuple ``train_inputs, train_targets, test_inputs, test_targets, task``.
    """

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    task: str
    output_dim: int
    target_lipschitz: float | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train_inputs.shape[1:])

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def in_memory(self) -> bool:
        return True

    def __iter__(self) -> Iterator:
        return iter((self.train_inputs, self.train_targets, self.test_inputs, self.test_targets, self.task))


@dataclass(frozen=True)
class LoaderData:
    """Streamed data: a training and a test iterable of ``(inputs, targets)`` batches (e.g. DataLoaders).

    The training iterable is iterated once per epoch (so it must be re-iterable, as a ``DataLoader``
    is), the test iterable once per evaluation. ``task``, ``output_dim`` and ``input_shape`` are as
    for :class:`~linf_opt.data.datasets.Dataset`; build one with :func:`from_loaders`.
    """

    train: Iterable
    test: Iterable
    task: str
    output_dim: int
    input_shape: tuple[int, ...]
    target_lipschitz: float | None = None

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def in_memory(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------------------
# Targets and inputs
# ---------------------------------------------------------------------------------------------------

def _tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{name}: expected an array, a tensor or a nested list of numbers, got "
                        f"{type(x).__name__} ({exc})") from None


def _is_integer(t: torch.Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def infer_task(targets: torch.Tensor, task: str | None = None) -> str:
    """"classification" for integer class indices of shape (N,), else "regression" (unless ``task``)."""
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"task: expected one of {list(TASKS)} or None (inferred), got {task!r}")
        return task
    return "classification" if _is_integer(targets) and targets.ndim == 1 else "regression"


def _class_targets(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise DataError(f"{name}: class labels must have shape (N,), got {tuple(t.shape)}")
    if t.dtype.is_floating_point:
        if t.numel() and not bool((t == t.round()).all()):
            raise DataError(f"{name}: task 'classification' needs integer class indices, got non-integer floats")
    elif not _is_integer(t):
        raise DataError(f"{name}: class labels must be integers, got dtype {t.dtype}")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise DataError(f"{name}: class indices must be ≥ 0, got {int(t.min())}")
    return t


def _regression_targets(t: torch.Tensor, name: str, dtype: torch.dtype) -> torch.Tensor:
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2:
        raise DataError(f"{name}: regression targets must have shape (N,) or (N, q), got {tuple(t.shape)}")
    if t.is_complex():
        raise DataError(f"{name}: expected real targets, got {t.dtype}")
    return t.to(dtype)


def _inputs(x: torch.Tensor, name: str, dtype: torch.dtype) -> torch.Tensor:
    if x.ndim == 0:
        raise DataError(f"{name}: expected inputs of shape (N, ...), got a scalar")
    if x.ndim == 1:
        x = x.unsqueeze(1)   # N samples of one feature
    if x.is_complex():
        raise DataError(f"{name}: expected real inputs, got {x.dtype}")
    return x.to(dtype)


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype)
    if dtype is None:
        return torch.float32
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch dtype, got {dtype!r}")
    return dtype


def _classes_of(obj) -> int | None:
    """The number of classes a dataset (or a loader's dataset) declares, if it does."""
    for o in (obj, getattr(obj, "dataset", None)):
        if o is None:
            continue
        n = getattr(o, "num_classes", None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
        classes = getattr(o, "classes", None)
        if classes is not None and not isinstance(classes, (str, bytes)):
            try:
                return len(classes)
            except TypeError:
                pass
    return None


def _check_classes(num_classes) -> int | None:
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int or None (inferred), got {num_classes!r}")
    return int(num_classes)


# ---------------------------------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------------------------------

def from_arrays(X_train, y_train, X_test, y_test, *, task: str | None = None, num_classes: int | None = None,
                dtype: torch.dtype | str | None = None, target_lipschitz: float | None = None) -> Dataset:
    """An in-memory :class:`~linf_opt.data.datasets.Dataset` from arrays, tensors or nested lists.

    Inputs (N, r), (N,) (one feature) or images (N, C, H, W), cast to ``dtype`` (default float32).
    Targets: integer class indices (N,) → classification with ``num_classes`` (default 1 + the
    largest label of both splits); float (N, q) or (N,) → regression (cast to ``dtype``, shape (N, q)).
    ``task`` overrides the inference. Raises :class:`~linf_opt.errors.DataError` for mismatched
    sample counts, input shapes that differ between the splits, and labels outside 0..num_classes−1.

        >>> d = from_arrays(np.random.rand(50, 3), np.arange(50) % 4, np.random.rand(10, 3), np.arange(10) % 4)
        >>> d.task, d.input_dim, d.output_dim
        ('classification', 3, 4)
    """
    dtype = _dtype(dtype)
    num_classes = _check_classes(num_classes)
    Xtr, Xte = _inputs(_tensor(X_train, "X_train"), "X_train", dtype), _inputs(_tensor(X_test, "X_test"), "X_test", dtype)
    ytr, yte = _tensor(y_train, "y_train"), _tensor(y_test, "y_test")
    for xn, x, yn, y in (("X_train", Xtr, "y_train", ytr), ("X_test", Xte, "y_test", yte)):
        if y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise DataError(f"{xn} holds {x.shape[0]} samples but {yn} has shape {tuple(y.shape)}: expected one "
                            f"target per sample")
    if Xtr.shape[1:] != Xte.shape[1:]:
        raise DataError(f"X_train samples have shape {tuple(Xtr.shape[1:])} but X_test samples "
                        f"{tuple(Xte.shape[1:])}: expected the same")
    task = infer_task(ytr, task)
    if task == "classification":
        ytr, yte = _class_targets(ytr, "y_train"), _class_targets(yte, "y_test")
        top = max(int(ytr.max()) if ytr.numel() else -1, int(yte.max()) if yte.numel() else -1)
        k = num_classes if num_classes is not None else top + 1
        if top >= k:
            raise DataError(f"labels: the largest class index is {top}, outside 0..{k - 1} (num_classes = {k})")
        if k < 2:
            raise DataError(f"labels: classification needs at least 2 classes, got {k}; pass num_classes")
        return Dataset(Xtr, ytr, Xte, yte, "classification", k, target_lipschitz)
    ytr, yte = _regression_targets(ytr, "y_train", dtype), _regression_targets(yte, "y_test", dtype)
    if ytr.shape[1] != yte.shape[1]:
        raise DataError(f"y_train has {ytr.shape[1]} outputs per sample but y_test {yte.shape[1]}")
    return Dataset(Xtr, ytr, Xte, yte, "regression", int(ytr.shape[1]), target_lipschitz)


# ---------------------------------------------------------------------------------------------------
# Streamed
# ---------------------------------------------------------------------------------------------------

def _first_batch(loader, name: str):
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise DataError(f"{name}: the loader yields no batches") from None
    return _split_batch(batch, name)


def _split_batch(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        U, T = batch
        if isinstance(U, torch.Tensor) and isinstance(T, torch.Tensor):
            return U, T
    desc = (f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list))
            else f"a {type(batch).__name__}")
    raise DataError(f"{name}: expected batches (inputs, targets) of two tensors, got {desc}")


def _loader(obj, name: str, batch_size: int, train: bool) -> Iterable:
    if isinstance(obj, DataLoader):
        return obj
    if isinstance(obj, IterableDataset):
        return DataLoader(obj, batch_size=batch_size)
    if isinstance(obj, TorchDataset):
        return DataLoader(obj, batch_size=batch_size, shuffle=train)
    raise DataError(f"{name}: expected a torch DataLoader or a torch Dataset, got {type(obj).__name__}")


def from_loaders(train, test, *, task: str | None = None, num_classes: int | None = None,
                 batch_size: int = 100, target_lipschitz: float | None = None) -> LoaderData:
    """Streamed data (:class:`LoaderData`) from torch DataLoaders or torch Datasets.

    ``train`` / ``test``: a ``DataLoader`` yielding ``(inputs, targets)`` batches (used as given: its
    batch size, shuffling, workers), or a torch ``Dataset`` / ``IterableDataset`` of ``(input, target)``
    samples (batched by ``batch_size``; a map-style training set is shuffled, by torch's global RNG,
    which the trainer's checkpoint saves). The input shape and the task come from the first training
    batch; the number of classes from ``num_classes``, else the dataset's ``classes`` /
    ``num_classes`` attribute, else one pass over the training loader (see the module docstring).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    num_classes = _check_classes(num_classes)
    declared = _classes_of(train)
    train_l, test_l = _loader(train, "train", batch_size, True), _loader(test, "test", batch_size, False)
    U, T = _first_batch(train_l, "train")
    if U.ndim < 2:
        raise DataError(f"train: expected input batches of shape (batch, ...), got {tuple(U.shape)}")
    U2, _ = _first_batch(test_l, "test")
    if tuple(U2.shape[1:]) != tuple(U.shape[1:]):
        raise DataError(f"train batches hold inputs of shape {tuple(U.shape[1:])} but test batches "
                        f"{tuple(U2.shape[1:])}: expected the same")
    task = infer_task(T, task)
    if task == "classification":
        k = num_classes or declared
        if k is None:
            top = -1
            for i, batch in enumerate(train_l):
                _, Tb = _split_batch(batch, f"train batch {i + 1}")
                if Tb.numel():
                    top = max(top, int(Tb.max()))
            k = top + 1
        if k < 2:
            raise DataError(f"train: classification needs at least 2 classes, got {k}; pass num_classes")
        output_dim = k
    else:
        output_dim = 1 if T.ndim == 1 else int(math.prod(T.shape[1:]))
    return LoaderData(train_l, test_l, task, output_dim, tuple(int(s) for s in U.shape[1:]), target_lipschitz)


def iterate_batches(data, split: str = "train", *, batch_size: int = 1000,
                    dtype: torch.dtype | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(inputs, targets)`` batches of a split ("train" or "test") of a :class:`Dataset` or
    :class:`LoaderData`, with the targets in the task's form: int64 class indices (batch,) for
    classification, ``dtype`` (batch, q) for regression. In-memory data are sliced in order."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    classify = data.task == "classification"
    if isinstance(data, Dataset):
        X, T = (data.train_inputs, data.train_targets) if split == "train" else (data.test_inputs, data.test_targets)
        for i in range(0, X.shape[0], batch_size):
            yield X[i:i + batch_size], T[i:i + batch_size]
        return
    for i, batch in enumerate(data.train if split == "train" else data.test):
        U, T = _split_batch(batch, f"{split} batch {i + 1}")
        yield U, normalize_targets(T, data.task, dtype)


def normalize_targets(T: torch.Tensor, task: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Targets of a streamed batch in the task's form (see :func:`iterate_batches`)."""
    if task == "classification":
        if T.ndim == 2 and T.shape[1] == 1:
            T = T[:, 0]
        return T.long()
    if T.ndim == 1:
        T = T.unsqueeze(1)
    elif T.ndim > 2:
        T = T.reshape(T.shape[0], -1)
    return T.to(dtype) if dtype is not None else T


# ---------------------------------------------------------------------------------------------------
# Any accepted form
# ---------------------------------------------------------------------------------------------------

def _is_streamable(x) -> bool:
    return isinstance(x, (DataLoader, TorchDataset))


def _tensor_pair(ds) -> tuple[torch.Tensor, torch.Tensor] | None:
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors
    return None


def as_data(data, *, batch_size: int = 100, dtype: torch.dtype | str | None = None, task: str | None = None,
            num_classes: int | None = None) -> Dataset | LoaderData:
    """Any accepted data form (the module docstring's table) as a :class:`Dataset` (in memory) or a
    :class:`LoaderData` (streamed). ``batch_size`` batches torch Datasets; ``dtype`` is the float type
    of in-memory inputs and regression targets. Raises :class:`~linf_opt.errors.DataError` naming the
    accepted forms for anything else."""
    if isinstance(data, (Dataset, LoaderData)):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) == 4 and not any(_is_streamable(x) for x in data):
            return from_arrays(*data, task=task, num_classes=num_classes, dtype=dtype)
        if len(data) == 2:
            train, test = data
            pairs = [_tensor_pair(x) for x in (train, test)]
            if all(p is not None for p in pairs):        # TensorDatasets: in memory (the fast path)
                return from_arrays(*pairs[0], *pairs[1], task=task, num_classes=num_classes, dtype=dtype)
            if _is_streamable(train) and _is_streamable(test):
                return from_loaders(train, test, task=task, num_classes=num_classes, batch_size=batch_size)
            if all(isinstance(x, (tuple, list)) and len(x) == 2 for x in (train, test)):
                return from_arrays(*train, *test, task=task, num_classes=num_classes, dtype=dtype)
    if _is_streamable(data):
        raise DataError(f"data: got one {type(data).__name__}; pass the training and the test data together, "
                        f"e.g. (train_loader, test_loader)")
    shown = f"a {type(data).__name__}" + (f" of {len(data)}" if isinstance(data, (tuple, list)) else "")
    raise DataError(f"data: expected {DATA_FORMS}; got {shown}")


# ---------------------------------------------------------------------------------------------------
# Data factories named in problem files
# ---------------------------------------------------------------------------------------------------

_SPEC = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")


def load_factory(spec: str, *, key: str = "data.factory") -> Callable:
    """The function named by ``"package.module:function"`` (``function`` may be dotted, e.g.
    ``Class.method``), imported with :func:`importlib.import_module` from ``sys.path``; when the module is
    not found there, the current working directory is searched too (as ``python -m`` would).

    Raises :class:`~linf_opt.errors.ConfigError` naming ``key`` for a malformed spec, a module that
    cannot be found or fails to import, a missing attribute, or one that is not callable.
    """
    if not isinstance(spec, str) or not _SPEC.match(spec.strip()):
        raise ConfigError(f'{key}: expected "package.module:function" (a module path, a colon, a function '
                          f"name), got {spec!r}")
    module_name, attr = spec.strip().split(":")
    try:
        module = _import(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"{key}: no module named {exc.name!r} (from {spec!r}); put it on sys.path or "
                              f"PYTHONPATH, or run from the directory that holds it (working directory: "
                              f"{os.getcwd()})") from None
        raise ConfigError(f"{key}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:   # the user's module raised while being imported
        raise ConfigError(f"{key}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ConfigError(f"{key}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                              f"attribute {attr!r}; its callables: {', '.join(names) or 'none'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}: {spec!r} is a {type(obj).__name__}, not a function")
    return obj


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.insert(0, cwd)
        try:
            return importlib.import_module(module_name)
        finally:
            sys.path.remove(cwd)


def call_factory(spec: str, config, *, seed: int = 0, dtype: torch.dtype | str | None = None,
                 batch_size: int = 100, key: str = "data.factory") -> Dataset | LoaderData:
    """Load the factory ``spec`` (:func:`load_factory`), call it with ``config`` and the keyword arguments
    its signature accepts among ``seed``, ``dtype`` and ``batch_size``, and convert what it returns
    (:func:`as_data`). A return value of no accepted form raises :class:`~linf_opt.errors.ConfigError`."""
    fn = load_factory(spec, key=key)
    dtype = _dtype(dtype)
    extras = {"seed": seed, "dtype": dtype, "batch_size": batch_size}
    try:
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            extras = {k: v for k, v in extras.items() if k in params}
    except (TypeError, ValueError):   # no signature (a builtin): the configuration only
        extras = {}
    result = fn(config, **extras)
    try:
        return as_data(result, batch_size=batch_size, dtype=dtype)
    except DataError as exc:
        raise ConfigError(f"{key}: {spec!r} returned data of no accepted form: {exc}") from exc
