"""The ``linf-opt`` command line: train a problem, evaluate a run, and (see the other subcommands)
compare feasible sets and certify robustness.

    linf-opt train problems/function_estimation.toml [--epochs N] [--out DIR] [--data-dir D] [--resume]
                   [key=value ...]               # overrides, e.g. constraint.gamma=0.9 data.train_limit=5000
    linf-opt evaluate runs/function_estimation
    linf-opt certify runs/mnist_fc_robust --eps 0.01 0.02 0.05 0.1 [--certify-eps ...] [--limit N]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import torch

from linf_opt.errors import LinfOptError

__all__ = ["main", "build_parser"]


def _error(message: str) -> None:
    """One line on stderr: ``linf-opt: error: message`` (newlines folded)."""
    print(f"linf-opt: error: {' '.join(str(message).split())}", file=sys.stderr)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each (``linf-opt: warning: ...``), without the source line."""
    print(f"linf-opt: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


_TRACEBACK_ENV = "LINF_OPT_TRACEBACK"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _print_summary(summary: dict, title: str) -> None:
    print(f"\n{title}")
    width = max(len(k) for k in summary) if summary else 0
    for k, v in summary.items():
        print(f"  {k:<{width}}  {_fmt(v)}")


def _cmd_train(args) -> int:
    from linf_opt.training.config import load_problem, override, parse_assignment
    from linf_opt.training.rundir import RunExistsError, RunLock, check_run_dir
    from linf_opt.training.trainer import Trainer

    problem = load_problem(args.problem)
    assignments = dict(parse_assignment(a) for a in args.overrides)
    if args.epochs is not None:
        assignments["training.epochs"] = args.epochs
    if args.data_dir is not None:
        assignments["data.data_dir"] = args.data_dir
    if args.device is not None:
        assignments["device"] = args.device
    if assignments:
        problem = override(problem, **assignments)
    out = Path(args.out) if args.out else Path("runs") / (problem.name or Path(args.problem).stem)
    from linf_opt.training import distributed
    if args.nproc > 1 and distributed.current() is None and int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return _launch_workers(args)
    ctx = distributed.init_from_env(problem.device)
    if ctx is not None and not ctx.is_main:
        lock = contextlib.nullcontext()          # rank 0 holds the run directory; the others only read it
        sys.stdout = open(os.devnull, "w")       # and rank 0 alone reports (torchrun starts every rank alike)
    else:
        lock = RunLock(out)
    # the run directory is locked for the whole run; an existing run is continued (--resume), replaced
    # (--overwrite: its files stay until the new run writes its first checkpoint) or refused
    with lock:
        try:
            if ctx is None or ctx.is_main:
                check_run_dir(out, resume=args.resume, overwrite=args.overwrite)
        except RunExistsError as exc:
            _error(str(exc))
            return 2
        # bars only on a terminal; otherwise (redirected, or --no-progress) epoch lines on stdout, as many
        # as training.log_every selects (default about 20 a run)
        trainer = Trainer(problem, out, progress=False if args.no_progress else None,
                          log=lambda line: print(line, flush=True), tensorboard=args.tensorboard)
        if args.resume and trainer.resume():
            print(f"resuming {out} after epoch {trainer.epoch}")
        print(f"training {problem.name or args.problem}: {problem.constraint.set} ({problem.constraint.enforce}), "
              f"γ={problem.constraint.gamma}, {problem.training.epochs} epochs → {out}")
        try:
            result = trainer.fit()
        except KeyboardInterrupt:
            print(f"\ninterrupted; the last completed epoch is saved: resume with --resume --out {out}",
                  file=sys.stderr)
            return 130
    _print_summary(result.summary, f"summary ({out / 'summary.json'})")
    if not result.summary.get("converged", True):
        _error(f"training finished, but {result.summary['not_converged']} training and "
               f"{result.summary.get('test_not_converged', 0)} final test solves did not converge (see "
               f"{out / 'history.jsonl'}): the results are not equilibria of the network")
        return 1
    return 0


def _train_worker(rank: int, argv: list[str]) -> None:
    """One data-parallel worker of ``linf-opt train --nproc N`` (the process group is already up)."""
    if rank != 0:
        sys.stdout = open(os.devnull, "w")      # rank 0 reports; the others only train
    code = main(argv)
    if code:
        raise SystemExit(code)


def _launch_workers(args) -> int:
    """Start ``--nproc`` workers (gloo on CPU, nccl on CUDA) that run this same command data-parallel."""
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    from linf_opt.training import distributed
    argv = [a for a in args.argv if not (a == "--nproc" or a.startswith("--nproc="))]
    # drop the value that followed a bare "--nproc"
    if "--nproc" in args.argv:
        i = args.argv.index("--nproc")
        argv = args.argv[:i] + args.argv[i + 2:]
    device = args.device or "cpu"
    print(f"starting {args.nproc} data-parallel workers ({distributed.backend_for(device)})", flush=True)
    try:
        distributed.launch(_train_worker, args.nproc, argv, backend=distributed.backend_for(device))
    except ProcessExitedException as exc:
        return int(exc.exit_code) if exc.exit_code and exc.exit_code > 0 else 1
    except ProcessRaisedException as exc:
        _error(f"a data-parallel worker failed: {str(exc).strip().splitlines()[-1]}")
        return 1
    return 0


def _cmd_evaluate(args) -> int:
    from linf_opt.data.datasets import load_dataset
    from linf_opt.models.lipschitz import lipschitz_value
    from linf_opt.training.trainer import evaluate, load_run

    net, problem = load_run(args.run_dir, map_location="cpu")
    if args.data_dir is not None:
        from linf_opt.training.config import override
        problem = override(problem, **{"data.data_dir": args.data_dir})
    data = load_dataset(problem)
    ev = evaluate(net, data)
    out = dict(ev)
    out["mu_inf"] = float(net.operator.mu_inf())
    for kind in ("tight", "paper"):
        out[f"lipschitz_{kind}"] = lipschitz_value(net, kind)      # None when μ ≥ 1: no certificate
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_summary(out, f"evaluation of {args.run_dir} on the test set")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linf-opt",
        description="Train well-posed implicit neural networks under ℓ∞ contraction constraints (μ∞(A) ≤ γ).")
    parser.add_argument("--traceback", "--debug", action="store_true", dest="traceback",
                        help=f"show the Python traceback of an error (also: environment variable {_TRACEBACK_ENV}=1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: the small matrix products of implicit networks run "
                             "fastest on one thread, and several threads slow to a crawl on a busy machine; "
                             "0 keeps torch's default)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a problem file by projected gradient",
                       description="Train the problem in a TOML file (see problems/). Writes problem.toml, "
                                   "checkpoint.pt, history.jsonl and summary.json to the run directory.")
    p.add_argument("problem", help="problem TOML file, e.g. problems/function_estimation.toml")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="override problem keys, e.g. training.epochs=3 constraint.gamma=0.9")
    p.add_argument("--epochs", type=int, help="total number of epochs (overrides training.epochs)")
    p.add_argument("--out", help="run directory (default runs/<problem name>)")
    p.add_argument("--data-dir", help="MNIST directory (default: $LINF_OPT_DATA, ./data/mnist, ../shared/data/mnist)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in a run directory that holds a run")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel worker processes on this machine (torch.distributed: gloo on CPU, nccl "
                        "on CUDA); under torchrun the process group comes from the environment instead")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars, epoch lines instead (the default when stderr is not a terminal): every "
                        "training.log_every epochs, default 0 = about 20 lines a run")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write per-epoch scalars (losses, test metric, μ∞, solver iterations, times) for "
                        "TensorBoard to DIR (needs the optional package tensorboard)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run on its test set",
                       description="Load RUN_DIR (written by `linf-opt train`) and report test metrics, μ∞(A) "
                                   "and the certified Lipschitz bounds.")
    p.add_argument("run_dir")
    p.add_argument("--data-dir", help="override the data directory stored in the run")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", help="compare the ℓ∞ feasible set with the ℓ2 / SDP alternatives",
                       description="Run the feasible-set studies (containment, slices, volume, distance; "
                                   "training when asked) and write report.md and PNG figures to --out.")
    p.add_argument("--n", type=int, default=6, help="largest matrix size of the ensembles and slices (default 6)")
    p.add_argument("--samples", type=int, default=200, help="matrices per random ensemble (default 200)")
    p.add_argument("--out", default="reports/compare", help="report directory (default reports/compare)")
    p.add_argument("--gamma", type=float, default=0.9, help="common level γ of every set (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--training-results", help="results of bench/compare_training.py to include as study 5")
    p.add_argument("--train", metavar="PROBLEM", help="train PROBLEM under every set now (study 5; minutes)")
    p.add_argument("--distance-epochs", type=int, default=None,
                   help="epochs of the unconstrained network whose A study 4 measures (default min(300, 50·n); "
                        "0: a random matrix, no training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("certify", help="clean, FGSM, PGD and certified accuracy of a run against ε",
                       description="Attack and certify RUN_DIR's network on the MNIST test set for each ε "
                                   "(pixel scale): clean, FGSM and PGD accuracy, certified accuracy of every "
                                   "method with its time; writes robustness.json and robustness.png.")
    p.add_argument("run_dir")
    p.add_argument("--eps", type=float, nargs="+", required=True, help="radii for the attacks (pixel scale)")
    p.add_argument("--certify-eps", type=float, nargs="+", help="radii for the certificates (default: --eps)")
    p.add_argument("--methods", nargs="+", choices=["lipschitz", "lipschitz_paper", "mixed_monotone",
                                                    "mixed_monotone_relative", "ibp"], help="default: all")
    p.add_argument("--attacks", nargs="+", choices=["fgsm", "pgd"], help="default: both")
    p.add_argument("--pgd-steps", type=int, default=40)
    p.add_argument("--pgd-restarts", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="use the first LIMIT test images (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--data-dir", help="override the data directory stored in the run")
    p.add_argument("--out", help="where robustness.json and robustness.png go (default RUN_DIR)")
    p.add_argument("--no-plot", action="store_true")
    p.set_defaults(func=_cmd_certify)
    return parser


