"""What a run shows: test metrics, one line per epoch, and the scalars for TensorBoard.

- :func:`evaluate`: loss and accuracy (classification) or MSE (regression) over a data set, with the
  solver's iteration counts; data-parallel ranks share the work and all agree on the result.
- :func:`format_epoch` / :func:`printed_epoch`: an epoch record's one-line summary, and which epochs
  get a printed line (``training.log_every``).
- :data:`TENSORBOARD_SCALARS`: TensorBoard tag → epoch-record key.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any

import torch
from torch import nn

import linf_opt.training.distributed as distributed
from linf_opt.data.datasets import Dataset
from linf_opt.data.sources import LoaderData, iterate_batches
from linf_opt.errors import ConfigError
from linf_opt.models.base import ImplicitModel

__all__ = ["evaluate", "format_epoch", "printed_epoch", "TENSORBOARD_SCALARS"]


@torch.no_grad()
def evaluate(net: ImplicitModel, inputs, targets: torch.Tensor | None = None, task: str | None = None,
             batch_size: int = 1000, *, ctx: distributed.DistContext | None = None) -> dict[str, float]:
    """Loss and accuracy (classification) or MSE (regression) over a data set, plus solver statistics.

    ``evaluate(net, inputs, targets, task)`` with tensors, or ``evaluate(net, data)`` with a
    :class:`~linf_opt.data.datasets.Dataset` or :class:`~linf_opt.data.sources.LoaderData` (its test
    split; a test loader is iterated once, so the data need not fit in memory). With a data-parallel
    ``ctx`` every rank evaluates its share of each batch and the sums are all-reduced: every rank
    returns the metrics of the whole set.
    """
    if targets is None:
        if not isinstance(inputs, (Dataset, LoaderData)):
            raise TypeError(f"evaluate: expected (inputs, targets, task) tensors or a Dataset / LoaderData, got "
                            f"{type(inputs).__name__} without targets")
        task = inputs.task
        batches = iterate_batches(inputs, "test", batch_size=batch_size, dtype=net.dtype)
    else:
        if task is None:
            raise TypeError("evaluate: pass task ('classification' or 'regression') with inputs and targets")
        batches = ((inputs[i:i + batch_size], targets[i:i + batch_size]) for i in range(0, inputs.shape[0], batch_size))
    total, correct, sq, ce, iters, not_conv, width = 0, 0, 0.0, 0.0, [], 0, 1
    dev = net.device
    for U, T in batches:
        if ctx is not None:
            U, T = U[ctx.rank::ctx.world], T[ctx.rank::ctx.world]
            if not U.shape[0]:
                continue
        U, T = U.to(dev), T.to(dev)
        Y = net(U)
        st = net.last_forward_stats
        iters.append(st.sample_iterations.double().sum().item())
        not_conv += st.n_not_converged
        if task == "classification":
            correct += int((Y.argmax(-1) == T).sum())
            ce += float(nn.functional.cross_entropy(Y, T, reduction="sum"))
        else:
            sq += float(((Y - T) ** 2).sum())
            width = T.shape[-1]
        total += U.shape[0]
    if ctx is not None:
        total, correct, sq, ce, it, not_conv, width = distributed.all_reduce_sums(
            [total, correct, sq, ce, sum(iters), not_conv, width if total else 0], ctx, dev)
        total, correct, not_conv, iters = int(total), int(correct), int(not_conv), [it]
        width = max(int(width) // ctx.world, 1) if width else 1
    if total == 0:
        raise ValueError("evaluate: the test data hold no samples")
    out = {"eval_iterations": sum(iters) / total, "eval_not_converged": not_conv,
           "eval_samples": total}
    if task == "classification":
        out.update(loss=ce / total, accuracy=correct / total)
    else:
        out.update(loss=sq / (total * width), mse=sq / (total * width))
    return out


def format_epoch(rec: dict[str, Any], epochs: int | None = None) -> str:
    """The one-line summary of an epoch record, for logs:
    ``epoch 3/20  train_loss 0.0123  test_mse 0.00456  mu_inf 0.9500  iters 14.7/14.6  lip 12.3  0.84s``
    (iters: mean forward/backward solver iterations per sample; lip: the certified Lipschitz bound; with
    weight averaging the test metric is the average's, followed by the last iterate's in parentheses)."""
    parts = [f"epoch {rec['epoch']}" + (f"/{epochs}" if epochs else ""), f"train_loss {rec['train_loss']:.6g}"]
    for key in ("test_accuracy", "test_mse"):
        if key in rec:
            parts.append(f"{key} {rec[key]:.6g}")
            if f"{key}_iterate" in rec:      # weight averaging: the averaged network's, then the iterate's
                parts.append(f"(iterate {rec[key + '_iterate']:.6g})")
    parts.append(f"mu_inf {rec['mu_inf']:.4f}")
    parts.append(f"iters {rec['fwd_iters_mean']:.1f}/{rec['bwd_iters_mean']:.1f}")
    lip = rec.get("lipschitz_bound")
    parts.append("lip —" if lip is None else f"lip {lip:.4g}")
    parts.append(f"{rec['epoch_time']:.2f}s")
    return "  ".join(parts)


def printed_epoch(epoch: int, epochs: int, log_every: int = 0, *, first: int = 1, warned: bool = False) -> bool:
    """Whether epoch ``epoch`` (1-based) of ``epochs`` gets a printed log line: every ``log_every``
    epochs (0: every ⌈epochs / 20⌉, at most 22 lines a run), plus the ``first`` epoch of the run
    (the first after a resume), the last, and any epoch that showed a warning (``warned``)."""
    every = log_every if log_every > 0 else max(1, math.ceil(epochs / 20))
    return warned or epoch == first or epoch >= epochs or epoch % every == 0


class _ShownWarnings:
    """Counts the warnings actually shown (not filtered out) inside the ``with`` block, passing them on
    to the ``warnings.showwarning`` in force (so the command line's one-line format and pytest's
    recording keep working)."""

    def __enter__(self):
        self.count = 0
        self._previous = warnings.showwarning

        def show(*args, **kwargs):
            self.count += 1
            return self._previous(*args, **kwargs)

        warnings.showwarning = show
        return self

    def __exit__(self, *exc):
        warnings.showwarning = self._previous
        return False


def _summary_writer_class(log_dir: str | os.PathLike):
    """``torch.utils.tensorboard.SummaryWriter``; ConfigError, in one line, when the optional
    ``tensorboard`` package is not installed (``log_dir``: the directory asked for, named in it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(f"tensorboard={str(log_dir)!r}: TensorBoard logging needs the optional package "
                          f"'tensorboard', which is not installed (pip install tensorboard)") from None
    return SummaryWriter


TENSORBOARD_SCALARS = {"train/loss": "train_loss", "train/accuracy": "train_accuracy",
                       "test/loss": "test_loss", "test/accuracy": "test_accuracy", "test/mse": "test_mse",
                       "test/accuracy_iterate": "test_accuracy_iterate", "test/mse_iterate": "test_mse_iterate",
                       "constraint/mu_inf": "mu_inf", "constraint/mu_inf_weighted": "mu_inf_weighted",
                       "lipschitz_bound": "lipschitz_bound", "solver/forward_iterations": "fwd_iters_mean",
                       "solver/backward_iterations": "bwd_iters_mean", "solver/test_iterations": "test_iters_mean",
                       "solver/unconverged_fraction": "unconverged_fraction", "time/epoch_s": "epoch_time",
                       "time/projection_share": "projection_share", "optimizer/lr": "lr"}
"""TensorBoard tag → epoch-record key of the scalars written per epoch (those the record holds)."""


def _on_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False
