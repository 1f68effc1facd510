"""What every implicit model is: an injection, a weight operator, a read-out (docs/mathematics.md §1, §10).

    x = Φ(A x + (B u + b)),   y = readout(x, u)

An :class:`ImplicitModel` is a ``torch.nn.Module`` that owns the solver settings and computes the
equilibrium through its :attr:`~ImplicitModel.operator` (a :class:`~linf_opt.operators.base.WeightOperator`).
Subclasses (the dense :class:`~linf_opt.models.implicit_network.ImplicitNetwork`, the convolutional
:class:`~linf_opt.models.conv_network.ConvImplicitNetwork`) say what A, the injection and the read-out
are. Bounds, certificates, attacks and the trainer use only the interface below, so they work for any
model:

=========================  ==========================================================================
``operator``                A as a weight operator (differentiable in its parameter)
``state_shape``             shape of one hidden state x
``input_shape``             shape of one input u (``in_features`` = its size)
``injection(u)``            B u + b in the state's shape (u: (batch, *input_shape) or (batch, in_features))
``injection_bounds(L, H)``  exact elementwise bounds of B u + b over the box L ≤ u ≤ H
``injection_norm(η)``       ‖diag(η)⁻¹ B‖∞, the ℓ∞ operator norm of the linear part of the injection
``readout(X, U)``           y = C x + D u + c
``readout_matrix()``        C as a (q, n) matrix over the row-major flattened state (differentiable)
``D``                       the feed-through matrix (q, in_features), or None
``eta``                     weights η of the measure (state shape), or None
=========================  ==========================================================================

    >>> x, stats = net.equilibrium(u)        # (batch, *state_shape), SolverStats
    >>> y = net(u)                           # (batch, q)
"""
from __future__ import annotations

import abc
import contextlib
import math

import torch
from torch import nn

from linf_opt._tensor import check_finite, check_parameters_finite, check_scalar
from linf_opt.equilibrium.activations import Activation, get_activation
from linf_opt.equilibrium.implicit import EquilibriumRecord, equilibrium
from linf_opt.equilibrium.solvers import SolverStats, check_step, get_solver
from linf_opt.errors import NonFiniteError, ShapeError
from linf_opt.operators.base import WeightOperator

__all__ = ["ImplicitModel", "SOLVER_OPTIONS"]

SOLVER_OPTIONS = ("method", "alpha", "tol", "rtol", "max_iter", "strict", "backward", "backward_tol",
                  "check_every")
"""The solver settings a model carries (see :func:`~linf_opt.equilibrium.implicit.equilibrium`)."""


