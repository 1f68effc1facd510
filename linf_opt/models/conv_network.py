"""A convolutional implicit network for images, ℓ∞-well-posed by construction (docs/mathematics.md §10).

    x = Φ(K ⋆ x + B ⋆ u + b),   y = W · avgpool(x) + c

- the **injection** B ⋆ u + b is a convolution from the input channels to the hidden channels, with a
  stride (``stride=2`` maps 28 × 28 MNIST images to a 14 × 14 state) and one bias per channel;
- the **implicit layer** K ⋆ x is a stride-1, same-size C → C convolution with an odd kernel, zero or
  circular padding: a :class:`~linf_opt.operators.conv.Conv2dOperator`. The kernel is projected onto the
  kernel-level polytope K[c, c, centre] + Σ_{other taps} |K[c, ·, ·, ·]| ≤ γ, which guarantees
  μ∞(A) ≤ γ for the operator on the state (exactly its polytope when the state is at least the kernel);
- the **read-out** averages over ``pool`` × ``pool`` windows and applies a linear map.

The ℓ∞ operator norms that the Lipschitz bound needs are exact: the injection's is the largest row sum
of |B| over the output pixels (one convolution of an all-ones image with |B|; border pixels have
fewer taps); the read-out's is the largest row sum of the composed matrix W·Pool.

``construction="authors"`` replaces the projection by the published convolutional construction
A = (m − C·max|K̂|) I + conv(K̂), with K̂ = g · V/‖V‖_F (V free, g a learnable Frobenius norm): a
baseline that does not bound μ∞ (a row has up to C·k² taps, while only C·max|K̂| is subtracted), so
``operator.mu_inf()`` is reported, not assumed.

    >>> net = ConvImplicitNetwork(in_channels=1, channels=16, input_size=(28, 28), out_features=10)
    >>> y = net(torch.randn(5, 1, 28, 28))                 # (5, 10); float(net.operator.mu_inf()) ≤ 0.95
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from linf_opt._tensor import check_scalar
from linf_opt.models.base import ImplicitModel
from linf_opt.operators.conv import CONV_PADDINGS, Conv2dOperator
from linf_opt.sets.projections import project_conv_kernel

__all__ = ["ConvImplicitNetwork", "AuthorsConvKernel", "CONSTRUCTIONS"]

CONSTRUCTIONS = ("projection", "authors")
"""How the kernel is kept well-posed: by projection (exact, μ∞ ≤ γ) or the authors' construction."""


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return v


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive int or a pair of positive ints, got {v!r}") from None
    return _positive_int(a, name), _positive_int(b, name)


