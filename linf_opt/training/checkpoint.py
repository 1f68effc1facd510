"""Atomic checkpoints: nothing is lost when a run is interrupted mid-write.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed over
the old one (``os.replace`` is atomic on POSIX), so the file on disk is always either the previous
complete checkpoint or the new complete one. Loading uses ``torch.load(..., weights_only=True)``:
checkpoints hold only tensors and plain Python containers, never pickled code.

    >>> save_atomic({"epoch": 3, "model": net.state_dict()}, run_dir / "checkpoint.pt")
    >>> state = load_checkpoint(run_dir / "checkpoint.pt")
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from linf_opt.errors import DataError

__all__ = ["save_atomic", "load_checkpoint", "write_text_atomic"]


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` to ``path`` atomically (temporary file, fsync, rename)."""
    return _atomic(Path(path), lambda fh: torch.save(state, fh))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


def load_checkpoint(path: str | os.PathLike, map_location=None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (``weights_only=True``); ``DataError`` if absent."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint: no file at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DataError(f"checkpoint: {path} could not be loaded ({exc})") from exc


def append_jsonl(record: dict[str, Any], path: str | os.PathLike) -> None:
    """Append one JSON line to ``path`` (the per-epoch log)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
