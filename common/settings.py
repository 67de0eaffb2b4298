"""Typed run settings: the fields both entry points share (`RunConfig`, `LoggerConfig`), and the range and choice
checks each field declares (`setting`, `check_fields`).

Hydra composes every YAML value onto these dataclasses (their schemas, registered by `srvp.configs`), so a value
of the wrong type or an unknown key fails while the config is composed. What a type cannot say (at least 1, one
of a few words) is declared on the field with `setting` and checked by `check_fields` when the dataclass is
built: `OmegaConf.to_object(cfg.section)` or a direct call both refuse a bad value in one line naming its key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from numbers import Real
from typing import Any

from omegaconf import MISSING

PRECISIONS = ("auto", "bf16", "fp32")


def setting(default: Any, *, minimum: float | None = None, choices: tuple[Any, ...] | None = None) -> Any:
    """A dataclass field holding `default` whose value must be at least `minimum` or one of `choices` (checked by
    `check_fields`; None passes, the value of an optional setting left unset)."""
    metadata = {name: value for name, value in (("minimum", minimum), ("choices", choices)) if value is not None}
    return field(default=default, metadata=metadata)


def check_fields(settings: Any, section: str, schema: type | None = None) -> None:
    """Raise a one-line ValueError naming `section.field` for the first value of `settings` outside the range or
    choices its field declares. `settings` is a dataclass instance, or a config composed with `schema`."""
    for item in fields(schema or type(settings)):
        value = getattr(settings, item.name)
        key = f"{section}.{item.name}" if section else item.name
        if value is None:
            continue
        minimum = item.metadata.get("minimum")
        if minimum is not None and not value >= minimum:
            raise ValueError(f"{key}={value!r}: must be at least {minimum}")
        choices = item.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{key}={value!r}: expected one of {choices}")


@dataclass
class LoggerConfig:
    """Where a run logs besides metrics.jsonl, which it always writes."""

    enabled: bool = True
    """TensorBoard scalars, videos and the hyper-parameter table under run_dir/tb."""


@dataclass
class RunConfig:
    """The settings srvp-train and srvp-control share, under the same names: the run folder, seeding, device and
    precision, and how the world model is optimised (the optimiser and gradient clipping sit at the top level of
    both configs)."""

    run_dir: str = MISSING
    """The run folder; `run_dir=X` on a folder holding a checkpoint continues that run (with `resume`)."""
    resume: bool = True
    """Continue from run_dir/checkpoints/last.pt when it exists."""
    seed: int = setting(1, minimum=0)
    """Seed of python, numpy and torch, and of every random stream the run derives (data, episodes, sampling)."""
    device: str = "auto"
    """auto (CUDA when available) | cpu | cuda | cuda:N."""
    precision: str = setting("auto", choices=PRECISIONS)
    """auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32."""
    optimizer: Any = field(default_factory=dict)
    """The world model's optimiser: a hydra node with `_target_` (e.g. torch.optim.Adam), `_partial_: true` and
    its arguments (lr, ...), given the parameters at build time."""
    grad_clip: float | None = setting(None, minimum=0)
    """Clip the global norm of the gradients at this value before each optimiser step; null (or 0): no clipping."""
    overlay_for: str | None = None
    """The entry point a debug/experiment overlay was written for (set by the overlay; another one refuses it)."""

    def __post_init__(self) -> None:
        check_run_settings(self)


def check_run_settings(settings: Any) -> None:
    """The checks of `RunConfig`'s fields on `settings` (a RunConfig, or a config composed with its schema): the
    declared ranges and choices, and the optimiser's learning rate, which its free-form node cannot type."""
    check_fields(settings, "", RunConfig)
    lr = settings.optimizer.get("lr") if settings.optimizer else None
    if lr is None:
        return
    if not isinstance(lr, Real) or isinstance(lr, bool):
        raise ValueError(f"optimizer.lr={lr!r}: expected a number")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"optimizer.lr={lr}: must be a positive number")
