"""A C → C convolution on images as a :class:`~linf_opt.operators.base.WeightOperator` (docs/mathematics.md §10).

The hidden state has shape (C, H, W) and A is the stride-1, same-size convolution with the kernel K of
shape (C, C, kh, kw), kh and kw odd, in torch's ``conv2d`` convention (a cross-correlation). With
p = kh//2, q = kw//2, the row of output (c, i, j) holds

    K[c, c′, di, dj]   at input (c′, i + di − p, j + dj − q)

- padding ``"zeros"``: taps that fall outside the image are dropped (border rows hold fewer taps);
- padding ``"circular"``: indices wrap mod H and W. On an image smaller than the kernel (H < kh or
  W < kw) several taps land on the same input and their values add: the matrix entry is the sum of the
  aliased taps, and own-channel taps that wrap onto the pixel itself join the diagonal.

``as_matrix`` uses the row-major flattening of (C, H, W). Row measures (weights η > 0 of shape (C, H, W))

    rᵢ = aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ,   μ_{∞,η}(A) = maxᵢ rᵢ

are computed exactly for every image size and both paddings without the n × n matrix: one convolution of
the image η (ones when η is omitted) with |K| (own-channel centre tap removed) gives every row's
off-diagonal sum; on small circular images the kernel is first folded onto the (H, W) torus, so that
aliased taps add before the absolute value (|a + b|, not |a| + |b|).

**Constraint rows** (``constraint_rows``): one per output channel, the (C, C·kh·kw) view of K with the
diagonal position c·kh·kw + p·kw + q. The kernel-level value

    κ(K) = max_c ( K[c, c, p, q] + Σ_{(c′, di, dj) ≠ (c, p, q)} |K[c, c′, di, dj]| )     (``kernel_mu_inf``)

bounds μ∞(A) from above for every image size and padding (border rows drop taps, aliasing only merges
them), with equality when H ≥ kh and W ≥ kw (then some row holds every tap, each at its own input). So
projecting each channel's kernel slice onto κ ≤ γ guarantees μ∞(A) ≤ γ everywhere, and is the exact
projection onto {μ∞(A) ≤ γ} in kernel space when H ≥ kh and W ≥ kw.

    >>> op = Conv2dOperator(0.1 * torch.randn(2, 2, 3, 3), (8, 8), padding="circular")
    >>> op.matvec(torch.randn(5, 2, 8, 8)).shape, float(op.mu_inf())  # μ∞(A) = op.kernel_mu_inf() here (8 ≥ 3)
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from linf_opt.errors import ShapeError
from linf_opt.operators.base import ConstraintRows, WeightOperator

__all__ = ["Conv2dOperator", "CONV_PADDINGS"]

#: the paddings :class:`Conv2dOperator` supports
CONV_PADDINGS = ("zeros", "circular")


def _wrap_pad(X: torch.Tensor, before: tuple[int, int], after: tuple[int, int]) -> torch.Tensor:
    """Circularly pad the last two dimensions of X by index arithmetic (any amount, even beyond H, W)."""
    H, W = X.shape[-2], X.shape[-1]
    rows = torch.arange(-before[0], H + after[0], device=X.device) % H
    cols = torch.arange(-before[1], W + after[1], device=X.device) % W
    return X.index_select(-2, rows).index_select(-1, cols)


def _correlate(X: torch.Tensor, K: torch.Tensor, centre: tuple[int, int], padding: str) -> torch.Tensor:
    """Same-size correlation out[c, i, j] = Σ K[c, c′, a, b] X[c′, i + a − centre₀, j + b − centre₁]."""
    kh, kw = K.shape[-2], K.shape[-1]
    p, q = centre
    if padding == "circular":
        return F.conv2d(_wrap_pad(X, (p, q), (kh - 1 - p, kw - 1 - q)), K)
    if p == kh - 1 - p and q == kw - 1 - q:
        return F.conv2d(X, K, padding=(p, q))
    return F.conv2d(F.pad(X, (q, kw - 1 - q, p, kh - 1 - p)), K)


class Conv2dOperator(WeightOperator):
    """x ↦ K ⋆ x: a stride-1, same-size C → C convolution on states of shape (C, H, W).

    Args:
        kernel: (C, C, kh, kw) real floating tensor, kh and kw odd; kept as given (an ``nn.Parameter``
            stays one, so gradients flow through the operator).
        image_size: (H, W), positive ints.
        padding: ``"zeros"`` or ``"circular"``.

    Raises ``ShapeError`` (a ``ValueError``) naming ``kernel`` for a non-4-D kernel, different input and
    output channel counts or an even kernel size, ``TypeError`` naming ``kernel`` for a complex or
    integer dtype, ``ValueError`` naming ``image_size`` / ``padding`` for bad values of those.
    """

    def __init__(self, kernel: torch.Tensor, image_size, padding: str = "zeros"):
        if not isinstance(kernel, torch.Tensor):
            kernel = torch.as_tensor(kernel)
        if kernel.ndim != 4:
            raise ShapeError(f"kernel: expected a convolution kernel of shape (C, C, kh, kw), got shape "
                             f"{tuple(kernel.shape)}")
        c_out, c_in, kh, kw = kernel.shape
        if c_out != c_in:
            raise ShapeError(f"kernel: an implicit convolutional layer maps C channels to C channels; got "
                             f"{c_out} output and {c_in} input channels (shape {tuple(kernel.shape)})")
        if kh % 2 == 0 or kw % 2 == 0:
            raise ShapeError(f"kernel: expected odd kernel sizes (a same-size convolution with a centre tap), "
                             f"got {kh}×{kw}")
        if kernel.is_complex() or not kernel.is_floating_point():
            raise TypeError(f"kernel: expected a real floating-point tensor (float32 or float64), got {kernel.dtype}")
        try:
            if isinstance(image_size, (str, bytes)) or len(image_size) != 2 or any(isinstance(v, bool) for v in image_size):
                raise TypeError
            H, W = (operator.index(v) for v in image_size)
            ok = True
        except TypeError:
            ok, H, W = False, 0, 0
        if not ok or H < 1 or W < 1:
            raise ValueError(f"image_size: expected a pair of positive ints (H, W), got {image_size!r}")
        if not isinstance(padding, str) or padding not in CONV_PADDINGS:
            raise ValueError(f"padding: expected one of {', '.join(map(repr, CONV_PADDINGS))}, got {padding!r}")
        self._K = kernel
        self.image_size = (H, W)
        self.padding = padding
        self.state_shape = (c_out, H, W)

    # ---- structure -----------------------------------------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        return self._K

    @property
    def kernel(self) -> torch.Tensor:
        """The kernel K (the same tensor as ``weight``)."""
        return self._K

    @property
    def channels(self) -> int:
        return self._K.shape[0]

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (self._K.shape[2], self._K.shape[3])

    @property
    def centre(self) -> tuple[int, int]:
        """(p, q) = (kh//2, kw//2), the tap that multiplies the output pixel itself."""
        return (self._K.shape[2] // 2, self._K.shape[3] // 2)

    def with_weight(self, weight: torch.Tensor) -> "Conv2dOperator":
        if tuple(weight.shape) != tuple(self._K.shape):
            raise ShapeError(f"weight: expected a kernel of shape {tuple(self._K.shape)}, got {tuple(weight.shape)}")
        return Conv2dOperator(weight, self.image_size, self.padding)

    def _own_centre_mask(self, K: torch.Tensor | None = None, centre: tuple[int, int] | None = None) -> torch.Tensor:
        """Boolean mask of the own-channel centre taps K[c, c, p, q] (shape of K; centre default (kh//2, kw//2))."""
        K = self._K if K is None else K
        C, _, kh, kw = K.shape
        p, q = (kh // 2, kw // 2) if centre is None else centre
        mask = torch.zeros(K.shape, dtype=torch.bool, device=K.device)
        idx = torch.arange(C, device=K.device)
        mask[idx, idx, p, q] = True
        return mask

    def _effective(self) -> tuple[torch.Tensor, tuple[int, int]]:
        """(K_eff, centre) with A = correlation with K_eff about ``centre`` and distinct taps of K_eff at
        distinct inputs of every row: K itself, except on circular images smaller than the kernel, where
        each short dimension is folded onto the torus (size H or W, centre 0: the tap at offset a sits at
        input (i + a) mod H, and the taps with equal offsets mod H are added)."""
        K = self._K
        H, W = self.image_size
        kh, kw = self.kernel_size
        p, q = self.centre
        if self.padding != "circular" or (H >= kh and W >= kw):
            return K, (p, q)
        if H < kh:
            idx = (torch.arange(kh, device=K.device) - p) % H
            K = K.new_zeros(K.shape[:2] + (H, K.shape[3])).index_add(2, idx, K)
            p = 0
        if W < kw:
            idx = (torch.arange(kw, device=K.device) - q) % W
            K = K.new_zeros(K.shape[:3] + (W,)).index_add(3, idx, K)
            q = 0
        return K, (p, q)

    # ---- products --------------------------------------------------------------------------------
    def _check_input(self, X: torch.Tensor, name: str) -> None:
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"{name}: expected a torch tensor of shape (batch, {', '.join(map(str, self.state_shape))}), "
                            f"got {type(X).__name__}")
        self.check_state(X, name)
        if X.dtype != self._K.dtype:
            raise TypeError(f"{name}: expected dtype {self._K.dtype} (the kernel's), got {X.dtype}")
        if X.device != self._K.device:
            raise ValueError(f"{name}: expected a tensor on {self._K.device} (the kernel's device), got {X.device}")

    def matvec(self, X: torch.Tensor) -> torch.Tensor:
        self._check_input(X, "x")
        return _correlate(X, self._K, self.centre, self.padding)

    def rmatvec(self, Y: torch.Tensor) -> torch.Tensor:
        """Aᵀ y: ``conv_transpose2d`` for zero padding; for circular padding the circular correlation with
        the flipped, channel-transposed kernel (both equal ``Y_flat @ as_matrix()``)."""
        self._check_input(Y, "y")
        p, q = self.centre
        if self.padding == "zeros":
            return F.conv_transpose2d(Y, self._K, padding=(p, q))
        return _correlate(Y, self._K.transpose(0, 1).flip(2, 3), (p, q), "circular")

    # ---- entries and measures ----------------------------------------------------------------------
    def diagonal(self) -> torch.Tensor:
        """aᵢᵢ, shape (C, H, W): the own-channel centre tap (plus, on small circular images, the own-channel
        taps that wrap onto the pixel itself)."""
        K, (p, q) = self._effective()
        d = torch.diagonal(K[:, :, p, q])
        return d[:, None, None].expand(self.state_shape)

    def _check_eta(self, eta) -> torch.Tensor | None:
        if eta is None:
            return None
        e = torch.as_tensor(eta, dtype=self._K.dtype, device=self._K.device)
        if tuple(e.shape) != tuple(self.state_shape):
            raise ShapeError(f"eta: expected positive weights of shape {tuple(self.state_shape)}, got shape "
                             f"{tuple(e.shape)}")
        if not bool(torch.isfinite(e).all()) or not bool((e > 0).all()):
            raise ValueError("eta: expected finite, strictly positive weights")
        return e

    def row_measures(self, eta: torch.Tensor | None = None) -> torch.Tensor:
        """rᵢ = aᵢᵢ + Σ_{j≠i} |aᵢⱼ| ηⱼ/ηᵢ, shape (C, H, W), exact for every image size (differentiable in K)."""
        e = self._check_eta(eta)
        K, (p, q) = self._effective()
        own = self._own_centre_mask(K, (p, q))
        # the own-channel centre tap of K_eff is the diagonal; every other tap is off the diagonal
        off = torch.where(own, torch.zeros((), dtype=K.dtype, device=K.device), K.abs())
        C = K.shape[0]
        d = torch.diagonal(K[:, :, p, q])[:, None, None]
        img = (torch.ones(self.state_shape, dtype=K.dtype, device=K.device) if e is None else e).unsqueeze(0)
        s = _correlate(img, off, (p, q), self.padding)[0]
        if e is not None:
            s = s / e
        assert s.shape[0] == C
        return d + s

    def kernel_mu_inf(self) -> float:
        """κ(K) = max_c (K[c,c,p,q] + Σ_{others} |K[c,·,·,·]|), in float64: an upper bound of μ∞(A) for every
        image size and padding, equal to it when H ≥ kh and W ≥ kw."""
        K = self._K.detach().to(torch.float64)
        own = self._own_centre_mask(K)
        off = torch.where(own, 0.0, K.abs()).sum(dim=(1, 2, 3))
        p, q = self.centre
        return float((torch.diagonal(K[:, :, p, q]) + off).amax()) if K.shape[0] else float("-inf")

    def abs_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(row sums, column sums) of |A|, each of shape (C, H, W) (exact; ‖A‖∞ and ‖A‖₁ are their maxima)."""
        K, (p, q) = self._effective()
        Ka = K.abs()
        ones = torch.ones((1,) + tuple(self.state_shape), dtype=K.dtype, device=K.device)
        rows = _correlate(ones, Ka, (p, q), self.padding)[0]
        kh, kw = K.shape[-2:]
        if self.padding == "zeros":
            cols = F.conv_transpose2d(ones, Ka, padding=(p, q))[0]
        else:
            cols = _correlate(ones, Ka.transpose(0, 1).flip(2, 3), (kh - 1 - p, kw - 1 - q), "circular")[0]
        return rows, cols

    # ---- derived operators -------------------------------------------------------------------------
    def metzler_split(self) -> tuple["Conv2dOperator", "Conv2dOperator"]:
        """(A_up, A_dn) at tap level: A_up keeps the own-channel centre taps and every positive other tap,
        A_dn the negative other taps; both are convolutions of the same structure and A = A_up + A_dn.

        A_up's off-diagonal entries are ≥ 0 and A_dn's entries are ≤ 0 for every image size. On circular
        images smaller than the kernel, taps of opposite signs may alias onto one entry (and own-channel
        taps onto the diagonal, where negative ones land in A_dn): the split stays valid (A_up Metzler,
        A_dn ≤ 0) but need not be the tightest one, which would split the summed entries instead."""
        K = self._K
        up = torch.where(self._own_centre_mask() | (K > 0), K, torch.zeros((), dtype=K.dtype, device=K.device))
        return self.with_weight(up), self.with_weight(K - up)

    def sign_split(self) -> tuple["Conv2dOperator", "Conv2dOperator"]:
        """(A⁺, A⁻) from the kernel clamped at 0 (entrywise exact unless circular taps of opposite signs
        alias onto one entry; A⁺ ≥ 0, A⁻ ≤ 0 and A = A⁺ + A⁻ always hold)."""
        return self.with_weight(self._K.clamp(min=0)), self.with_weight(self._K.clamp(max=0))

    def majorant_operator(self) -> "Conv2dOperator":
        """The convolution whose kernel is |K| except the own-channel centre taps, kept signed: the Metzler
        majorant M(A) (diagonal aᵢᵢ, off it |aᵢⱼ|) when no taps alias, an entrywise upper bound of it on
        small circular images."""
        K = self._K
        return self.with_weight(torch.where(self._own_centre_mask(), K, K.abs()))

    def as_matrix(self) -> torch.Tensor:
        """The dense (n, n) matrix (row-major flattening of (C, H, W)), built column by column from basis
        images (differentiable in K; n² entries: for tests and small problems)."""
        n = self.n
        K = self._K
        eye = torch.eye(n, dtype=K.dtype, device=K.device).reshape((n,) + tuple(self.state_shape))
        return _correlate(eye, K, self.centre, self.padding).reshape(n, n).t()

    def constraint_rows(self, eta: torch.Tensor | None = None) -> ConstraintRows:
        """One row per output channel: V = K viewed as (C, C·kh·kw), diagonal position c·kh·kw + p·kw + q.

        ``eta`` of shape (C, H, W) must be constant on each channel (weights wᵢⱼ = η_{c′}/η_c); other
        weights raise ``NotImplementedError`` (the rows of one channel would no longer be equal).
        """
        K = self._K
        C, _, kh, kw = K.shape
        p, q = self.centre
        k2 = kh * kw
        diag = torch.arange(C, device=K.device) * k2 + p * kw + q
        V = K.view(C, C * k2) if K.is_contiguous() else K.reshape(C, C * k2)
        if eta is None:
            return ConstraintRows(V, diag, None)
        e = self._check_eta(eta)
        ec = e.reshape(C, -1)
        if not bool((ec == ec[:, :1]).all()):
            raise NotImplementedError("eta: the convolution's constraint rows need weights that are constant on "
                                      "each channel (eta[c] the same at every pixel); got weights that vary "
                                      "within a channel")
        ec = ec[:, 0]
        w = (ec[None, :] / ec[:, None]).repeat_interleave(k2, dim=1)
        return ConstraintRows(V, diag, w.contiguous())

    def weight_grad(self, V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """∂/∂K of Σ_batch ⟨v, A x⟩ (``torch.nn.grad.conv2d_weight``; on the wrapped input for circular)."""
        self._check_input(X, "x")
        self._check_input(V, "v")
        p, q = self.centre
        shape = tuple(self._K.shape)
        X, V = X.detach(), V.detach()
        if self.padding == "zeros":
            return torch.nn.grad.conv2d_weight(X, shape, V, padding=(p, q))
        return torch.nn.grad.conv2d_weight(_wrap_pad(X, (p, q), (p, q)), shape, V)

    def __repr__(self) -> str:
        C, _, kh, kw = self._K.shape
        return (f"Conv2dOperator(channels={C}, kernel_size=({kh}, {kw}), image_size={self.image_size}, "
                f"padding={self.padding!r}, dtype={self.dtype})")
