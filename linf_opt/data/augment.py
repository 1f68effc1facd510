"""Data augmentation for image inputs: random translations (``training.augment_shift``).

Each image of a batch moves by an integer offset (dy, dx), drawn uniformly from {−s, …, s}² per image;
the pixels that enter at the border repeat the nearest edge pixel (for MNIST, whose borders are
background, that is the background value in any normalization). The output pixel (i, j) is

    out[b, c, i, j] = in[b, c, clamp(i − dy_b, 0, H − 1), clamp(j − dx_b, 0, W − 1)],

computed as one flat gather from the edge-padded batch. The offsets come from a caller's generator, so a
run that draws them from its own seeded generator (as the trainer does) is reproducible and resumes
bit-exactly. A translation of the input does not change any bound or certificate of the model: they
are properties of the network, and augmentation only changes which inputs it is trained on.

    >>> g = torch.Generator().manual_seed(0)
    >>> out = random_shift(torch.rand(8, 1, 28, 28), 2, generator=g)   # (8, 1, 28, 28)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_shift", "shift_images"]


def _image_batch(X: torch.Tensor, image_shape) -> tuple[torch.Tensor, tuple[int, int, int]]:
    if image_shape is None:
        if X.dim() != 4:
            raise ValueError(f"X: expected a batch of images (batch, C, H, W) or image_shape, got shape {tuple(X.shape)}")
        image_shape = tuple(X.shape[1:])
    C, H, W = (int(v) for v in image_shape)
    if X.dim() < 1 or math.prod(X.shape[1:]) != C * H * W:
        raise ValueError(f"X: expected (batch, {C}·{H}·{W}) inputs for image_shape {(C, H, W)}, got shape {tuple(X.shape)}")
    return X.reshape(X.shape[0], C, H, W), (C, H, W)


def shift_images(X: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, image_shape=None) -> torch.Tensor:
    """Translate image b of ``X`` by (dy[b], dx[b]) pixels (down, right), repeating the edge pixels.

    ``X`` is (batch, C, H, W), or (batch, C·H·W) with ``image_shape`` = (C, H, W); the result has the
    shape of ``X``. ``dy``, ``dx`` are integer tensors of shape (batch,) with |dy| < H and |dx| < W.
    """
    Xi, (C, H, W) = _image_batch(X, image_shape)
    B = Xi.shape[0]
    dy, dx = torch.as_tensor(dy, device=X.device), torch.as_tensor(dx, device=X.device)
    for name, d, size in (("dy", dy, H), ("dx", dx, W)):
        if d.shape != (B,) or d.is_floating_point() or d.is_complex():
            raise ValueError(f"{name}: expected integer offsets of shape ({B},), got {d.dtype} of shape {tuple(d.shape)}")
        if B and int(d.abs().max()) >= size:
            raise ValueError(f"{name}: expected offsets of magnitude below the image size {size}, got {int(d.abs().max())}")
    if B == 0:
        return X.clone()
    s = max(int(dy.abs().max()), int(dx.abs().max()))
    if s == 0:
        return X.clone()
    return _shift(Xi, dy, dx, s).reshape(X.shape)


def _shift(Xi: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, s: int) -> torch.Tensor:
    """The translation of images Xi (B, C, H, W) by offsets with |dy|, |dx| ≤ s: one flat gather from
    the edge-padded batch P, out[b, c, i, j] = P[b, c, s − dy_b + i, s − dx_b + j] (no host synchronisation)."""
    B, C, H, W = Xi.shape
    P = F.pad(Xi, (s, s, s, s), mode="replicate")
    Hp, Wp = H + 2 * s, W + 2 * s
    dev = Xi.device
    start = (torch.arange(B * C, device=dev) * (Hp * Wp)).view(B, C, 1, 1) + ((s - dy) * Wp + (s - dx)).view(B, 1, 1, 1)
    window = (torch.arange(H, device=dev) * Wp).view(1, 1, H, 1) + torch.arange(W, device=dev).view(1, 1, 1, W)
    return P.reshape(-1)[start + window]


def random_shift(X: torch.Tensor, max_shift: int, image_shape=None, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of ``X`` by offsets drawn uniformly from {−max_shift, …, max_shift}².

    ``X`` and ``image_shape`` as for :func:`shift_images`; the offsets are drawn on the CPU from
    ``generator`` (the global generator when None), so the draws do not depend on ``X``'s device.
    ``max_shift`` = 0 returns a copy of ``X``.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift: expected an integer ≥ 0, got {max_shift!r}")
    Xi, (C, H, W) = _image_batch(X, image_shape)
    if max_shift >= min(H, W):
        raise ValueError(f"max_shift: expected a shift below the image size {H} × {W}, got {max_shift}")
    if max_shift == 0:
        return X.clone()
    d = torch.randint(-max_shift, max_shift + 1, (2, Xi.shape[0]), generator=generator).to(X.device)
    return _shift(Xi, d[0], d[1], max_shift).reshape(X.shape)
