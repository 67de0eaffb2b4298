"""Run-time choices shared by every entry point: device, precision, seeding and the RNG states a checkpoint
keeps for an exact resume."""

from __future__ import annotations

import contextlib
import random
import signal
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class StopRequest:
    """Set by SIGTERM/SIGINT while active: a loop checks `requested`, finishes its step, checkpoints and stops;
    `signum` says which signal asked, so the process can exit with 128 + signum like a killed one."""

    signum: int | None = None
    previous: dict[int, Any] = field(default_factory=dict)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class StoppedEarly(Exception):
    """A run stopped by SIGTERM/SIGINT after checkpointing: not an error, not a finished run either."""

    def __init__(self, signum: int, where: str, resume: str) -> None:
        super().__init__(f"stopped early by {signal.Signals(signum).name} at {where}; resume with: {resume}")
        self.exit_status = 128 + signum


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states as weights_only-loadable data."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(part) if isinstance(part, tuple) else part for part in random.getstate()],
        "numpy": {
            "key": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
