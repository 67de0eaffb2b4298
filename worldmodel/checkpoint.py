"""Self-describing checkpoints: weights, optimiser, step, RNG states and the run's config as plain data.

Everything is stored as tensors and builtin containers, so `torch.load(weights_only=True)` reads it and
evaluation needs nothing but the file. Files are written atomically.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.config import SRVPConfig
from worldmodel.fileio import atomic_write
from worldmodel.model import SRVP

FORMAT_VERSION = 1


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


def save_checkpoint(
    path: str | Path,
    model: SRVP,
    step: int,
    config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write the model (and optionally optimiser, scheduler, run config, extra plain data)."""
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "rng": capture_rng_state(),
        "config": config or {},
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if extra:
        payload["extra"] = extra
    return atomic_write(path, lambda file: torch.save(payload, file))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; a one-line error names a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        # torch's message spans lines and carries colour codes: keep its first line, as one line.
        lines = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
        detail = lines[0] if lines else type(error).__name__
        raise RuntimeError(f"checkpoint {path} is corrupt or not an srvp checkpoint: {detail}") from error
    if not isinstance(payload, dict) or "model_config" not in payload or "model" not in payload:
        raise RuntimeError(f"checkpoint {path} is not an srvp checkpoint (no model_config/model entries)")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SRVP, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, in eval mode on `device`; returns it and the payload."""
    payload = load_checkpoint(path, map_location=device)
    model = SRVP(SRVPConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload
