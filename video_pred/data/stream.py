"""Resumable training streams: a step-indexed sequence of draw indices, split between DDP ranks.

Training datasets are deterministic functions of (seed, draw index), so the batch seen at step s is the
same whether the run went straight through or was killed and resumed: the loader restarts at draw
s * global_batch_size and nothing depends on DataLoader workers or on the global RNG.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class DrawSampler(Sampler[int]):
    """Endless draw indices start, start + 1, ...; with several ranks, rank r takes every world-th index."""

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[int]:
        draw = self.start
        while True:
            yield draw * self.world_size + self.rank
            draw += 1


def training_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    start_step: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> Iterator[torch.Tensor]:
    """Endless iterator of uint8 batches (b t c h w) starting at optimisation step `start_step`."""
    if batch_size < 1:
        raise ValueError(f"trainer.batch_size={batch_size}: must be positive")
    sampler = DrawSampler(start_step * batch_size, rank, world_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=False,
        # Workers are seeded from this generator, not from the global RNG the model's sampling uses.
        generator=torch.Generator().manual_seed(seed),
    )
    return iter(loader)
