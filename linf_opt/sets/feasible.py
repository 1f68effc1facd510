"""Feasible sets of well-posed implicit models: one object per condition, one small interface.

Each well-posedness condition of docs/mathematics.md §3 and §7 is a set {A : value(A) ≤ bound}. Training projects onto
a set after every optimizer step; the comparison module iterates over sets. Every set offers

    value(A)              its defining function (μ∞, ‖·‖∞, μ₂, …), batched, in the caller's type
    bound                 the level the value must not exceed
    margin(A)             bound − value(A)  (≥ 0 inside)
    contains(A, tol)      value(A) ≤ bound + tol·max(1, |bound|, scale(A)),  scale = max(‖A‖∞, ‖A‖₁)
    project(A, method)    the Euclidean (Frobenius) projection, where one is implemented
    distance(A)           ‖A − project(A)‖_F
    convex, has_projection, name, params

Every method also takes a weight operator (:mod:`linf_opt.operators`): a
:class:`~linf_opt.operators.dense.DenseOperator` stands for its matrix (``project`` then returns an
operator around the projected matrix, ``project_`` projects its matrix in place), and the ℓ∞ polytope
:class:`MuInfPolytope` takes any operator, e.g. a :class:`~linf_opt.operators.conv.Conv2dOperator`,
through the operator's measures and constraint rows. The other sets are defined on dense matrices and
raise ``TypeError`` for other operators.

and new conditions are added as new classes plus one ``register_set`` call, without touching callers:

    >>> from linf_opt.sets.feasible import get_set
    >>> S = get_set("mu_inf", gamma=0.9)                 # MuInfPolytope(gamma=0.9)
    >>> A = S.project(np.random.randn(50, 50)); S.contains(A)
    True
"""
from __future__ import annotations

import abc
import inspect
import math
from typing import Any, ClassVar

import numpy as np
import torch

from linf_opt._tensor import as_matrix, as_weights, check_finite, check_scalar, check_square, like_input, to_torch
from linf_opt.errors import ConfigError, ShapeError
from linf_opt.operators.base import WeightOperator
from linf_opt.operators.dense import DenseOperator
from linf_opt.operators.measures import (_row_values64, metzler_majorant, mu_2, mu_inf, norm_inf,
                                         optimal_weights, spectral_abscissa)
import linf_opt.sets.sdp as _sdp
from linf_opt.sets.projections import (MU_2_METHODS, MU_INF_METHODS, NORM_INF_METHODS, MuInfProjector, _operator_eta,
                                       _project_operator, _weight_name, project_mu_2, project_mu_inf, project_norm_inf,
                                       project_operator)
from linf_opt.sets.rows import HOST_KERNEL_MAX_ENTRIES, _KERNEL_DTYPES, _NO_VECTOR, _cpu_kernel, _level64

