"""Implicit layers for your own ``nn.Module``: the hidden equilibrium x*(u) as a layer's output.

    x*(u) = Φ(A x* + B u + b),   μ∞(A) ≤ γ

:class:`ImplicitLayer` (dense: (batch, in_features) → (batch, hidden)) and :class:`ConvImplicitLayer`
(images (batch, C_in, H, W) → states (batch, C, H', W')) are the implicit models of
:mod:`linf_opt.models` with the read-out left out: the same parameters A (or the kernel), B, b, the same
solvers and exact implicit gradients, the same :class:`~linf_opt.models.base.ImplicitModel` interface
(``equilibrium``, ``operator``, ``mu``, ``lipschitz_bound``: the read-out is the identity, so the bound is
the ℓ∞ Lipschitz constant of u ↦ x*(u)). Put them anywhere in a model, e.g.
``nn.Sequential(ImplicitLayer(784, 100), nn.Linear(100, 10))``, and keep μ∞(A) ≤ γ in your own loop with
:func:`~linf_opt.models.constraint.keep_well_posed` (docs/guide_own_model.md).

    >>> layer = ImplicitLayer(3, 16, gamma=0.9)
    >>> layer(torch.randn(5, 3)).shape
    torch.Size([5, 16])
"""
from __future__ import annotations

import torch

from linf_opt.models.conv_network import ConvImplicitNetwork
from linf_opt.models.implicit_network import ImplicitNetwork

__all__ = ["ImplicitLayer", "ConvImplicitLayer"]


class _IdentityReadout:
    """Mixin: y = x (the state, in its own shape); C = I over the flattened state."""

    def _drop_readout(self) -> None:
        del self.C
        del self.c
        self.C = self.c = None
        self.D = None
        self.out_features = self.n

    def readout(self, X: torch.Tensor, U: torch.Tensor | None) -> torch.Tensor:
        return X

    def readout_matrix(self) -> torch.Tensor:
        return torch.eye(self.n, dtype=self.dtype, device=self.device)


class ImplicitLayer(_IdentityReadout, ImplicitNetwork):
    """Dense implicit layer u ↦ x*(u) with x* = Φ(A x* + B u + b): (batch, in_features) → (batch, hidden).

    Args: ``in_features`` (r), ``hidden_features`` (n), then every keyword of
    :class:`~linf_opt.models.implicit_network.ImplicitNetwork` (``activation``, ``gamma``, ``eta``,
    ``method``, ``tol``, ``max_iter``, ``backward``, ``dtype``, ``generator``, …) except the read-out's
    ``out_features`` and ``feedthrough``. A starts with μ_{∞,η}(A) ≤ γ; a torch optimizer does not keep it
    there: call ``keep_well_posed(model)`` (:mod:`linf_opt.models.constraint`).
    """

    def __init__(self, in_features: int, hidden_features: int, activation="relu", **kwargs):
        for key in ("out_features", "feedthrough"):
            if key in kwargs:
                raise TypeError(f"ImplicitLayer: {key!r} belongs to a read-out, which a layer does not have "
                                f"(use ImplicitNetwork, or put an nn.Linear after the layer)")
        super().__init__(in_features, hidden_features, 1, activation, **kwargs)
        self._drop_readout()

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, hidden={self.hidden_features}, activation={self.activation.name}, "
                f"gamma={self.gamma}, method={self.method}, weighted={self.eta is not None}")


class ConvImplicitLayer(_IdentityReadout, ConvImplicitNetwork):
    """Convolutional implicit layer: images (batch, in_channels, H, W) → states (batch, channels, H', W').

    x* = Φ(K ⋆ x* + B ⋆ u + b) with the injection B ⋆ u a convolution of stride ``stride`` (default 1:
    H' = H, W' = W; 2 halves the size) and K a same-size ``kernel_size`` convolution on the state, kept in
    μ∞ ≤ γ by the kernel-level polytope (docs/mathematics.md §10).

    Args: ``in_channels``, ``channels`` (C), ``input_size`` ((H, W) of the input images: the state size is
    fixed by it), ``kernel_size`` (odd), then the keywords of
    :class:`~linf_opt.models.conv_network.ConvImplicitNetwork` (``stride``, ``padding``,
    ``injection_kernel_size``, ``gamma``, ``activation``, solver settings, ``dtype``, ``generator``, …)
    except the read-out's ``out_features`` and ``pool``.
    """

    def __init__(self, in_channels: int, channels: int, input_size, kernel_size: int = 3, activation="relu", *,
                 stride: int = 1, **kwargs):
        for key in ("out_features", "pool"):
            if key in kwargs:
                raise TypeError(f"ConvImplicitLayer: {key!r} belongs to a read-out, which a layer does not have "
                                f"(use ConvImplicitNetwork, or pool and read out after the layer)")
        super().__init__(in_channels, channels, input_size, 1, kernel_size, activation, stride=stride, pool=1,
                         **kwargs)
        self._drop_readout()

    def extra_repr(self) -> str:
        C, Hs, Ws = self.state_shape
        return (f"in={self.input_shape}, state=({C}, {Hs}, {Ws}), kernel={self.kernel_size}, "
                f"padding={self.padding}, stride={self.stride}, gamma={self.gamma}, "
                f"construction={self.construction}, activation={self.activation.name}")
