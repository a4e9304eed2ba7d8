"""Several GPUs: torch DistributedDataParallel under torchrun.

A training stage started on a machine with more than one visible GPU re-launches itself as
``python -m torch.distributed.run --standalone --nproc_per_node N -m <stage> <same argv>`` (the
`torchrun` entry point) and exits with its code. Under torchrun (LOCAL_RANK and WORLD_SIZE set)
each process joins the process group — NCCL on CUDA, gloo on CPU — and:

- takes a disjoint share of every epoch's shuffled order (`rank_share`: DistributedSampler's
  semantics, the same seed on every rank), the global batch size split over the ranks, so one
  step of N processes sees the same images as one step of a single process;
- trains the model wrapped in DistributedDataParallel (gradients averaged over ranks); on CUDA
  BatchNorm becomes SyncBatchNorm (statistics over the global batch). SyncBatchNorm does not run
  on CPU, so the gloo/CPU path keeps per-process BatchNorm statistics;
- lets only rank 0 write checkpoints and curves; every rank meets at a barrier before exiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Distributed", "finish", "global_mean", "init_distributed", "is_main_process", "rank_share",
           "relaunch_under_torchrun", "torchrun_command", "under_torchrun", "unwrap", "wrap_model"]


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun(env: Mapping[str, str] = os.environ) -> bool:
    """True inside a process started by torchrun (it sets LOCAL_RANK and WORLD_SIZE)."""
    return "LOCAL_RANK" in env and "WORLD_SIZE" in env


def torchrun_command(module: str, argv: Sequence[str], nproc: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node nproc -m module argv…`, with this interpreter."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", module, *argv]


def relaunch_under_torchrun(module: str, argv: Sequence[str] | None) -> int | None:
    """With more than one visible GPU and not already under torchrun: run `module` with the same
    arguments under torchrun, one process per GPU, and return its exit code. Otherwise None (go on
    in this process)."""
    gpus = torch.cuda.device_count()
    if gpus < 2 or under_torchrun():
        return None
    args = list(sys.argv[1:] if argv is None else argv)
    print(f"{module}: {gpus} GPUs visible, re-launching under torchrun", flush=True)
    return subprocess.run(torchrun_command(module, args, gpus)).returncode


def init_distributed() -> Distributed:
    """Join the process group when under torchrun with WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU);
    otherwise a single process on the CUDA device if there is one."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed()
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, device)


def wrap_model(model: nn.Module, ctx: Distributed) -> nn.Module:
    """`model` itself for one process; else DistributedDataParallel around it, with BatchNorm
    converted to SyncBatchNorm on CUDA (CPU/gloo keeps per-process BatchNorm: SyncBatchNorm has
    no CPU implementation). Parameters are shared, not copied: build the optimizer from
    `unwrap(wrapped)` or from `model` — they are the same tensors."""
    if not ctx.active:
        return model
    if ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[ctx.local_rank])
    return DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (state dicts without 'module.')."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def is_main_process() -> bool:
    """Rank 0 of an initialised process group, or a process without one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def global_mean(total: float, count: int) -> float:
    """Σ total / Σ count over all ranks (this process's own mean without a process group)."""
    if dist.is_available() and dist.is_initialized():
        both = torch.tensor([total, float(count)], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            both = both.cuda()
        dist.all_reduce(both)
        total, count = both[0].item(), both[1].item()
    return total / max(count, 1)


def rank_share(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's part of an epoch's order, as torch's DistributedSampler takes it: the order
    padded (wrapping around) to a multiple of `world_size`, then every `world_size`-th element
    from position `rank`. The shares are disjoint up to the padding, and equal in length."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    order = np.asarray(order)
    padding = -len(order) % world_size
    padded = np.concatenate([order, np.resize(order, padding)]) if padding else order
    return padded[rank::world_size]


def finish(ctx: Distributed) -> None:
    """Barrier (so no rank exits while rank 0 still writes), then leave the process group."""
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