class AuthorsConvKernel(nn.Module):
    """V ↦ K̂ + (m − C·max|K̂|) E with K̂ = g·V/‖V‖_F and E the own-channel centre taps (a parametrization).

    This is the paper authors' published convolutional layer W = (m − C·max|K̂|)I + conv(K̂), written as a
    kernel. It shifts the diagonal by C·max|K̂| although a row of the operator holds up to C·kh·kw taps,
    so it does not bound μ∞ (docs/mathematics.md §10). ``g`` is a learnable parameter (``log_norm`` = log g).
    """

    def __init__(self, m: float, channels: int, kernel_size: tuple[int, int], norm: float = 1.0, **factory):
        super().__init__()
        self.m = float(m)
        self.channels = channels
        kh, kw = kernel_size
        E = torch.zeros((channels, channels, kh, kw), **factory)
        E[torch.arange(channels), torch.arange(channels), kh // 2, kw // 2] = 1
        self.register_buffer("centre", E)
        self.log_norm = nn.Parameter(torch.tensor(math.log(norm), **factory))

    def forward(self, V: torch.Tensor) -> torch.Tensor:
        Kh = self.log_norm.exp() * V / V.norm().clamp(min=torch.finfo(V.dtype).tiny)
        return Kh + (self.m - self.channels * Kh.abs().amax()) * self.centre


class ConvImplicitNetwork(ImplicitModel):
    """Convolutional implicit network on images (see the module docstring).

    Args:
        in_channels: channels of the input images; input_size: (H, W) of the input images.
        channels: hidden channels C; out_features: q (classes).
        kernel_size: odd size k of the implicit convolution (k × k).
        injection_kernel_size: odd size of the injection convolution (default 3); stride: its stride
            (default 2: the state is about half the input size); the injection pads by size//2.
        padding: "zeros" or "circular" (the implicit convolution; the injection pads with zeros).
        pool: the read-out's average-pooling window (default 2); the state size must be a multiple of it.
        gamma: μ∞(A) ≤ γ at initialisation (and in training, by projection); γ < 1.
        construction: "projection" (default) or "authors" (the published construction, for comparison;
            ``m`` is its margin, default γ).
        init_scale: the kernel's entries start as init_scale · N(0, 1)/√(C k²), then are projected.
        activation, method, alpha, tol, rtol, max_iter, strict, backward, backward_tol, check_every:
            as for :class:`~linf_opt.models.implicit_network.ImplicitNetwork`.
        dtype (float32 or float64), device, generator (reproducible initialisation).

    Raises ``ValueError`` naming the argument for even kernel sizes, non-positive sizes, an input image
    too small for the injection's stride, a state not divisible by ``pool``, an unknown padding or
    construction, and ``TypeError`` for a dtype other than float32/float64.

    Inputs are images (batch, in_channels, H, W), or their flattening (batch, in_channels·H·W).
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, input_size=(28, 28), out_features: int = 10,
                 kernel_size: int = 3, activation="relu", *, injection_kernel_size: int = 3, stride: int = 2,
                 padding: str = "zeros", pool: int = 2, gamma: float = 0.95, construction: str = "projection",
                 m: float | None = None, init_scale: float = 1.0, negative_slope: float = 0.01,
                 method: str = "average", alpha: float | None = None, tol: float | None = None,
                 rtol: float | None = None, max_iter: int = 500, strict: bool = False, backward: str = "average",
                 backward_tol: float | None = None, check_every: int | None = None,
                 dtype: torch.dtype | None = None, device=None, generator: torch.Generator | None = None):
        super().__init__()
        self._setup_solver(activation=activation, negative_slope=negative_slope, gamma=gamma, method=method,
                           alpha=alpha, tol=tol, rtol=rtol, max_iter=max_iter, strict=strict,
                           backward=backward, backward_tol=backward_tol, check_every=check_every)
        in_channels = _positive_int(in_channels, "in_channels")
        channels = _positive_int(channels, "channels")
        out_features = _positive_int(out_features, "out_features")
        H, W = _pair(input_size, "input_size")
        k = _positive_int(kernel_size, "kernel_size")
        ik = _positive_int(injection_kernel_size, "injection_kernel_size")
        for name, v in (("kernel_size", k), ("injection_kernel_size", ik)):
            if v % 2 == 0:
                raise ValueError(f"{name}: expected an odd size (the centre tap must be the pixel itself), got {v}")
        stride = _positive_int(stride, "stride")
        pool = _positive_int(pool, "pool")
        if padding not in CONV_PADDINGS:
            raise ValueError(f"padding: expected one of {list(CONV_PADDINGS)}, got {padding!r}")
        if construction not in CONSTRUCTIONS:
            raise ValueError(f"construction: expected one of {list(CONSTRUCTIONS)}, got {construction!r}")
        Hs, Ws = (H + 2 * (ik // 2) - ik) // stride + 1, (W + 2 * (ik // 2) - ik) // stride + 1
        if H < stride or W < stride or Hs < 1 or Ws < 1:
            raise ValueError(f"input_size: {(H, W)} is smaller than the injection's stride {stride} (kernel {ik}); "
                             f"expected an image of at least {stride} × {stride}")
        if Hs % pool or Ws % pool:
            raise ValueError(f"pool: the state is {Hs} × {Ws} (input {H} × {W}, stride {stride}); expected a pool "
                             f"size that divides both, got {pool}")
        factory = dict(dtype=dtype or torch.get_default_dtype(), device=device)
        if factory["dtype"] not in (torch.float32, torch.float64):
            raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {factory['dtype']}")
        init_scale = check_scalar(init_scale, "init_scale", low=0.0)
        self.in_channels, self.channels, self.out_features = in_channels, channels, out_features
        self.kernel_size, self.injection_kernel_size, self.stride, self.pool = k, ik, stride, pool
        self.padding, self.construction = padding, construction
        self.input_shape = (in_channels, H, W)
        self.state_shape = (channels, Hs, Ws)
        g = generator

        def uniform(shape, bound):
            return (torch.rand(shape, generator=g, **factory) * 2 - 1) * bound

        K0 = torch.randn((channels, channels, k, k), generator=g, **factory) * (init_scale / math.sqrt(channels * k * k))
        fan_in = in_channels * ik * ik
        self.injection_weight = nn.Parameter(uniform((channels, in_channels, ik, ik), 1 / math.sqrt(fan_in)))
        self.injection_bias = nn.Parameter(uniform((channels,), 1 / math.sqrt(fan_in)))
        features = channels * (Hs // pool) * (Ws // pool)
        self.C = nn.Parameter(uniform((out_features, features), 1 / math.sqrt(features)))
        self.c = nn.Parameter(uniform((out_features,), 1 / math.sqrt(features)))
        self.D = None
        self.register_buffer("eta", None)
        if construction == "projection":
            self.kernel = nn.Parameter(project_conv_kernel(K0, self.gamma))
        else:
            self.m = self.gamma if m is None else check_scalar(m, "m")
            self.kernel = nn.Parameter(K0)
            parametrize.register_parametrization(
                self, "kernel", AuthorsConvKernel(self.m, channels, (k, k), float(K0.norm()) or 1.0, **factory))

    # ------------------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        C, Hs, Ws = self.state_shape
        return (f"in={self.input_shape}, state=({C}, {Hs}, {Ws}), kernel={self.kernel_size}, "
                f"padding={self.padding}, stride={self.stride}, pool={self.pool}, out={self.out_features}, "
                f"gamma={self.gamma}, construction={self.construction}, activation={self.activation.name}")

    @property
    def operator(self) -> Conv2dOperator:
        return Conv2dOperator(self.kernel, self.state_shape[1:], self.padding)

    def _reference_parameter(self) -> torch.Tensor:
        return self.injection_weight

    def _images(self, U: torch.Tensor) -> torch.Tensor:
        return U.reshape(U.shape[0], *self.input_shape)

    def _inject(self, U: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(self._images(U), weight, bias, stride=self.stride, padding=self.injection_kernel_size // 2)

    def _injection(self, U: torch.Tensor) -> torch.Tensor:
        return self._inject(U, self.injection_weight, self.injection_bias)

    def injection_bounds(self, L: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qc = self._inject((L + H) / 2, self.injection_weight, self.injection_bias)
        qr = self._inject((H - L) / 2, self.injection_weight.abs(), None)
        return qc - qr, qc + qr

    def injection_norm(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        ones = torch.ones((1, self.in_features), dtype=self.dtype, device=self.device)
        rows = self._inject(ones, self.injection_weight.abs(), None)[0]      # Σⱼ |Bᵢⱼ| for every state entry i
        return (rows if eta is None else rows / eta).amax()

    def readout(self, X: torch.Tensor, U: torch.Tensor | None) -> torch.Tensor:
        """y = C · avgpool(x) + c."""
        pooled = F.avg_pool2d(X, self.pool) if self.pool > 1 else X
        return torch.addmm(self.c, pooled.reshape(X.shape[0], -1), self.C.t())

    def readout_matrix(self) -> torch.Tensor:
        """C·Pool as a (q, C·H·W) matrix: each pooled weight spread over its window, divided by pool²."""
        q = self.out_features
        C, Hs, Ws = self.state_shape
        s = self.pool
        R = self.C.reshape(q, C, Hs // s, Ws // s)
        if s > 1:
            R = R.repeat_interleave(s, 2).repeat_interleave(s, 3) / (s * s)
        return R.reshape(q, -1)
