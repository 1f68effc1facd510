"""Keep μ∞(A) ≤ γ in your own training loop, with any torch optimizer (docs/guide_own_model.md).

A torch optimizer step moves A out of the ℓ∞ polytope; projecting back after every step is projected
gradient (docs/mathematics.md §6). :func:`keep_well_posed` finds every implicit layer and network inside
a model and returns a :class:`WellPosedConstraint` that does this projection:

    constraint = keep_well_posed(model)            # then, in the loop:
    opt.step(); constraint.project_()              # μ∞(A) ≤ γ again, for every implicit layer

or, given the optimizer, installs it as the optimizer's step post-hook so that every ``opt.step()``
projects by itself (``constraint.remove()`` uninstalls it):

    constraint = keep_well_posed(model, optimizer=opt)

``constraint.check()`` raises :class:`~linf_opt.errors.InvariantError` when a layer is outside its set
and returns the measures; ``constraint.mu()`` only reports them.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from linf_opt._tensor import check_scalar
from linf_opt.errors import InvariantError
from linf_opt.models.base import ImplicitModel
from linf_opt.models.implicit_network import ImplicitNetwork
from linf_opt.sets.feasible import MuInfPolytope

__all__ = ["keep_well_posed", "WellPosedConstraint", "implicit_modules"]


def implicit_modules(model: nn.Module) -> list[tuple[str, ImplicitModel]]:
    """Every :class:`~linf_opt.models.base.ImplicitModel` inside ``model`` (itself included), with its
    name in ``model.named_modules()`` ("" for the model itself)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ImplicitModel)]


def _parametrized(m: ImplicitModel) -> bool:
    return any(parametrize.is_parametrized(m, name) for name in ("A", "kernel"))


class WellPosedConstraint:
    """The constraint μ_{∞,η}(A) ≤ γ on every implicit layer of a model (see the module docstring).

    Attributes: ``modules`` (list of (name, layer)), ``gammas`` (the bound of each: the ``gamma`` given
    to :func:`keep_well_posed`, else the layer's own ``gamma``), ``steps`` (projections done),
    ``tol`` (the tolerance of :meth:`check`).
    """

    def __init__(self, model: nn.Module, gamma: float | None = None, *, optimizer=None, check: bool = False,
                 tol: float = 1e-6):
        self.modules = implicit_modules(model)
        if not self.modules:
            raise ValueError(f"keep_well_posed: no implicit layer or network (linf_opt ImplicitModel) in "
                             f"{type(model).__name__}")
        if gamma is not None:
            gamma = check_scalar(gamma, "gamma", high=1.0, high_open=True)
        self.gammas = [float(m.gamma) if gamma is None else gamma for _, m in self.modules]
        self.tol = check_scalar(tol, "tol", low=0.0)
        self.check_each_step = bool(check)
        self.steps = 0
        self._hook = None
        for name, m in self.modules:
            if getattr(m, "construction", "projection") != "projection":
                raise ValueError(f"keep_well_posed: {name or type(m).__name__} uses construction="
                                 f"{m.construction!r}, which does not bound μ∞ and is not projected")
        if optimizer is not None:
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
            self._hook = optimizer.register_step_post_hook(self._after_step)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.project_()
        if self.check_each_step:
            self.check()

    def _set(self, m: ImplicitModel, gamma: float) -> MuInfPolytope:
        return MuInfPolytope(gamma, eta=m.eta)

    @torch.no_grad()
    def project_(self) -> "WellPosedConstraint":
        """Project every layer's A onto μ_{∞,η}(A) ≤ γ, in place (the exact Euclidean projection; for a
        convolution the kernel-level projection). Layers whose A is a parametrization that lands in the set
        by construction are left alone. Returns self."""
        for (_, m), gamma in zip(self.modules, self.gammas):
            if _parametrized(m):
                continue
            target = m.A if isinstance(m, ImplicitNetwork) else m.operator
            self._set(m, gamma).project_(target)
        self.steps += 1
        return self

    __call__ = project_

    @torch.no_grad()
    def mu(self) -> dict[str, float]:
        """μ_{∞,η}(A) of every layer, by name (the model's own class name for the model itself)."""
        return {(name or type(m).__name__): float(m.mu()) for name, m in self.modules}

    def check(self, tol: float | None = None) -> dict[str, float]:
        """Raise :class:`~linf_opt.errors.InvariantError` naming the layer when μ_{∞,η}(A) > γ + tol for
        any layer; else return :meth:`mu`."""
        tol = self.tol if tol is None else tol
        mus = self.mu()
        for (key, mu), gamma in zip(mus.items(), self.gammas):
            if not mu <= gamma + tol:
                raise InvariantError(f"{key}: μ∞(A) = {mu:.10g} > γ = {gamma:.10g} (tol {tol:g}) after "
                                     f"{self.steps} projection(s); call project_() after every optimizer step")
        return mus

    def remove(self) -> None:
        """Uninstall the optimizer hook (if one was installed)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def __repr__(self) -> str:
        names = ", ".join(f"{n or type(m).__name__} ≤ {g:g}" for (n, m), g in zip(self.modules, self.gammas))
        return f"WellPosedConstraint({names}{', hooked' if self._hook is not None else ''})"


def keep_well_posed(model: nn.Module, gamma: float | None = None, *, optimizer=None, check: bool = False,
                    tol: float = 1e-6) -> WellPosedConstraint:
    """The constraint μ_{∞,η}(A) ≤ γ on every implicit layer/network inside ``model``.

    Args:
        model: any ``nn.Module`` holding :class:`~linf_opt.models.layers.ImplicitLayer`,
            :class:`~linf_opt.models.layers.ConvImplicitLayer`, or implicit networks (or one itself).
        gamma: the bound for every layer (< 1); default: each layer's own ``gamma``.
        optimizer: when given, every ``optimizer.step()`` projects afterwards (a step post-hook); else call
            ``constraint.project_()`` after each step yourself.
        check: with ``optimizer``, also :meth:`~WellPosedConstraint.check` after every step.
        tol: the tolerance of ``check``.

    Raises ``ValueError`` when the model holds no implicit layer, or one built with the authors'
    construction (which does not bound μ∞).

        >>> model = nn.Sequential(ImplicitLayer(4, 32), nn.Linear(32, 2))
        >>> opt = torch.optim.Adam(model.parameters(), 1e-2)
        >>> constraint = keep_well_posed(model, optimizer=opt)   # opt.step() now projects
    """
    return WellPosedConstraint(model, gamma, optimizer=optimizer, check=check, tol=tol)
