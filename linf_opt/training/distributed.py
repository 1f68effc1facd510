"""Data-parallel training on ``torch.distributed``: process groups, shards, checks across ranks, launching.

The trainer runs data-parallel when a process group is up (``torchrun``, or ``linf-opt train --nproc N``,
which starts N worker processes itself through :func:`launch`):

- every rank holds the whole model; the model is wrapped in ``DistributedDataParallel``, so the
  gradients of one step are all-reduced (averaged) before the optimizer step;
- each global batch (the same permutation on every rank, drawn from the trainer's checkpointed
  generator) is split into one shard per rank (:func:`shard`), and each rank's loss is weighted by
  its share of the batch, so the averaged gradient is exactly the gradient of the global batch's mean
  loss, whatever the number of processes;
- the projection runs after the synchronised optimizer step on every rank: the same input and a
  deterministic kernel give the same A everywhere, which :func:`check_replicas` verifies cheaply (a
  float64 checksum of every parameter, compared across ranks every ``check_every`` steps), failing
  loudly with :class:`RankDivergenceError`, naming the step, if the ranks disagree;
- rank 0 alone writes checkpoints (atomically); the checkpoint is the same for any number of
  processes, so a run written by N processes resumes on M;
- evaluation is sharded and its sums are all-reduced (:func:`all_reduce_sums`).

Backends: ``gloo`` on CPU, ``nccl`` on CUDA (each rank on device ``cuda:<local rank>``).

    >>> ctx = init_from_env("cpu")          # None outside torchrun / launch
    >>> launch(worker, nproc=2)             # worker(rank) in 2 processes with a gloo group
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from linf_opt.errors import LinfOptError

__all__ = ["DistContext", "RankDivergenceError", "current", "init_from_env", "shard", "all_reduce_sums",
           "check_replicas", "launch", "backend_for"]


class RankDivergenceError(LinfOptError):
    """The replicas of a data-parallel run hold different parameters (they must be identical)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the process group."""

    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def backend_for(device: str | torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def current() -> DistContext | None:
    """The context of an initialised process group with more than one rank, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                       dist.get_backend())


def init_from_env(device: str | torch.device = "cpu") -> DistContext | None:
    """Join the process group that the environment describes (``torchrun``: RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT), unless one is already up; None when WORLD_SIZE is unset or 1."""
    ctx = current()
    if ctx is not None:
        return ctx
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2 or not dist.is_available():
        return None
    dist.init_process_group(backend_for(device))
    return current()


def shard(indices: torch.Tensor, ctx: DistContext | None) -> torch.Tensor:
    """This rank's part of a global batch: every ``world``-th index starting at ``rank``."""
    return indices if ctx is None else indices[ctx.rank::ctx.world]


def all_reduce_sums(values: list[float], ctx: DistContext | None, device="cpu") -> list[float]:
    """Σ over ranks of each value (one all-reduce for the whole list); the values themselves without a group."""
    if ctx is None:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def check_replicas(module: torch.nn.Module, ctx: DistContext | None, step: int) -> None:
    """Raise :class:`RankDivergenceError` naming ``step`` unless every rank holds the same parameters.

    Compares a float64 checksum per parameter (the sum and the sum of squares) across ranks: one
    all-gather of 2·(number of parameters) numbers.
    """
    if ctx is None:
        return
    with torch.no_grad():
        params = [p for p in module.parameters()]
        local = torch.stack([torch.stack([p.double().sum(), p.double().square().sum()]) for p in params]).reshape(-1)
        gathered = [torch.empty_like(local) for _ in range(ctx.world)]
        dist.all_gather(gathered, local)
    names = [n for n, _ in module.named_parameters()]
    for r, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            bad = int((other != gathered[0]).nonzero()[0, 0]) // 2
            raise RankDivergenceError(
                f"after step {step}: rank {r} holds a different {names[bad]!r} than rank 0 (data-parallel replicas "
                f"must be identical: the projection or the optimizer step is not deterministic across ranks)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable, nproc: int, port: int, backend: str, args: tuple):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=nproc)
    try:
        fn(rank, *args)
        # every rank done with its collectives before any tears the group down: gloo's transport
        # threads can abort the process (SIGABRT, "terminate called without an active exception") when
        # a peer's connection closes under them; seen once in CI in the 2-process test
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, nproc: int, *args, backend: str = "gloo") -> None:
    """Run ``fn(rank, *args)`` in ``nproc`` new processes joined in one process group on this machine.

    ``fn`` must be importable (a module-level function): the workers are started with ``spawn``. Raises
    ``torch.multiprocessing.ProcessRaisedException`` (with the worker's traceback) if a worker fails;
    the other workers are then stopped.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc: expected a positive int, got {nproc!r}")
    import torch.multiprocessing as mp
    mp.start_processes(_worker, args=(fn, nproc, _free_port(), backend, args), nprocs=nproc, join=True,
                       start_method="spawn")
