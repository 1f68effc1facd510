"""Certification time of every method relative to the Lipschitz certificate, on the MNIST test set.

    python bench/certify_timing.py runs/mnist_fc runs/mnist_fc_robust [--eps 0.01 0.02 0.05] [--repeats 3]

For each run and ε, each certificate runs ``--repeats`` times over all test images, interleaved with
the others (so that load on a shared machine hits every method alike); the table reports the fastest
time of each and its ratio to the Lipschitz certificate (forward solve + margin test) of the same run.
"""
from __future__ import annotations

import argparse
import sys

import torch

from linf_opt.robustness.certify import METHODS, certify
from linf_opt.data.datasets import load_mnist
from linf_opt.robustness.input_space import MNIST
from linf_opt.training.trainer import load_run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.02, 0.05])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = ["lipschitz"] + [m for m in args.methods if m != "lipschitz"]
    print(f"{torch.get_num_threads()} thread(s), batch {args.batch_size}, fastest of {args.repeats}\n")
    print("| run | ε | " + " | ".join(f"{m} (s, ×)" for m in methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for run in args.runs:
        net, _ = load_run(run, map_location="cpu")
        pixels, labels = load_mnist(None, "test", normalize=False, limit=args.limit, dtype=net.B.dtype)
        for eps in args.eps:
            best = {m: float("inf") for m in methods}
            acc, its = {}, {}
            for _ in range(args.repeats):
                for m in methods:
                    res = certify(net, pixels, labels, eps, m, space=MNIST, batch_size=args.batch_size)
                    best[m] = min(best[m], res.time)
                    acc[m], its[m] = res.certified_accuracy, res.stats.iterations
            base = best["lipschitz"]
            cells = [f"{best[m]:.2f} ({best[m] / base:.2f}×, {acc[m]:.1%}, {its[m]} it.)" for m in methods]
            print(f"| {run} | {eps:g} | " + " | ".join(cells) + " |", flush=True)
    print("\ncells: fastest time in seconds (ratio to the Lipschitz certificate, certified accuracy, "
          "solver iterations of the slowest batch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
