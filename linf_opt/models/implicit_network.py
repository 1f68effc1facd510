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

import math

import torch
from torch import nn

from linf_opt._tensor import check_scalar
from linf_opt.models.base import ImplicitModel
from linf_opt.operators.dense import DenseOperator
from linf_opt.sets.projections import project_mu_inf

__all__ = ["ImplicitNetwork"]


class ImplicitNetwork(ImplicitModel):
    """Implicit network x = Φ(Ax + Bu + b), y = Cx + Du + c, well-posed by construction at initialisation.

    Args:
        in_features (r), hidden_features (n), out_features (q).
        activation: name or :class:`~linf_opt.equilibrium.activations.Activation` (slopes in [0, 1]);
            ``negative_slope`` for leaky_relu.
        gamma: initial A satisfies μ_{∞,η}(A) ≤ γ (γ < 1; training keeps it there by projection).
        eta: optional positive weights η (length n) of the weighted measure; stored as a buffer.
        feedthrough: include the direct term D u.
        init_scale: standard deviation of A's entries before projection is init_scale/√n.
        method, alpha, tol, rtol, max_iter, strict, check_every: forward solver settings (see
            ``solve_fixed_point``; ``check_every`` is the number of iterations between convergence checks).
        backward, backward_tol: adjoint solver ("average" or "direct").
        dtype, device: where the parameters live (float32 or float64; CPU or CUDA).
        generator: a ``torch.Generator`` for reproducible initialisation.

    ``operator`` is the :class:`~linf_opt.operators.dense.DenseOperator` of A. Attributes
    ``last_forward_stats`` / ``last_backward_stats`` hold the statistics of the most recent solves.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int, activation="relu", *,
                 gamma: float = 0.95, eta=None, feedthrough: bool = False, negative_slope: float = 0.01,
                 init_scale: float = 1.0, method: str = "average", alpha: float | None = None,
                 tol: float | None = None, rtol: float | None = None, max_iter: int = 500,
                 strict: bool = False, backward: str = "average", backward_tol: float | None = None,
                 check_every: int | None = None, dtype: torch.dtype | None = None, device=None,
                 generator: torch.Generator | None = None):
        super().__init__()
        for name, v in (("in_features", in_features), ("hidden_features", hidden_features),
                        ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        self.hidden_features, self.out_features = hidden_features, out_features
        self.input_shape, self.state_shape = (in_features,), (hidden_features,)
        self._setup_solver(activation=activation, negative_slope=negative_slope, gamma=gamma, method=method,
                           alpha=alpha, tol=tol, rtol=rtol, max_iter=max_iter, strict=strict,
                           backward=backward, backward_tol=backward_tol, check_every=check_every)
        init_scale = check_scalar(init_scale, "init_scale", low=0.0)
        factory = dict(dtype=dtype or torch.get_default_dtype(), device=device)
        if factory["dtype"] not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {factory['dtype']}")
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
        self.A = nn.Parameter(project_mu_inf(A0, self.gamma, eta=self.eta))
        self.B = nn.Parameter(uniform((n, r), 1 / math.sqrt(r)))
        self.b = nn.Parameter(uniform((n,), 1 / math.sqrt(r)))
        self.C = nn.Parameter(uniform((q, n), 1 / math.sqrt(n)))
        self.c = nn.Parameter(uniform((q,), 1 / math.sqrt(n)))
        self.D = nn.Parameter(torch.zeros((q, r), **factory)) if feedthrough else None

    # ------------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return (f"in={self.in_features}, hidden={self.hidden_features}, out={self.out_features}, "
                f"activation={self.activation.name}, gamma={self.gamma}, method={self.method}, "
                f"weighted={self.eta is not None}, feedthrough={self.D is not None}")

    @property
    def operator(self) -> DenseOperator:
        return DenseOperator(self.A)

    def _reference_parameter(self) -> torch.Tensor:
        return self.B

    def _injection(self, U: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b, U, self.B.t())

    def injection_bounds(self, L: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qc = torch.addmm(self.b, (L + H) / 2, self.B.t())
        qr = ((H - L) / 2) @ self.B.abs().t()
        return qc - qr, qc + qr

    def injection_norm(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.B.abs().sum(-1)
        return (rows if eta is None else rows / eta).amax()

    def readout(self, X: torch.Tensor, U: torch.Tensor | None) -> torch.Tensor:
        """y = C x + D u + c for rows x of X and u of U."""
        Y = torch.addmm(self.c, X, self.C.t())
        if self.D is not None:
            Y = Y + U @ self.D.t()
        return Y

    def readout_matrix(self) -> torch.Tensor:
        return self.C
