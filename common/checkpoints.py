"""Checkpoints on disk: written atomically with the RNG states, and one resume routine for every training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srvp.common.configs import config_changes
from srvp.common.files import atomic_write
from srvp.common.runtime import capture_rng_state
from srvp.worldmodel import SRVP, SRVPConfig
from srvp.worldmodel.checkpoint import checkpoint_payload


def save_checkpoint(
    path: str | Path,
    model: SRVP,
    step: int,
    config: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write `model`'s checkpoint (worldmodel's format) with this process's RNG states."""
    payload = checkpoint_payload(model, step, config, optimizer, scheduler, extra, rng=capture_rng_state())
    return atomic_write(path, lambda file: torch.save(payload, file))


def restore_training(
    payload: dict[str, Any],
    path: str | Path,
    model: SRVP,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR | None = None,
) -> None:
    """Load a training checkpoint's payload (read from `path` by `load_checkpoint`, on the model's device)
    into `model`, `optimizer` (and `scheduler`).

    A checkpoint of another model config is refused with one line naming the differing fields. The
    optimiser's state (Adam moments, step counts) and the scheduler's position come from the checkpoint, but
    the hyper-parameters (learning rate, betas, ...) are those the optimiser and scheduler were built with,
    i.e. the current config's: a run resumed with a new `lr` runs with it, as its config.yaml says.
    """
    saved = SRVPConfig.from_dict(payload["model_config"])
    if saved != model.config:
        differing = config_changes({"model": saved.to_dict()}, {"model": model.config.to_dict()})
        raise ValueError(
            f"checkpoint {path} was trained with another model config ({'; '.join(differing)}): resume "
            "with the same model values or start a new run directory"
        )
    model.load_state_dict(payload["model"])
    if "optimizer" not in payload:
        raise ValueError(f"checkpoint {path} holds no optimiser state: it cannot resume training")
    hyper_parameters = [
        {key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups
    ]
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (ValueError, KeyError) as error:
        raise ValueError(f"checkpoint {path} holds the state of another optimiser: {error}") from None
    for group, current in zip(optimizer.param_groups, hyper_parameters, strict=True):
        group.update(current)
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
        # The schedule's function is the current config's; its base rate too (saved with the state).
        scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        apply_schedule(scheduler)


def apply_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set each parameter group's learning rate to its base rate times the scheduler's factor at the
    scheduler's position: after its factors or base rates were replaced (a restored or re-timed schedule)."""
    groups = scheduler.optimizer.param_groups
    for group, base, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]