# machine epsilon per floating dtype, looked up after every training step (torch.finfo builds an object)
_EPS = {d: torch.finfo(d).eps for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}

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
        A = self._dense(A)
        t, was_numpy = as_matrix(A, "A")
        return like_input(self.bound - self._value_t(t), was_numpy)

    def contains(self, A, tol: float = 1e-9):
        """Whether value(A) ≤ bound + tol·max(1, |bound|, scale(A)), scale(A) = max(‖A‖∞, ‖A‖₁).

        The relative slack absorbs round-off (the projections land on the boundary): a positive ``tol``
        is raised to 32 ulps of A's dtype (3.8e-6 in float32, which ``1e-9`` would not cover);
        ``tol=0`` tests value ≤ bound exactly. Returns a Python bool for one matrix, a bool
        array/tensor (caller's type) for a batch. Raises ``NonFiniteError`` for NaN/Inf entries.
        """
        A = self._dense(A)
        tol = check_scalar(tol, "tol", low=0.0)
        t, was_numpy = to_torch(A, "A")
        check_square(t, "A")
        t = t.detach()
        if tol > 0 and t.is_floating_point():
            tol = max(tol, 32 * (_EPS.get(t.dtype) or torch.finfo(t.dtype).eps))
        fast = self._value_and_scale_fast(t) if tol > 0 else None  # tol = 0: value() exactly as computed
        if fast is not None:  # one matrix, through a compiled pass: plain floats
            value, scale = fast
            if not math.isfinite(scale):
                check_finite(t, "A")  # NaN/Inf entries raise; an overflowing row is simply not inside
            return value < math.inf and value <= self.bound + tol * max(scale, 1.0, abs(self.bound))
        check_finite(t, "A")
        a = t.abs()
        scale = torch.maximum(a.sum(-1).amax(-1), a.sum(-2).amax(-1))
        slack = tol * torch.clamp(scale, min=max(1.0, abs(self.bound)))
        value = self._value_t(t)
        inside = (value <= self.bound + slack) & (value < math.inf)  # an overflowing row is not inside
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
        if isinstance(A, WeightOperator):
            return self._project_operator(A, method)
        return self._project(A, method)

    def project_(self, A: torch.Tensor, method: str | None = None) -> torch.Tensor:
        """Project the torch tensor A onto the set in place (a parameter after an optimizer step).

        Returns A. The generic route projects out of place and copies back; sets with a faster
        in-place route (the ℓ∞ polytope on CPU) override it. Autograd does not see the change.
        """
        if isinstance(A, WeightOperator):
            self.project_(self._dense(A), method)  # a DenseOperator: its matrix, in place
            return A
        if not isinstance(A, torch.Tensor):
            raise TypeError(f"A: project_ works in place on a torch tensor, got {type(A).__name__} "
                            f"(use project() for numpy arrays)")
        X = torch.as_tensor(self.project(A.detach(), method))
        A.detach().copy_(X)
        return A

    def distance(self, A):
        """Frobenius distance ‖A − project(A)‖_F to the set (0 inside), shape (...), caller's type."""
        A = self._dense(A)
        t, was_numpy = as_matrix(A, "A")
        t = t.detach()
        X = self.project(t)
        return like_input(torch.linalg.matrix_norm(t - X), was_numpy)

    # -- for subclasses ------------------------------------------------------------------------------
    def _dense(self, A):
        """A's matrix for a DenseOperator, A itself when it is no operator; ``TypeError`` for other operators."""
        if isinstance(A, WeightOperator):
            if isinstance(A, DenseOperator):
                return A.as_matrix()
            raise TypeError(f"{type(self).__name__}: the set {self!r} is defined on dense matrices, got the "
                            f"operator {A!r} ({type(A).__name__}); only MuInfPolytope takes other weight "
                            f"operators (pass A.as_matrix() to use the dense matrix)")
        return A

    def _project_operator(self, op: WeightOperator, method: str) -> WeightOperator:
        """``project`` for an operator: the projected matrix of a DenseOperator, as an operator."""
        return op.with_weight(torch.as_tensor(self._project(self._dense(op).detach(), method)))

    def _value_t(self, t: torch.Tensor) -> torch.Tensor:
        return self.value(t)

    def _value_and_scale_fast(self, t: torch.Tensor) -> tuple[float, float] | None:
        """(value, scale) of a single matrix by a faster route than the generic one, or None."""
        return None

    def _project(self, A, method: str):  # pragma: no cover - only reached when has_projection is True
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class _GammaLevelSet(FeasibleSet):
    """A set {A : value(A) ≤ γ} whose level is the constructor's γ (``gamma_min``: its lower limit)."""

    gamma_min: ClassVar[float | None] = None

    def __init__(self, gamma: float):
        self.gamma = check_scalar(gamma, "gamma", low=self.gamma_min)

    @property
    def bound(self) -> float:
        return self.gamma

    @property
    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma}


