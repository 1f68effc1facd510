"""Fault campaign: the ways a run can be lost, silently wrong or crash obscurely, tried at random.

    python bench/faults.py [--quick] [--seed 0] [--tries N] [--keep DIR]

Every try drives the ``linf-opt`` command line on problems/function_estimation.toml made tiny
(64 samples, 8 hidden units), in subprocesses unless said otherwise:

- ``kill -9``: a training is killed (SIGKILL) at a random moment of its epochs (0.05–2 s after it
  starts training, fewer when the run is shorter; checkpoint writes are a large share of an epoch, so
  some kills land inside one), then continued with ``--resume``, killed again up to 3 times, and
  finally run to the end. Passes when the final checkpoint's parameters and history (losses, test
  metrics) are bit-identical to an uninterrupted run's, and every checkpoint left by a kill loads.
- concurrent: a second ``linf-opt train`` (plain, ``--resume`` or ``--overwrite``; started in advance,
  released at a random moment of the first's training) into the directory of a running first one.
  Passes when the second is refused (exit ≠ 0, one error line naming the holder's PID) while the
  first runs, and the first completes intact: exit 0, summary.json, history.jsonl, checkpoint.pt
  and problem.toml all of its own problem and epoch count, parameters equal to the uninterrupted run.
- overwrite, then fail: ``--overwrite`` onto a finished run by a run that fails (MNIST from a missing
  data directory, an overflowing learning rate, a learning rate whose solves diverge). Passes when it
  exits ≠ 0 with one error line and the old run's files are byte-for-byte as before.
- corrupt checkpoint: checkpoint.pt replaced by random bytes, truncated at a random length, scaled
  so that μ∞(A) = 3 (> γ = 0.95), or stripped of its model entry; then ``train --resume`` and
  ``evaluate``. Passes when both refuse with one error line (no traceback) and leave the file alone.

Outcomes counted: data lost (a finished run's files changed, a checkpoint left by a kill unreadable,
a run that could not be completed), silent garbage (exit 0 with wrong or inconsistent results, or a
corrupt checkpoint accepted), tracebacks (a "Traceback" or no single ``linf-opt: error:`` line on a
failure). ``--quick`` (the test suite's): one try of each kill / concurrent case and one of each
failure and corruption kind, the latter two in-process (``linf_opt.cli.main``, same code path, no
interpreter start), one kill, the kill case's first run alongside the concurrent case's. Exit status 1 when any count is not zero or a try did not pass.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FE = str(ROOT / "problems" / "function_estimation.toml")
MNIST = str(ROOT / "problems" / "mnist_fc.toml")
SMALL = ["data.n_train=64", "data.n_test=64", "model.hidden=8", "training.batch_size=16"]
RUN_FILES = ("problem.toml", "checkpoint.pt", "history.jsonl", "summary.json")
WARM = ("import os, sys, time\nimport linf_opt.cli as cli, linf_opt.training.trainer\n"
        "go = sys.argv[1]\nwhile not os.path.exists(go):\n    time.sleep(0.005)\nsys.exit(cli.main(sys.argv[2:]))\n")


@dataclass
class Row:
    kind: str
    tries: int = 0
    passed: int = 0
    data_lost: int = 0
    garbage: int = 0
    tracebacks: int = 0
    notes: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    def note(self, key, n=1):
        self.notes[key] = self.notes.get(key, 0) + n


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("LINF_OPT_TRACEBACK", None)
    return env


class Proc:
    """A ``linf-opt`` subprocess whose stdout is watched for the line that starts training."""

    def __init__(self, argv, cwd, warm_go: Path | None = None):
        cmd = ([sys.executable, "-c", WARM, str(warm_go)] if warm_go else [sys.executable, "-m", "linf_opt"])
        self.p = subprocess.Popen(cmd + ["--threads", "1", *argv], cwd=cwd, env=_env(), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.pid = self.p.pid
        self.training = threading.Event()
        self.t_training = None
        self.out: list[str] = []
        self.err = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self):
        for line in self.p.stdout:
            self.out.append(line)
            if line.startswith("training ") and not self.training.is_set():
                self.t_training = time.perf_counter()
                self.training.set()
        self.training.set()

    def _read_err(self):
        self.err = self.p.stderr.read()

    def wait(self, timeout=600):
        rc = self.p.wait(timeout)
        self._reader.join()
        self._err_reader.join()
        return rc

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        return self.wait()


def run_cli(argv, cwd, inprocess=False):
    """(exit status, stdout, stderr) of ``linf-opt argv``, in a subprocess or in this process."""
    if not inprocess:
        p = Proc(argv, cwd)
        rc = p.wait()
        return rc, "".join(p.out), p.err
    from linf_opt.cli import main
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["--threads", "1", *argv])
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:   # what a subprocess would print as a traceback
                err.write(traceback.format_exc())
                rc = 1
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def clean_failure(rc, err) -> bool:
    """A refusal as the CLI promises: exit ≠ 0, no traceback, exactly one ``linf-opt: error:`` line."""
    lines = [l for l in err.splitlines() if l.startswith("linf-opt: error:")]
    return rc != 0 and "Traceback" not in err and len(lines) == 1


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def load(path):
    import torch
    return torch.load(path, weights_only=True)


def same_result(a: Path, b: Path) -> bool:
    """The checkpoints of run directories ``a`` and ``b`` hold bit-identical parameters and history."""
    import torch
    sa, sb = load(a / "checkpoint.pt"), load(b / "checkpoint.pt")
    ma, mb = sa["model"], sb["model"]
    if sa["epoch"] != sb["epoch"] or set(ma) != set(mb):
        return False
    if not all(torch.equal(ma[k], mb[k]) for k in ma):
        return False
    keys = ("epoch", "train_loss", "test_loss", "test_mse", "mu_inf", "lipschitz_bound")
    strip = lambda h: [{k: r.get(k) for k in keys} for r in h]   # noqa: E731 (times differ)
    return strip(sa["history"]) == strip(sb["history"])


def consistent(d: Path, epochs: int, seed: int) -> bool:
    """summary.json, history.jsonl, checkpoint.pt and problem.toml of ``d`` describe one finished run."""
    if (d / "run.lock").exists() or not all((d / f).is_file() for f in RUN_FILES):
        return False
    summary = json.loads((d / "summary.json").read_text())
    history = [json.loads(l) for l in (d / "history.jsonl").read_text().splitlines()]
    state = load(d / "checkpoint.pt")
    return (summary["epoch"] == epochs == state["epoch"] == len(history)
            and [h["epoch"] for h in history] == list(range(1, epochs + 1))
            and f"seed = {seed}\n" in (d / "problem.toml").read_text()
            and state["problem"]["seed"] == seed
            and summary["test_mse"] == history[-1]["test_mse"] == state["history"][-1]["test_mse"])


# ---- the cases -------------------------------------------------------------------------------------

def train_args(out, epochs, *extra, seed=0):
    return ["train", FE, "--out", str(out), "--no-progress", *SMALL, f"training.epochs={epochs}", f"seed={seed}",
            *extra]


def concurrent(work: Path, rng: random.Random, tries: int, epochs: int, row: Row) -> tuple[Path, float]:
    """Returns the first try's run (the uninterrupted reference) and its training time."""
    ref, t_train = None, 1.0
    for i in range(tries):
        row.tries += 1
        d = work / f"concurrent{i}"
        go = work / f"go{i}"
        flag = rng.choice([[], ["--resume"], ["--overwrite"]])
        b = Proc(train_args(d, epochs, *flag, seed=1), work, warm_go=go)   # imports while A starts
        a = Proc(train_args(d, epochs), work)
        a.training.wait(300)
        time.sleep(rng.uniform(0.0, 0.3) * t_train)
        go.touch()
        rc_b = b.wait()
        overlapped = a.p.poll() is None
        rc_a = a.wait()
        t_train = time.perf_counter() - (a.t_training or time.perf_counter())
        if "Traceback" in a.err + b.err:
            row.tracebacks += 1
        ok = True
        if not overlapped:
            row.note("no overlap (first run ended before the second started)")
            ok = False
        elif not (clean_failure(rc_b, b.err) and f"PID {a.pid}" in b.err):
            row.garbage += rc_b == 0
            row.tracebacks += rc_b != 0 and not clean_failure(rc_b, b.err)
            row.failures.append(f"second run {flag}: rc {rc_b}, {b.err.strip()[-300:]}")
            ok = False
        if rc_a != 0 or not consistent(d, epochs, 0):
            row.data_lost += 1
            row.failures.append(f"first run: rc {rc_a}, {a.err.strip()[-300:]}")
            ok = False
        elif ref is not None and not same_result(ref, d):
            row.garbage += 1
            row.failures.append("first run's parameters differ from an uninterrupted run's")
            ok = False
        if ok:
            row.passed += 1
            row.note(f"refused {' '.join(flag) or 'plain'}")
        if ref is None and rc_a == 0:
            ref = d
    return ref, t_train


