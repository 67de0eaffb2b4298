"""What every benchmark needs to time work on CPU or CUDA: synchronisation, wall seconds, peak memory and the
device's dense matmul rate (the arithmetic rate a convolution-bound step can approach)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(work: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `work()`, its device work included."""
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset; CPU: the process's peak resident set (all work so far)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_flops_per_second(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5
) -> float:
    """FLOP/s of a square `dtype` matmul on `device` (float32 uses TF32 where the matmul precision allows)."""
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(left, right)
    return 2 * size**3 * repeats / seconds(lambda: [torch.mm(left, right) for _ in range(repeats)], device)
