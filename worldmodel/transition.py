"""Latent transitions y_t -> y_{t+dt}: residual Euler step (SRVP), plain MLP or GRU (the paper's ablations)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    """`layers` linear layers of width `hidden` with ReLU between them (none after the last)."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        if index > 0:
            modules.append(nn.ReLU(inplace=True))
        modules.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*modules)


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with `gain` and zero biases for every linear layer of `module`."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)


class Transition(nn.Module):
    """One step of the latent dynamics driven by `drive` = [z_{t+1}, a_t] (either may be absent).

    residual: y + dt * f(y, drive); mlp: f(y, drive); gru: GRUCell(drive, y). Only the residual kind takes
    dt < 1 and returns its residual dt * f, whose L2 norm the ELBO penalises.
    """

    def __init__(self, kind: str, y_dim: int, drive_dim: int, hidden: int, layers: int, gain: float) -> None:
        super().__init__()
        self.kind = kind
        if kind == "gru":
            self.cell = nn.GRUCell(drive_dim, y_dim)
        else:
            self.net = mlp(y_dim + drive_dim, hidden, y_dim, layers)
            orthogonal_init(self.net, gain)

    def forward(
        self, y: torch.Tensor, drive: torch.Tensor | None, dt: float
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y (b ny), drive (b nd) or None -> next state (b ny), residual dt*f (b ny) or None."""
        if self.kind == "gru":
            return self.cell(drive, y), None
        net_input = y if drive is None else torch.cat([y, drive], dim=-1)
        output = self.net(net_input)
        if self.kind == "mlp":
            return output, None
        residual = dt * output
        return y + residual, residual