def kills(work: Path, rng: random.Random, tries: int, epochs: int, ref, t_train: float, row: Row,
          max_kills: int = 3) -> None:
    """``ref``: the uninterrupted run's directory, or a callable that returns it when needed."""
    high = max(0.1, min(2.0, 0.9 * t_train))
    for i in range(tries):
        row.tries += 1
        d = work / f"kill{i}"
        n_kills, runs, ok = 0, 0, True
        extra: list[str] = []
        while True:
            p = Proc(train_args(d, epochs, *extra), work)
            runs += 1
            p.training.wait(300)
            if n_kills < max_kills:
                time.sleep(rng.uniform(0.05, high))
            if n_kills < max_kills and p.p.poll() is None:
                p.kill()
                n_kills += 1
                if "Traceback" in p.err:
                    row.tracebacks += 1
                if list(d.glob(".*.tmp")):
                    row.note("kills inside a checkpoint write")
                if (d / "checkpoint.pt").exists():
                    try:
                        load(d / "checkpoint.pt")
                    except Exception as exc:   # a kill must never leave an unreadable checkpoint
                        row.data_lost += 1
                        row.failures.append(f"checkpoint unreadable after a kill: {exc}")
                        ok = False
                        break
                extra = ["--resume"]
                continue
            rc = p.wait()
            if "Traceback" in p.err:
                row.tracebacks += 1
            if rc != 0:
                row.data_lost += 1
                row.failures.append(f"resume failed: rc {rc}, {p.err.strip()[-300:]}")
                ok = False
            break
        row.note("runs", runs)
        row.note("kills", n_kills)
        if ok:
            if list(d.glob(".*.tmp")) or not consistent(d, epochs, 0):
                row.garbage += 1
                row.failures.append(f"{d.name}: run directory inconsistent after the final resume")
            elif same_result(ref() if callable(ref) else ref, d):
                row.passed += 1
                row.note("bit-identical")
            else:
                row.garbage += 1
                row.failures.append(f"{d.name}: parameters differ from the uninterrupted run's")


