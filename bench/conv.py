"""Benchmark: the convolutional implicit layer against the dense layer at the same state size.

In one process, interleaved in rounds, for a state of C × H × W (MNIST after a stride-2 injection:
C × 14 × 14):

1. cost of one average-iteration step (the product A x, the activation and the blend) of the conv
   operator and of a dense n × n operator with n = C·H·W, batch 100;
2. cost of one training step (forward solve, backward solve, Adam, projection, invariant check) of
   ``problems/mnist_conv.toml`` (the trainer's own timings: projection share, check share);
3. iteration counts of the average iteration on a trained conv network (``--run runs/mnist_conv``):
   mean and max forward iterations on test images at the training tolerance and at 1e-6, with α*, μ∞
   and the a-priori count from the contraction factor.

    python bench/conv.py --data-dir ../shared/data/mnist [--channels 16 32] [--run runs/mnist_conv]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from linf_opt import Conv2dOperator, DenseOperator
from linf_opt.equilibrium.activations import get_activation
from linf_opt.equilibrium.solvers import a_priori_iterations, average_iteration
from linf_opt.sets.projections import project_conv_kernel
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer, load_run

ROOT = Path(__file__).resolve().parents[1]


def per_iteration(op, Q, iters: int = 30, rounds: int = 5) -> float:
    """Seconds per average-iteration step: a fixed number of steps (no convergence check)."""
    relu = get_activation("relu")
    x0 = torch.zeros_like(Q)
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        average_iteration(op, Q, relu, x0, alpha=None, tol=0.0, rtol=0.0, max_iter=iters, trace=False,
                          check_every=iters)
        out.append((time.perf_counter() - t0) / iters)
    return statistics.median(out)


def layer_costs(channels: list[int], side: int, batch: int):
    print(f"## 1. One iteration, batch {batch}, state C × {side} × {side} (seconds per iteration)\n")
    print("| C | n | conv 3×3 | dense n × n | dense / conv | conv MFLOP | dense MFLOP |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    for C in channels:
        n = C * side * side
        K = project_conv_kernel(torch.randn(C, C, 3, 3, generator=g) / (3 * C ** 0.5), 0.95)
        conv = Conv2dOperator(K, (side, side))
        Q = torch.randn(batch, C, side, side, generator=g)
        t_conv = per_iteration(conv, Q)
        if n <= 8000:
            dense = DenseOperator(conv.as_matrix())
            t_dense = per_iteration(dense, Q.reshape(batch, n))
            cell = f"{t_dense * 1e3:.2f} ms | {t_dense / t_conv:.1f}×"
        else:
            cell = "— | —"
        print(f"| {C} | {n} | {t_conv * 1e3:.2f} ms | {cell} | {2 * batch * n * C * 9 / 1e6:.0f} | "
              f"{2 * batch * n * n / 1e6:.0f} |", flush=True)
    print()


def training_step(data_dir: str, channels: list[int], steps: int):
    print(f"## 2. Training steps of problems/mnist_conv.toml ({steps} steps of batch 100 per size)\n")
    print("| C | s / step | s / epoch (60k) | projection share | invariant-check share | fwd / bwd iterations |")
    print("|---:|---:|---:|---:|---:|---:|")
    for C in channels:
        p = override(load_problem(ROOT / "problems/mnist_conv.toml"),
                     **{"data.data_dir": data_dir, "data.train_limit": steps * 100, "data.test_limit": 100,
                        "model.channels": C, "training.epochs": 1})
        tr = Trainer(p, progress=False)
        rec = tr.train_epoch()
        step = rec["epoch_time"] / steps
        print(f"| {C} | {step:.3f} | {step * 600:.0f} | {rec['projection_share']:.2%} | {rec['check_share']:.2%} | "
              f"{rec['fwd_iters_mean']:.1f} / {rec['bwd_iters_mean']:.1f} |", flush=True)
    print()


@torch.no_grad()
def trained_iterations(run: str, data_dir: str, limit: int):
    from linf_opt.data.datasets import load_mnist
    net, problem = load_run(run, map_location="cpu")
    images, _ = load_mnist(data_dir or problem.data.data_dir, "test", limit=limit, dtype=net.dtype)
    op = net.operator
    alpha, mu = op.average_step(), float(op.mu_inf())
    rho = 1 - alpha * (1 - max(mu, 0.0))
    print(f"## 3. Average iteration on the trained network {run} ({limit} test images)\n")
    print(f"state {net.state_shape}, μ∞(A) = {mu:.4f}, α* = {alpha:.4f}, guaranteed factor ρ* = {rho:.4f}\n")
    print("| tolerance | mean iterations | max iterations | a-priori bound |")
    print("|---:|---:|---:|---:|")
    for tol in (problem.solver.tol, 1e-6):
        with net.solver_options(tol=tol, rtol=0.0, max_iter=100000, check_every=1):
            _, st = net.equilibrium(images)
        first = float((net.operator.affine(torch.zeros(1, *net.state_shape), net.injection(images[:1]))).abs().max())
        bound = a_priori_iterations(rho, first, tol)
        print(f"| {tol:g} | {float(st.sample_iterations.double().mean()):.1f} | {st.iterations} | {bound} |")
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--run", default="", help="a trained conv run directory for part 3")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    layer_costs(args.channels, 14, args.batch)
    training_step(args.data_dir, args.channels, args.steps)
    if args.run:
        trained_iterations(args.run, args.data_dir, args.limit)


if __name__ == "__main__":
    main()
