"""Certified-robust training with the embedded network (docs/mathematics.md §8): the loss and its ε / mixing schedule.

For inputs u with labels t and the input box [u̲, ū] = [u − ε, u + ε] ∩ [lower, upper] (model units),
the embedded network bounds every class difference zⱼ = y_t − yⱼ from below by z̲ⱼ (relative
classifier, :func:`linf_opt.robustness.certify.margin_lower_bounds`; z̲_t = 0). The loss is

    ℓ = (1 − κ) · CE(y(u), t) + κ · CE(−z̲(u), t),    CE(−z̲, t) = log(1 + Σⱼ≠t exp(−z̲ⱼ)),

an upper bound of the worst-case cross-entropy over the box in its second term. Gradients through both
equilibria are exact (implicit differentiation, no new backward code). The schedule ramps ε and κ
linearly from 0 over ``eps_ramp_epochs`` / ``mix_ramp_epochs`` after ``warmup_epochs`` clean epochs
(``[robust]`` in the problem file, :class:`~linf_opt.training.config.RobustConfig`).

    >>> eps_pixel, mix = robust_schedule(problem.robust, epoch, step / steps_per_epoch)
    >>> loss, info = robust_loss(net, U, T, eps_to_normalized(eps_pixel), mix,
    ...                          lower=float(to_normalized(0.0)), upper=float(to_normalized(1.0)))
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from linf_opt.robustness.certify import embedded_equilibrium, margin_lower_bounds
from linf_opt.robustness.input_space import check_eps

__all__ = ["robust_loss", "robust_schedule", "ramp"]


def ramp(progress: float, length: int | float) -> float:
    """Linear ramp: 0 before 0, progress/length on [0, length], 1 after (a step at 0 when length = 0)."""
    if progress < 0:
        return 0.0
    if length <= 0:
        return 1.0
    return min(progress / length, 1.0)


def robust_schedule(robust_cfg, epoch: float, step_fraction: float = 0.0) -> tuple[float, float]:
    """(ε at pixel scale, mixing weight κ) at a point of training.

    Training time is τ = epoch + step_fraction (``epoch`` counts from 0; ``step_fraction`` ∈ [0, 1] is
    the part of the current epoch done, so a fractional ``epoch`` alone works too). With
    s = τ − warmup_epochs: ε = eps · ramp(s, eps_ramp_epochs), κ = mix · ramp(s, mix_ramp_epochs),
    where ramp is 0 for s < 0 and grows linearly to 1. A disabled ``[robust]`` section gives (0, 0).

        >>> robust_schedule(RobustConfig(enabled=True, eps=0.1, eps_ramp_epochs=4, mix=0.5,
        ...                              mix_ramp_epochs=2, warmup_epochs=1), 2, 0.0)
        (0.025, 0.25)
    """
    tau = float(epoch) + float(step_fraction)
    if not math.isfinite(tau) or tau < 0 or not 0.0 <= float(step_fraction) <= 1.0:
        raise ValueError(f"epoch, step_fraction: expected epoch ≥ 0 and step_fraction in [0, 1], got "
                         f"{epoch!r}, {step_fraction!r}")
    if not robust_cfg.enabled:
        return 0.0, 0.0
    s = tau - robust_cfg.warmup_epochs
    return (robust_cfg.eps * ramp(s, robust_cfg.eps_ramp_epochs),
            robust_cfg.mix * ramp(s, robust_cfg.mix_ramp_epochs))


def robust_loss(net, inputs: torch.Tensor, labels: torch.Tensor, eps_normalized: float, mix: float, *,
                lower: float | None = None, upper: float | None = None,
                logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """ℓ = (1 − κ) CE(y(u), t) + κ CE(−z̲(u), t) over the batch (mean), differentiable in the parameters.

    Args:
        net: an :class:`~linf_opt.models.implicit_network.ImplicitNetwork` (classification).
        inputs: (batch, r) model inputs (normalized for MNIST); labels: (batch,) class indices.
        eps_normalized: box radius in model units (pixel ε / 0.3081 for MNIST), finite, ≥ 0.
        mix: κ ∈ [0, 1].
        lower, upper: the valid input range in model units (the box is clipped to it; None: unbounded).
        logits: the clean logits y(u) if the caller already computed them (with their graph); else
            they are computed here (skipped when κ = 1).

    Returns ``(loss, info)``; info holds floats: "clean_loss" (NaN when κ = 1), "robust_loss", "certified"
    (fraction of the batch with every z̲ⱼ > 0), "eps", "mix", "embedded_iterations". With ε = 0 or
    κ = 0 only the clean term is computed: at ε = 0 the bounds are the exact margins, so "robust_loss"
    is the clean loss and "certified" the clean accuracy; with κ = 0 < ε they are NaN (not computed).
    """
    eps = check_eps(eps_normalized, "eps_normalized")
    mix = float(mix)
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix: expected a weight in [0, 1], got {mix}")
    info = dict(eps=eps, mix=mix, clean_loss=math.nan, robust_loss=math.nan, certified=math.nan,
                embedded_iterations=0.0)
    robust = eps > 0 and mix > 0
    total = inputs.new_zeros(())
    if not robust or mix < 1:
        Y = net(inputs) if logits is None else logits
        clean = F.cross_entropy(Y, labels)
        info["clean_loss"] = float(clean.detach())
        total = total + (1 - mix if robust else 1.0) * clean
        if eps == 0:  # the bounds are the exact margins: robust loss = clean loss, certified = correct
            info["robust_loss"] = info["clean_loss"]
            info["certified"] = float((Y.detach().argmax(1) == labels).float().mean())
    if robust:
        lo, hi = inputs - eps, inputs + eps
        if lower is not None:
            lo = lo.clamp(min=lower)
        if upper is not None:
            hi = hi.clamp(max=upper)
        xl, xu, stats = embedded_equilibrium(net, lo, hi)
        z = margin_lower_bounds(net, xl, xu, labels, lo, hi)
        rob = F.cross_entropy(-z, labels)
        info["robust_loss"] = float(rob.detach())
        info["certified"] = float(((z > 0).sum(1) == z.shape[1] - 1).float().mean())
        info["embedded_iterations"] = float(stats.iterations)
        total = total + mix * rob
    return total, info
