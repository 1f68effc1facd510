"""Run directories: one process at a time, and no run replaced before its successor is under way.

A run directory (``problem.toml``, ``checkpoint.pt``, ``history.jsonl``, ``summary.json``) is written by
one training process at a time. :class:`RunLock` takes the file ``run.lock`` in it for the whole run:
the file is created atomically (``os.link`` of a complete temporary file, which fails when the name
exists, like ``O_CREAT | O_EXCL``) and holds the holder's PID, host name, process start time and
command line; it is removed when the run ends, however it ends short of ``kill -9``. A second process
is refused with :class:`RunLockedError` naming the holder. A lock left behind by a process that no
longer exists (same host, PID not alive, or alive but started at another time: a reused PID) is
*stale*: it is taken over, with a :class:`StaleLockWarning` that says whose it was. Taking the lock
removes the temporary files (``.checkpoint.pt.*.tmp``, ...) of an atomic write whose writer was killed.

The lock is re-entrant within a process (``train()`` holds it around ``Trainer.fit``, which takes it
as well). Locks on another host cannot be checked; they are refused like live ones (remove
``run.lock`` by hand once that run is known to be gone).

:func:`check_run_dir` is the policy shared by ``linf-opt train`` and :func:`linf_opt.train`: a
directory that holds a run is continued only with ``resume``, replaced only with ``overwrite``, else
refused with :class:`RunExistsError`.

    >>> with RunLock("runs/fe"):
    ...     ...                                  # train, save, summarize
"""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

from linf_opt.errors import LinfOptError

__all__ = ["RunLock", "RunLockedError", "RunExistsError", "RunDirError", "StaleLockWarning", "LOCK_NAME",
           "RUN_FILES", "holds_run", "check_run_dir"]

LOCK_NAME = "run.lock"
RUN_FILES = ("problem.toml", "checkpoint.pt", "history.jsonl", "summary.json")
"""The files of a run (what ``overwrite`` replaces)."""


class RunDirError(LinfOptError, OSError):
    """The run directory cannot be used: it is a file, or it cannot be created or written."""


class RunLockedError(RunDirError):
    """Another live process holds the run directory's lock (the message names it)."""


class RunExistsError(RunDirError, FileExistsError):
    """The run directory holds a run, and neither resume nor overwrite was asked for."""


class StaleLockWarning(UserWarning):
    """A lock left by a process that no longer runs was taken over."""


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds (part of) a run: any of :data:`RUN_FILES`."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in RUN_FILES)


def check_run_dir(run_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> None:
    """The policy for an existing run: continue it (resume), replace it (overwrite), or refuse.

    Raises :class:`RunExistsError` when ``run_dir`` holds a run and neither flag is set, and
    :class:`RunDirError` when ``run_dir`` exists but is not a directory.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} is a file, not a directory: choose another --out / out_dir")
    if holds_run(run_dir) and not resume and not overwrite:
        raise RunExistsError(f"{run_dir} already holds a run; pass --resume (resume=True) to continue it or "
                             f"--overwrite (overwrite=True) to start over")


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # field 22; the command name (field 2) is in parentheses and may hold spaces
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass            # exists, owned by someone else
    except OSError:
        return True     # cannot tell: assume alive
    if start is not None:
        now = _start_time(pid)
        if now is not None and now != start:
            return False  # the PID was reused by a later process
    return True


_HELD: dict[str, int] = {}   # lock paths this process holds → re-entry count


class RunLock:
    """Exclusive, re-entrant lock on a run directory (see the module docstring); a context manager.

    ``acquire()`` creates the directory if needed, so an unwritable or invalid location fails here,
    before any training, with :class:`RunDirError` naming it.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._held = False
        self._created_dir = False

    def _key(self) -> str:
        return str(self.path.resolve())

    def _record(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}

    def _read(self) -> dict | None:
        try:
            rec = json.loads(self.path.read_text(encoding="utf-8"))
            rec["pid"] = int(rec["pid"])
            return rec
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _create(self) -> bool:
        """Create the lock file with its content in one step; False when it already exists."""
        fd, tmp = tempfile.mkstemp(prefix=".run.lock.", dir=self.run_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._record(), fh)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:   # a file system without hard links: exclusive creation instead
                try:
                    fd2 = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd2, "w", encoding="utf-8") as fh:
                    json.dump(self._record(), fh)
                return True
        finally:
            os.unlink(tmp)

    @staticmethod
    def _describe(rec: dict | None) -> str:
        if not rec:
            return "an unknown process (the lock file is empty or unreadable)"
        return (f"PID {rec.get('pid')} on host {rec.get('host')} since {rec.get('since')}"
                + (f" ({' '.join(map(str, rec['argv']))})" if rec.get("argv") else ""))

    def acquire(self) -> "RunLock":
        if self._held:
            return self
        key = None
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunDirError(f"run directory {self.run_dir} is a file, not a directory: choose another "
                              f"--out / out_dir")
        try:
            if not self.run_dir.exists():
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._created_dir = True
            key = self._key()
            if _HELD.get(key):
                _HELD[key] += 1
                self._held = True
                return self
            for _ in range(3):
                if self._create():
                    _HELD[key] = 1
                    self._held = True
                    self._remove_temporaries()
                    return self
                rec = self._read()
                if rec is None:
                    # being written right now, or left empty: give a writer a moment, then call it stale
                    time.sleep(0.2)
                    rec = self._read()
                    if rec is None and time.time() - self.path.stat().st_mtime < 5:
                        continue
                if rec is not None and (rec.get("host") != socket.gethostname()
                                        or _alive(rec["pid"], rec.get("start"))):
                    raise RunLockedError(f"{self.run_dir} is in use by {self._describe(rec)}: lock file {self.path}. "
                                         f"Wait for that run to finish, or use another run directory (remove the "
                                         f"lock file by hand only if that process is gone)")
                warnings.warn(f"{self.path}: taking over a stale lock of {self._describe(rec)}, which no longer "
                              f"runs (it was killed or crashed); its last checkpoint, if any, is kept",
                              StaleLockWarning, stacklevel=2)
                self.path.unlink(missing_ok=True)
        except RunDirError:
            raise
        except OSError as exc:
            raise RunDirError(f"cannot use {self.run_dir} as a run directory: {exc.strerror or exc}"
                              f"{'' if not exc.filename else ' (' + str(exc.filename) + ')'}") from exc
        raise RunLockedError(f"{self.run_dir}: could not take the lock {self.path} (another process keeps "
                             f"re-creating it)")

    def _remove_temporaries(self) -> None:
        """Remove the half-written temporary files (``.checkpoint.pt.*.tmp``, ...) of an earlier writer
        killed inside an atomic write: the lock is ours, so no other process is writing them."""
        for name in RUN_FILES:
            for tmp in self.run_dir.glob(f".{name}.*.tmp"):
                try:
                    tmp.unlink()
                except OSError:
                    pass

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        key = self._key()
        _HELD[key] = _HELD.get(key, 1) - 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
        rec = self._read()
        if rec is not None and rec.get("pid") == os.getpid() and rec.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        if self._created_dir:   # a run that failed before writing anything leaves no empty directory
            try:
                self.run_dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