def _cmd_compare(args) -> int:
    from linf_opt.compare.studies import write_report

    if args.n < 2 or args.samples < 1:
        _error(f"--n must be ≥ 2 and --samples ≥ 1, got {args.n} and {args.samples}")
        return 2
    path = write_report(args.out, n=args.n, samples=args.samples, gamma=args.gamma, seed=args.seed,
                        training_results=args.training_results, train_problem=args.train,
                        distance_epochs=args.distance_epochs, progress=False if args.no_progress else None)
    print(f"report written to {path}")
    return 0


def _cmd_certify(args) -> int:
    from linf_opt.reports.robustness import run_certify

    return run_certify(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # key=value overrides may come after options (argparse stops collecting positionals at the first option)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    debug = args.traceback or os.environ.get(_TRACEBACK_ENV, "") not in ("", "0")
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
            return args.func(args)
    except (LinfOptError, OSError, KeyError, RuntimeError, ValueError, TypeError, AssertionError,
            ArithmeticError, MemoryError, ImportError) as exc:
        if debug:
            raise
        # the library's own errors say what and where; anything else gets its type, so it stays searchable
        text = str(exc) if isinstance(exc, LinfOptError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyError):
            text = f"KeyError: missing entry {exc}"
        _error(f"{text} (rerun with --traceback or {_TRACEBACK_ENV}=1 for the traceback)"
               if not isinstance(exc, LinfOptError) else text)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
