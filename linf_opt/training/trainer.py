"""Constrained training by projected gradient (docs/mathematics.md §6): the training problem, solved.

    minimize over A, B, b, C, D, c   (1/N) Σₖ ℓ(y(uₖ), tₖ) + λ · Lip-surrogate
    subject to                        xₖ = Φ(A xₖ + B uₖ + b),   A ∈ S  (e.g. μ∞(A) ≤ γ)

Each step solves the equilibria (forward solver), back-propagates through them exactly (implicit
differentiation), takes a torch optimizer step on all parameters, then enforces A ∈ S:

- ``enforce = "project"``: A ← Π_S(A), the exact Euclidean projection, and the invariant
  A ∈ S (up to round-off) is checked after every step — an :class:`InvariantError` otherwise;
- ``enforce = "reparam"``: A is a function of free parameters that lands in S by construction
  (:mod:`linf_opt.models.parametrizations`), checked the same way;
- ``enforce = "free"``: no constraint (the baseline); membership is only reported.

Weighted ℓ∞ (``set = "weighted_mu_inf"`` or ``learn_weights = true``): the weights η are re-estimated
at the start of every epoch as the Perron vector of the Metzler majorant of A (the η minimizing
μ_{∞,η}(A), docs/mathematics.md §2), and A is kept in P(γ, η). A run directory holds ``problem.toml``,
``checkpoint.pt`` (written atomically each epoch), ``history.jsonl`` (one line per epoch) and
``summary.json``; ``resume=True`` continues from the checkpoint and reproduces the uninterrupted run.

Weight averaging (``training.ema_decay`` > 0, :mod:`linf_opt.training.averaging`): a moving average of
the parameters is updated after every step and checked in S like the iterate (it is a convex combination
of feasible iterates); it is the network each epoch evaluates and reports, that the checkpoint's
``average`` entry holds, and that :func:`train` and :func:`load_run` return.

Data (docs/guide_own_data.md): the problem's ``[data]`` section, or ``data=`` any form
:func:`linf_opt.data.sources.as_data` accepts — a :class:`~linf_opt.data.datasets.Dataset`, arrays
``(X_train, y_train, X_test, y_test)``, or ``(train, test)`` torch DataLoaders / Datasets, which are
streamed: one pass over the training loader per epoch, evaluation over the test loader. In-memory data
are shuffled by the trainer's own generator (checkpointed, so resuming is bit-exact).

Progress: tqdm bars only on a terminal (``progress=None``, the default; True forces them, False turns
them off). Every epoch's one-line summary (:func:`format_epoch`: epoch, train loss, test metric, μ∞,
mean solver iterations, time) is logged to the ``logging`` logger ``"linf_opt.training"``; the epochs
that ``training.log_every`` selects (every ``log_every`` epochs; 0, the default: about 20 lines a run,
every ⌈epochs / 20⌉ epochs, see :func:`printed_epoch`), the first and the last, and any epoch
that showed a warning are logged at INFO and, when the bars are off, passed to the ``log`` callable
(e.g. ``print``; the ``linf-opt`` command prints them to stdout); the others at DEBUG. history.jsonl
keeps every epoch. ``tensorboard=DIR`` also writes per-epoch scalars for TensorBoard (optional: needs
the ``tensorboard`` package).

Data-parallel (:mod:`linf_opt.training.distributed`): when a process group is up (``torchrun``, or
``linf-opt train --nproc N``), every rank trains a replica wrapped in ``DistributedDataParallel`` on its
shard of each global batch, projects after the synchronised step, and checks every
``REPLICA_CHECK_EVERY`` steps that the replicas agree; rank 0 writes the run directory. The result
equals the single-process run with the same global batch up to float round-off.

    >>> result = train(load_problem("problems/function_estimation.toml"), out_dir="runs/fe")
    >>> result.net, result.history[-1]["test_mse"], result.summary["lipschitz_bound"]
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from linf_opt.training.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from linf_opt.training.config import (Problem, check_device, load_problem, override, problem_to_dict,
                                      problem_to_toml)
from linf_opt.training.guards import (NonFiniteParameterError, check_checkpoint, check_loaded_model,
                                      check_model, check_parameters_finite, check_resume_problem, membership)
from linf_opt.training.rundir import RunLock, check_run_dir
import linf_opt.training.distributed as distributed
from linf_opt.training.averaging import WeightAverage
from linf_opt.training.build import augment_shape, build_feasible_set, build_network
from linf_opt.training.reporting import (TENSORBOARD_SCALARS, _on_terminal, _ShownWarnings, _summary_writer_class,
                                         evaluate, format_epoch, printed_epoch)
from linf_opt.data.augment import random_shift
from linf_opt.data.datasets import Dataset, load_dataset
from linf_opt.data.sources import as_data, iterate_batches
from linf_opt.errors import (ConfigError, ConvergenceError, ConvergenceWarning, DataError, InvariantError,
                             LinfOptError)
from linf_opt.models.lipschitz import lipschitz_surrogate, lipschitz_value
from linf_opt.operators.dense import DenseOperator
from linf_opt.operators.measures import optimal_weights
from linf_opt.models.base import ImplicitModel
from linf_opt.models.implicit_network import ImplicitNetwork
from linf_opt.sets.projections import prepare_kernels
from linf_opt.sets.feasible import MuInfPolytope, NormInfBall

__all__ = ["train", "Trainer", "TrainResult", "NonFiniteLossError", "DivergedLossError", "build_network", "build_feasible_set",
           "evaluate", "load_run", "format_epoch", "printed_epoch", "TENSORBOARD_SCALARS"]

logger = logging.getLogger("linf_opt.training")
"""Receives every epoch's line (:func:`format_epoch`): INFO for the epochs :func:`printed_epoch`
selects, DEBUG for the others."""

REPLICA_CHECK_EVERY = 50
"""Data-parallel runs compare the replicas' parameters every this many steps (and after every epoch)."""


