"""Same method, two backends: projected-gradient trajectories with the exact and the CVXPY projection.

Trains the MNIST problem (problems/mnist_fc.toml: 784 → 100 → 10, μ∞(A) ≤ 0.95, Adam 1e-3, batch 100)
for ``--steps`` steps twice from the same initialisation and data order — once projecting with the
closed form (backend "exact"), once with CVXPY + Clarabel at tight tolerances (backend "cvxpy") —
and reports, along the trajectory, the largest difference between the two A matrices, between the
losses, and the time per projection of each backend. Float64 so that the comparison measures the
projections, not float32 round-off.

A control run pairs two exact closed forms ("exact" = the compiled kernel on CPU vs the tensor
"sort" form), which differ only by round-off (~1e-16): it shows how much the training itself amplifies round-off, so that a
difference between exact and CVXPY well above it would mean the projections disagree.

    python bench/backend_trajectory.py [--steps 300] [--optimizer sgd|adam] [--data-dir ../shared/data/mnist]
"""
from __future__ import annotations

import argparse
import time

import torch

from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer


def run(problem, steps):
    As, losses, proj_times = [], [], []
    trainer = Trainer(problem, progress=True)
    original = trainer._project

    def timed():
        t = time.perf_counter()
        original()
        proj_times.append(time.perf_counter() - t)

    trainer._project = timed

    def record(tr, info):
        As.append(tr.net.A.detach().clone())
        losses.append(info["loss"])

    trainer.callbacks.append(record)
    trainer.fit(epochs=1)
    return As[:steps], losses[:steps], proj_times[:steps]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--lr", type=float, default=None, help="default: 0.05 for SGD, 1e-3 for Adam")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = override(load_problem("problems/mnist_fc.toml"), **{
        "dtype": "float64", "data.data_dir": args.data_dir, "data.train_limit": args.steps * 100,
        "data.test_limit": 1000, "training.epochs": 1, "solver.tol": 1e-9, "solver.backward_tol": 1e-10,
        "optimizer.name": args.optimizer, "optimizer.lr": args.lr or (0.05 if args.optimizer == "sgd" else 1e-3),
        "optimizer.momentum": 0.9 if args.optimizer == "sgd" else 0.0})
    A1, l1, t1 = run(base, args.steps)
    A2, l2, t2 = run(override(base, **{"constraint.backend": "cvxpy"}), args.steps)
    A3, l3, t3 = run(override(base, **{"constraint.backend": "sort"}), args.steps)

    def diffs(X, lx):
        dA = [float((a - b).abs().max()) for a, b in zip(A1, X)]
        return dA, [abs(a - b) for a, b in zip(l1, lx)]

    (dA, dl), (cA, cl) = diffs(A2, l2), diffs(A3, l3)
    print(f"\n{len(dA)} steps of projected {args.optimizer.upper()} on MNIST (float64): exact vs CVXPY/Clarabel "
          f"projection, and the control exact vs sort\n")
    print("| step | max abs ΔA, exact vs CVXPY | abs Δloss, exact vs CVXPY | max abs ΔA, exact vs sort (control) | max abs A |")
    print("|---:|---:|---:|---:|---:|")
    for k in sorted({0, 9, 49, 99, 199, len(dA) - 1}):
        if k < len(dA):
            print(f"| {k + 1} | {dA[k]:.2e} | {dl[k]:.2e} | {cA[k]:.2e} | {float(A1[k].abs().max()):.3f} |")
    print(f"\nlargest over the trajectory: ΔA {max(dA):.2e}, Δloss {max(dl):.2e} (control ΔA {max(cA):.2e})")
    print(f"time per projection: exact {1e3 * sum(t1) / len(t1):.2f} ms, cvxpy {1e3 * sum(t2) / len(t2):.1f} ms "
          f"(ratio {sum(t2) / sum(t1):.0f}×)")


if __name__ == "__main__":
    main()