FAILURES = {
    "MNIST from a missing data directory": lambda d: ["train", MNIST, "--out", str(d), "--overwrite",
                                                      "--no-progress", "--data-dir", str(d.parent / "missing")],
    "overflowing learning rate (1e38)": lambda d: train_args(d, 2, "--overwrite", "optimizer.lr=1e38"),
    "diverging learning rate (1e8)": lambda d: train_args(d, 2, "--overwrite", "optimizer.lr=1e8"),
}


def refused_cleanly(rc: int, err: str, row: Row) -> bool:
    """A run that must fail: success counts as silent garbage, a failure without one clean line as a traceback."""
    if rc == 0:
        row.garbage += 1
        return False
    if not clean_failure(rc, err):
        row.tracebacks += 1
        return False
    return True


def overwrite_fail(work: Path, rng: random.Random, kinds: list[str], ref: Path, row: Row, inprocess: bool):
    d = work / "overwrite"
    shutil.copytree(ref, d)
    before = snapshot(d)
    for kind in kinds:
        row.tries += 1
        rc, _, err = run_cli(FAILURES[kind](d), work, inprocess)
        ok = refused_cleanly(rc, err, row)
        if snapshot(d) != before:
            row.data_lost += 1
            ok = False
        if not ok:
            row.failures.append(f"{kind}: rc {rc}, {err.strip()[-300:]}")
        row.passed += ok
        row.note(kind)


def corrupt(state_path: Path, kind: str, rng: random.Random) -> None:
    import torch
    data = state_path.read_bytes()
    if kind == "random bytes":
        state_path.write_bytes(rng.randbytes(rng.randint(1, 2 * len(data))))
    elif kind == "truncated":
        state_path.write_bytes(data[:rng.randrange(len(data))])
    elif kind == "infeasible (μ∞ = 3)":
        from linf_opt import mu_inf
        state = load(state_path)
        A = state["model"]["A"]
        state["model"]["A"] = A * (3.0 / float(mu_inf(A)))
        torch.save(state, state_path)
    elif kind == "no model entry":
        state = load(state_path)
        del state["model"]
        torch.save(state, state_path)
    else:
        raise ValueError(kind)


