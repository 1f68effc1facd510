"""Study 5 of the feasible-set comparison: one problem trained under every set with the same budget.

Trains ``--problem`` once per variant of ``linf_opt.compare.studies.TRAINING_VARIANTS`` (ℓ∞ polytope, weighted
ℓ∞, norm ball, monotone by projection and by reparametrization, unconstrained), each in
``OUT/<set>_<enforce>``, and writes ``OUT/results.json`` and ``OUT/table.md`` (final test accuracy or
MSE, certified ℓ∞ Lipschitz bounds, μ∞ / α(M) / μ₂ of the final A, mean solver iterations, epoch time).
Finished variants are reused, so an interrupted run continues where it stopped. Overrides
``key=value`` apply to every variant (the same budget for all).

    python bench/compare_training.py --problem problems/function_estimation.toml --out runs/compare/fe --seeds 0 1 2
    python bench/compare_training.py --problem problems/mnist_fc.toml --out runs/compare/mnist \\
        data.train_limit=10000 data.test_limit=2000 training.epochs=3 data.data_dir=../shared/data/mnist
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from linf_opt.compare.studies import TRAINING_VARIANTS, training_study
from linf_opt.training.config import parse_assignment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", default="problems/function_estimation.toml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", nargs="+", default=list(TRAINING_VARIANTS),
                    help=f"any of {', '.join(TRAINING_VARIANTS)} (default: all)")
    ap.add_argument("--seeds", nargs="+", default=None, help="repeat with these seeds (default: the problem's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args()
    # key=value overrides may follow --seeds / --variants, which then swallow them: move them back
    for name in ("variants", "seeds"):
        vals = getattr(args, name) or []
        args.overrides = list(args.overrides) + [v for v in vals if "=" in v]
        setattr(args, name, [v for v in vals if "=" not in v] or (None if name == "seeds" else list(TRAINING_VARIANTS)))
    bad = [v for v in args.variants if v not in TRAINING_VARIANTS]
    if bad:
        ap.error(f"--variants: unknown {', '.join(bad)}; valid: {', '.join(TRAINING_VARIANTS)}")
    try:
        args.seeds = None if args.seeds is None else [int(v) for v in args.seeds]
    except ValueError:
        ap.error(f"--seeds: expected integers, got {' '.join(args.seeds)}")
    torch.set_num_threads(args.threads)
    overrides = dict(parse_assignment(a) for a in args.overrides)
    t0 = time.perf_counter()
    study = training_study(args.problem, variants=args.variants, out_dir=args.out, overrides=overrides,
                           seeds=args.seeds, progress=args.progress)
    out = Path(args.out)
    table = study.table()
    (out / "table.md").write_text(f"Problem {study.problem} ({args.problem}; overrides: {overrides or 'none'})\n\n"
                                  + table + "\n")
    if study.figure is not None:
        study.figure.savefig(out / "training.png", dpi=100)
    print(table)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
