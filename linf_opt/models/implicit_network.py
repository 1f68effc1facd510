"""The implicit (equilibrium) network as a ``torch.nn.Module`` (docs/mathematics.md §1).

    x = Φ(A x + B u + b),   y = C x + D u + c

with A ∈ ℝ^{n×n}, B ∈ ℝ^{n×r}, C ∈ ℝ^{q×n}, optional D ∈ ℝ^{q×r}. The equilibrium is found by a
registered solver (default: the average iteration with α*) and differentiated exactly by implicit
differentiation; the initialisation satisfies μ_{∞,η}(A) ≤ γ.

    >>> net = ImplicitNetwork(1, 20, 1, gamma=0.9)
    >>> y = net(torch.linspace(-1, 1, 5).unsqueeze(1))        # (5, 1)
    >>> x, stats = net.equilibrium(torch.zeros(3, 1))         # hidden state and SolverStats
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from linf_opt._tensor import check_finite, check_scalar
from linf_opt.equilibrium.activations import Activation, get_activation
from linf_opt.errors import ShapeError
from linf_opt.equilibrium.implicit import EquilibriumRecord, equilibrium
from linf_opt.operators.measures import _row_measures, _scaled
from linf_opt.sets.projections import project_mu_inf
from linf_opt.equilibrium.solvers import check_step, get_solver, SolverStats

__all__ = ["ImplicitNetwork"]


class ImplicitNetwork(nn.Module):
    """Implicit network x = Φ(Ax + Bu + b), y = Cx + Du + c, well-posed by construction at initialisation.

    Args:
        in_features (r), hidden_features (n), out_features (q).
        activation: name or :class:`Activation` (slopes in [0, 1]); ``negative_slope`` for leaky_relu.
        gamma: initial A satisfies μ_{∞,η}(A) ≤ γ (γ < 1; training keeps it there by projection).
        eta: optional positive weights η (length n) of the weighted measure; stored as a buffer.
        feedthrough: include the direct term D u.
        init_scale: standard deviation of A's entries before projection is init_scale/√n.
        method, alpha, tol, rtol, max_iter, strict: forward solver settings (see ``solve_fixed_point``).
        backward, backward_tol: adjoint solver ("average" or "direct").
        dtype, device: where the parameters live (float32 or float64; CPU or CUDA).
        generator: a ``torch.Generator`` for reproducible initialisation.

    Attributes ``last_forward_stats`` / ``last_backward_stats`` hold the statistics of the most recent
    solves (diagnostics only; the solver never changes parameters or buffers).
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, activation="relu", *,
                 gamma: float = 0.95, eta=None, feedthrough: bool = False, negative_slope: float = 0.01,
                 init_scale: float = 1.0, method: str = "average", alpha: float | None = None,
                 tol: float | None = None, rtol: float | None = None, max_iter: int = 500,
                 strict: bool = False, backward: str = "average", backward_tol: float | None = None,
                 dtype: torch.dtype | None = None, device=None, generator: torch.Generator | None = None):
        super().__init__()
        for name, v in (("in_features", in_features), ("hidden_features", hidden_features),
                        ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.in_features, self.hidden_features, self.out_features = in_features, hidden_features, out_features
        self.gamma = check_scalar(gamma, "gamma", high=1.0, high_open=True)
        init_scale = check_scalar(init_scale, "init_scale", low=0.0)
        self.activation: Activation = (get_activation(activation, negative_slope=negative_slope)
                                       if activation == "leaky_relu" else get_activation(activation))
        get_solver(method)
        if backward not in ("average", "direct"):
            raise ValueError(f"backward: expected 'average' or 'direct', got {backward!r}")
        self.method, self.alpha, self.tol, self.rtol = method, alpha, tol, rtol
        self.max_iter, self.strict, self.backward, self.backward_tol = int(max_iter), bool(strict), backward, backward_tol
        factory = dict(dtype=dtype or torch.get_default_dtype(), device=device)
        n, r, q = hidden_features, in_features, out_features
        if eta is not None:
            eta_t = torch.as_tensor(eta, **factory).reshape(-1)
            if eta_t.shape != (n,) or not bool((eta_t > 0).all()) or not bool(torch.isfinite(eta_t).all()):
                raise ValueError(f"eta: expected {n} finite positive weights, got {eta!r}")
            self.register_buffer("eta", eta_t)
        else:
            self.register_buffer("eta", None)   # set later for weighted training (a buffer, so it is saved)
        g = generator

        def uniform(shape, bound):
            return (torch.rand(shape, generator=g, **factory) * 2 - 1) * bound

        A0 = torch.randn((n, n), generator=g, **factory) * (init_scale / math.sqrt(n))
        self.A = nn.Parameter(self._init_feasible(A0))
        self.B = nn.Parameter(uniform((n, r), 1 / math.sqrt(r)))
        self.b = nn.Parameter(uniform((n,), 1 / math.sqrt(r)))
        self.C = nn.Parameter(uniform((q, n), 1 / math.sqrt(n)))
        self.c = nn.Parameter(uniform((q,), 1 / math.sqrt(n)))
        self.D = nn.Parameter(torch.zeros((q, r), **factory)) if feedthrough else None
        self.last_forward_stats: SolverStats | None = None
        self.last_backward_stats: SolverStats | None = None

    def _init_feasible(self, A0: torch.Tensor) -> torch.Tensor:
        """Project A0 onto μ_{∞,η}(A) ≤ γ (Euclidean, exact)."""
        return project_mu_inf(A0, self.gamma, eta=self.eta)

    # ------------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return (f"in={self.in_features}, hidden={self.hidden_features}, out={self.out_features}, "
                f"activation={self.activation.name}, gamma={self.gamma}, method={self.method}, "
                f"weighted={self.eta is not None}, feedthrough={self.D is not None}")

    def _inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if not isinstance(u, torch.Tensor):
            u = torch.as_tensor(u)
        single = u.ndim == 1
        if single:
            u = u.unsqueeze(0)
        if u.ndim > 2 and math.prod(u.shape[1:]) == self.in_features:
            u = u.reshape(u.shape[0], -1)  # e.g. images (batch, 1, 28, 28)
        if u.ndim != 2 or u.shape[1] != self.in_features:
            raise ShapeError(f"u: expected shape (batch, {self.in_features}) (or a single sample), "
                             f"got {tuple(u.shape)}")
        check_finite(u, "u")
        return u.to(dtype=self.B.dtype, device=self.B.device), single

    def equilibrium(self, u, *, x0=None, trace: bool = False) -> tuple[torch.Tensor, SolverStats]:
        """Hidden equilibrium x*(u), shape (batch, n), and the forward ``SolverStats``."""
        U, single = self._inputs(u)
        return self._equilibrium(U, x0=x0, trace=trace, squeeze=single)

    def _equilibrium(self, U, *, x0=None, trace=False, squeeze=False):
        A = self.A
        check_step(self.alpha, A.detach(), self.method, self.strict)
        Q = torch.addmm(self.b, U, self.B.t())
        record = _StatsRecord(self)
        X, stats = equilibrium(A, Q, self.activation, method=self.method, alpha=self.alpha, tol=self.tol,
                               rtol=self.rtol, max_iter=self.max_iter, x0=x0, strict=self.strict,
                               trace=trace, backward=self.backward, backward_tol=self.backward_tol,
                               record=record)
        self.last_forward_stats = stats
        return (X.squeeze(0) if squeeze else X), stats

    def readout(self, X: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """y = C x + D u + c for rows x of X and u of U."""
        Y = torch.addmm(self.c, X, self.C.t())
        if self.D is not None:
            Y = Y + U @ self.D.t()
        return Y

    def forward(self, u) -> torch.Tensor:
        """Outputs y(u) = C x*(u) + D u + c, shape (batch, q) (or (q,) for a single sample)."""
        U, single = self._inputs(u)
        X, _ = self._equilibrium(U)
        Y = self.readout(X, U)
        return Y.squeeze(0) if single else Y

    @contextlib.contextmanager
    def solver_options(self, **options):
        """Temporarily change solver settings, e.g. ``with net.solver_options(tol=1e-12, max_iter=10**4):``."""
        valid = ("method", "alpha", "tol", "rtol", "max_iter", "strict", "backward", "backward_tol")
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"solver_options: unknown option(s) {unknown}; valid: {list(valid)}")
        old = {k: getattr(self, k) for k in options}
        for k, v in options.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)

    # ------------------------------------------------------------------------------------------------
    def mu(self) -> torch.Tensor:
        """μ_{∞,η}(A) with the network's weights (differentiable)."""
        return _row_measures(_scaled(self.A, self.eta)).amax()

    def lipschitz_bound(self, kind: str = "tight", eta=None) -> torch.Tensor:
        """Certified ℓ∞→ℓ∞ Lipschitz bound of u ↦ y (docs/mathematics.md §5); see :func:`linf_opt.models.lipschitz.lipschitz_bound`."""
        from linf_opt.models.lipschitz import lipschitz_bound
        return lipschitz_bound(self, kind=kind, eta=eta)


class _StatsRecord(EquilibriumRecord):
    """Forwards the backward stats of a solve to the network that asked for it."""

    def __init__(self, net: ImplicitNetwork):
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
