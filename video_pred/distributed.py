"""Multi-process training under `torchrun --nproc_per_node=N`: rank discovery, process group, batch split.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them training runs in one process and nothing here
touches torch.distributed. NCCL joins CUDA processes (one GPU per local rank), gloo CPU ones.

Data are split with `srvp.video_pred.data.stream.DrawSampler(start, rank, world_size)` rather than torch's
DistributedSampler: training sets are endless streams indexed by draw number (a clip is a pure function
of seed and index), DistributedSampler needs a finite, epoch-shuffled index set, and the draw stream
also resumes exactly at step s (draw s * batch) whatever the number of ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from srvp.common.runtime import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job; the defaults describe a single-process run."""

    rank: int = 0
    """Global rank, 0 .. world_size - 1."""
    local_rank: int = 0
    """Rank on this machine: the CUDA device index the process uses."""
    world_size: int = 1
    """Number of processes training together."""

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints and videos."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def context_from_env() -> DistributedContext:
    """Read torchrun's WORLD_SIZE / RANK / LOCAL_RANK (all absent: a single process)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK must be integers (set by torchrun): {error}") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    return DistributedContext(rank, local_rank, world_size)


def setup(device_name: str, context: DistributedContext) -> torch.device:
    """The device of this rank, joining the process group when several ranks run (nccl on CUDA, gloo on CPU)."""
    device = resolve_device(device_name)
    if not context.enabled:
        return device
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={context.local_rank} but only {torch.cuda.device_count()} CUDA devices are visible"
            )
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=context.rank, world_size=context.world_size)
    return device


def teardown(context: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global `trainer.batch_size`, which must split evenly."""
    if batch_size % world_size:
        raise ValueError(
            f"trainer.batch_size={batch_size} does not split over {world_size} processes; "
            f"use a multiple of {world_size}"
        )
    return batch_size // world_size


def host_group(context: DistributedContext) -> dist.ProcessGroup | None:
    """A gloo group over all ranks for small host-side exchanges (stop flags, RNG states) that must not
    wait on the GPU stream; None for a single process. Every rank must call it, in the same order."""
    return dist.new_group(backend="gloo") if context.enabled else None


def any_rank(flag: bool, group: dist.ProcessGroup | None) -> bool:
    """Whether `flag` is set on at least one rank of `group` (collective; `flag` itself without a group)."""
    if group is None:
        return flag
    tensor = torch.tensor(int(flag))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return bool(tensor.item())


def gather_from_ranks(value: Any, group: dist.ProcessGroup | None) -> list[Any]:
    """Every rank's `value`, indexed by rank (collective; [value] without a group)."""
    if group is None:
        return [value]
    values: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    return values
