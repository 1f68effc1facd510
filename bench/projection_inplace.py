"""Benchmark: the training hot path of the μ∞ polytope: in-place ``project_`` and the membership check.

For n in ``--sizes`` and float32/float64: an Adam-like perturbation of a projected matrix (every call sees a
small correction of the last projection, as in training), then ``MuInfPolytope(0.9).project_(A)``; and
``contains(A, tol)`` for tol = 1e-6 (the trainer's check) and tol = 0. Reports the median over ``--calls``
calls (µs), all in this process; compare versions by running this script in a git worktree of each.

    python bench/projection_inplace.py [--sizes 100 500] [--calls 2000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from linf_opt import mu_inf
from linf_opt.sets.feasible import MuInfPolytope


def median_us(f, calls: int) -> float:
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--gamma", type=float, default=0.9)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"| n | dtype | project_ (µs) | contains tol=1e-6 (µs) | contains tol=0 (µs) | mu_inf ≤ γ |")
    print("|---|---|---:|---:|---:|---|")
    for n in args.sizes:
        for dtype in (torch.float32, torch.float64):
            g = torch.Generator().manual_seed(0)
            S = MuInfPolytope(args.gamma)
            A = torch.randn(n, n, generator=g, dtype=dtype) / n ** 0.5
            S.project_(A)
            noise = [torch.randn(n, n, generator=g, dtype=dtype) * 1e-3 / n ** 0.5 for _ in range(8)]
            k = [0]

            def step():
                A.add_(noise[k[0] % 8])
                k[0] += 1

            def proj():
                step()
                S.project_(A)

            calls = args.calls if n <= 200 else max(args.calls // 5, 50)
            t_step = median_us(step, calls)
            t_proj = median_us(proj, calls) - t_step
            t_c6 = median_us(lambda: S.contains(A, tol=1e-6), calls)
            t_c0 = median_us(lambda: S.contains(A, tol=0), calls)
            ok = float(mu_inf(A)) <= args.gamma and S.contains(A, tol=0)
            print(f"| {n} | {str(dtype)[6:]} | {t_proj:.1f} | {t_c6:.1f} | {t_c0:.1f} | {ok} |", flush=True)


if __name__ == "__main__":
    main()
