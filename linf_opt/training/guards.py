"""Checks that keep a training run honest: what a resume may change, what a checkpoint must hold, finite
parameters, membership reported without scale-relative slack, and the count of unconverged solves.

- :func:`check_resume_problem`: a resumed run continues *the same problem*. Only the keys of
  :data:`RESUMABLE_KEYS` may differ from the checkpoint's stored problem (the total number of epochs,
  where the data live, the device, the progress cadence, the divergence threshold): none of them changes
  what is computed.
  Any other change (learning rate, γ, hidden size, seed, ...) is refused, listing each key old → new,
  because silently ignoring it or applying it mid-run both misreport what was trained.
- :func:`check_checkpoint` / :func:`check_loaded_model`: a checkpoint has every entry the trainer
  needs, and the model it holds is finite and satisfies the run's constraint (μ∞(A) ≤ γ for projected
  and reparametrized runs); otherwise :class:`~linf_opt.errors.DataError` /
  :class:`~linf_opt.errors.InvariantError` naming the file.
- :func:`check_parameters_finite`: one reduction per parameter and one host synchronisation in all.
- :func:`membership`: the set's value computed in float64 and compared with ``bound + tol·max(1, |bound|)``
  (the per-step invariant check scales its slack with ‖A‖ to absorb the projection's round-off; the
  reported ``in_set`` does not, so a huge matrix cannot pass on slack).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from linf_opt._tensor import check_parameters_finite as _check_parameters_finite
from linf_opt.errors import ConfigError, DataError, InvariantError, NonFiniteError

__all__ = ["RESUMABLE_KEYS", "CHECKPOINT_ENTRIES", "changed_keys", "check_resume_problem", "check_checkpoint",
           "check_loaded_model", "check_model", "check_parameters_finite", "membership", "NonFiniteParameterError"]

RESUMABLE_KEYS = ("training.epochs", "data.data_dir", "device", "training.log_every", "training.max_loss_growth")
"""Problem keys that may differ between a checkpoint and the problem that resumes it."""

CHECKPOINT_ENTRIES = ("epoch", "model", "optimizer", "shuffle_rng", "torch_rng", "history")
"""Entries every trainer checkpoint holds."""


class NonFiniteParameterError(NonFiniteError):
    """A parameter became NaN or ±Inf (e.g. an optimizer step overflowed); the last checkpoint is kept."""


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_keys(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every key whose value differs (missing: None)."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if isinstance(va, tuple):
            va = list(va)
        if isinstance(vb, tuple):
            vb = list(vb)
        if va != vb:
            out.append((key, None if va is missing else va, None if vb is missing else vb))
    return out


def check_resume_problem(stored: dict | None, problem, where: str) -> None:
    """Refuse to resume ``where`` (a checkpoint path) with a problem that differs from the stored one in
    a key outside :data:`RESUMABLE_KEYS`; the message lists each such key as old → new."""
    if stored is None:
        return
    from linf_opt.training.config import load_problem, problem_to_dict
    try:
        stored = problem_to_dict(load_problem(stored))    # defaults of keys added since it was written
    except (ConfigError, TypeError):
        pass                                               # compare the raw tree
    diff = [d for d in changed_keys(stored, problem_to_dict(problem)) if d[0] not in RESUMABLE_KEYS]
    if diff:
        changes = "; ".join(f"{k}: {_show(o)} → {_show(n)}" for k, o, n in diff)
        raise ConfigError(f"cannot resume {where}: the problem differs from the one it was trained with in "
                          f"{len(diff)} key{'' if len(diff) == 1 else 's'}: {changes}. Only "
                          f"{', '.join(RESUMABLE_KEYS)} may change on resume; train the new problem in another "
                          f"run directory (--out) or start over (--overwrite)")


def _show(v: Any) -> str:
    return "(absent)" if v is None else repr(v)


def check_checkpoint(state: Any, where: str) -> None:
    """Raise :class:`DataError` unless ``state`` is a trainer checkpoint with every required entry."""
    if not isinstance(state, dict):
        raise DataError(f"checkpoint {where}: expected a dictionary of trainer state, got {type(state).__name__}")
    missing = [k for k in CHECKPOINT_ENTRIES if k not in state]
    if missing:
        raise DataError(f"checkpoint {where}: missing entr{'y' if len(missing) == 1 else 'ies'} "
                        f"{', '.join(map(repr, missing))}: not a complete linf_opt training checkpoint")
    if not isinstance(state["model"], dict):
        raise DataError(f"checkpoint {where}: entry 'model' is a {type(state['model']).__name__}, not a state dict")


def check_parameters_finite(module: torch.nn.Module, where: str, error=NonFiniteParameterError) -> None:
    """Raise ``error`` naming each parameter of ``module`` that holds NaN or ±Inf (``where`` says when);
    :func:`linf_opt._tensor.check_parameters_finite`, the check the models and certificates use too."""
    _check_parameters_finite(module, where, error)


def _as_float64(A):
    if isinstance(A, torch.Tensor):
        return A.detach().to(torch.float64)
    try:
        return A.with_weight(A.weight.detach().to(torch.float64))
    except Exception:   # an operator that cannot change dtype: evaluate as it is
        return A


def membership(S, A, tol: float, dtype: torch.dtype | None = None) -> tuple[float, bool]:
    """(value, in_set) of the feasible set ``S`` at ``A`` (a matrix or an operator), honestly.

    The value is computed in float64 (exact enough for float32-stored entries of any size), and
    ``in_set`` is value ≤ bound + max(tol, 32·eps(dtype))·max(1, |bound|): the slack does not grow with
    the matrix, unlike :meth:`~linf_opt.sets.feasible.FeasibleSet.contains`, whose slack is relative to ‖A‖.
    """
    try:
        value = float(torch.as_tensor(S.value(_as_float64(A))))
    except Exception:
        value = float(torch.as_tensor(S.value(A)))
    eps = torch.finfo(dtype).eps if dtype is not None and dtype.is_floating_point else 0.0
    slack = max(tol, 32 * eps) * max(1.0, abs(float(S.bound)))
    return value, bool(math.isfinite(value) and value <= float(S.bound) + slack)


def check_loaded_model(trainer, where: str) -> None:
    """The model just loaded from ``where`` is finite and, for an enforced constraint, inside the set."""
    check_model(trainer.net, trainer.problem, trainer.set, where, "resume from it")


def check_model(net, problem, S, where: str, action: str = "use it") -> None:
    """``net`` (loaded from ``where``) is finite and, for an enforced constraint, its A is inside the
    feasible set ``S`` (None: no set): else :class:`DataError` / :class:`InvariantError` ("Refusing to
    ``action``")."""
    check_parameters_finite(net, f"checkpoint {where}", error=DataError)
    if S is None or problem.constraint.enforce == "free":
        return
    A = net.A if hasattr(net, "A") and isinstance(net.A, torch.Tensor) else net.operator
    A = A.detach() if isinstance(A, torch.Tensor) else A
    value, inside = membership(S, A, problem.constraint.check_tol, net.dtype)
    if not inside:
        raise InvariantError(f"checkpoint {where}: its A violates the run's constraint {S!r}: value "
                             f"{value:.6g} > bound {float(S.bound):.6g} (check_tol "
                             f"{problem.constraint.check_tol}); the file was edited or written by another "
                             f"problem. Refusing to {action}")
