"""Slope-restricted activations Φ (docs/mathematics.md §1): φ weakly increasing with slopes in [0, 1].

Every bound in linf_opt holds for any φ with 0 ≤ (φ(s) − φ(t))/(s − t) ≤ 1. An :class:`Activation`
carries φ, its derivative φ′ (for exact implicit gradients) and its slope interval, which is checked
when it is made, so an activation outside the class is refused up front.

    >>> act = get_activation("leaky_relu", negative_slope=0.1)
    >>> act(torch.tensor([-1.0, 2.0]))
    tensor([-0.1000,  2.0000])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Activation", "get_activation", "register_activation", "ACTIVATIONS"]


@dataclass(frozen=True)
class Activation:
    """An elementwise φ with derivative φ′ and slopes in [min_slope, max_slope] ⊆ [0, 1].

    ``fn(z)`` and ``derivative(z)`` act elementwise on tensors; ``derivative`` returns φ′(z) (any value
    in [min_slope, max_slope] at a kink, e.g. 0 for ReLU at z = 0).
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]
    min_slope: float = 0.0
    max_slope: float = 1.0

    def __post_init__(self):
        if not (0.0 <= self.min_slope <= self.max_slope <= 1.0):
            raise ValueError(
                f"activation {self.name!r}: slopes must lie in [0, 1] (docs/mathematics.md §1), got "
                f"[{self.min_slope}, {self.max_slope}]")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def _relu_grad(z):
    return (z > 0).to(z.dtype)


def _leaky(slope: float) -> Activation:
    slope = float(slope)
    if not (0.0 <= slope <= 1.0):
        raise ValueError(f"negative_slope: expected a value in [0, 1] so that φ stays slope-restricted, got {slope}")
    return Activation(
        f"leaky_relu({slope:g})",
        lambda z: torch.nn.functional.leaky_relu(z, slope),
        lambda z: torch.where(z > 0, torch.ones_like(z), torch.full_like(z, slope)),
        min_slope=slope)


def _tanh_grad(z):
    t = torch.tanh(z)
    return 1 - t * t


def _sigmoid_grad(z):
    s = torch.sigmoid(z)
    return s * (1 - s)


RELU = Activation("relu", torch.relu, _relu_grad)
ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "relu": lambda: RELU,
    "leaky_relu": lambda negative_slope=0.01: _leaky(negative_slope),
    "tanh": lambda: Activation("tanh", torch.tanh, _tanh_grad),
    # The logistic function has slopes in (0, 1/4].
    "sigmoid": lambda: Activation("sigmoid", torch.sigmoid, _sigmoid_grad, 0.0, 0.25),
    "identity": lambda: Activation("identity", lambda z: z, torch.ones_like, 1.0, 1.0),
}


def register_activation(name: str, factory: Callable[..., Activation]) -> None:
    """Add an activation factory under ``name`` (its slopes are checked when it is built)."""
    ACTIVATIONS[name] = factory


def get_activation(spec: str | Activation = "relu", **params) -> Activation:
    """Return the :class:`Activation` named ``spec`` (with ``params``), or ``spec`` itself if it is one."""
    if isinstance(spec, Activation):
        return spec
    if not isinstance(spec, str) or spec not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)} or an Activation, got {spec!r}")
    return ACTIVATIONS[spec](**params)
