"""Where ℓ∞ threat models live: the attack scale, its valid range, and the map to the model's inputs.

Attacks and radii ε are stated at the *attack scale* (for images: pixels p ∈ [0, 1]); the network
may see a transformed input. An :class:`InputSpace` holds the valid range [low, high] at the attack
scale and the elementwise affine map to model inputs,

    x = (p − shift) / scale,        scale > 0,

so an ε-ball at the attack scale, clipped to the valid range, becomes the model-input box

    [ (max(p − ε, low) − shift) / scale,  (min(p + ε, high) − shift) / scale ].

Clipping only removes inputs that cannot occur, so every bound computed on the clipped box holds for
every valid perturbed input, and it is tighter. :data:`PIXELS` is the identity map on [0, 1];
:data:`MNIST` maps pixels to the normalized inputs (p − 0.1307) / 0.3081 of the MNIST networks.

    >>> lo, hi = MNIST.box(pixels, 0.1)            # model-input box of the ε = 0.1 pixel ball
    >>> logits = net(MNIST.to_model(pixels))
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from linf_opt._tensor import check_finite, check_scalar, to_torch
from linf_opt.data.datasets import MNIST_MEAN, MNIST_STD
from linf_opt.errors import NonFiniteError, ShapeError

__all__ = ["InputSpace", "PIXELS", "MNIST", "IDENTITY", "check_eps"]


def check_eps(eps, name: str = "eps") -> float:
    """ε as a float after checking it is a finite number ≥ 0 (``ValueError``/``NonFiniteError`` otherwise)."""
    return check_scalar(eps, name, low=0.0, what="an ℓ∞ radius")


@dataclass(frozen=True)
class InputSpace:
    """The attack scale's valid range [low, high] and the affine map x = (p − shift)/scale to model inputs.

    Args:
        low, high: valid range of every input coordinate at the attack scale (±inf for none), low < high.
        shift, scale: the map to model inputs (scale > 0); shift = 0, scale = 1 is the identity.
        range_tol: how far an input may lie outside [low, high] (round-off of a conversion) before
            :meth:`check` refuses it.
    """

    low: float = -math.inf
    high: float = math.inf
    shift: float = 0.0
    scale: float = 1.0
    range_tol: float = 1e-6

    def __post_init__(self):
        low, high = float(self.low), float(self.high)
        if math.isnan(low) or math.isnan(high) or not low < high:
            raise ValueError(f"low, high: expected low < high (±inf allowed), got low={low}, high={high}")
        check_scalar(self.shift, "shift")
        check_scalar(self.scale, "scale", low=0.0, low_open=True)
        check_scalar(self.range_tol, "range_tol", low=0.0)

    # -- maps ------------------------------------------------------------------------------------------
    def to_model(self, p: torch.Tensor) -> torch.Tensor:
        """Model inputs x = (p − shift)/scale of attack-scale inputs p (differentiable)."""
        if self.shift == 0.0 and self.scale == 1.0:
            return p
        return (p - self.shift) / self.scale

    def to_attack(self, x: torch.Tensor) -> torch.Tensor:
        """Attack-scale inputs p = scale·x + shift of model inputs x (the inverse of :meth:`to_model`)."""
        if self.shift == 0.0 and self.scale == 1.0:
            return x
        return x * self.scale + self.shift

    def eps_to_model(self, eps) -> float:
        """An attack-scale radius in model units: ε / scale (radii do not move with the shift)."""
        return check_eps(eps) / self.scale

    @property
    def model_range(self) -> tuple[float, float]:
        """The valid range [low, high] in model units."""
        return (self.low - self.shift) / self.scale, (self.high - self.shift) / self.scale

    # -- checks and boxes ----------------------------------------------------------------------------
    def check(self, p: torch.Tensor, name: str = "inputs") -> None:
        """Raise ``ValueError`` (naming ``name``) if p is non-finite or leaves [low, high] by more than range_tol."""
        check_finite(p, name)
        if p.numel() == 0:
            return
        below, above = float(p.min()), float(p.max())
        if below < self.low - self.range_tol or above > self.high + self.range_tol:
            hint = ""
            if self.low == 0.0 and self.high == 1.0 and below < 0:
                hint = (" (normalized MNIST inputs? pass pixels p ∈ [0, 1] with space=MNIST, or convert with "
                        "linf_opt.data.datasets.to_pixels)")
            raise ValueError(f"{name}: expected values in the valid input range [{self.low:g}, {self.high:g}] at "
                             f"the attack scale, got values in [{below:.6g}, {above:.6g}]{hint}")

    def clip(self, p: torch.Tensor) -> torch.Tensor:
        """p clipped to [low, high]."""
        if math.isinf(self.low) and math.isinf(self.high):
            return p
        return p.clamp(min=None if math.isinf(self.low) else self.low,
                       max=None if math.isinf(self.high) else self.high)

    def ball(self, p: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The ε-ball around p clipped to the valid range, at the attack scale: (max(p − ε, low), min(p + ε, high))."""
        eps = check_eps(eps)
        return self.clip(p - eps), self.clip(p + eps)

    def box(self, p: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The clipped ε-ball around attack-scale inputs p as a box in model units ``(lower, upper)``."""
        lo, hi = self.ball(p, eps)
        return self.to_model(lo), self.to_model(hi)


IDENTITY = InputSpace()
"""No range and no transformation: inputs are the model's inputs, perturbations are unconstrained."""
PIXELS = InputSpace(0.0, 1.0)
"""Pixels in [0, 1] fed to the model as they are."""
MNIST = InputSpace(0.0, 1.0, MNIST_MEAN, MNIST_STD)
"""Pixels in [0, 1] fed to the model normalized, x = (p − 0.1307)/0.3081 (see :mod:`linf_opt.data.datasets`)."""


# ----------------------------------------------------------------------------------------------------
# Shared argument handling of attacks and certificates
# ----------------------------------------------------------------------------------------------------

def check_labels(labels, batch: int, device) -> torch.Tensor:
    """Labels as int64 class indices of shape (batch,) on ``device`` (TypeError/ShapeError/ValueError otherwise)."""
    t = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"labels: expected integer class indices, got dtype {t.dtype}")
    if t.shape != (batch,):
        raise ShapeError(f"labels: expected shape ({batch},) to match inputs, got {tuple(t.shape)}")
    if batch and int(t.min()) < 0:
        raise ValueError(f"labels: expected class indices ≥ 0, got {int(t.min())}")
    return t.to(device=device, dtype=torch.long)