class MuInfPolytope(FeasibleSet):
    """The ℓ∞ polytope P(γ, η) = {A : μ_{∞,η}(A) ≤ γ} of docs/mathematics.md §3 (convex, unbounded toward −diagonal).

    ``project`` (methods of :func:`~linf_opt.sets.projections.project_mu_inf`) keeps a cached
    :class:`~linf_opt.sets.projections.MuInfProjector`, so repeated training-step projections pay little
    per call; ``warm_start=True`` starts each projection from the previous multipliers (exact either
    way; 10–25% fewer passes in projected-gradient training runs, and not more in any we measured).

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
        """μ_{∞,η}(A) = maxᵢ (aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ); for a weight operator other than a dense one,
        ``op.mu_inf(η)`` (exact, float64, a 0-dim tensor; η reshaped to the operator's state shape)."""
        if isinstance(A, WeightOperator) and not isinstance(A, DenseOperator):
            return A.mu_inf(_operator_eta(A, self.eta))
        return mu_inf(self._dense(A), self.eta)

    def margin(self, A):
        if isinstance(A, WeightOperator) and not isinstance(A, DenseOperator):
            return self.bound - self.value(A)
        return super().margin(A)

    def contains(self, A, tol: float = 1e-9):
        """As :meth:`FeasibleSet.contains`; for a weight operator other than a dense one, with value
        ``op.mu_inf(η)`` and scale max(‖A‖∞, ‖A‖₁) of the operator's matrix (from ``op.abs_sums()`` when
        the operator has it, else from ``op.as_matrix()``). Returns a Python bool."""
        if not isinstance(A, WeightOperator) or isinstance(A, DenseOperator):
            # tol = 0: one compiled pass that certifies mu_inf(A) ≤ γ as computed (the exact test's answer);
            # a matrix it does not certify (outside, within round-off of γ, NaN/Inf) goes to that test.
            # (tol > 0 takes the compiled mu_inf_stats pass of FeasibleSet.contains.)
            if tol == 0 and self._certified_inside(self._dense(A)):
                return True
            return super().contains(A, tol)
        tol = check_scalar(tol, "tol", low=0.0)
        w = A.weight.detach()
        check_finite(w, _weight_name(A))
        if tol > 0:
            tol = max(tol, 32 * (_EPS.get(w.dtype) or torch.finfo(w.dtype).eps))
        value = float(self.value(A))
        if tol == 0:
            return value <= self.bound
        if hasattr(A, "abs_sums"):
            rows, cols = A.abs_sums()
        else:
            M = A.as_matrix().detach().abs()
            rows, cols = M.sum(-1), M.sum(-2)
        scale = max(float(rows.detach().amax()), float(cols.detach().amax())) if rows.numel() else 0.0
        return value < math.inf and value <= self.bound + tol * max(scale, 1.0, abs(self.bound))

    def distance(self, A):
        """‖A − project(A)‖_F; for a weight operator other than a dense one, measured on the weight
        (kernel space for a convolution: ‖K − Π(K)‖_F)."""
        if isinstance(A, WeightOperator) and not isinstance(A, DenseOperator):
            return torch.linalg.vector_norm(A.weight.detach() - self.project(A).weight)
        return super().distance(A)

    def _value_t(self, t: torch.Tensor) -> torch.Tensor:
        # the same formula on an already validated tensor, with the weights converted once per
        # dtype/device: membership is tested after every training step
        w = None if self.eta is None else self._projector._eta64(t)
        return _row_values64(t, w).amax(-1).to(t.dtype)  # exactly mu_inf(t, η)

    def _value_and_scale_fast(self, t: torch.Tensor) -> tuple[float, float] | None:
        # a single matrix (the training-step check): one compiled pass instead of ~20 tensor ops; on an
        # accelerator, for matrices small enough that the copy to the CPU costs less than the launches
        if (t.ndim != 2 or t.dtype not in _KERNEL_DTYPES or (kernel := _cpu_kernel()) is None
                or not (t.is_cpu or t.numel() <= HOST_KERNEL_MAX_ENTRIES)):
            return None
        if not t.is_cpu:
            t = t.cpu()
        eta = _NO_VECTOR if self.eta is None else self.eta
        if eta.shape[0] not in (0, t.shape[-1]):
            return None  # the generic route raises the weights' shape error
        mu, rows, cols = kernel.mu_inf_stats(t.contiguous().numpy(), eta)
        return mu, max(rows, cols)

    def _certified_inside(self, A) -> bool:
        """Whether ``contains(A, tol=0)`` is certainly True, from one compiled pass (no torch operations):
        every row value rᵢ with its bound δᵢ on the difference between any two float64 summation orders
        (``_row_kernel.mu_inf_certified``) is ≤ γ rounded down to A's dtype, so ``mu_inf(A, η)`` reads
        ≤ γ in whatever order it sums. False: not certified (the exact test decides; also for NaN/Inf)."""
        if isinstance(A, np.ndarray) and A.dtype in (np.float32, np.float64):
            A = torch.from_numpy(A)
        if (not isinstance(A, torch.Tensor) or A.ndim != 2 or A.dtype not in _KERNEL_DTYPES
                or A.shape[0] != A.shape[1] or (kernel := _cpu_kernel()) is None
                or not (A.is_cpu or A.numel() <= HOST_KERNEL_MAX_ENTRIES)):
            return False
        eta = _NO_VECTOR if self.eta is None else self.eta
        if eta.shape[0] not in (0, A.shape[-1]):
            return False
        t = A.detach()
        if not t.is_cpu:
            t = t.cpu()
        return bool(kernel.mu_inf_certified(t.contiguous().numpy(), eta, _level64(self.gamma, t.dtype)))

    def _project(self, A, method: str):
        if method == "exact":
            return self._projector(A)
        return project_mu_inf(A, self.gamma, self.eta, method)

    def _project_operator(self, op: WeightOperator, method: str) -> WeightOperator:
        """A new operator around the projected weight: a DenseOperator's matrix as before; any other
        operator through its constraint rows (:func:`~linf_opt.sets.projections.project_operator`: for a
        Conv2dOperator the exact kernel-space projection of every output channel's slice, which gives
        μ∞(A) ≤ γ for every image size and is the projection onto {μ∞(A) ≤ γ} when H ≥ kh and W ≥ kw)."""
        if isinstance(op, DenseOperator):
            return super()._project_operator(op, method)
        return project_operator(op, self.gamma, method, eta=self.eta)

    def project_(self, A: torch.Tensor, method: str | None = None) -> torch.Tensor:
        """Project in place: a tensor A (on CPU the compiled kernel writes into A), a DenseOperator's
        matrix (the same fast path), or any other operator's weight through its constraint rows (a
        contiguous CPU weight is written by the compiled kernel directly, others are copied back).
        Returns A."""
        if isinstance(A, DenseOperator):
            self.project_(A.weight, method)
            return A
        if isinstance(A, WeightOperator):
            if method is None:
                method = self.default_method
            if method not in self.methods:
                raise ValueError(f"method: expected one of {', '.join(repr(m) for m in self.methods)} for "
                                 f"{type(self).__name__}, got {method!r}")
            _project_operator(A, self.gamma, _operator_eta(A, self.eta), method, out=True)
            return A
        if method in (None, "exact") and isinstance(A, torch.Tensor):
            return self._projector.project_(A)  # on CPU: the compiled kernel writes into A
        return super().project_(A, method)


class NormInfBall(_GammaLevelSet):
    """El Ghaoui et al.'s set {A : ‖A‖∞ ≤ γ}, γ ≥ 0: a bounded polytope inside the ℓ∞ polytope.

        >>> NormInfBall(0.5).project(np.array([[2.0, -1.0], [0.25, 0.25]])).tolist()
        [[0.5, 0.0], [0.25, 0.25]]
    """

    name = "norm_inf"
    convex = True
    has_projection = True
    methods = NORM_INF_METHODS
    default_method = "exact"

    gamma_min = 0.0

    def value(self, A):
        """‖A‖∞ = maxᵢ Σⱼ |aᵢⱼ|."""
        return norm_inf(self._dense(A))

    def _project(self, A, method: str):
        as_matrix(A, "A")  # the set holds square matrices (project_norm_inf itself also takes rectangles)
        return project_norm_inf(A, self.gamma, method)


class MonotoneSet(FeasibleSet):
    """The monotone (ℓ2) set {A : μ₂(A) ≤ 1 − m}, i.e. A + Aᵀ ⪯ 2(1 − m)I (a spectrahedron).

    Monotone equilibrium networks need m > 0 (strong monotonicity of I − A); any finite m defines a set.
    Like every registered set it also takes the level itself: ``MonotoneSet(gamma=0.9)`` is μ₂(A) ≤ 0.9,
    i.e. m = 1 − γ (so a loop over :func:`available_sets` can pass one ``gamma``). Giving both ``m`` and
    ``gamma`` is accepted only when they agree (m = 1 − γ up to rounding); ``params`` reports the one given.

        >>> MonotoneSet(0.1).contains(np.array([[0.0, 3.0], [-3.0, 0.0]]))      # μ₂ = 0 ≤ 0.9
        True
        >>> get_set("monotone", gamma=0.9).bound
        0.9
    """

    name = "monotone"
    convex = True
    has_projection = True
    methods = MU_2_METHODS
    default_method = "eig"

    def __init__(self, m: float | None = None, *, gamma: float | None = None):
        if m is None and gamma is None:
            raise ConfigError("set 'monotone': expected gamma (the level, μ₂(A) ≤ γ) or m (the monotonicity "
                              "margin, μ₂(A) ≤ 1 − m); got neither")
        g = None if gamma is None else check_scalar(gamma, "gamma")
        self._by_gamma = m is None
        if m is None:
            self.m = 1.0 - g
            self._gamma = g
            return
        self.m = check_scalar(m, "m")
        self._gamma = 1.0 - self.m
        if g is not None:
            if not math.isclose(self.m, 1.0 - g, rel_tol=1e-12, abs_tol=1e-15):
                raise ConfigError(f"set 'monotone': m and gamma disagree: m = {self.m!r} means μ₂(A) ≤ 1 − m = "
                                  f"{1.0 - self.m!r}, but gamma = {g!r}; give one of them (or m = 1 − gamma)")
            self._gamma = g

    @property
    def gamma(self) -> float:
        """The level γ = 1 − m (as given, when ``gamma`` was passed)."""
        return self._gamma

    @property
    def bound(self) -> float:
        return self._gamma

    @property
    def params(self) -> dict[str, Any]:
        return {"gamma": self._gamma} if self._by_gamma else {"m": self.m}

    def value(self, A):
        """μ₂(A) = λ_max((A + Aᵀ)/2)."""
        return mu_2(self._dense(A))

    def _project(self, A, method: str):
        if method == "cvxpy":  # the SDP, refused (SDPTooLargeError) when estimated above a minute
            return _sdp.project_monotone_sdp(A, self.bound)
        return project_mu_2(A, self.bound, method)


# ---------------------------------------------------------------------------------------------------
# the non-convex sets of the comparison (docs/mathematics.md §7): weighted ℓ∞, Perron–Frobenius, diagonal metric
# ---------------------------------------------------------------------------------------------------
# They have no Euclidean projection (has_projection is False). Each offers ``feasible_point(A)``
# instead: a point of the set near A (A itself when A is inside), so ‖A − feasible_point(A)‖_F is an
# upper bound on the distance to the set. It is a heuristic, not the nearest point.




__all__ += ["WeightedMuInf", "PerronFrobeniusSet", "DiagonalMetricSet"]


def _per_matrix(fn, t: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Apply fn(a: float64 ndarray (n, n)) -> float to each matrix of a batch; shape (...)."""
    flat = t.detach().reshape(-1, t.shape[-1], t.shape[-1]).cpu().double().numpy()
    vals = [fn(a) for a in flat]
    return torch.as_tensor(np.array(vals, dtype=np.float64), dtype=dtype, device=t.device).reshape(t.shape[:-2])


class WeightedMuInf(_GammaLevelSet):
    """Weighted ℓ∞: {A : ∃η > 0 with μ_{∞,η}(A) ≤ γ} = {A : α(M(A)) ≤ γ}, a union of polytopes P(γ, η).

    ``value`` is the spectral abscissa of the Metzler majorant, α(M(A)) = inf_η μ_{∞,η}(A) (docs/mathematics.md §2);
    the set is not convex (for 2×2, α(M) = √(|a₁₂a₂₁|) on a zero diagonal: a hyperbola).
    ``feasible_point(A)`` (heuristic) is the nearer of the Euclidean projections onto the polytopes
    P(γ, η*) and P(γ, 1), η* the Perron weights of M(A) (:func:`~linf_opt.operators.measures.optimal_weights`):
    a point of the set, generally not the nearest one, and never farther than the ℓ∞ polytope's
    projection. Training under this set projects onto P(γ, η*) with η* re-estimated once per epoch.

        >>> WeightedMuInf(0.9).value(np.array([[0.0, 10.0], [0.01, 0.0]]))     # √(10·0.01) ≈ 0.316
    """

    name = "weighted_mu_inf"
    convex = False
    has_projection = False


    def value(self, A):
        """α(M(A)) = max Re λ(M(A)), M(A) the Metzler majorant (diagonal aᵢᵢ, off-diagonal |aᵢⱼ|)."""
        A = self._dense(A)
        as_matrix(A, "A")
        return spectral_abscissa(metzler_majorant(A))

    def weights(self, A):
        """The (near-)optimal weights η* and μ_{∞,η*}(A) (see :func:`~linf_opt.operators.measures.optimal_weights`)."""
        return optimal_weights(self._dense(A))

    def feasible_point(self, A):
        """A itself when inside, else the nearer of Π_{P(γ, η*(A))}(A) and Π_{P(γ, 1)}(A) (heuristic)."""
        if isinstance(A, WeightOperator):
            return A.with_weight(torch.as_tensor(self.feasible_point(self._dense(A).detach())))
        t, was_numpy = as_matrix(A, "A")
        t = t.detach()
        eta, _ = optimal_weights(t.double())
        X1 = torch.as_tensor(project_mu_inf(t.double(), self.gamma, eta)).to(t.dtype)
        X2 = torch.as_tensor(project_mu_inf(t, self.gamma))
        closer = torch.linalg.matrix_norm(t - X1) <= torch.linalg.matrix_norm(t - X2)
        X = torch.where(closer.unsqueeze(-1).unsqueeze(-1), X1, X2)
        inside = torch.as_tensor(self.contains(t))
        return like_input(torch.where(inside.unsqueeze(-1).unsqueeze(-1), t, X), was_numpy)


class PerronFrobeniusSet(_GammaLevelSet):
    """The Perron–Frobenius set {A : ρ(|A|) ≤ γ}, γ ≥ 0 (non-convex; inside the weighted ℓ∞ set).

    ρ(|A|) ≥ α(M(A)), so this set lies inside :class:`WeightedMuInf` with the same γ, and it holds the
    norm ball (ρ(|A|) ≤ ‖A‖∞). Unlike the ℓ∞ measures it charges |aᵢᵢ|: negative diagonals cost.
    ``feasible_point(A)`` scales A by γ/ρ(|A|) when outside (heuristic).

        >>> PerronFrobeniusSet(0.9).value(np.array([[-10.0, 9.9], [0.0, 0.0]]))   # 10: outside
    """

    name = "perron_frobenius"
    convex = False
    has_projection = False

    gamma_min = 0.0

    def value(self, A):
        """ρ(|A|), the Perron root of the entrywise absolute value (= α(|A|) for a non-negative matrix)."""
        t, was_numpy = as_matrix(self._dense(A), "A")
        return like_input(torch.as_tensor(spectral_abscissa(t.abs())).clamp(min=0), was_numpy)

    def feasible_point(self, A):
        """A when inside, else (γ/ρ(|A|))·A, a point on the boundary (heuristic, caller's type)."""
        if isinstance(A, WeightOperator):
            return A.with_weight(torch.as_tensor(self.feasible_point(self._dense(A).detach())))
        t, was_numpy = as_matrix(A, "A")
        t = t.detach()
        rho = torch.as_tensor(self.value(t))
        inside = torch.as_tensor(self.contains(t))
        factor = torch.where(inside, 1.0, self.gamma / rho.clamp(min=torch.finfo(t.dtype).tiny))
        return like_input(t * factor.unsqueeze(-1).unsqueeze(-1), was_numpy)


class DiagonalMetricSet(FeasibleSet):
    """Diagonal-metric ℓ2 set: {A : ∃ diagonal Λ ≻ 0 with ΛA + AᵀΛ ⪯ 2γΛ} (Lipschitz-bounded
    equilibrium networks use γ = 1, strict). Non-convex in A (convex for a fixed Λ).

    ``value(A)`` is ν(A) = inf over diagonal D ≻ 0 of μ₂(D A D⁻¹), the least level c for which some
    diagonal Λ = D² gives ΛA + AᵀΛ ⪯ 2cΛ (:func:`~linf_opt.sets.sdp.diagonal_metric_value`: bisection with
    one margin SDP per step to relative accuracy ``rtol``; the value returned is certified by a Λ
    recomputed in float64; closed form for n = 2). It contains the monotone set μ₂ ≤ γ (Λ = I) and the
    weighted ℓ∞ set α(M(A)) ≤ γ (Λ from the Perron vectors of M(A)).

    ``contains(A, tol)`` asks for a verified certificate at level γ + slack, slack = tol·max(1, |γ|,
    scale(A)) as in the other sets' tolerance (so boundary points of the monotone and weighted sets,
    e.g. their projections, are inside): cheap certificates first (Λ = I, Perron, 2×2 closed form),
    the spectral obstruction α(A) ≥ level, and only then one SDP. ``certificate(A)`` returns the
    :class:`~linf_opt.sets.sdp.DiagonalMetricCertificate` at level γ (strict: a returned Λ has level
    < γ − eps/2) and keeps it in ``last_certificate``. SDPs estimated above ``max_seconds`` (default
    ``sdp.DEFAULT_MAX_SECONDS``) raise :class:`~linf_opt.sets.sdp.SDPTooLargeError` unless ``force=True``;
    failed solves raise :class:`~linf_opt.errors.ProjectionError` with the solver status.

        >>> S = DiagonalMetricSet(0.9); S.contains(np.array([[0.0, 10.0], [0.01, 0.0]]))
        True
    """

    name = "diagonal_metric"
    convex = False
    has_projection = False

    def __init__(self, gamma: float = 1.0, eps: float = 1e-6, rtol: float = 1e-5, force: bool = False,
                 max_seconds: float | None = None):
        self.gamma = check_scalar(gamma, "gamma")
        self.eps = check_scalar(eps, "eps", low=0.0)
        self.rtol = check_scalar(rtol, "rtol", low=0.0, low_open=True)
        self.force = bool(force)
        self.max_seconds = None if max_seconds is None else check_scalar(max_seconds, "max_seconds", low=0.0)
        self.last_certificate: _sdp.DiagonalMetricCertificate | None = None

    @property
    def bound(self) -> float:
        return self.gamma

    @property
    def params(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "eps": self.eps, "rtol": self.rtol, "force": self.force,
                "max_seconds": self.max_seconds}

    def _sdp_args(self) -> dict[str, Any]:
        return {"force": self.force, "max_seconds": self.max_seconds}

    def value(self, A):
        """ν(A) = inf_D μ₂(D A D⁻¹) over positive diagonal D (certified to relative accuracy ``rtol``)."""
        t, was_numpy = as_matrix(self._dense(A), "A")
        v = _per_matrix(lambda a: _sdp.diagonal_metric_value(a, rtol=self.rtol, **self._sdp_args())[0], t)
        return like_input(v.to(t.dtype) if t.is_floating_point() else v, was_numpy)

    def certificate(self, A) -> _sdp.DiagonalMetricCertificate:
        """The certificate for one matrix at level γ (see :func:`~linf_opt.sets.sdp.diagonal_metric_certificate`)."""
        cert = _sdp.diagonal_metric_certificate(self._dense(A), self.gamma, eps=self.eps, **self._sdp_args())
        self.last_certificate = cert
        return cert

    def contains(self, A, tol: float = 1e-9):
        """Whether a verified Λ exists at level γ + tol·max(1, |γ|, scale(A)); bool or bool array/tensor."""
        tol = check_scalar(tol, "tol", low=0.0)
        t, was_numpy = as_matrix(self._dense(A), "A")
        if t.is_floating_point():
            tol = max(tol, 32 * torch.finfo(t.dtype).eps)

        def one(a: np.ndarray) -> float:
            slack = tol * max(np.abs(a).sum(1).max(), np.abs(a).sum(0).max(), 1.0, abs(self.gamma))
            # accepts a Λ with level < γ + 1.5·slack; the SDP, if needed, aims at γ + slack
            cert = _sdp.diagonal_metric_certificate(a, self.gamma + 2 * slack, eps=slack, **self._sdp_args())
            self.last_certificate = cert
            return float(cert.feasible)

        inside = _per_matrix(one, t) > 0.5
        if inside.ndim == 0:
            return bool(inside)
        return like_input(inside, was_numpy)

    def feasible_point(self, A):
        """The nearer of the monotone projection (Λ = I) and the weighted-ℓ∞ point (Λ from Perron vectors).

        Both sets lie inside this one, so the result is in the set and ‖A − result‖_F bounds the distance
        from above (heuristic; A itself when A is inside). When the membership SDP is refused for its
        size, only the cheap certificates decide whether A is inside.
        """
        if isinstance(A, WeightOperator):
            return A.with_weight(torch.as_tensor(self.feasible_point(self._dense(A).detach())))
        t, was_numpy = as_matrix(A, "A")
        t = t.detach()
        X1 = torch.as_tensor(project_mu_2(t, self.gamma))
        X2 = torch.as_tensor(WeightedMuInf(self.gamma).feasible_point(t))
        d1, d2 = torch.linalg.matrix_norm(t - X1), torch.linalg.matrix_norm(t - X2)
        X = torch.where((d1 <= d2).unsqueeze(-1).unsqueeze(-1), X1, X2)
        try:
            inside = torch.as_tensor(self.contains(t))
        except _sdp.SDPTooLargeError:
            inside = _per_matrix(lambda a: float(_sdp.diagonal_metric_certificate(
                a, self.gamma, eps=self.eps, use_sdp=False).feasible), t) > 0.5
        return like_input(torch.where(inside.unsqueeze(-1).unsqueeze(-1), t, X), was_numpy)


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
register_set("weighted_mu_inf", WeightedMuInf)
register_set("perron_frobenius", PerronFrobeniusSet)
register_set("diagonal_metric", DiagonalMetricSet)
