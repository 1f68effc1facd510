"""Benchmark: MNIST FC training time of linf_opt against a plain MLP of the same width, same batches.

In one process, interleaved in rounds of ``--chunk`` training images (so that load changes on a shared
machine hit every model alike), it trains a plain MLP 784-100-10 (Adam 1e-3, the same permutation of the same batches) and
linf_opt's ``problems/mnist_fc.toml`` under the default settings and under each alternative setting
considered, and prints for each:

- seconds per epoch (60,000 images; the median round scaled) and the median over rounds of the ratio to
  the MLP's time in the same round;
- mean forward / backward solver iterations per sample;
- the gradient error: ‖g − g*‖ / ‖g*‖ over all parameters on fixed batches, where g is the gradient at
  the variant's settings and g* the exact gradient (float64 copy, tolerances 1e-13);
- test accuracy after the last epoch (of the weight average for the ema variant).

linf_opt's time includes everything its trainer's epoch loop does (projection, invariant check,
bookkeeping); evaluation is not timed. The learning rate is not decayed (3 epochs, lr_step = 0).

    python bench/train_step.py --data-dir ../shared/data/mnist [--epochs 3] [--variants default,check1,...]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from linf_opt.data.datasets import Dataset, load_dataset
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer, evaluate

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    # name: (overrides of problems/mnist_fc.toml, what it is)
    "default": ({}, "the defaults: checks scheduled from the rate (at most every 8 iterations), backward "
                    "tolerance 1e-3"),
    "bwd_tol_1e-4": ({"solver.backward_tol": 1e-4}, "backward relative tolerance 1e-4"),
    "bwd_tol_1e-6": ({"solver.backward_tol": 1e-6}, "backward relative tolerance 1e-6 (the previous default)"),
    "check_every_1": ({"solver.check_every": 1}, "a convergence check (host sync) every iteration"),
    "check_every_4": ({"solver.check_every": 4}, "at most 4 iterations between checks"),
    "tol_1e-3": ({"solver.tol": 1e-3}, "forward 1e-3 (default 1e-4)"),
    "tol_1e-2": ({"solver.tol": 1e-2, "solver.backward_tol": 1e-2}, "forward and backward 1e-2"),
    "ema_0.999": ({"training.ema_decay": 0.999}, "weight averaging: the moving average updated (a float64 "
                                                "lerp) and checked in μ∞ ≤ γ after every step"),
}


class MLP(torch.nn.Module):
    def __init__(self, width: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))

    def forward(self, u):
        return self.net(u)


def mlp_epoch(model, opt, X, T, perm, bs) -> float:
    t0 = time.perf_counter()
    model.train()
    for k in range(0, X.shape[0], bs):
        idx = perm[k:k + bs]
        loss = torch.nn.functional.cross_entropy(model(X[idx]), T[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())          # the same one sync per step that the trainer makes
    return time.perf_counter() - t0


@torch.no_grad()
def mlp_accuracy(model, X, T) -> float:
    model.eval()
    return float((model(X).argmax(1) == T).double().mean())


def gradient_error(trainer: Trainer, batches) -> float:
    """‖g − g*‖/‖g*‖ on ``batches``: g at the trainer's settings, g* exact (float64, tolerances 1e-13)."""
    net = trainer.net
    exact = copy.deepcopy(net).double()
    num = den = 0.0
    for U, T in batches:
        g = torch.autograd.grad(trainer._loss(U, T, trainer.epoch)[0], list(net.parameters()))
        with exact.solver_options(tol=1e-13, backward_tol=1e-13, max_iter=100000):
            Y = exact(U.double())
            loss = torch.nn.functional.cross_entropy(Y, T)
            gs = torch.autograd.grad(loss, list(exact.parameters()))
        num += sum(float(((a.double() - b) ** 2).sum()) for a, b in zip(g, gs))
        den += sum(float((b ** 2).sum()) for b in gs)
    return (num / den) ** 0.5


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=0, help="0: all 60,000 images")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=5000, help="training images per model and round")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    base = override(load_problem(ROOT / "problems/mnist_fc.toml"),
                    **{"data.data_dir": args.data_dir, "data.train_limit": args.train_limit, "seed": args.seed,
                       "training.epochs": args.epochs, "optimizer.lr_step": 0})
    data = load_dataset(base)
    trainers = {v: Trainer(override(base, **VARIANTS[v][0]), data=data, progress=False) for v in names}
    mlp = MLP(base.model.hidden, args.seed)
    mlp_opt = torch.optim.Adam(mlp.parameters(), lr=base.optimizer.lr)
    shuffle = torch.Generator().manual_seed(args.seed + 1)       # the trainers' permutation sequence
    X, T = data.train_inputs, data.train_targets
    g = torch.Generator().manual_seed(123)
    fixed = [(X[i], T[i]) for i in torch.randint(0, X.shape[0], (3, 100), generator=g)]
    chunks = [slice(a, min(a + args.chunk, X.shape[0])) for a in range(0, X.shape[0], args.chunk)]
    times: dict[str, list[float]] = {v: [] for v in ["mlp", *names]}
    ratios: dict[str, list[float]] = {v: [] for v in names}
    iters: dict[str, list[tuple[float, float]]] = {v: [] for v in names}
    print(f"MNIST FC, {X.shape[0]} training images, batch {base.training.batch_size}, {args.epochs} epochs in "
          f"rounds of {args.chunk} images, {args.threads} thread(s)", flush=True)
    for epoch in range(args.epochs):
        for sl in chunks:
            part = Dataset(X[sl], T[sl], data.test_inputs, data.test_targets, data.task, data.output_dim)
            perm = torch.randperm(part.train_inputs.shape[0], generator=shuffle)
            t_mlp = mlp_epoch(mlp, mlp_opt, part.train_inputs, part.train_targets, perm, base.training.batch_size)
            times["mlp"].append(t_mlp)
            for v in names:
                trainers[v].data = part
                rec = trainers[v].train_epoch()
                times[v].append(rec["epoch_time"])
                ratios[v].append(rec["epoch_time"] / t_mlp)
                iters[v].append((rec["fwd_iters_mean"], rec["bwd_iters_mean"]))
        print(f"  epoch {epoch + 1}: " + ", ".join(
            f"{v} {statistics.median(ratios[v][-len(chunks):]):.2f}×" for v in names), flush=True)
    per_epoch = len(chunks)
    for tr in trainers.values():
        tr.data = data
    acc_mlp = mlp_accuracy(mlp, data.test_inputs, data.test_targets)
    print()
    print(f"| setting | s / epoch | × MLP | fwd / bwd iterations | gradient error | test accuracy |")
    print(f"|---|---:|---:|---:|---:|---:|")
    print(f"| plain MLP 784-{base.model.hidden}-10 | {statistics.median(times['mlp']) * per_epoch:.2f} | 1.00 | — | — | "
          f"{acc_mlp:.2%} |")
    for v in names:
        tr = trainers[v]
        ev = evaluate(tr.result_net, data.test_inputs, data.test_targets, "classification")   # the average, with ema
        err = gradient_error(tr, fixed)
        f = statistics.mean(i[0] for i in iters[v])
        b = statistics.mean(i[1] for i in iters[v])
        print(f"| {v}: {VARIANTS[v][1]} | {statistics.median(times[v]) * per_epoch:.2f} | {statistics.median(ratios[v]):.2f} | "
              f"{f:.1f} / {b:.1f} | {err:.1e} | {ev['accuracy']:.2%} |", flush=True)


if __name__ == "__main__":
    main()
