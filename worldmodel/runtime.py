"""Run-time choices shared by every entry point: device, precision, seeding."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; otherwise 'cpu', 'cuda' or 'cuda:N', checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r}: CUDA is not available on this machine (use device=auto or cpu)")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context: 'auto' is bf16 on CUDA and fp32 on CPU; 'bf16' forces bf16; 'fp32' none."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision={precision!r}: expected auto, bf16 or fp32")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
