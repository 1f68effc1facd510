"""Benchmark: the projection's share of a training step, compiled kernel against the torch forms.

Trains the MNIST problem (problems/mnist_fc.toml, float32, batch 100) for ``--steps`` steps per backend,
in one process and interleaved in rounds (so that load changes on a shared machine hit every backend),
and reports what the trainer itself records: time per step, time in the projection and in the
invariant check, and their shares. Backends: ``exact`` (the compiled kernel, in place: the default),
``pivot`` and ``sort`` (the vectorised torch closed forms). Each backend trains its own copy from the
same initialisation and data order; the losses agree to round-off.

    python bench/projection_share.py [--steps 300] [--rounds 3] [--data-dir ../shared/data/mnist]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from linf_opt.training.config import load_problem, override
from linf_opt.training.trainer import Trainer

BACKENDS = ("exact", "pivot", "sort")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="steps per backend and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = override(load_problem(Path(__file__).resolve().parents[1] / "problems/mnist_fc.toml"),
                    **{"data.data_dir": args.data_dir, "data.train_limit": args.steps * 100,
                       "data.test_limit": 100, "dtype": args.dtype})
    trainers = {b: Trainer(override(base, **{"constraint.backend": b}), progress=False) for b in BACKENDS}
    totals = {b: dict(step=0.0, proj=0.0, check=0.0, n=0) for b in BACKENDS}
    for _ in range(args.rounds):
        for b, tr in trainers.items():
            t0 = time.perf_counter()
            rec = tr.train_epoch()
            tot = totals[b]
            tot["step"] += time.perf_counter() - t0
            tot["proj"] += rec["projection_time"]
            tot["check"] += rec["check_time"]
            tot["n"] += args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); MNIST 784 → 100 → 10, {args.dtype}, "
          f"batch 100; {args.rounds} rounds × {args.steps} steps per backend, interleaved\n")
    print("| backend | step (ms) | projection (µs/step) | check (µs/step) | projection share | check share "
          "| projection time ÷ exact |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ref = totals["exact"]["proj"]
    for b, t in totals.items():
        n = t["n"]
        print(f"| {b} | {1e3 * t['step'] / n:.2f} | {1e6 * t['proj'] / n:.0f} | {1e6 * t['check'] / n:.0f} "
              f"| {100 * t['proj'] / t['step']:.2f}% | {100 * t['check'] / t['step']:.2f}% | {t['proj'] / ref:.1f} |")
    A = {b: tr.net.A.detach() for b, tr in trainers.items()}
    print(f"\nmax |ΔA| after training, pivot vs exact: {float((A['pivot'] - A['exact']).abs().max()):.1e}, "
          f"sort vs exact: {float((A['sort'] - A['exact']).abs().max()):.1e} (the projections agree to round-off; "
          f"Adam amplifies round-off in entries whose gradient is near zero, most in float32)")


if __name__ == "__main__":
    main()