class ImplicitModel(nn.Module, abc.ABC):
    """Base of implicit models x = Φ(Ax + Bu + b), y = readout(x, u); see the module docstring.

    Attributes ``last_forward_stats`` / ``last_backward_stats`` hold the statistics of the most recent
    solves (diagnostics only; the solver never changes parameters or buffers).
    """

    input_shape: tuple[int, ...]
    state_shape: tuple[int, ...]
    out_features: int

    def _setup_solver(self, *, activation, negative_slope: float, gamma: float, method: str,
                      alpha, tol, rtol, max_iter: int, strict: bool, backward: str, backward_tol,
                      check_every) -> None:
        self.gamma = check_scalar(gamma, "gamma", high=1.0, high_open=True)
        self.activation: Activation = (get_activation(activation, negative_slope=negative_slope)
                                       if activation == "leaky_relu" else get_activation(activation))
        get_solver(method)
        if backward not in ("average", "direct"):
            raise ValueError(f"backward: expected 'average' or 'direct', got {backward!r}")
        if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int)
                                        or check_every < 1):
            raise ValueError(f"check_every: expected a positive int or None, got {check_every!r}")
        for name, v in (("tol", tol), ("rtol", rtol), ("backward_tol", backward_tol)):
            if v is not None:
                check_scalar(v, name, low=0.0)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter: expected a positive int, got {max_iter!r}")
        self.method, self.alpha, self.tol, self.rtol = method, alpha, tol, rtol
        self.max_iter, self.strict, self.backward, self.backward_tol = int(max_iter), bool(strict), backward, backward_tol
        self.check_every = check_every
        self.last_forward_stats: SolverStats | None = None
        self.last_backward_stats: SolverStats | None = None

    # ---- what a subclass provides ----------------------------------------------------------------
    @property
    @abc.abstractmethod
    def operator(self) -> WeightOperator:
        """A as a weight operator around the current parameter (differentiable)."""

    @abc.abstractmethod
    def _injection(self, U: torch.Tensor) -> torch.Tensor:
        """B u + b for validated inputs U of shape (batch, in_features); shape (batch, *state_shape)."""

    @abc.abstractmethod
    def injection_bounds(self, L: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise lower and upper bounds of B u + b over the box L ≤ u ≤ H (rows (batch, in_features)),
        exact: B u_c + b ∓ |B| u_r with the box as centre u_c ± radius u_r."""

    @abc.abstractmethod
    def injection_norm(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        """‖diag(η)⁻¹ B‖∞ = max over state entries i of Σⱼ |Bᵢⱼ| / ηᵢ (differentiable, 0-d)."""

    @abc.abstractmethod
    def readout(self, X: torch.Tensor, U: torch.Tensor | None) -> torch.Tensor:
        """y = C x + D u + c for states X (batch, *state_shape) and inputs U (batch, in_features)."""

    @abc.abstractmethod
    def readout_matrix(self) -> torch.Tensor:
        """C as a (q, n) matrix over the row-major flattened state (differentiable)."""

    # ---- shared machinery ------------------------------------------------------------------------
    @property
    def in_features(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n(self) -> int:
        """State dimension n = prod(state_shape)."""
        return math.prod(self.state_shape)

    def _reference_parameter(self) -> torch.Tensor:
        """A parameter whose dtype and device are the model's (subclasses name a cheap one)."""
        return self.operator.weight

    @property
    def dtype(self) -> torch.dtype:
        return self._reference_parameter().dtype

    @property
    def device(self) -> torch.device:
        return self._reference_parameter().device

    def _inputs(self, u, name: str = "u") -> tuple[torch.Tensor, bool]:
        """(U, single): inputs as rows (batch, in_features) in the model's dtype and device."""
        if not isinstance(u, torch.Tensor):
            u = torch.as_tensor(u)
        if u.is_complex():
            raise TypeError(f"{name}: expected real inputs, got the complex dtype {u.dtype}")
        r = self.in_features
        single = u.ndim == 1 or (u.ndim == len(self.input_shape) and len(self.input_shape) > 1
                                 and tuple(u.shape) == tuple(self.input_shape))
        if single:
            u = u.reshape(1, -1)
        if u.ndim > 2 and math.prod(u.shape[1:]) == r:
            u = u.reshape(u.shape[0], r)  # e.g. images (batch, 1, 28, 28)
        if u.ndim != 2 or u.shape[1] != r:
            shape = ", ".join(map(str, self.input_shape))
            raise ShapeError(f"{name}: expected shape (batch, {r}) or (batch, {shape}) (or a single sample), "
                             f"got {tuple(u.shape)}")
        check_finite(u, name)
        return u.to(dtype=self.dtype, device=self.device), single

    def injection(self, u) -> torch.Tensor:
        """The term B u + b in the hidden state's shape: (batch, *state_shape), or state_shape for one sample.

        ``u``: inputs (batch, in_features), (batch, *input_shape) or a single sample (validated)."""
        U, single = self._inputs(u)
        Q = self._injection(U)
        return Q.squeeze(0) if single else Q

    def equilibrium(self, u, *, x0=None, trace: bool = False) -> tuple[torch.Tensor, SolverStats]:
        """Hidden equilibrium x*(u), shape (batch, *state_shape), and the forward ``SolverStats``."""
        U, single = self._inputs(u)
        return self._equilibrium(U, x0=x0, trace=trace, squeeze=single)

    def check_parameters(self) -> None:
        """Raise :class:`NonFiniteError` naming every parameter that holds NaN or ±Inf.

        One sum per parameter and a single host synchronisation: a finite total proves every entry
        finite; only a non-finite (or overflowing) total is examined parameter by parameter. Called by
        every solve, so a NaN in A or C fails loudly instead of giving constant or NaN outputs.
        """
        check_parameters_finite(self, type(self).__name__, NonFiniteError,
                                "; the network's outputs would be meaningless")

    def _equilibrium(self, U, *, x0=None, trace=False, squeeze=False):
        self.check_parameters()
        op = self.operator
        check_step(self.alpha, op, self.method, self.strict)
        record = _StatsRecord(self)
        X, stats = equilibrium(op, self._injection(U), self.activation, method=self.method, alpha=self.alpha,
                               tol=self.tol, rtol=self.rtol, max_iter=self.max_iter, x0=x0, strict=self.strict,
                               trace=trace, backward=self.backward, backward_tol=self.backward_tol,
                               record=record, check_every=self.check_every)
        self.last_forward_stats = stats
        return (X.squeeze(0) if squeeze else X), stats

    def forward(self, u) -> torch.Tensor:
        """Outputs y(u), shape (batch, q) (or (q,) for a single sample)."""
        U, single = self._inputs(u)
        X, _ = self._equilibrium(U)
        Y = self.readout(X, U)
        return Y.squeeze(0) if single else Y

    @contextlib.contextmanager
    def solver_options(self, **options):
        """Temporarily change solver settings, e.g. ``with net.solver_options(tol=1e-12, max_iter=10**4):``."""
        unknown = sorted(set(options) - set(SOLVER_OPTIONS))
        if unknown:
            raise ValueError(f"solver_options: unknown option(s) {unknown}; valid: {list(SOLVER_OPTIONS)}")
        old = {k: getattr(self, k) for k in options}
        for k, v in options.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)

    def mu(self) -> torch.Tensor:
        """μ_{∞,η}(A) of the operator with the model's weights (differentiable, 0-d)."""
        return self.operator.row_measures(self.eta).amax()

    def lipschitz_bound(self, kind: str = "tight", eta=None) -> torch.Tensor:
        """Certified ℓ∞→ℓ∞ Lipschitz bound of u ↦ y (docs/mathematics.md §5); see
        :func:`linf_opt.models.lipschitz.lipschitz_bound`."""
        from linf_opt.models.lipschitz import lipschitz_bound   # same layer; lipschitz imports this module
        return lipschitz_bound(self, kind=kind, eta=eta)


class _StatsRecord(EquilibriumRecord):
    """Forwards the backward stats of a solve to the model that asked for it."""

    def __init__(self, net: ImplicitModel):
        super().__init__()
        self._net = net

    @property
    def backward(self):
        return self._backward

    @backward.setter
    def backward(self, stats):
        self._backward = stats
        if stats is not None:
            self._net.last_backward_stats = stats