def prepare_batch(inputs, labels, eps, space: InputSpace, model_dtype=None):
    """Validate a labelled batch for a threat model: ``(inputs tensor, labels, eps, inputs_were_numpy)``.

    inputs must lie in the space's valid range (attack scale), labels be class indices, ε ≥ 0 finite.
    """
    if not isinstance(space, InputSpace):
        raise TypeError(f"space: expected an InputSpace (e.g. linf_opt.robustness.input_space.MNIST), got {type(space).__name__}")
    P, was_numpy = to_torch(inputs, "inputs", dtype=model_dtype)
    if P.ndim == 0:
        raise ShapeError("inputs: expected a batch of shape (batch, ...), got a scalar")
    if P.shape[0] == 0:
        raise ShapeError(f"inputs: the batch is empty (shape {tuple(P.shape)}); give at least one sample")
    space.check(P, "inputs")
    T = check_labels(labels, P.shape[0], P.device)
    return P.detach(), T, check_eps(eps), was_numpy


def batch_slices(n: int, batch_size: int | None):
    """Slices of ``batch_size`` consecutive samples covering range(n) (one slice when None)."""
    if batch_size is None:
        yield slice(0, n)
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int or None, got {batch_size!r}")
    for s in range(0, n, batch_size):
        yield slice(s, min(s + batch_size, n))
