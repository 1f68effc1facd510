"""Benchmark: iterations and time to residual 1e-6 for every fixed-point method (issue: foundation).

Two random well-posed problems, n = 200 hidden units, batch 256, float64:
  1. strongly negative diagonals (μ∞(A) = 0.9, ‖A‖∞ ≫ 1, α* ≪ 1), where Picard is not guaranteed;
  2. non-negative diagonals (μ∞(A) = ‖A‖∞ = 0.9, α* = 1), El Ghaoui's regime.
Each method runs to max residual ‖x − Φ(Ax + Bu + b)‖∞ ≤ 1e-6 (absolute); times are the median of
``--repeats`` runs in this process and are reported as ratios to the average iteration. The monotone
splittings need I − A ⪰ mI (m > 0); where A is not monotone they are reported as not applicable.

    python bench/fixed_point.py [--n 200] [--batch 256] [--repeats 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from linf_opt import ConvergenceWarning, average_step, mu_2, mu_inf, norm_inf, solve_fixed_point

METHODS = ["average", "picard", "anderson", "forward_backward", "peaceman_rachford"]


def make_problem(n: int, batch: int, negative: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A.fill_diagonal_(0)
    if negative:
        A *= 3.0 / A.abs().sum(1, keepdim=True)   # off-diagonal row sums 3: diagonals ≈ −2.1 to −3.1
        A += torch.diag(0.9 - 3.0 - torch.rand(n, generator=g, dtype=torch.float64))
        A[0, 0] = 0.9 - 3.0
    else:
        A = A.abs() * torch.rand(n, 1, generator=g, dtype=torch.float64)
        A += torch.diag(torch.rand(n, generator=g, dtype=torch.float64))
        A *= 0.9 / A.abs().sum(1).max()
    B = torch.randn(n, 10, generator=g, dtype=torch.float64) / 10 ** 0.5
    u = torch.randn(batch, 10, generator=g, dtype=torch.float64)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    return A, B, u, b


def run(A, B, u, b, method, repeats):
    times, st = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            try:
                _, st = solve_fixed_point(A, B, u, b, method=method, tol=1e-6, rtol=0.0, max_iter=20000)
            except ValueError as exc:            # e.g. a monotone splitting on a non-monotone A
                return None, str(exc).split(":")[1].strip()[:60]
        times.append(time.perf_counter() - t)
    return (statistics.median(times), st), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for negative in (True, False):
        A, B, u, b = make_problem(args.n, args.batch, negative)
        print(f"\n### {'Negative' if negative else 'Non-negative'} diagonals: n = {args.n}, batch = {args.batch}, "
              f"μ∞(A) = {float(mu_inf(A)):.3f}, ‖A‖∞ = {float(norm_inf(A)):.3f}, μ₂(A) = {float(mu_2(A)):.3f}, "
              f"α* = {float(average_step(A)):.3f}\n")
        print("| method | iterations | Φ evaluations | time (ms) | time ÷ average | converged |")
        print("|---|---:|---:|---:|---:|---|")
        base = None
        for m in METHODS:
            res, why = run(A, B, u, b, m, args.repeats)
            if res is None:
                print(f"| {m} | — | — | — | — | not applicable: {why} |")
                continue
            t, st = res
            base = t if m == "average" else base
            conv = "yes" if st.all_converged else ("diverged" if st.diverged else f"no ({st.n_not_converged}/{args.batch})")
            print(f"| {m} | {st.iterations} | {st.evaluations} | {t * 1e3:.1f} | {t / base:.2f} | {conv} |")


if __name__ == "__main__":
    main()