CORRUPTIONS = ("random bytes", "truncated", "infeasible (μ∞ = 3)", "no model entry")


def corrupt_checkpoints(work: Path, rng: random.Random, kinds: list[str], ref: Path, epochs: int, row: Row,
                        inprocess: bool):
    for i, kind in enumerate(kinds):
        row.tries += 1
        d = work / f"corrupt{i}"
        shutil.copytree(ref, d)
        corrupt(d / "checkpoint.pt", kind, rng)
        bad = (d / "checkpoint.pt").read_bytes()
        ok = True
        for argv in (train_args(d, epochs + 2, "--resume"), ["evaluate", str(d)]):
            rc, _, err = run_cli(argv, work, inprocess)
            ok = refused_cleanly(rc, err, row)
            if not ok:
                row.failures.append(f"{kind}, {argv[0]}: rc {rc}, {err.strip()[-300:]}")
                break
        if (d / "checkpoint.pt").read_bytes() != bad:
            row.data_lost += 1
            ok = False
        row.passed += ok
        row.note(kind)


def campaign(quick: bool = False, seed: int = 0, tries: int | None = None, keep: str | None = None) -> list[Row]:
    rng = random.Random(seed)
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="linf_opt_faults_"))
    work.mkdir(parents=True, exist_ok=True)
    n = tries if tries is not None else (1 if quick else 10)
    epochs = 40 if quick else 150
    rows = [Row("kill -9, then --resume"), Row("concurrent run, same directory"),
            Row("--overwrite, then a failing run"), Row("corrupt checkpoint: --resume, evaluate")]
    try:
        if quick:   # the kill case alongside the concurrent one (its first run starts with theirs)
            got: list = []
            th = threading.Thread(target=lambda: got.append(concurrent(work, rng, n, epochs, rows[1])))
            th.start()

            def reference():
                th.join()
                return got[0][0]
            kills(work, random.Random(seed + 1), n, epochs, reference, 0.5, rows[0], max_kills=1)
            th.join()
            ref = got[0][0] if got else None
        else:
            ref, t_train = concurrent(work, rng, n, epochs, rows[1])
        if ref is None:
            raise RuntimeError(f"the uninterrupted run failed: {rows[1].failures}")
        if not quick:
            kills(work, rng, n, epochs, ref, t_train, rows[0])
        m = max(n // len(FAILURES), 1) if not quick else 1
        overwrite_fail(work, rng, [k for k in FAILURES for _ in range(m)], ref, rows[2], inprocess=quick)
        m = max(n // len(CORRUPTIONS), 1) if not quick else 1
        corrupt_checkpoints(work, rng, [k for k in CORRUPTIONS for _ in range(m)], ref, epochs, rows[3],
                            inprocess=quick)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[Row]) -> str:
    head = f"| {'kind':<40} | tries | passed | data lost | silent garbage | tracebacks | notes |"
    out = [head, "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        notes = ", ".join(f"{k} {v}" if v != 1 or k in ("runs", "kills", "bit-identical") else k
                          for k, v in r.notes.items())
        out.append(f"| {r.kind:<40} | {r.tries:>5} | {r.passed:>6} | {r.data_lost:>9} | {r.garbage:>14} | "
                   f"{r.tracebacks:>10} | {notes} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one try of each case (about 20 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tries", type=int, help="tries of the kill and concurrent cases (default 10; 1 with --quick)")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = campaign(args.quick, args.seed, args.tries, args.keep)
    print(table(rows))
    bad = sum(r.data_lost + r.garbage + r.tracebacks for r in rows)
    failed = sum(r.tries - r.passed for r in rows)
    print(f"\ndata lost: {sum(r.data_lost for r in rows)}, silent garbage: {sum(r.garbage for r in rows)}, "
          f"tracebacks: {sum(r.tracebacks for r in rows)}; {sum(r.passed for r in rows)}/{sum(r.tries for r in rows)} "
          f"tries passed (seed {args.seed}, {time.perf_counter() - t0:.0f} s)")
    for r in rows:
        for f in r.failures:
            print(f"  {r.kind}: {f}")
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