class NonFiniteLossError(LinfOptError, FloatingPointError):
    """The training loss became NaN or ±Inf; the last good checkpoint is kept on disk."""


class DivergedLossError(LinfOptError, FloatingPointError):
    """An epoch's training loss exceeded ``training.max_loss_growth`` × the smallest epoch loss so far;
    the epoch is not saved and the last good checkpoint is kept on disk."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained network, one record per epoch, and the final summary."""

    net: ImplicitModel
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    problem: Problem
    run_dir: Path | None = None


# ----------------------------------------------------------------------------------------------------
# Building blocks (the network and the set: training/build.py; metrics and log lines: training/reporting.py)
# ----------------------------------------------------------------------------------------------------

def _detached_operator(net: ImplicitModel):
    """``net``'s weight operator on its weights without their autograd graph (for measures in reports)."""
    op = net.operator
    return op.with_weight(op.weight.detach())


def _task_loss(Y: torch.Tensor, T: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(Y, T)
    if not T.is_floating_point() and T.ndim == 1 and Y.ndim == 2:
        # class labels under "mse": the squared error against the one-hot targets
        T = nn.functional.one_hot(T.long(), Y.shape[-1]).to(Y.dtype)
    return nn.functional.mse_loss(Y, T)


def _optimizer(problem: Problem, params) -> tuple[torch.optim.Optimizer, Any]:
    o = problem.optimizer
    if o.name == "adam":
        opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.schedule == "cosine":
        # closed form in the epoch count (no recursion), read from the problem at each step: a resumed run
        # whose training.epochs grew follows the new total (the lambda is not part of the state dict)
        floor = o.lr_min / o.lr
        total = problem.training.epochs

        def cosine(e: int) -> float:
            return floor + (1 - floor) * (1 + math.cos(math.pi * min(e, total) / total)) / 2

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    sched = torch.optim.lr_scheduler.StepLR(opt, o.lr_step, o.lr_decay) if o.lr_step > 0 else None
    return opt, sched


# ----------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------

class Trainer:
    """Projected-gradient training of one :class:`Problem`; see the module docstring.

    Args:
        problem: the training problem (from :func:`linf_opt.training.config.load_problem`).
        out_dir: run directory (checkpoints, logs); None keeps everything in memory.
        data: the training and test data in any form :func:`~linf_opt.data.sources.as_data` accepts (a
            :class:`~linf_opt.data.datasets.Dataset`, arrays ``(X_train, y_train, X_test, y_test)``,
            ``(train, test)`` DataLoaders or torch Datasets); default: loaded from ``problem.data``.
            The input shape and the output width (classes) come from the data.
        progress: tqdm progress bars: None (default) shows them only when stderr is a terminal, True
            always, False never.
        callbacks: functions ``f(trainer, info)`` called after every step (after the projection and the
            invariant check); ``info`` holds ``step``, ``epoch``, ``loss`` and the solver stats.
        log: a callable receiving the one-line summary (:func:`format_epoch`) of the epochs that
            ``training.log_every`` selects (:func:`printed_epoch`) when the bars are off, e.g. ``print``.
            Every epoch's line also goes to the logger ``"linf_opt.training"`` (INFO for those epochs,
            DEBUG for the others).
        tensorboard: a directory for TensorBoard event files: per-epoch scalars
            (:data:`TENSORBOARD_SCALARS`: train loss, test metric, μ∞, solver iterations, epoch time,
            projection share, ...) through ``torch.utils.tensorboard``; needs the optional ``tensorboard``
            package (:class:`~linf_opt.errors.ConfigError` here, before any training, when it is missing).

    Raises :class:`~linf_opt.errors.ConfigError` when ``training.loss = "cross_entropy"`` meets float
    (regression) targets.
    """

    def __init__(self, problem: Problem, out_dir: str | os.PathLike | None = None, *,
                 data=None, progress: bool | None = None, callbacks=(), log=None,
                 tensorboard: str | os.PathLike | None = None):
        check_device(problem.device)   # "cuda" on a CPU-only torch: one clear error, before any work
        self.problem = problem
        self.callbacks = list(callbacks)
        self.run_dir = Path(out_dir) if out_dir is not None else None
        self._saved = False             # problem.toml goes with this trainer's first checkpoint
        self.data = (load_dataset(problem) if data is None else
                     as_data(data, batch_size=problem.training.batch_size, dtype=problem.torch_dtype))
        if self.data.task == "regression" and problem.training.loss == "cross_entropy":
            source = f"data.kind = {json.dumps(problem.data.kind)}" if data is None else "the data given"
            raise ConfigError(f'training.loss: "cross_entropy" needs class labels, but {source} is a regression '
                              f'task (float targets); use "mse"')
        self.dist = distributed.init_from_env(problem.device)
        if self.dist is not None and torch.device(problem.device).type == "cuda":
            problem = self.problem = override(problem, device=f"cuda:{self.dist.local_rank}")
        main = self.dist is None or self.dist.is_main
        self.progress = (_on_terminal() if progress is None else bool(progress)) and main
        if log is not None and not callable(log):
            raise TypeError(f"log: expected a callable such as print, or None, got {type(log).__name__}")
        self.log = log if main else None
        # rank 0 alone writes TensorBoard events; the writer is opened by fit(), the package checked now
        self.tensorboard = Path(tensorboard) if tensorboard is not None and main else None
        if self.tensorboard is not None:
            _summary_writer_class(self.tensorboard)   # the one-line ConfigError when it is not installed
        torch.manual_seed(problem.seed)
        self.net = build_network(problem, self.data.input_dim, self.data.output_dim, self.data.input_shape)
        self.set = build_feasible_set(problem, self.net.eta)
        if isinstance(self.set, (MuInfPolytope, NormInfBall)):  # the sets whose checks run compiled kernels
            prepare_kernels(self.net.dtype)  # compile now, not inside the first (timed) projection
        self.opt, self.sched = _optimizer(problem, self.net.parameters())
        self.augment_shape = augment_shape(problem, self.data.input_dim, self.data.input_shape)
        # training.ema_decay: the moving average of the weights (linf_opt.training.averaging), the network
        # that is evaluated, saved and returned; None: the last iterate is
        self.average = WeightAverage(self.net, problem.training.ema_decay) if problem.training.ema_decay > 0 else None
        # the module the loss is computed through: the network, or its data-parallel wrapper, which
        # all-reduces (averages) the gradients of every step across the ranks
        self.model = self.net
        if self.dist is not None:
            from torch.nn.parallel import DistributedDataParallel
            self.model = DistributedDataParallel(self.net)
        self.shuffle = torch.Generator().manual_seed(problem.seed + 1)
        self.epoch = 0
        self.step_count = 0
        self.history: list[dict[str, Any]] = []
        self.loss_kind = problem.training.loss
        self.regression = self.data.task == "regression"

    @property
    def result_net(self) -> ImplicitModel:
        """The network this run evaluates and returns: the weight average when ``training.ema_decay`` > 0,
        else the trained network itself (:attr:`net`, the last iterate)."""
        return self.net if self.average is None else self.average.module

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step_count, "model": self.net.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else None,
                "shuffle_rng": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                "history": self.history, "problem": problem_to_dict(self.problem),
                "average": self.average.state_dict() if self.average is not None else None,
                "dims": {"input_dim": self.data.input_dim, "output_dim": self.data.output_dim,
                         "input_shape": list(self.data.input_shape)}}

    def load_state_dict(self, state: dict[str, Any], where: str = "state") -> None:
        """Restore a checkpoint's state; ``where`` (its path) names it in errors. The state must be a
        complete trainer checkpoint whose model fits this problem, is finite and satisfies the
        constraint (:mod:`linf_opt.training.guards`)."""
        check_checkpoint(state, where)
        try:
            self.epoch = int(state["epoch"])
            self.step_count = int(state.get("step", 0))
            if "eta" in state["model"] and self.net.eta is None:
                self.net.eta = state["model"]["eta"].clone()
                if self.problem.constraint.enforce == "reparam":
                    self.net.parametrizations.A[0].eta = self.net.eta
            self.net.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
            if self.sched is not None and state.get("scheduler") is not None:
                self.sched.load_state_dict(state["scheduler"])
                if isinstance(self.sched, torch.optim.lr_scheduler.LambdaLR):
                    # the cosine's rate is a function of the epoch and this problem's total epochs,
                    # which a resume may have raised: set the rate for the next epoch from it
                    for group, base, f in zip(self.opt.param_groups, self.sched.base_lrs, self.sched.lr_lambdas):
                        group["lr"] = base * f(self.sched.last_epoch)
            # RNG states are CPU byte tensors; map_location moved them to the model's device with the rest
            self.shuffle.set_state(state["shuffle_rng"].cpu())
            torch.set_rng_state(state["torch_rng"].cpu())
            self.history = list(state["history"])
            if self.average is not None:
                if not isinstance(state.get("average"), dict):
                    raise KeyError("no weight average ('average') for training.ema_decay > 0")
                self.average.load_state_dict(state["average"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(f"checkpoint {where} does not fit this problem's model and optimizer: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from exc
        self.set = build_feasible_set(self.problem, self.net.eta)
        check_loaded_model(self, where)
        if self.average is not None:
            check_model(self.average.module, self.problem, self.set, f"{where} (its weight average)", "resume from it")

    def save(self) -> None:
        if self.run_dir is None or (self.dist is not None and not self.dist.is_main):
            return                                   # one writer: rank 0 of a data-parallel run
        save_atomic(self.state_dict(), self.run_dir / "checkpoint.pt")
        write_text_atomic("".join(json.dumps(h) + "\n" for h in self.history), self.run_dir / "history.jsonl")
        if not self._saved:
            # the run directory now holds this run: its problem, and no summary of an earlier one (a run
            # being replaced with overwrite keeps all its files until this, the new run's first checkpoint)
            write_text_atomic(problem_to_toml(self.problem), self.run_dir / "problem.toml")
            for stale in ("summary.json", "robustness.json", "robustness.png"):
                (self.run_dir / stale).unlink(missing_ok=True)
            self._saved = True

    def resume(self) -> bool:
        """Load ``checkpoint.pt`` from the run directory if present; return whether it was."""
        if self.run_dir is None or not (self.run_dir / "checkpoint.pt").is_file():
            return False
        path = self.run_dir / "checkpoint.pt"
        state = load_checkpoint(path, map_location=self.net.device)
        check_checkpoint(state, str(path))
        # the same problem, up to the keys that may change (guards.RESUMABLE_KEYS), before anything loads
        check_resume_problem(state.get("problem"), self.problem, str(path))
        self.load_state_dict(state, str(path))
        return True

    def _kept(self) -> str:
        if self.run_dir is None:
            return "nothing was saved (no out_dir)"
        path = self.run_dir / "checkpoint.pt"
        return f"the last good checkpoint is kept at {path}" if path.is_file() else "no checkpoint was written yet"

    def _optimizer_step(self) -> None:
        """``opt.step()``, then every parameter checked finite (before the projection, which would
        otherwise act on NaN): an overflowing learning rate stops training with one clear error."""
        where = f"optimizer step {self.step_count + 1} (epoch {self.epoch + 1})"

        def hint():         # built only on error: _kept() looks at the checkpoint file
            return (f"; training stopped and {self._kept()}. Lower optimizer.lr "
                    f"(= {self.problem.optimizer.lr:g}) or check the data")
        try:
            self.opt.step()
        except RuntimeError as exc:
            if "overflow" not in str(exc):
                raise
            raise NonFiniteParameterError(f"{where} overflowed ({exc}){hint()}") from exc
        try:
            check_parameters_finite(self.net, f"after {where}")
        except NonFiniteParameterError as exc:
            raise NonFiniteParameterError(f"{exc}{hint()}") from None

    # -- the constraint -----------------------------------------------------------------------------
    def _update_weights(self) -> None:
        """Weighted ℓ∞: η ← Perron vector of M(A) (the best weights), then A back into P(γ, η)."""
        A = self.net.A.detach()
        eta, _ = optimal_weights(A.double().cpu())
        eta = eta.clamp(min=1e-3).to(A)
        reparam = self.problem.constraint.enforce == "reparam"
        if self.net.eta is None:
            self.net.eta = eta.clone()
        else:
            self.net.eta.copy_(eta)
        self.set = build_feasible_set(self.problem, self.net.eta)
        if reparam:
            p = self.net.parametrizations.A
            Ap = torch.as_tensor(self.set.project(A))
            p[0].eta = self.net.eta
            with torch.no_grad():
                p.original.copy_(p[0].right_inverse(Ap))
        else:
            self._project()

    @torch.no_grad()
    def _project(self) -> None:
        if self.set is None or self.problem.constraint.enforce != "project":
            return
        self.set.project_(self._constrained(), method=self._method())

    def _constrained(self, net: ImplicitModel | None = None):
        """What the set constrains in ``net`` (default the trained one): the dense matrix A itself (the fast
        in-place route), else the operator."""
        net = self.net if net is None else net
        return net.A if isinstance(net, ImplicitNetwork) else net.operator

    def _method(self) -> str | None:
        if isinstance(self.set, MuInfPolytope) or isinstance(self.set, NormInfBall):
            return self.problem.constraint.backend if self.problem.constraint.backend in self.set.methods else None
        return None

    def _check_invariant(self, net: ImplicitModel | None = None, what: str = "A") -> None:
        if self.set is None or self.problem.constraint.enforce == "free":
            return
        A = self._constrained(net)
        A = A.detach() if isinstance(A, torch.Tensor) else A
        if not self.set.contains(A, tol=self.problem.constraint.check_tol):
            raise InvariantError(
                f"after step {self.step_count}: {what} left the feasible set {self.set!r}: value "
                f"{float(self.set.value(A)):.10g} > bound {self.set.bound:.10g} (check_tol "
                f"{self.problem.constraint.check_tol})")

    # -- one epoch ----------------------------------------------------------------------------------
    def _loss(self, U, T, epoch_fraction: float, weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The training loss: task loss, or the robust loss of docs/mathematics.md §8 with ``[robust]``, + λ·surrogate.

        ``weight`` scales the data term: a data-parallel rank's share of the global batch times the
        number of ranks, so that the averaged gradient is that of the global batch's mean loss."""
        Y = self.model(U)
        info: dict[str, float] = {}
        r = self.problem.robust
        if r.enabled:
            # (1 − κ) CE(y(u), t) + κ CE(−z̲(u), t), ε and κ ramped by the schedule at the fractional epoch
            from linf_opt.data.datasets import eps_to_normalized, to_normalized
            from linf_opt.robustness.robust_training import robust_loss, robust_schedule
            eps_pixel, mix = robust_schedule(r, epoch_fraction)
            loss, rinfo = robust_loss(self.net, U, T, eps_to_normalized(eps_pixel), mix,
                                      lower=float(to_normalized(0.0)), upper=float(to_normalized(1.0)), logits=Y)
            info.update({f"robust_{k}": float(v) for k, v in rinfo.items() if k not in ("eps", "mix")})
            info.update(robust_eps=eps_pixel, robust_mix=mix)
        else:
            loss = _task_loss(Y, T, self.loss_kind)
        if weight != 1.0:
            loss = loss * weight
        lam = self.problem.regularizer.lipschitz_weight
        if lam > 0:
            gamma = self.problem.constraint.gamma if self.problem.constraint.gamma < 1 else 0.95
            loss = loss + lam * lipschitz_surrogate(self.net, gamma, self.problem.regularizer.surrogate)
        return loss, Y, info

    def train_epoch(self) -> dict[str, Any]:
        p = self.problem
        if p.learns_weights:
            self._update_weights()
        batches, nb = self._train_batches()
        dev = self.net.device
        sums = dict(loss=0.0, correct=0, count=0, fwd=0.0, bwd=0.0, fwd_max=0, bwd_max=0, fwd_nc=0, bwd_nc=0)
        # per-sample sums kept on the device and read once per epoch (no conversion per step)
        acc_correct = torch.zeros((), dtype=torch.long, device=dev)
        acc_fwd = torch.zeros((), dtype=torch.long, device=dev)
        acc_bwd = torch.zeros((), dtype=torch.long, device=dev)
        extra: dict[str, float] = {}
        t_proj = t_check = t_average = 0.0
        sync = dev.type == "cuda"
        t0 = time.perf_counter()
        bar = tqdm(batches, total=nb, desc=f"epoch {self.epoch + 1}/{p.training.epochs}", leave=False,
                   disable=not self.progress, unit="batch")
        self.net.train()
        ctx = self.dist
        shift = p.training.augment_shift
        for k, (U, Tb) in enumerate(bar):
            weight = 1.0
            if shift:   # drawn from the trainer's generator for the global batch (the same on every rank)
                U = random_shift(U, shift, self.augment_shape, generator=self.shuffle)
            if ctx is not None:
                # this rank's shard of the global batch, weighted by its share (exact for uneven shards)
                n_global = U.shape[0]
                U, Tb = U[ctx.rank::ctx.world], Tb[ctx.rank::ctx.world]
                weight = U.shape[0] * ctx.world / n_global
            U, Tb = U.to(dev), Tb.to(dev)
            loss, Y, info = self._loss(U, Tb, self.epoch + (k / nb if nb else 0.0), weight)
            loss_value = float(loss.detach()) / weight if weight else 0.0  # one conversion (a sync) per step
            # (a non-finite loss on one rank spreads through the gradient all-reduce; the finiteness check
            # after the optimizer step then stops every rank at the same step)
            if not math.isfinite(loss_value) and ctx is None:
                raise NonFiniteLossError(
                    f"non-finite training loss ({loss_value}) at epoch {self.epoch + 1}, batch {k + 1}; "
                    f"training stopped. The last good checkpoint "
                    f"{'is kept at ' + str(self.run_dir / 'checkpoint.pt') if self.run_dir else 'was not saved (no out_dir)'}."
                    " Lower the learning rate or check the data.")
            fst = self.net.last_forward_stats
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            bst = self.net.last_backward_stats
            self._optimizer_step()
            if sync:  # let the queued step finish first, so that its time is not booked to the projection
                torch.cuda.synchronize(dev)
            tp = time.perf_counter()
            self._project()
            tc = time.perf_counter()
            self.step_count += 1
            self._check_invariant()
            if ctx is not None and self.step_count % REPLICA_CHECK_EVERY == 0:
                distributed.check_replicas(self.net, ctx, self.step_count)
            ta = time.perf_counter()
            if self.average is not None:   # a convex combination of feasible iterates: feasible, and checked
                self.average.update()
                self._check_invariant(self.average.module, "the weight average's A")
            t_average += time.perf_counter() - ta
            t_check += ta - tc
            t_proj += tc - tp
            for cb in self.callbacks:
                cb(self, {"step": self.step_count, "epoch": self.epoch, "loss": loss_value,
                          "forward": fst, "backward": bst})
            b = U.shape[0]
            sums["loss"] += loss_value * b
            sums["count"] += b
            if not self.regression:
                acc_correct += (Y.detach().argmax(-1) == Tb).sum()
            acc_fwd += fst.sample_iterations.sum()
            sums["fwd_max"] = max(sums["fwd_max"], fst.iterations)
            sums["fwd_nc"] += fst.n_not_converged
            if bst is not None:
                acc_bwd += bst.sample_iterations.sum()
                sums["bwd_max"] = max(sums["bwd_max"], bst.iterations)
                sums["bwd_nc"] += bst.n_not_converged
            for key, v in info.items():
                extra[key] = extra.get(key, 0.0) + v * b
            if self.progress and (k % 10 == 0 or k == (nb or 0) - 1):
                bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.4g}", iters=f"{fst.iterations}")
        bar.close()
        sums["correct"], sums["fwd"], sums["bwd"] = (int(v) for v in torch.stack([acc_correct, acc_fwd, acc_bwd]).tolist())
        if ctx is not None:
            distributed.check_replicas(self.net, ctx, self.step_count)
            keys = ("loss", "correct", "count", "fwd", "bwd", "fwd_nc", "bwd_nc", *extra)
            values = distributed.all_reduce_sums([sums[k] if k in sums else extra[k] for k in keys], ctx, dev)
            for key, v in zip(keys, values):
                if key in sums:
                    sums[key] = int(v) if key in ("correct", "count", "fwd_nc", "bwd_nc") else v
                else:
                    extra[key] = v
        if sums["count"] == 0:
            raise DataError(f"epoch {self.epoch + 1}: the training data yielded no batches (an exhausted "
                            f"iterator? pass a re-iterable DataLoader)")
        if self.sched is not None:
            self.sched.step()
        t_epoch = time.perf_counter() - t0
        n = sums["count"]
        rec: dict[str, Any] = {
            "epoch": self.epoch + 1, "train_samples": n, "train_loss": sums["loss"] / n,
            "lr": self.opt.param_groups[0]["lr"],
            "fwd_iters_mean": sums["fwd"] / n, "fwd_iters_max": sums["fwd_max"], "fwd_not_converged": sums["fwd_nc"],
            "bwd_iters_mean": sums["bwd"] / n, "bwd_iters_max": sums["bwd_max"], "bwd_not_converged": sums["bwd_nc"],
            "epoch_time": t_epoch, "projection_time": t_proj, "projection_share": t_proj / t_epoch,
            "check_time": t_check, "check_share": t_check / t_epoch,
        }
        if self.average is not None:   # the update of the average and its membership check
            rec.update(average_time=t_average, average_share=t_average / t_epoch)
        if not self.regression:
            rec["train_accuracy"] = sums["correct"] / n
        rec.update({k: v / n for k, v in extra.items()})
        return rec

    def _train_batches(self):
        """The epoch's (inputs, targets) batches and their number (None when a loader has no length).

        In memory: a permutation by the trainer's own generator, sliced by ``training.batch_size`` (so
        that a resumed run is bit-exact). Streamed: one pass over the training loader."""
        d = self.data
        if isinstance(d, Dataset):
            X, T = d.train_inputs, d.train_targets
            N, bs = X.shape[0], self.problem.training.batch_size
            perm = torch.randperm(N, generator=self.shuffle)
            nb = math.ceil(N / bs)
            return ((X[idx], T[idx]) for idx in (perm[k * bs:(k + 1) * bs] for k in range(nb))), nb
        try:
            nb = len(d.train)
        except TypeError:       # an IterableDataset of unknown length
            nb = None
        return iterate_batches(d, "train", dtype=self.net.dtype), nb

    def _epoch_report(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The epoch's test metrics, μ∞, membership and Lipschitz bound, of :attr:`result_net` (with weight
        averaging also the last iterate's test metrics, as ``…_iterate``)."""
        d = self.data
        net = self.result_net
        ev = evaluate(net, d, ctx=self.dist)
        op = _detached_operator(net)
        metric = "accuracy" if d.task == "classification" else "mse"
        rec["test_loss"], rec[f"test_{metric}"] = ev["loss"], ev[metric]
        if self.average is not None:
            it = evaluate(self.net, d, ctx=self.dist)
            rec["test_loss_iterate"], rec[f"test_{metric}_iterate"] = it["loss"], it[metric]
            rec["mu_inf_iterate"] = float(_detached_operator(self.net).mu_inf())
        rec["test_iters_mean"] = ev["eval_iterations"]
        rec["test_not_converged"] = ev["eval_not_converged"]
        # every solve of the epoch: training forward and backward (one per sample each), and the test
        solves = 2 * rec.get("train_samples", 0) + ev.get("eval_samples", 0)
        failed = rec["fwd_not_converged"] + rec["bwd_not_converged"] + rec["test_not_converged"]
        rec["unconverged_fraction"] = failed / solves if solves else 0.0
        rec["mu_inf"] = float(op.mu_inf())
        if net.eta is not None:
            rec["mu_inf_weighted"] = float(op.mu_inf(net.eta))
        if self.set is not None:
            A = op.weight if isinstance(op, DenseOperator) else op
            # in float64, slack not scaled by ‖A‖ (guards.membership): a huge matrix cannot pass on slack
            rec["set_value"], rec["in_set"] = membership(self.set, A, self.problem.constraint.check_tol,
                                                         net.dtype)
        rec["lipschitz_bound"] = lipschitz_value(net)    # None when μ ≥ 1 (unconstrained training)
        return rec

    def fit(self, epochs: int | None = None) -> TrainResult:
        """Train until ``epochs`` (default ``problem.training.epochs``) epochs are done in total."""
        epochs = self.problem.training.epochs if epochs is None else epochs
        if self.run_dir is None or (self.dist is not None and not self.dist.is_main):
            return self._fit(epochs)
        with RunLock(self.run_dir):    # one process per run directory (re-entrant: train() holds it too)
            return self._fit(epochs)

    def _check_loss_growth(self, rec: dict[str, Any]) -> None:
        """DivergedLossError (the epoch not saved) when the epoch's mean training loss exceeds
        ``training.max_loss_growth`` × the smallest earlier epoch loss (the history, so a resumed run
        applies the same rule); 0 disables the check, and a smallest loss of 0 gives no scale."""
        growth = self.problem.training.max_loss_growth
        best = min((h["train_loss"] for h in self.history if math.isfinite(h.get("train_loss", math.nan))),
                   default=None)
        loss = rec["train_loss"]
        if not growth or best is None or best <= 0 or not loss > growth * best:
            return
        raise DivergedLossError(
            f"epoch {rec['epoch']}: the training loss {loss:.6g} is {loss / best:.3g} × the smallest epoch loss "
            f"so far ({best:.6g}), more than training.max_loss_growth = {growth:g}: training diverged and was "
            f"stopped; {self._kept()}. Lower optimizer.lr (= {self.problem.optimizer.lr:g}), or raise "
            f"training.max_loss_growth (0 disables the check)")

    def _epoch_checked(self) -> dict[str, Any]:
        """One epoch and its report, the solvers' per-batch warnings replaced by one line per epoch;
        ConvergenceError (the epoch not saved) when more than ``solver.max_unconverged`` of its solves
        stopped at max_iter (not for enforce = "free", where that is the measured outcome)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            rec = self._epoch_report(self.train_epoch())
        self._check_loss_growth(rec)
        failed = rec["fwd_not_converged"] + rec["bwd_not_converged"] + rec["test_not_converged"]
        if failed:
            s = self.problem.solver
            text = (f"epoch {rec['epoch']}: {failed} solves did not converge ({rec['unconverged_fraction']:.1%}: "
                    f"training forward {rec['fwd_not_converged']}, backward {rec['bwd_not_converged']}, test "
                    f"{rec['test_not_converged']}) within solver.max_iter = {s.max_iter} at tol {s.tol:g}; "
                    f"outputs of unconverged solves are not equilibria")
            if (rec["unconverged_fraction"] > s.max_unconverged
                    and self.problem.constraint.enforce != "free"):
                raise ConvergenceError(f"{text}. More than solver.max_unconverged = {s.max_unconverged:g} of "
                                       f"the epoch's solves failed: training diverged (lower optimizer.lr = "
                                       f"{self.problem.optimizer.lr:g}?) and was stopped; {self._kept()}")
            warnings.warn(text, ConvergenceWarning, stacklevel=3)
        return rec

    def _fit(self, epochs: int) -> TrainResult:
        outer = tqdm(total=epochs, initial=self.epoch, desc=self.problem.name or "training",
                     disable=not self.progress, unit="epoch")
        key = "test_accuracy" if self.data.task == "classification" else "test_mse"
        first, every = self.epoch + 1, self.problem.training.log_every
        writer = None
        if self.tensorboard is not None and self.epoch < epochs:
            writer = _summary_writer_class(self.tensorboard)(log_dir=str(self.tensorboard))
        try:
            while self.epoch < epochs:
                with _ShownWarnings() as shown:
                    rec = self._epoch_checked()
                self.epoch += 1
                self.history.append(rec)
                self.save()
                outer.update(1)
                outer.set_postfix({key: f"{rec[key]:.4g}", "mu": f"{rec['mu_inf']:.3f}",
                                   "lip": "—" if rec["lipschitz_bound"] is None else f"{rec['lipschitz_bound']:.3g}"})
                line = format_epoch(rec, epochs)
                if printed_epoch(rec["epoch"], epochs, every, first=first, warned=shown.count > 0):
                    logger.info(line)
                    if self.log is not None and not self.progress:
                        self.log(line)
                else:
                    logger.debug(line)
                if writer is not None:
                    for tag, k in TENSORBOARD_SCALARS.items():
                        if rec.get(k) is not None:
                            writer.add_scalar(tag, float(rec[k]), rec["epoch"])
                    writer.flush()
        finally:
            if writer is not None:
                writer.close()
        outer.close()
        summary = self.summary()
        if self.run_dir is not None and (self.dist is None or self.dist.is_main):
            write_text_atomic(json.dumps(summary, indent=2) + "\n", self.run_dir / "summary.json")
        return TrainResult(self.result_net, self.history, summary, self.problem, self.run_dir)

    def summary(self) -> dict[str, Any]:
        h = self.history
        if not h:
            return {}
        last = h[-1]
        s = {k: last[k] for k in ("epoch", "test_loss", "test_accuracy", "test_mse", "test_accuracy_iterate",
                                  "test_mse_iterate", "mu_inf", "mu_inf_iterate", "mu_inf_weighted", "set_value",
                                  "in_set", "lipschitz_bound") if k in last}
        s.update(
            problem=self.problem.name, set=self.problem.constraint.set, enforce=self.problem.constraint.enforce,
            epoch_time_mean=sum(r["epoch_time"] for r in h) / len(h),
            fwd_iters_mean=sum(r["fwd_iters_mean"] for r in h) / len(h),
            bwd_iters_mean=sum(r["bwd_iters_mean"] for r in h) / len(h),
            projection_share=sum(r["projection_time"] for r in h) / sum(r["epoch_time"] for r in h),
            check_share=sum(r.get("check_time", 0.0) for r in h) / sum(r["epoch_time"] for r in h),
            not_converged=sum(r["fwd_not_converged"] + r["bwd_not_converged"] for r in h),
            test_not_converged=last.get("test_not_converged", 0),
        )
        if "average_time" in last:
            s["average_share"] = sum(r.get("average_time", 0.0) for r in h) / sum(r["epoch_time"] for r in h)
        # success only when every solve of every epoch reached the tolerance
        s["converged"] = s["not_converged"] + sum(r.get("test_not_converged", 0) for r in h) == 0
        if self.data.target_lipschitz is not None:
            s["true_lipschitz"] = self.data.target_lipschitz
        return s


def train(problem: Problem | str | os.PathLike | dict, out_dir: str | os.PathLike | None = None, *,
          resume: bool = False, overwrite: bool = False, epochs: int | None = None,
          data_dir: str | None = None, progress: bool | None = None, data=None, log=None,
          tensorboard: str | os.PathLike | None = None) -> TrainResult:
    """Train ``problem`` (a Problem, a TOML path or a dict) and return a :class:`TrainResult`.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` when it exists (the problem must match the
    checkpoint's up to ``guards.RESUMABLE_KEYS``). A directory that already holds a run is refused
    (:class:`~linf_opt.training.rundir.RunExistsError`) unless ``resume`` or ``overwrite``; with
    ``overwrite`` the old run's files stay until the new run writes its first checkpoint. The directory
    is locked for the whole call (:class:`~linf_opt.training.rundir.RunLock`). ``epochs`` overrides
    ``training.epochs``; ``data_dir`` overrides ``data.data_dir``. ``data``: your own data in any form
    :class:`Trainer` accepts, e.g. ``data=(X_train, y_train, X_test, y_test)`` or
    ``data=(train_loader, test_loader)``. ``progress``, ``log`` and ``tensorboard`` as for :class:`Trainer`
    (``log=print`` prints the epochs ``training.log_every`` selects when the bars are off).
    """
    problem = load_problem(problem)
    if epochs is not None:
        problem = override(problem, **{"training.epochs": int(epochs)})
    if data_dir is not None:
        problem = override(problem, **{"data.data_dir": str(data_dir)})
    if out_dir is None:
        return Trainer(problem, None, data=data, progress=progress, log=log, tensorboard=tensorboard).fit()
    ctx = distributed.current()
    if ctx is not None and not ctx.is_main:
        # rank 0 holds the lock and writes; the other ranks read the checkpoint to resume
        trainer = Trainer(problem, out_dir, data=data, progress=progress, log=log, tensorboard=tensorboard)
        if resume:
            trainer.resume()
        return trainer.fit()
    with RunLock(out_dir):
        check_run_dir(out_dir, resume=resume, overwrite=overwrite)
        trainer = Trainer(problem, out_dir, data=data, progress=progress, log=log, tensorboard=tensorboard)
        if resume:
            trainer.resume()
        return trainer.fit()


def load_run(run_dir: str | os.PathLike, map_location=None, *, average: bool = True) -> tuple[ImplicitModel, Problem]:
    """The trained network and its problem from a run directory written by :func:`train`.

    A run with weight averaging (``training.ema_decay`` > 0) returns its averaged network, the one the
    run evaluated and reported; ``average=False`` returns the last iterate instead."""
    run_dir = Path(run_dir)
    problem = load_problem(run_dir / "problem.toml")
    state = load_checkpoint(run_dir / "checkpoint.pt", map_location=map_location)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise DataError(f"checkpoint {run_dir / 'checkpoint.pt'}: missing entry 'model': not a complete "
                        f"linf_opt training checkpoint")
    model = state["model"]
    stored = state.get("problem")
    if isinstance(stored, dict):
        # the checkpoint carries the problem that trained its weights; problem.toml is written beside it
        # and can disagree only if a run was killed between the two writes of its first save
        trained = load_problem(stored)
        if trained != problem:
            warnings.warn(f"{run_dir / 'problem.toml'} differs from the problem stored in {run_dir / 'checkpoint.pt'} "
                          f"(a run killed during its first save?); using the checkpoint's", stacklevel=2)
            problem = trained
    dims = state.get("dims")
    r = dims["input_dim"] if dims else model["B"].shape[1]
    q = dims["output_dim"] if dims else model["C"].shape[0]
    shape = dims.get("input_shape") if dims else None
    net = build_network(override(problem, device="cpu") if map_location == "cpu" else problem, r, q, shape)
    if "eta" in model and net.eta is None:
        net.eta = model["eta"].clone()
        if problem.constraint.enforce == "reparam":
            net.parametrizations.A[0].eta = net.eta
    where = str(run_dir / "checkpoint.pt")
    averaged = state.get("average")
    if average and isinstance(averaged, dict):
        model, where = averaged["model"], f"{where} (its weight average)"
    net.load_state_dict(model)
    # a finite model inside the run's feasible set, or no results from it (guards.check_model)
    check_model(net, problem, build_feasible_set(problem, net.eta), where, "evaluate it")
    return net, problem
