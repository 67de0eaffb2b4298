"""The checkpoint format: weights, model config, step and optionally optimiser, scheduler, RNG states and the
run's config, as plain data.

Everything is stored as tensors and builtin containers, so `torch.load(weights_only=True)` reads it and
evaluation needs nothing but the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from srvp.worldmodel.config import SRVPConfig
from srvp.worldmodel.model import SRVP

FORMAT_VERSION = 1


def checkpoint_payload(
    model: SRVP,
    step: int,
    config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint of `model` as plain data: its config and weights, the step, and optionally the run
    config, optimiser, scheduler, RNG states and extra plain data. `torch.save` it; `load_checkpoint` and
    `load_model` read it back (`srvp.common.checkpoints.save_checkpoint` writes it atomically with the RNG)."""
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "config": config or {},
    }
    if rng is not None:
        payload["rng"] = rng
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if extra:
        payload["extra"] = extra
    return payload


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; a one-line error names a missing or corrupt file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise RuntimeError(f"checkpoint {path} is corrupt or not an srvp checkpoint: {_load_failure(error)}") from None
    if not isinstance(payload, dict) or "model_config" not in payload or "model" not in payload:
        raise RuntimeError(f"checkpoint {path} is not an srvp checkpoint (no model_config/model entries)")
    return payload


def _load_failure(error: Exception) -> str:
    """What went wrong in torch.load, on one line, without torch's advice to load untrusted files unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if "Weights only load failed" in text:
        return "it holds objects other than tensors and plain containers (not loadable with weights_only=True)"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SRVP, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, in eval mode on `device`; returns it and the payload."""
    payload = load_checkpoint(path, map_location=device)
    model = SRVP(SRVPConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload
