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

    >>> result = train(load_problem("problems/function_estimation.toml"), out_dir="runs/fe")
    >>> result.net, result.history[-1]["test_mse"], result.summary["lipschitz_bound"]
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from linf_opt.training.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from linf_opt.training.config import Problem, load_problem, override, problem_to_dict, problem_to_toml
from linf_opt.data.datasets import Dataset, load_dataset
from linf_opt.errors import ConfigError, InvariantError, LinfOptError
from linf_opt.models.lipschitz import lipschitz_bound, lipschitz_surrogate
from linf_opt.operators.dense import DenseOperator
from linf_opt.operators.measures import optimal_weights
from linf_opt.models.base import ImplicitModel
from linf_opt.models.conv_network import ConvImplicitNetwork
from linf_opt.models.implicit_network import ImplicitNetwork
from linf_opt.models.parametrizations import MonotoneParametrization, MuInfParametrization, apply_parametrization
from linf_opt.sets.projections import prepare_kernels
from linf_opt.sets.feasible import FeasibleSet, MonotoneSet, MuInfPolytope, NormInfBall

__all__ = ["train", "Trainer", "TrainResult", "NonFiniteLossError", "build_network", "build_feasible_set",
           "evaluate", "load_run"]


class NonFiniteLossError(LinfOptError, FloatingPointError):
    """The training loss became NaN or ±Inf; the last good checkpoint is kept on disk."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained network, one record per epoch, and the final summary."""

    net: ImplicitModel
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    problem: Problem
    run_dir: Path | None = None


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------

def _learns_weights(problem: Problem) -> bool:
    c = problem.constraint
    return c.set == "weighted_mu_inf" or (c.set == "mu_inf" and c.learn_weights)


def build_feasible_set(problem: Problem, eta: torch.Tensor | None = None) -> FeasibleSet | None:
    """The feasible set S of the problem's ``[constraint]`` (None for ``set = "none"``).

    For the ℓ∞ sets this is the polytope P(γ, η) with the current weights (fixed from ``eta``, or
    re-estimated during training for weighted ℓ∞).
    """
    c = problem.constraint
    if c.set in ("mu_inf", "weighted_mu_inf"):
        return MuInfPolytope(c.gamma, eta=eta, warm_start=True)
    if c.set == "norm_inf":
        return NormInfBall(c.gamma)
    if c.set == "monotone":
        return MonotoneSet(c.m)
    return None


def _image_shape(problem: Problem, input_dim: int) -> tuple[int, int, int]:
    """(in_channels, H, W) of the input images of a convolutional model (square when not given)."""
    m = problem.model
    if m.image_size:
        H, W = m.image_size
    else:
        side = math.isqrt(input_dim // m.in_channels)
        H = W = side
    if m.in_channels * H * W != input_dim:
        raise ConfigError(f"model.image_size: the data have {input_dim} input features, which are not "
                          f"{m.in_channels} channel(s) of {H} × {W} images; set model.in_channels and "
                          f"model.image_size = [H, W]")
    return m.in_channels, H, W


def build_network(problem: Problem, input_dim: int, output_dim: int) -> ImplicitModel:
    """The implicit model a problem describes (dense :class:`ImplicitNetwork` or
    :class:`ConvImplicitNetwork`), initialised (with generator seed ``problem.seed``) inside S."""
    m, c, s = problem.model, problem.constraint, problem.solver
    dtype = torch.float64 if problem.dtype == "float64" else torch.float32
    gamma = c.gamma if c.set in ("mu_inf", "weighted_mu_inf", "norm_inf") else 0.95
    if gamma >= 1:
        gamma = 0.95   # unconstrained baselines start from the same well-posed initialisation
    eta = list(c.eta) if c.eta else None
    gen = torch.Generator().manual_seed(problem.seed)
    if m.kind == "conv":
        cin, H, W = _image_shape(problem, input_dim)
        net = ConvImplicitNetwork(cin, m.channels, (H, W), output_dim, m.kernel_size, m.activation,
                                  injection_kernel_size=m.injection_kernel_size, stride=m.stride,
                                  padding=m.padding, pool=m.pool, gamma=gamma, construction=m.construction,
                                  init_scale=m.init_scale, negative_slope=m.negative_slope, method=s.method,
                                  tol=s.tol, rtol=0.0, max_iter=s.max_iter, strict=s.strict, backward=s.backward,
                                  backward_tol=s.backward_tol, dtype=dtype, generator=gen)
        return net.to(problem.device)
    net = ImplicitNetwork(input_dim, m.hidden, output_dim, activation=m.activation,
                          negative_slope=m.negative_slope, gamma=gamma, eta=eta, feedthrough=m.feedthrough,
                          init_scale=m.init_scale, method=s.method, tol=s.tol, rtol=0.0, max_iter=s.max_iter,
                          strict=s.strict, backward=s.backward, backward_tol=s.backward_tol, dtype=dtype,
                          generator=gen)
    with torch.no_grad():
        S = build_feasible_set(problem, net.eta)
        if S is not None and c.enforce != "free":
            net.A.copy_(torch.as_tensor(S.project(net.A.detach())))
    if c.enforce == "reparam":
        if c.set in ("mu_inf", "weighted_mu_inf"):
            apply_parametrization(net, MuInfParametrization(c.gamma, net.eta))
        elif c.set == "monotone":
            apply_parametrization(net, MonotoneParametrization(c.m))
        else:  # the config rejects this; keep the guard for programmatic use
            raise ConfigError(f"constraint.enforce='reparam' is not available for set {c.set!r}")
    return net.to(problem.device)


def _task_loss(Y: torch.Tensor, T: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cross_entropy":
        return nn.functional.cross_entropy(Y, T)
    return nn.functional.mse_loss(Y, T)


@torch.no_grad()
def evaluate(net: ImplicitModel, inputs: torch.Tensor, targets: torch.Tensor, task: str,
             batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy (classification) or MSE (regression) over a data set, plus solver statistics."""
    total, correct, sq, ce, iters, not_conv = 0, 0, 0.0, 0.0, [], 0
    dev = net.device
    for i in range(0, inputs.shape[0], batch_size):
        U = inputs[i:i + batch_size].to(dev)
        T = targets[i:i + batch_size].to(dev)
        Y = net(U)
        st = net.last_forward_stats
        iters.append(st.sample_iterations.double().mean().item())
        not_conv += st.n_not_converged
        if task == "classification":
            correct += int((Y.argmax(-1) == T).sum())
            ce += float(nn.functional.cross_entropy(Y, T, reduction="sum"))
        else:
            sq += float(((Y - T) ** 2).sum())
        total += U.shape[0]
    out = {"eval_iterations": sum(iters) / max(len(iters), 1), "eval_not_converged": not_conv}
    if task == "classification":
        out.update(loss=ce / total, accuracy=correct / total)
    else:
        out.update(loss=sq / (total * targets.shape[-1]), mse=sq / (total * targets.shape[-1]))
    return out


def _optimizer(problem: Problem, params) -> tuple[torch.optim.Optimizer, Any]:
    o = problem.optimizer
    if o.name == "adam":
        opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
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
        data: a preloaded :class:`~linf_opt.data.datasets.Dataset` (default: loaded from ``problem.data``).
        progress: show tqdm progress bars.
        callbacks: functions ``f(trainer, info)`` called after every step (after the projection and the
            invariant check); ``info`` holds ``step``, ``epoch``, ``loss`` and the solver stats.
    """

    def __init__(self, problem: Problem, out_dir: str | os.PathLike | None = None, *,
                 data: Dataset | None = None, progress: bool = True, callbacks=()):
        self.problem = problem
        self.callbacks = list(callbacks)
        self.run_dir = Path(out_dir) if out_dir is not None else None
        self.data = data if data is not None else load_dataset(problem)
        self.progress = progress
        torch.manual_seed(problem.seed)
        self.net = build_network(problem, self.data.input_dim, self.data.output_dim)
        self.set = build_feasible_set(problem, self.net.eta)
        if isinstance(self.set, (MuInfPolytope, NormInfBall)):  # the sets whose checks run compiled kernels
            prepare_kernels(self.net.dtype)  # compile now, not inside the first (timed) projection
        self.opt, self.sched = _optimizer(problem, self.net.parameters())
        self.shuffle = torch.Generator().manual_seed(problem.seed + 1)
        self.epoch = 0
        self.step_count = 0
        self.history: list[dict[str, Any]] = []
        self.loss_kind = problem.training.loss
        self.regression = self.data.task == "regression"

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step_count, "model": self.net.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else None,
                "shuffle_rng": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                "history": self.history, "problem": problem_to_dict(self.problem),
                "dims": {"input_dim": self.data.input_dim, "output_dim": self.data.output_dim}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.step_count = int(state.get("step", 0))
        if "eta" in state["model"] and self.net.eta is None:
            self.net.eta = state["model"]["eta"].clone()
            if self.problem.constraint.enforce == "reparam":
                self.net.parametrizations.A[0].eta = self.net.eta
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"] is not None:
            self.sched.load_state_dict(state["scheduler"])
        # RNG states are CPU byte tensors; map_location moved them to the model's device with the rest
        self.shuffle.set_state(state["shuffle_rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        self.history = list(state["history"])
        self.set = build_feasible_set(self.problem, self.net.eta)

    def save(self) -> None:
        if self.run_dir is None:
            return
        save_atomic(self.state_dict(), self.run_dir / "checkpoint.pt")
        write_text_atomic("".join(json.dumps(h) + "\n" for h in self.history), self.run_dir / "history.jsonl")

    def resume(self) -> bool:
        """Load ``checkpoint.pt`` from the run directory if present; return whether it was."""
        if self.run_dir is None or not (self.run_dir / "checkpoint.pt").is_file():
            return False
        self.load_state_dict(load_checkpoint(self.run_dir / "checkpoint.pt", map_location=self.net.device))
        return True

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

    def _constrained(self):
        """What the set constrains: the dense matrix A itself (the fast in-place route), else the operator."""
        return self.net.A if isinstance(self.net, ImplicitNetwork) else self.net.operator

    def _method(self) -> str | None:
        if isinstance(self.set, MuInfPolytope) or isinstance(self.set, NormInfBall):
            return self.problem.constraint.backend if self.problem.constraint.backend in self.set.methods else None
        return None

    def _check_invariant(self) -> None:
        if self.set is None or self.problem.constraint.enforce == "free":
            return
        A = self._constrained()
        A = A.detach() if isinstance(A, torch.Tensor) else A
        if not self.set.contains(A, tol=self.problem.constraint.check_tol):
            raise InvariantError(
                f"after step {self.step_count}: A left the feasible set {self.set!r}: value "
                f"{float(self.set.value(A)):.10g} > bound {self.set.bound:.10g} (check_tol "
                f"{self.problem.constraint.check_tol})")

    # -- one epoch ----------------------------------------------------------------------------------
    def _loss(self, U, T, epoch_fraction: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The training loss: task loss, or the robust loss of docs/mathematics.md §8 with ``[robust]``, + λ·surrogate."""
        Y = self.net(U)
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
        lam = self.problem.regularizer.lipschitz_weight
        if lam > 0:
            gamma = self.problem.constraint.gamma if self.problem.constraint.gamma < 1 else 0.95
            loss = loss + lam * lipschitz_surrogate(self.net, gamma, self.problem.regularizer.surrogate)
        return loss, Y, info

    def train_epoch(self) -> dict[str, Any]:
        p = self.problem
        if _learns_weights(p):
            self._update_weights()
        X, T = self.data.train_inputs, self.data.train_targets
        N, bs = X.shape[0], p.training.batch_size
        perm = torch.randperm(N, generator=self.shuffle)
        dev = self.net.device
        nb = math.ceil(N / bs)
        sums = dict(loss=0.0, correct=0, count=0, fwd=0.0, bwd=0.0, fwd_max=0, bwd_max=0, fwd_nc=0, bwd_nc=0)
        extra: dict[str, float] = {}
        t_proj = t_check = 0.0
        sync = dev.type == "cuda"
        t0 = time.perf_counter()
        bar = tqdm(range(nb), desc=f"epoch {self.epoch + 1}/{p.training.epochs}", leave=False,
                   disable=not self.progress, unit="batch")
        self.net.train()
        for k in bar:
            idx = perm[k * bs:(k + 1) * bs]
            U, Tb = X[idx].to(dev), T[idx].to(dev)
            loss, Y, info = self._loss(U, Tb, self.epoch + k / nb)
            loss_value = float(loss.detach())  # one conversion (a device sync) per step
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(
                    f"non-finite training loss ({loss_value}) at epoch {self.epoch + 1}, batch {k + 1}; "
                    f"training stopped. The last good checkpoint "
                    f"{'is kept at ' + str(self.run_dir / 'checkpoint.pt') if self.run_dir else 'was not saved (no out_dir)'}."
                    " Lower the learning rate or check the data.")
            fst = self.net.last_forward_stats
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            bst = self.net.last_backward_stats
            self.opt.step()
            if sync:  # let the queued step finish first, so that its time is not booked to the projection
                torch.cuda.synchronize(dev)
            tp = time.perf_counter()
            self._project()
            tc = time.perf_counter()
            self.step_count += 1
            self._check_invariant()
            t_check += time.perf_counter() - tc
            t_proj += tc - tp
            for cb in self.callbacks:
                cb(self, {"step": self.step_count, "epoch": self.epoch, "loss": loss_value,
                          "forward": fst, "backward": bst})
            b = U.shape[0]
            sums["loss"] += loss_value * b
            sums["count"] += b
            if not self.regression:
                sums["correct"] += int((Y.detach().argmax(-1) == Tb).sum())
            sums["fwd"] += float(fst.sample_iterations.double().mean()) * b
            sums["fwd_max"] = max(sums["fwd_max"], fst.iterations)
            sums["fwd_nc"] += fst.n_not_converged
            if bst is not None:
                sums["bwd"] += float(bst.sample_iterations.double().mean()) * b
                sums["bwd_max"] = max(sums["bwd_max"], bst.iterations)
                sums["bwd_nc"] += bst.n_not_converged
            for key, v in info.items():
                extra[key] = extra.get(key, 0.0) + v * b
            if self.progress and (k % 10 == 0 or k == nb - 1):
                bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.4g}", iters=f"{fst.iterations}")
        bar.close()
        if self.sched is not None:
            self.sched.step()
        t_epoch = time.perf_counter() - t0
        n = sums["count"]
        rec: dict[str, Any] = {
            "epoch": self.epoch + 1, "train_loss": sums["loss"] / n, "lr": self.opt.param_groups[0]["lr"],
            "fwd_iters_mean": sums["fwd"] / n, "fwd_iters_max": sums["fwd_max"], "fwd_not_converged": sums["fwd_nc"],
            "bwd_iters_mean": sums["bwd"] / n, "bwd_iters_max": sums["bwd_max"], "bwd_not_converged": sums["bwd_nc"],
            "epoch_time": t_epoch, "projection_time": t_proj, "projection_share": t_proj / t_epoch,
            "check_time": t_check, "check_share": t_check / t_epoch,
        }
        if not self.regression:
            rec["train_accuracy"] = sums["correct"] / n
        rec.update({k: v / n for k, v in extra.items()})
        return rec

    def _epoch_report(self, rec: dict[str, Any]) -> dict[str, Any]:
        d = self.data
        ev = evaluate(self.net, d.test_inputs, d.test_targets, d.task)
        op = self.net.operator
        op = op.with_weight(op.weight.detach())
        rec["test_loss"] = ev["loss"]
        if d.task == "classification":
            rec["test_accuracy"] = ev["accuracy"]
        else:
            rec["test_mse"] = ev["mse"]
        rec["test_iters_mean"] = ev["eval_iterations"]
        rec["mu_inf"] = float(op.mu_inf())
        if self.net.eta is not None:
            rec["mu_inf_weighted"] = float(op.mu_inf(self.net.eta))
        if self.set is not None:
            A = op.weight if isinstance(op, DenseOperator) else op
            rec["set_value"] = float(torch.as_tensor(self.set.value(A)))
            rec["in_set"] = bool(self.set.contains(A, tol=self.problem.constraint.check_tol))
        try:
            rec["lipschitz_bound"] = float(lipschitz_bound(self.net).detach())
        except ValueError:
            rec["lipschitz_bound"] = None     # μ ≥ 1: no certificate (unconstrained training)
        return rec

    def fit(self, epochs: int | None = None) -> TrainResult:
        """Train until ``epochs`` (default ``problem.training.epochs``) epochs are done in total."""
        epochs = self.problem.training.epochs if epochs is None else epochs
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(problem_to_toml(self.problem), self.run_dir / "problem.toml")
        outer = tqdm(total=epochs, initial=self.epoch, desc=self.problem.name or "training",
                     disable=not self.progress, unit="epoch")
        key = "test_accuracy" if self.data.task == "classification" else "test_mse"
        while self.epoch < epochs:
            rec = self._epoch_report(self.train_epoch())
            self.epoch += 1
            self.history.append(rec)
            self.save()
            outer.update(1)
            outer.set_postfix({key: f"{rec[key]:.4g}", "mu": f"{rec['mu_inf']:.3f}",
                               "lip": "—" if rec["lipschitz_bound"] is None else f"{rec['lipschitz_bound']:.3g}"})
        outer.close()
        summary = self.summary()
        if self.run_dir is not None:
            write_text_atomic(json.dumps(summary, indent=2) + "\n", self.run_dir / "summary.json")
        return TrainResult(self.net, self.history, summary, self.problem, self.run_dir)

    def summary(self) -> dict[str, Any]:
        h = self.history
        if not h:
            return {}
        last = h[-1]
        s = {k: last[k] for k in ("epoch", "test_loss", "test_accuracy", "test_mse", "mu_inf", "mu_inf_weighted",
                                  "set_value", "in_set", "lipschitz_bound") if k in last}
        s.update(
            problem=self.problem.name, set=self.problem.constraint.set, enforce=self.problem.constraint.enforce,
            epoch_time_mean=sum(r["epoch_time"] for r in h) / len(h),
            fwd_iters_mean=sum(r["fwd_iters_mean"] for r in h) / len(h),
            bwd_iters_mean=sum(r["bwd_iters_mean"] for r in h) / len(h),
            projection_share=sum(r["projection_time"] for r in h) / sum(r["epoch_time"] for r in h),
            check_share=sum(r.get("check_time", 0.0) for r in h) / sum(r["epoch_time"] for r in h),
            not_converged=sum(r["fwd_not_converged"] + r["bwd_not_converged"] for r in h),
        )
        if self.data.target_lipschitz is not None:
            s["true_lipschitz"] = self.data.target_lipschitz
        return s


def train(problem: Problem | str | os.PathLike | dict, out_dir: str | os.PathLike | None = None, *,
          resume: bool = False, epochs: int | None = None, data_dir: str | None = None,
          progress: bool = True, data: Dataset | None = None) -> TrainResult:
    """Train ``problem`` (a Problem, a TOML path or a dict) and return a :class:`TrainResult`.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` when it exists. ``epochs`` overrides
    ``training.epochs``; ``data_dir`` overrides ``data.data_dir``.
    """
    problem = load_problem(problem)
    if epochs is not None:
        problem = override(problem, **{"training.epochs": int(epochs)})
    if data_dir is not None:
        problem = override(problem, **{"data.data_dir": str(data_dir)})
    trainer = Trainer(problem, out_dir, data=data, progress=progress)
    if resume:
        trainer.resume()
    return trainer.fit()


def load_run(run_dir: str | os.PathLike, map_location=None) -> tuple[ImplicitModel, Problem]:
    """The trained network and its problem from a run directory written by :func:`train`."""
    run_dir = Path(run_dir)
    problem = load_problem(run_dir / "problem.toml")
    state = load_checkpoint(run_dir / "checkpoint.pt", map_location=map_location)
    model = state["model"]
    dims = state.get("dims")
    r = dims["input_dim"] if dims else model["B"].shape[1]
    q = dims["output_dim"] if dims else model["C"].shape[0]
    net = build_network(override(problem, device="cpu") if map_location == "cpu" else problem, r, q)
    if "eta" in model and net.eta is None:
        net.eta = model["eta"].clone()
        if problem.constraint.enforce == "reparam":
            net.parametrizations.A[0].eta = net.eta
    net.load_state_dict(model)
    return net, problem
