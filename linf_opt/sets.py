"""Feasible sets of well-posed implicit models: one object per condition, one small interface.

Each well-posedness condition of SPEC §3 and §7 is a set {A : value(A) ≤ bound}. Training projects onto
a set after every optimizer step; the comparison module iterates over sets. Every set offers

    value(A)              its defining function (μ∞, ‖·‖∞, μ₂, …), batched, in the caller's type
    bound                 the level the value must not exceed
    margin(A)             bound − value(A)  (≥ 0 inside)
    contains(A, tol)      value(A) ≤ bound + tol·max(1, |bound|, scale(A)),  scale = max(‖A‖∞, ‖A‖₁)
    project(A, method)    the Euclidean (Frobenius) projection, where one is implemented
    distance(A)           ‖A − project(A)‖_F
    convex, has_projection, name, params

and new conditions are added as new classes plus one ``register_set`` call, without touching callers:

    >>> from linf_opt.sets import get_set
    >>> S = get_set("mu_inf", gamma=0.9)                 # MuInfPolytope(gamma=0.9)
    >>> A = S.project(np.random.randn(50, 50)); S.contains(A)
    True
"""
from __future__ import annotations

import abc
import inspect
from typing import Any, ClassVar

import numpy as np
import torch

from ._tensor import as_matrix, as_weights, check_scalar, like_input, to_torch
from .errors import ConfigError, ShapeError
from .measures import mu_2, mu_inf, norm_inf
from .projections import (MU_2_METHODS, MU_INF_METHODS, NORM_INF_METHODS, MuInfProjector, project_mu_2,
                          project_mu_inf, project_norm_inf)

__all__ = ["FeasibleSet", "MuInfPolytope", "NormInfBall", "MonotoneSet", "get_set", "register_set",
           "available_sets"]


class FeasibleSet(abc.ABC):
    """A set {A ∈ ℝ^{n×n} : value(A) ≤ bound} of matrices that make the implicit model well-posed.

    Subclasses set ``name``, ``convex``, ``has_projection`` (and ``methods``, ``default_method`` when
    they project), implement :meth:`value` and :attr:`bound`, and :meth:`_project` if they can.
    """

    name: ClassVar[str] = "feasible_set"
    convex: ClassVar[bool] = True
    has_projection: ClassVar[bool] = False
    methods: ClassVar[tuple[str, ...]] = ()
    default_method: ClassVar[str | None] = None

    @property
    @abc.abstractmethod
    def bound(self) -> float:
        """The level: A is in the set when value(A) ≤ bound."""

    @abc.abstractmethod
    def value(self, A):
        """The defining function, shape (...) for A of shape (..., n, n), in the caller's type."""

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments (for ``repr``, logs and ``get_set(name, **params)``)."""
        return {}

    def margin(self, A):
        """bound − value(A): non-negative inside the set, the distance of the level to the boundary."""
        t, was_numpy = as_matrix(A, "A")
        return like_input(self.bound - self._value_t(t), was_numpy)

    def contains(self, A, tol: float = 1e-9):
        """Whether value(A) ≤ bound + tol·max(1, |bound|, scale(A)), scale(A) = max(‖A‖∞, ‖A‖₁).

        The relative slack absorbs round-off (the projections land on the boundary): a positive ``tol``
        is raised to 32 ulps of A's dtype (3.8e-6 in float32, which ``1e-9`` would not cover);
        ``tol=0`` tests value ≤ bound exactly. Returns a Python bool for one matrix, a bool
        array/tensor (caller's type) for a batch.
        """
        tol = check_scalar(tol, "tol", low=0.0)
        t, was_numpy = as_matrix(A, "A")
        a = t.detach().abs()
        scale = torch.maximum(a.sum(-1).amax(-1), a.sum(-2).amax(-1))
        if tol > 0 and t.is_floating_point():
            tol = max(tol, 32 * torch.finfo(t.dtype).eps)
        slack = tol * torch.clamp(scale, min=max(1.0, abs(self.bound)))
        inside = self._value_t(t.detach()) <= self.bound + slack
        if inside.ndim == 0:
            return bool(inside)
        return like_input(inside, was_numpy)

    def project(self, A, method: str | None = None):
        """Euclidean projection onto the set: argmin_X ‖X − A‖_F s.t. value(X) ≤ bound (caller's type).

        ``method`` picks a backend among ``self.methods`` (default ``self.default_method``). Raises
        ``NotImplementedError`` for a set without a projection (``has_projection`` is False).
        """
        if not self.has_projection:
            raise NotImplementedError(f"{self!r} has no Euclidean projection (has_projection is False); "
                                      f"use a reparametrization or a projection-free method for this set")
        if method is None:
            method = self.default_method
        if method not in self.methods:
            raise ValueError(f"method: expected one of {', '.join(repr(m) for m in self.methods)} for "
                             f"{type(self).__name__}, got {method!r}")
        return self._project(A, method)

    def distance(self, A):
        """Frobenius distance ‖A − project(A)‖_F to the set (0 inside), shape (...), caller's type."""
        t, was_numpy = as_matrix(A, "A")
        t = t.detach()
        X = self.project(t)
        return like_input(torch.linalg.matrix_norm(t - X), was_numpy)

    # -- for subclasses ------------------------------------------------------------------------------
    def _value_t(self, t: torch.Tensor) -> torch.Tensor:
        return self.value(t)

    def _project(self, A, method: str):  # pragma: no cover - only reached when has_projection is True
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class MuInfPolytope(FeasibleSet):
    """The ℓ∞ polytope P(γ, η) = {A : μ_{∞,η}(A) ≤ γ} of SPEC §3 (convex, unbounded toward −diagonal).

    ``project`` (methods of :func:`~linf_opt.projections.project_mu_inf`) keeps a cached
    :class:`~linf_opt.projections.MuInfProjector`, so repeated training-step projections pay little
    per call; ``warm_start=True`` passes the previous multipliers on to it.

        >>> P = MuInfPolytope(0.9, eta=[1.0, 0.5]); P.contains(np.array([[0.5, 0.2], [0.1, -1.0]]))
        True
    """

    name = "mu_inf"
    convex = True
    has_projection = True
    methods = MU_INF_METHODS
    default_method = "exact"

    def __init__(self, gamma: float, eta=None, warm_start: bool = False):
        self.gamma = check_scalar(gamma, "gamma")
        if eta is not None:
            e, _ = to_torch(eta, "eta", dtype=torch.float64)
            if e.ndim != 1:
                raise ShapeError(f"eta: expected positive weights of shape (n,), got shape {tuple(e.shape)}")
            eta = as_weights(e, e.shape[0], e).detach().cpu().numpy()
        self.eta = eta
        self.warm_start = bool(warm_start)
        self._projector = MuInfProjector(self.gamma, eta, method="exact", warm_start=self.warm_start)

    @property
    def bound(self) -> float:
        return self.gamma

    @property
    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "eta": None if self.eta is None else self.eta.tolist()}

    def value(self, A):
        """μ_{∞,η}(A) = maxᵢ (aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ)."""
        return mu_inf(A, self.eta)

    def _project(self, A, method: str):
        if method == "exact":
            return self._projector(A)
        return project_mu_inf(A, self.gamma, self.eta, method)


class NormInfBall(FeasibleSet):
    """El Ghaoui et al.'s set {A : ‖A‖∞ ≤ γ}, γ ≥ 0: a bounded polytope inside the ℓ∞ polytope.

        >>> NormInfBall(0.5).project(np.array([[2.0, -1.0], [0.25, 0.25]])).tolist()
        [[0.5, 0.0], [0.25, 0.25]]
    """

    name = "norm_inf"
    convex = True
    has_projection = True
    methods = NORM_INF_METHODS
    default_method = "exact"

    def __init__(self, gamma: float):
        self.gamma = check_scalar(gamma, "gamma", low=0.0)

    @property
    def bound(self) -> float:
        return self.gamma

    @property
    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma}

    def value(self, A):
        """‖A‖∞ = maxᵢ Σⱼ |aᵢⱼ|."""
        return norm_inf(A)

    def _project(self, A, method: str):
        as_matrix(A, "A")  # the set holds square matrices (project_norm_inf itself also takes rectangles)
        return project_norm_inf(A, self.gamma, method)


