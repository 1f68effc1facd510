"""Benchmark: how MNIST FC training scales with the hidden size and with data-parallel processes.

1. Time per training step and the projection's share of it for hidden sizes n ∈ {100, 500, 1000, 2000}
   (``problems/mnist_fc.toml`` with ``model.hidden = n``; the trainer's own timings over ``--steps`` steps),
   and the time to certify 100 test images with the mixed-monotone relative certificate at ε = 0.01.
2. Samples per second against the number of processes (1, 2, … on this machine's CPUs, gloo), the same
   problem and global batch, one thread per process (``torch.distributed``, linf_opt.training.distributed).

    python bench/scaling.py --data-dir ../shared/data/mnist [--sizes 100 500 1000 2000] [--procs 1 2]
    python bench/scaling.py --device cuda --batch 100 1000      # the same tables on a GPU
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from linf_opt.robustness.certify import certify
from linf_opt.robustness.input_space import MNIST
from linf_opt.training import distributed
from linf_opt.training.config import load_problem, override, problem_to_dict
from linf_opt.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def problem(data_dir, n, steps, batch, device):
    return override(load_problem(ROOT / "problems/mnist_fc.toml"),
                    **{"data.data_dir": data_dir, "data.train_limit": steps * batch, "data.test_limit": 100,
                       "model.hidden": n, "training.batch_size": batch, "training.epochs": 1, "device": device})


def sizes_table(args):
    from linf_opt.data.datasets import load_mnist
    pixels, labels = load_mnist(args.data_dir or None, "test", normalize=False, limit=100)
    print(f"## Hidden size (device {args.device}, {args.steps} steps per size)\n")
    print("| n | batch | s / step | samples / s | projection share | check share | fwd / bwd iterations | "
          "certify 100 images |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch in args.batch:
        for n in args.sizes:
            tr = Trainer(problem(args.data_dir, n, args.steps, batch, args.device), progress=False)
            tr.train_epoch()                       # warm-up (kernels compiled, caches filled)
            tr.epoch += 1
            rec = tr.train_epoch()
            step = rec["epoch_time"] / args.steps
            res = certify(tr.net, pixels.to(tr.net.device), labels.to(tr.net.device), 0.01,
                          "mixed_monotone_relative", space=MNIST)
            print(f"| {n} | {batch} | {step:.4f} | {batch / step:.0f} | {rec['projection_share']:.2%} | "
                  f"{rec['check_share']:.2%} | {rec['fwd_iters_mean']:.1f} / {rec['bwd_iters_mean']:.1f} | "
                  f"{res.time:.2f} s ({res.certified_accuracy:.0%} certified) |", flush=True)
    print()


def _worker(rank, problem_dict, report):
    torch.set_num_threads(1)
    tr = Trainer(load_problem(problem_dict), progress=False)
    tr.train_epoch()
    tr.epoch += 1
    rec = tr.train_epoch()
    if rank == 0:
        Path(report).write_text(str(rec["epoch_time"]))


def procs_table(args):
    n, batch = args.dp_hidden, args.batch[0]
    print(f"## Data-parallel processes (gloo, CPU, n = {n}, global batch {batch}, {args.steps} steps)\n")
    print("| processes | s / step | samples / s | speed-up |")
    print("|---:|---:|---:|---:|")
    base = None
    p = problem(args.data_dir, n, args.steps, batch, "cpu")
    for k in args.procs:
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "t")
            if k == 1:
                _worker(0, problem_to_dict(p), report)
            else:
                distributed.launch(_worker, k, problem_to_dict(p), report)
            t = float(Path(report).read_text()) / args.steps
        base = base or t
        print(f"| {k} | {t:.4f} | {batch / t:.0f} | {base / t:.2f}× |", flush=True)
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[100])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dp-hidden", type=int, default=100, help="hidden size of the data-parallel table")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes_table(args)
    if args.device == "cpu":
        procs_table(args)


if __name__ == "__main__":
    main()
