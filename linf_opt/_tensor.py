"""The numpy/torch boundary and argument validation shared by every module.

Public functions accept numpy arrays, torch tensors, or nested Python lists; inside, one torch
implementation serves all of them, and the result goes back in the caller's type
(`to_torch` → compute → `like_input`).
"""
from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch

from linf_opt.errors import NonFiniteError, ShapeError


def to_torch(x: Any, name: str, *, dtype: torch.dtype | None = None,
             device: torch.device | str | None = None) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)``; numpy and list inputs become float64 tensors (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        t = x
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        if device is not None:
            t = t.to(device)
        return t, False
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if dtype is not None:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    return t, True


def like_input(t: torch.Tensor, was_numpy: bool):
    """Return ``t`` in the caller's type: a numpy array (a Python float for 0-d) or the tensor itself."""
    if not was_numpy:
        return t
    arr = t.detach().cpu().numpy()
    if arr.ndim == 0:
        return float(arr)
    return arr


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise :class:`NonFiniteError` naming ``name`` if ``t`` holds NaN or ±Inf."""
    if not t.is_floating_point() or t.numel() == 0:
        return
    # One reduction is far cheaper than an elementwise isfinite pass; a finite sum proves every entry
    # finite (NaN and ±Inf propagate), and only an overflowing or non-finite sum needs the full check.
    if bool(torch.isfinite(t.sum())):
        return
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise NonFiniteError(f"{name}: expected finite values, found {bad} NaN/Inf entr{'y' if bad == 1 else 'ies'}")


_CHECKED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()
"""module → the (data_ptr, version) of its parameters at their last passing check."""


def check_parameters_finite(module: torch.nn.Module, where: str, error: type[Exception] = NonFiniteError,
                            consequence: str = "") -> None:
    """Raise ``error`` naming each parameter of ``module`` that holds NaN or ±Inf (``where`` starts the
    message, ``consequence`` ends it). One sum per parameter (in float64) and one host synchronisation
    in all: a finite total proves every entry finite; only a non-finite total is examined further.
    The one check of the forward pass, the Lipschitz bound, the certificates and the trainer."""
    params = [(n, p) for n, p in module.named_parameters() if p.is_floating_point() and p.numel()]
    if not params:
        return
    # parameters unchanged since their last passing check (same storage, same in-place version
    # counter) need no new reduction: the trainer checks after every optimizer step, and the forward
    # pass that follows finds nothing changed
    versions = tuple((p.data_ptr(), p._version) for _, p in params)
    if _CHECKED.get(module) == versions:
        return
    with torch.no_grad():
        sums = torch.stack([p.detach().sum().to(torch.float64) for _, p in params])
        if bool(torch.isfinite(sums.sum())):
            _CHECKED[module] = versions
            return
        bad = [n for (n, p), s in zip(params, sums) if not bool(torch.isfinite(s)) and
               not bool(torch.isfinite(p.detach()).all())]
    if bad:
        raise error(f"{where}: parameter{'' if len(bad) == 1 else 's'} {', '.join(bad)} of the network "
                    f"hold{'s' if len(bad) == 1 else ''} NaN or ±Inf{consequence}")


def check_square(t: torch.Tensor, name: str) -> None:
    """Raise :class:`ShapeError` unless ``t`` is a (batch of) square matrix, shape (..., n, n)."""
    if t.ndim < 2 or t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"{name}: expected a square matrix of shape (..., n, n), got shape {tuple(t.shape)}")
    if t.shape[-1] == 0:
        raise ShapeError(f"{name}: expected a square matrix with n ≥ 1, got the empty shape {tuple(t.shape)}")


def as_matrix(x: Any, name: str, **kw) -> tuple[torch.Tensor, bool]:
    """Convert ``x`` with :func:`to_torch` and check that it is a finite (batch of) square matrix."""
    t, was_numpy = to_torch(x, name, **kw)
    check_square(t, name)
    check_finite(t, name)
    return t, was_numpy


def as_weights(eta: Any, n: int, like: torch.Tensor, name: str = "eta") -> torch.Tensor | None:
    """Validate positive weights η of length n (or a batch (..., n)); ``None`` means η = 1."""
    if eta is None:
        return None
    e, _ = to_torch(eta, name, dtype=like.dtype, device=like.device)
    if e.ndim == 0 or e.shape[-1] != n:
        raise ShapeError(f"{name}: expected positive weights of shape ({n},), got shape {tuple(e.shape)}")
    check_finite(e, name)
    if not bool((e > 0).all()):
        raise ValueError(f"{name}: expected strictly positive weights, got minimum {float(e.min()):.3g}")
    return e


def check_scalar(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, what: str = "a value") -> float:
    """Return ``float(value)`` after checking it is finite and in the given interval (naming ``name``;
    ``what`` describes the quantity in messages, e.g. "an ℓ∞ radius")."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected {what} (a real number), got {value!r}") from exc
    if not math.isfinite(v):
        raise NonFiniteError(f"{name}: expected {what} that is finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name}: expected {what} {'>' if low_open else '≥'} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name}: expected {what} {'<' if high_open else '≤'} {high}, got {v}")
    return v