class MonotoneSet(FeasibleSet):
    """The monotone (ℓ2) set {A : μ₂(A) ≤ 1 − m}, i.e. A + Aᵀ ⪯ 2(1 − m)I (a spectrahedron).

    Monotone equilibrium networks need m > 0 (strong monotonicity of I − A); any finite m defines a set.

        >>> MonotoneSet(0.1).contains(np.array([[0.0, 3.0], [-3.0, 0.0]]))      # μ₂ = 0 ≤ 0.9
        True
    """

    name = "monotone"
    convex = True
    has_projection = True
    methods = MU_2_METHODS
    default_method = "eig"

    def __init__(self, m: float):
        self.m = check_scalar(m, "m")

    @property
    def bound(self) -> float:
        return 1.0 - self.m

    @property
    def params(self) -> dict[str, Any]:
        return {"m": self.m}

    def value(self, A):
        """μ₂(A) = λ_max((A + Aᵀ)/2)."""
        return mu_2(A)

    def _project(self, A, method: str):
        return project_mu_2(A, self.bound, method)


# ---------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[FeasibleSet]] = {}


def register_set(name: str, cls: type[FeasibleSet] | None = None, *, overwrite: bool = False):
    """Register a :class:`FeasibleSet` subclass under ``name`` for :func:`get_set`.

    Usable as a call, ``register_set("perron_frobenius", PerronFrobeniusSet)``, or as a class decorator,
    ``@register_set("perron_frobenius")``. Re-registering a taken name needs ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def _register(c):
        if not (isinstance(c, type) and issubclass(c, FeasibleSet)):
            raise TypeError(f"cls: expected a FeasibleSet subclass, got {c!r}")
        if name in _REGISTRY and _REGISTRY[name] is not c and not overwrite:
            raise ValueError(f"name: {name!r} is already registered to {_REGISTRY[name].__name__} "
                             f"(pass overwrite=True to replace it)")
        _REGISTRY[name] = c
        return c

    return _register if cls is None else _register(cls)


def available_sets() -> tuple[str, ...]:
    """The registered set names, sorted."""
    return tuple(sorted(_REGISTRY))


def get_set(name: str, **params) -> FeasibleSet:
    """Build the registered set ``name`` from keyword parameters, e.g. ``get_set("mu_inf", gamma=0.9)``.

    Unknown names and unknown or missing parameters raise :class:`~linf_opt.errors.ConfigError`
    (a ``ValueError``) that lists the valid choices.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"set: unknown feasible set {name!r}; valid names: {', '.join(available_sets())}")
    cls = _REGISTRY[name]
    sig = inspect.signature(cls.__init__)
    valid = [p for p in sig.parameters if p != "self"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"set {name!r}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; valid parameters: {', '.join(valid)}")
    required = [p.name for p in sig.parameters.values()
                if p.name != "self" and p.default is inspect.Parameter.empty and p.name not in params]
    if required:
        raise ConfigError(f"set {name!r}: missing parameter{'s' if len(required) > 1 else ''} {', '.join(required)}")
    return cls(**params)


register_set("mu_inf", MuInfPolytope)
register_set("norm_inf", NormInfBall)
register_set("monotone", MonotoneSet)
