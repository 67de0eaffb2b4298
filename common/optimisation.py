"""The one optimisation step of the world model, used by video-prediction training and by the control loop,
and what builds the model and optimiser for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from srvp.common.runtime import autocast
from srvp.worldmodel import SRVP, ElboOutput, SRVPConfig


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the weights since the last checkpoint are not trusted."""


def build_model(config: SRVPConfig, device: torch.device, channels_last: bool) -> SRVP:
    """The model on `device`, its convolutions in channels-last memory format when asked."""
    model = SRVP(config).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def build_optimizer(
    optimizer: Mapping[str, Any], model: torch.nn.Module, device: torch.device, fused: bool
) -> torch.optim.Optimizer:
    """The optimiser of config node `optimizer` (a hydra `_target_` with `_partial_: true`) on the model's
    parameters; with `fused`, the single-kernel update on CUDA (`fused=True`) and the multi-tensor one
    elsewhere (`foreach=True`): the same numerics in fewer kernels."""
    options = {}
    if fused:
        options = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return instantiate(optimizer)(model.parameters(), **options)


def optimisation_step(
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    frames: torch.Tensor,
    *,
    precision: str = "auto",
    actions: torch.Tensor | None = None,
    head_targets: dict[str, torch.Tensor] | None = None,
    grad_clip: float | None = None,
) -> ElboOutput:
    """One update on uint8 clips (b t c h w) (and their actions (b, t-1, a) and head targets): forward under
    `precision`, backward, optional clipping of the global gradient norm of the optimiser's parameters,
    optimiser step.

    `loss_fn` is the model itself or its DDP / compiled wrapper (both modules whose call is the ELBO). Nothing
    here synchronises with the host: the returned parts (and the gradient norm before clipping, `grad_norm`,
    when clipping) stay on the device, and the caller checks them for NaN when it reads them anyway.
    """
    loss_fn.train()
    with autocast(frames.device, precision):
        output = loss_fn(frames, actions, head_targets)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    if grad_clip:
        parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
        output.parts["grad_norm"] = torch.nn.utils.clip_grad_norm_(parameters, grad_clip).detach()
    optimizer.step()
    return output


class LossAverages:
    """Sums of an update's loss parts over a window of steps, on the device (no host synchronisation until
    `read`), and whether any loss in the window was not finite."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def add(self, output: ElboOutput) -> None:
        self.nonfinite |= ~torch.isfinite(output.loss.detach())
        for name, value in output.parts.items():
            self.sums[name] = self.sums.get(name, 0) + value.float()
        self.count += 1

    def any_nonfinite(self) -> bool:
        """Whether a loss since the last `read` was NaN or infinite (one host synchronisation)."""
        return bool(self.nonfinite.item())

    def read(self) -> dict[str, float]:
        """The window's mean of each part, then a new window."""
        means = {name: (total / max(self.count, 1)).item() for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means
