"""Train a ``[robust]`` problem with the robust loss exactly as SPEC §8 states it, through the trainer.

    python bench/train_robust.py problems/mnist_fc_robust.toml --out runs/mnist_fc_robust [key=value ...]

Each step minimizes (1 − κ) CE(y(u), t) + κ CE(−z̲(u), t) with (ε, κ) from
:func:`linf_opt.robust_training.robust_schedule` at the fractional epoch, the clean logits computed
once and passed to :func:`linf_opt.robust_training.robust_loss` (``logits=``). Everything else
(projection after every step, checkpoints, history, resume) is :class:`linf_opt.training.Trainer`.
The run directory is an ordinary run: ``linf-opt evaluate`` and ``linf-opt certify`` read it.
"""
from __future__ import annotations

import argparse
import sys

import torch

from linf_opt.config import load_problem, override, parse_assignment
from linf_opt.data import eps_to_normalized, to_normalized
from linf_opt.robust_training import robust_loss, robust_schedule
from linf_opt.training import Trainer


class RobustTrainer(Trainer):
    """The trainer with the loss of SPEC §8 as its whole training loss (no Lipschitz regularizer)."""

    def _loss(self, U, T, epoch_fraction):
        Y = self.net(U)
        eps_pixel, mix = robust_schedule(self.problem.robust, epoch_fraction)
        loss, info = robust_loss(self.net, U, T, eps_to_normalized(eps_pixel), mix,
                                 lower=float(to_normalized(0.0)), upper=float(to_normalized(1.0)), logits=Y)
        out = {f"robust_{k}": v for k, v in info.items() if k not in ("eps", "mix")}
        out.update(robust_eps=eps_pixel, robust_mix=mix)
        return loss, Y, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("problem")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_intermixed_args(argv)
    torch.set_num_threads(args.threads)
    problem = load_problem(args.problem)
    if args.overrides:
        problem = override(problem, **dict(parse_assignment(a) for a in args.overrides))
    if not problem.robust.enabled or problem.regularizer.lipschitz_weight:
        print("error: expected [robust] enabled = true and no Lipschitz regularizer", file=sys.stderr)
        return 2
    trainer = RobustTrainer(problem, args.out, progress=False)
    if args.resume and trainer.resume():
        print(f"resuming after epoch {trainer.epoch}", flush=True)
    result = trainer.fit()
    for rec in result.history:
        print({k: rec[k] for k in rec if k in ("epoch", "test_accuracy", "train_loss", "robust_eps", "robust_mix",
                                               "robust_certified", "epoch_time")}, flush=True)
    print(result.summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
