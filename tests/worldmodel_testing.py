"""Helpers shared by the worldmodel tests: tiny configs, synthetic clips, near-deterministic posteriors."""

from __future__ import annotations

import torch

from srvp.worldmodel import SRVP, SRVPConfig

TINY = {
    "filters": 8,
    "code_dim": 16,
    "y_dim": 4,
    "z_dim": 3,
    "content_dim": 16,
    "inf_hidden": 32,
    "fwd_hidden": 32,
    "lstm_hidden": 16,
    "y1_frames": 2,
    "content_frames": 2,
}
"""Small sizes that keep every test fast on one CPU core."""


SMALLEST = {
    "filters": 4,
    "code_dim": 8,
    "y_dim": 3,
    "z_dim": 3,
    "content_dim": 8,
    "inf_hidden": 8,
    "fwd_hidden": 8,
    "lstm_hidden": 8,
    "y1_frames": 2,
    "content_frames": 2,
}
"""Even smaller sizes, for tests that only need a model that runs (evaluation plumbing, checkpoints)."""


def tiny_config(**overrides: object) -> SRVPConfig:
    """A validated small config; `overrides` replace any field."""
    return SRVPConfig(**{**TINY, **overrides}).validate()


def tiny_model(**overrides: object) -> SRVP:
    """A small model in eval mode (deterministic content and BatchNorm)."""
    return SRVP(tiny_config(**overrides)).eval()


def random_clips(batch: int, length: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """uint8 noise clips (b t c 64 64)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, length, channels, 64, 64), generator=generator, dtype=torch.uint8)


def moving_squares(batch: int, length: int, channels: int = 1, size: int = 12) -> torch.Tensor:
    """uint8 clips (b t c 64 64) of a white square moving at a constant clip-specific velocity."""
    clips = torch.zeros(batch, length, channels, 64, 64, dtype=torch.uint8)
    for clip in range(batch):
        row, col = 4 + 7 * clip, 6 + 3 * clip
        velocity_row, velocity_col = 3 - 2 * (clip % 2), 2 + clip % 3
        for step in range(length):
            top = (row + velocity_row * step) % (64 - size)
            left = (col + velocity_col * step) % (64 - size)
            clips[clip, step, :, top : top + size, left : left + size] = 255
    return clips


def freeze_posteriors(model: SRVP, z: bool = True) -> None:
    """Make q(y_1) and (if `z`) q(z) nearly Dirac (std ~1e-8) so sampling no longer changes the result."""
    with torch.no_grad():
        heads = [model.q_y1[-1]] + ([model.posterior_head] if z and model.config.stochastic else [])
        for head in heads:
            half = head.out_features // 2
            head.weight[half:] = 0
            head.bias[half:] = -40.0
