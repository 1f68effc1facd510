"""ℓ∞ adversarial attacks: FGSM and PGD with random start and restarts (docs/mathematics.md §8).

Design: an attack works at the *attack scale* of an :class:`~linf_opt.robustness.input_space.InputSpace` — the
scale at which ε and the valid range are stated (pixels in [0, 1] for images) — and feeds the model
``space.to_model(p)``. ``model`` is any callable from model inputs (batch, ...) to logits (batch, q)
(an :class:`~linf_opt.models.implicit_network.ImplicitNetwork`, a ``torch.nn.Module``, a function); ``inputs`` and the
returned adversarial examples are at the attack scale, and every returned point p′ satisfies

    ‖p′ − p‖∞ ≤ ε   and   low ≤ p′ ≤ high

(each iterate is projected onto the ε-ball intersected with the valid range). Inputs outside the valid
range, negative or non-finite ε, and bad labels raise errors that name the argument.

- :func:`fgsm`: p′ = Π(p + ε · sign ∇ₚ CE(model(p), t)).
- :func:`pgd`: ``restarts`` runs of ``steps`` signed-gradient ascent steps of size ``step_size`` from
  a uniform random start in the ball; per sample, a misclassifying run wins, then the highest loss.
  Reproducible: the random starts come from private generators seeded with ``seed`` (per chunk of
  samples, so that results do not depend on ``batch_size``).
- :func:`attack_accuracy`: accuracy on the adversarial examples of either attack, in batches.

    >>> from linf_opt.robustness.input_space import MNIST
    >>> adv = pgd(net, pixels, labels, eps=0.1, space=MNIST, steps=40, restarts=1, seed=0)
    >>> acc = attack_accuracy(net, pixels, labels, 0.1, attack="pgd", space=MNIST)
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from linf_opt._tensor import like_input
from linf_opt.errors import ShapeError
from linf_opt.robustness.input_space import PIXELS, InputSpace, batch_slices, check_eps, prepare_batch

__all__ = ["fgsm", "pgd", "attack_accuracy", "ATTACKS"]


def _dtype_of(model) -> torch.dtype | None:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.dtype
    return None


@contextlib.contextmanager
def _frozen(model):
    """Parameters stop requiring gradients during an attack: only ∇ₚ is needed, so skip the rest."""
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def _logits(model, X: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    Y = model(X)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ShapeError(f"model: expected logits of shape ({X.shape[0]}, classes), got {tuple(Y.shape)}")
    if X.shape[0] and int(T.max()) >= Y.shape[1]:
        raise ValueError(f"labels: expected class indices < {Y.shape[1]} (the model's number of outputs), "
                         f"got {int(T.max())}")
    return Y


def _loss_and_grad(model, space: InputSpace, P: torch.Tensor, T: torch.Tensor):
    """Per-sample cross-entropy at P and its gradient with respect to P (attack scale)."""
    with torch.enable_grad():
        P = P.detach().requires_grad_(True)
        losses = F.cross_entropy(_logits(model, space.to_model(P), T), T, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), P)
    return losses.detach(), grad


def _project(X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(X, hi), lo)


def fgsm(model: Callable, inputs, labels, eps: float, *, space: InputSpace = PIXELS,
         batch_size: int | None = None):
    """Fast gradient sign method: p′ = Π_{B(p, ε) ∩ [low, high]}(p + ε · sign ∇ₚ CE(model(x(p)), t)).

    Args:
        model: callable from model inputs to logits (batch, q).
        inputs: (batch, ...) at the attack scale of ``space``; labels: (batch,) class indices.
        eps: ℓ∞ radius at the attack scale, finite and ≥ 0.
        space: the :class:`InputSpace` (valid range and map to model inputs); default pixels in [0, 1].
        batch_size: process this many samples at a time (None: all at once).

    Returns the adversarial examples at the attack scale, same shape and type as ``inputs``.

        >>> adv = fgsm(net, pixels, labels, 0.1, space=MNIST)
    """
    P, T, eps, was_numpy = prepare_batch(inputs, labels, eps, space, _dtype_of(model))
    out = torch.empty_like(P)
    with _frozen(model):
        for sl in batch_slices(P.shape[0], batch_size):
            p = P[sl]
            lo, hi = space.ball(p, eps)
            _, g = _loss_and_grad(model, space, p, T[sl])
            out[sl] = _project(p + eps * g.sign(), lo, hi)
    return like_input(out, was_numpy)


_NOISE_CHUNK = 256  # samples per generator of the random starts


def _start_noise(seed: int, run: int, sl: slice, sample_shape, dtype) -> torch.Tensor:
    """Uniform [0, 1) noise for the samples ``sl`` in restart ``run``, independent of the batching.

    Samples are grouped in fixed chunks of ``_NOISE_CHUNK``, each drawn whole from its own generator
    seeded by (seed, run, chunk), so a sample gets the same start whatever batch it is attacked in.
    """
    parts = []
    for c in range(sl.start // _NOISE_CHUNK, (sl.stop - 1) // _NOISE_CHUNK + 1):
        state = np.random.SeedSequence([seed & 0xFFFFFFFF, run, c]).generate_state(2, np.uint64)[0]
        g = torch.Generator(device="cpu").manual_seed(int(state) & ((1 << 63) - 1))
        chunk = torch.rand((_NOISE_CHUNK, *sample_shape), generator=g, dtype=dtype)
        lo, hi = max(sl.start - c * _NOISE_CHUNK, 0), min(sl.stop - c * _NOISE_CHUNK, _NOISE_CHUNK)
        parts.append(chunk[lo:hi])
    return torch.cat(parts)


def pgd(model: Callable, inputs, labels, eps: float, *, steps: int = 40, step_size: float | None = None,
        restarts: int = 1, random_start: bool = True, space: InputSpace = PIXELS, seed: int = 0,
        batch_size: int | None = None):
    """Projected gradient descent (ascent on the cross-entropy) in the ℓ∞ ball, clipped to the valid range.

    Each of ``restarts`` runs starts at p + δ, δ uniform in [−ε, ε] (or at p without ``random_start``),
    projected onto the clipped ball, then takes ``steps`` steps p ← Π(p + step_size · sign ∇ₚ CE).
    Per sample the result is the run's final point that misclassifies, else the one of highest loss.

    Args:
        steps: ascent steps per run (≥ 0); step_size: default 2.5 ε / steps (Madry et al.).
        restarts: independent runs (≥ 1); random_start: draw the starting point in the ball.
        seed: seed of the private generators of the random starts (the global RNG is untouched); a
            sample's starts depend on the seed and its index only, not on ``batch_size``.
        model, inputs, labels, eps, space, batch_size: as in :func:`fgsm`.

    Returns the adversarial examples at the attack scale, same shape and type as ``inputs``.

        >>> adv = pgd(net, pixels, labels, 0.1, space=MNIST, steps=40, restarts=2, seed=0)
    """
    P, T, eps, was_numpy = prepare_batch(inputs, labels, eps, space, _dtype_of(model))
    for name, v, low in (("steps", steps, 0), ("restarts", restarts, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name}: expected an int ≥ {low}, got {v!r}")
    if step_size is None:
        step_size = 2.5 * eps / max(steps, 1)
    step_size = check_eps(step_size, "step_size")
    seed = int(seed)
    out = P.clone()
    with _frozen(model):
        for sl in batch_slices(P.shape[0], batch_size):
            p, t = P[sl], T[sl]
            lo, hi = space.ball(p, eps)
            best = p.clone()
            best_loss = torch.full((p.shape[0],), -torch.inf, dtype=p.dtype, device=p.device)
            best_wrong = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
            for run in range(restarts):
                x = p
                if random_start and eps > 0:
                    noise = _start_noise(seed, run, sl, p.shape[1:], p.dtype).to(p.device)
                    x = _project(p + (2 * noise - 1) * eps, lo, hi)
                for _ in range(steps):
                    _, g = _loss_and_grad(model, space, x, t)
                    x = _project(x + step_size * g.sign(), lo, hi)
                with torch.no_grad():
                    Y = _logits(model, space.to_model(x), t)
                    loss = F.cross_entropy(Y, t, reduction="none")
                    wrong = Y.argmax(-1) != t
                take = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
                best = torch.where(take.view(-1, *([1] * (p.ndim - 1))), x, best)
                best_loss = torch.where(take, loss, best_loss)
                best_wrong |= wrong
            out[sl] = best
    return like_input(out, was_numpy)


ATTACKS: dict[str, Callable] = {"fgsm": fgsm, "pgd": pgd}


def attack_accuracy(model: Callable, inputs, labels, eps: float, attack: str = "pgd", *,
                    space: InputSpace = PIXELS, batch_size: int | None = 1000, **options) -> float:
    """Fraction of samples still classified correctly after ``attack`` ("fgsm" or "pgd") at radius ε.

    ``options`` go to the attack (e.g. ``steps``, ``restarts``, ``seed`` for PGD). With eps = 0 this
    is the clean accuracy.

        >>> attack_accuracy(net, pixels, labels, 0.1, "pgd", space=MNIST, steps=40)
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack: expected one of {sorted(ATTACKS)}, got {attack!r}")
    P, T, eps, _ = prepare_batch(inputs, labels, eps, space, _dtype_of(model))
    if P.shape[0] == 0:
        raise ShapeError("inputs: expected at least one sample to measure an accuracy")
    # one attack over all samples (batched inside): a sample's random starts do not depend on batch_size
    adv = ATTACKS[attack](model, P, T, eps, space=space, batch_size=batch_size, **options) if eps > 0 else P
    correct = 0
    for sl in batch_slices(P.shape[0], batch_size):
        with torch.no_grad(), _frozen(model):
            correct += int((_logits(model, space.to_model(adv[sl]), T[sl]).argmax(-1) == T[sl]).sum())
    return correct / P.shape[0]
