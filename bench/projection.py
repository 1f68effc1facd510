"""Benchmark: Euclidean projection onto P(γ) = {A : μ∞(A) ≤ γ} (issue: exact projections).

A = randn(n, n)/√n (float64 unless ``--dtype``), γ = 0.9: every row is infeasible and is projected.
Times are the minimum over ``--repeats`` rounds (5× as many for n ≤ 200) in this process (after one warm-up run; the timed
functions of a row run round-robin, so that load changes on a shared machine hit all of them), and
every ratio compares numbers measured in the same run, single-threaded unless ``--threads``:

1. the default closed form (``method="exact"``) against the CVXPY + Clarabel reference (row by row,
   default tolerances), one ``torch.sort`` of the n×n matrix along its rows, and one elementwise pass
   ``A.abs()`` (the memory-traffic floor). For large n the CVXPY time is extrapolated from a sample
   of rows (the other rows made feasible, which the backend skips), marked ≈;
2. the closed forms: the compiled kernel (``exact`` on CPU) against the tensor forms, sort-based and
   pivoting (vectorised Newton), with the number of Newton passes;
3. training-like use: Adam steps on a random quadratic loss, each followed by a projection, with the
   stateful projector cold and warm-started from the previous multipliers (small corrections of the
   previous projection, as in projected-gradient training), and the in-place projection of a
   parameter (``project_``) that the trainer uses. Note that a tight loop flatters every entry
   (warm caches): in training the same calls cost 2–4× more, and the trainer measures its own share.

    python bench/projection.py [--quick] [--sizes 50 100 …] [--dtype float32] [--threads 1] [--device cuda]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from linf_opt import MuInfProjector, mu_inf, project_mu_inf
from linf_opt.sets.projections import EXACT_SORT_MAX_ROW

GAMMA = 0.9


def best_times(fns: dict, repeats: int) -> dict:
    """Minimum wall-clock time of each ``f()`` over ``repeats`` rounds, after one warm-up run each.

    The functions run round-robin, so that a change of load on a shared machine hits all of them.
    """
    for f in fns.values():
        f()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def rounds(n: int, repeats: int) -> int:
    """More rounds for the sub-millisecond sizes, whose minimum needs more samples to settle."""
    return repeats * 5 if n <= 200 else repeats


def random_matrix(n: int, dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=g, dtype=dtype) / n ** 0.5


def cvxpy_time(A: torch.Tensor, sample: int) -> tuple[float, bool]:
    """Seconds for the CVXPY backend on A: measured on all rows, or extrapolated from ``sample`` rows."""
    n = A.shape[0]
    warm = A.clone()
    warm.diagonal()[1:] = -(warm.abs().sum(1)[1:] + 1)  # one infeasible row: compiles the problem of size n
    project_mu_inf(warm, GAMMA, method="cvxpy")
    if sample >= n:
        t0 = time.perf_counter()
        X = project_mu_inf(A, GAMMA, method="cvxpy")
        elapsed = time.perf_counter() - t0
        assert float(mu_inf(X)) <= GAMMA + 1e-8
        return elapsed, False
    rows = np.linspace(0, n - 1, sample).astype(int)
    C = A.clone()
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.as_tensor(rows)] = False
    C.diagonal()[keep] = -(C.abs().sum(1)[keep] + 1)  # feasible rows are skipped by every backend
    t0 = time.perf_counter()
    project_mu_inf(C, GAMMA, method="cvxpy")
    return (time.perf_counter() - t0) * n / sample, True


def main_table(sizes, dtype, repeats, cvxpy_full_max, cvxpy_sample, cvxpy_max):
    print("### Exact backend against the CVXPY reference, one sort and one elementwise pass\n")
    print("| n | exact (ms) | CVXPY (s) | `torch.sort` (ms) | `A.abs()` (ms) | CVXPY / exact | exact / sort "
          "| exact / abs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        A = random_matrix(n, dtype)
        t = best_times({"exact": lambda: project_mu_inf(A, GAMMA), "sort": lambda: torch.sort(A, dim=-1),
                        "abs": lambda: A.abs()}, rounds(n, repeats))
        t_exact, t_sort, t_abs = t["exact"], t["sort"], t["abs"]
        if n <= cvxpy_max:
            t_cvx, approx = cvxpy_time(A.double(), n if n <= cvxpy_full_max else cvxpy_sample)
            cvx = f"{'≈' if approx else ''}{t_cvx:.3g}"
            ratio = f"{'≈' if approx else ''}{t_cvx / t_exact:,.0f}"
        else:
            cvx, ratio = "—", "—"
        print(f"| {n} | {t_exact * 1e3:.3g} | {cvx} | {t_sort * 1e3:.3g} | {t_abs * 1e3:.3g} | {ratio} "
              f"| {t_exact / t_sort:.2f} | {t_exact / t_abs:.0f} |", flush=True)


def methods_table(sizes, dtype, repeats):
    print("\n### The closed forms: the compiled kernel (`exact` on CPU) and the two tensor forms "
          f"(`exact` elsewhere: `sort` for n ≤ {EXACT_SORT_MAX_ROW}, `pivot` above)\n")
    print("| n | compiled (ms) | sort-based (ms) | pivot (ms) | sort-based / compiled | pivot / compiled "
          "| Newton passes (compiled / pivot) | max |difference| |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        A = random_matrix(n, dtype)
        proj = MuInfProjector(GAMMA, method="pivot")
        comp = MuInfProjector(GAMMA, method="exact")
        t = best_times({"compiled": lambda: comp(A), "sort": lambda: project_mu_inf(A, GAMMA, method="sort"),
                        "pivot": lambda: proj(A)}, rounds(n, repeats))
        t_c, t_s, t_p = t["compiled"], t["sort"], t["pivot"]
        ref = project_mu_inf(A, GAMMA, method="sort")
        diff = max(float((ref - proj(A)).abs().max()), float((ref - comp(A)).abs().max()))
        print(f"| {n} | {t_c * 1e3:.3g} | {t_s * 1e3:.3g} | {t_p * 1e3:.3g} | {t_s / t_c:.1f} | {t_p / t_c:.1f} "
              f"| {comp.info['passes']} / {proj.info['passes']} | {diff:.1e} |", flush=True)


def training_table(sizes, dtype, steps, lr):
    print(f"\n### Training-like sequence: {steps} Adam steps (lr = {lr:g}) on ½‖A − M‖², each followed "
          "by a projection of the parameter\n")
    print("| n | sort-based | pivot, cold | pivot, warm | compiled, cold | compiled, warm | compiled, in place "
          "| pivot, warm / in place | rows projected | passes: pivot cold / warm, compiled cold / warm |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        g = torch.Generator().manual_seed(1)
        M = torch.randn(n, n, generator=g, dtype=dtype) * 2 / n ** 0.5  # an infeasible target
        A0 = project_mu_inf(random_matrix(n, dtype, seed=2), GAMMA)
        # the same trajectory for every method: record the pre-projection iterates once
        A = torch.nn.Parameter(A0.clone())
        opt = torch.optim.Adam([A], lr=lr)
        inputs = []
        for _ in range(steps):
            opt.zero_grad()
            (0.5 * (A - M).pow(2).sum()).backward()
            opt.step()
            inputs.append(A.detach().clone())
            with torch.no_grad():
                A.copy_(project_mu_inf(A, GAMMA))
        projectors = {"sort": MuInfProjector(GAMMA, method="sort"),
                      "cold": MuInfProjector(GAMMA, method="pivot"),
                      "warm": MuInfProjector(GAMMA, method="pivot", warm_start=True),
                      "ccold": MuInfProjector(GAMMA, method="exact"),
                      "cwarm": MuInfProjector(GAMMA, method="exact", warm_start=True)}
        param = torch.nn.Parameter(A0.clone())
        inplace = MuInfProjector(GAMMA, method="exact")
        stats = {}

        def sequence(proj, record=None):
            proj.reset()
            for B in inputs:
                proj(B)
                if record is not None:
                    record.append((proj.info.get("passes", 0), proj.info.get("projected", 0)))

        def in_place():  # the trainer's step: copy the iterate into the parameter, project it there
            inplace.reset()
            with torch.no_grad():
                for B in inputs:
                    param.copy_(B)
                    inplace.project_(param)

        for name, proj in projectors.items():
            rec = []
            sequence(proj, rec)
            stats[name] = np.mean(rec, axis=0)
        in_place()
        assert torch.equal(param.detach(), projectors["ccold"](inputs[-1]))
        fns = {k: (lambda p=p: sequence(p)) for k, p in projectors.items()}
        fns["inplace"] = in_place
        t = best_times(fns, 3)
        row = [str(n)] + [f"{t[k] / steps * 1e6:.0f} µs" for k in ("sort", "cold", "warm", "ccold", "cwarm", "inplace")]
        row += [f"{t['warm'] / t['inplace']:.1f}", f"{stats['cold'][1]:.1f} of {n}",
                f"{stats['cold'][0]:.1f} / {stats['warm'][0]:.1f}, {stats['ccold'][0]:.1f} / {stats['cwarm'][0]:.1f}"]
        print("| " + " | ".join(row) + " |", flush=True)


def cuda_table(sizes, dtype, repeats):
    """On the accelerator: the tensor forms on the device against a round trip to the CPU kernel."""
    from linf_opt.sets.projections import HOST_KERNEL_MAX_ENTRIES

    dev = torch.device("cuda")
    print(f"\n### On {torch.cuda.get_device_name(dev)}: tensor forms on the device against a round trip to "
          f"the CPU kernel (`exact` takes the round trip up to {HOST_KERNEL_MAX_ENTRIES:,} entries)\n")
    print("| n | round trip to the kernel (ms) | sort on device (ms) | pivot on device (ms) | `exact` (ms) "
          "| best device form / round trip |")
    print("|---:|---:|---:|---:|---:|---:|")

    def synced(f):
        def g():
            f()
            torch.cuda.synchronize()
        return g

    for n in sizes:
        A = random_matrix(n, dtype).to(dev)
        fns = {"host": synced(lambda: project_mu_inf(A.cpu(), GAMMA).to(dev)),
               "sort": synced(lambda: project_mu_inf(A, GAMMA, method="sort")),
               "pivot": synced(lambda: project_mu_inf(A, GAMMA, method="pivot")),
               "exact": synced(lambda: project_mu_inf(A, GAMMA))}
        t = best_times(fns, rounds(n, repeats))
        ref = project_mu_inf(A.cpu().double(), GAMMA)
        assert float((project_mu_inf(A, GAMMA).cpu().double() - ref).abs().max()) < 1e-4
        print(f"| {n} | {t['host'] * 1e3:.3g} | {t['sort'] * 1e3:.3g} | {t['pivot'] * 1e3:.3g} "
              f"| {t['exact'] * 1e3:.3g} | {min(t['sort'], t['pivot']) / t['host']:.2f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (about 30 s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000, 2000])
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: stable timings on a shared machine)")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--cvxpy-full-max", type=int, default=200, help="largest n solved in full by CVXPY")
    ap.add_argument("--cvxpy-sample", type=int, default=20, help="rows timed for larger n (extrapolated)")
    ap.add_argument("--cvxpy-max", type=int, default=2000, help="largest n for which CVXPY is timed")
    ap.add_argument("--steps", type=int, default=50, help="steps of the training-like sequence")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: only the accelerator table (device forms against the CPU kernel)")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 200] or [50, 100, 200]
        args.repeats, args.cvxpy_full_max, args.cvxpy_sample, args.steps = 3, 100, 5, 30
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"{args.dtype}, γ = {GAMMA}, A = randn(n, n)/√n, best of {args.repeats} rounds "
          f"({5 * args.repeats} for n ≤ 200)\n")
    if args.device == "cuda":
        cuda_table(args.sizes, dtype, args.repeats)
        return
    main_table(args.sizes, dtype, args.repeats, args.cvxpy_full_max, args.cvxpy_sample, args.cvxpy_max)
    methods_table(args.sizes, dtype, args.repeats)
    training_table([n for n in (100, 1000) if n <= max(args.sizes)], dtype, args.steps, 1e-3)


if __name__ == "__main__":
    main()
