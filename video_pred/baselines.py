"""Model-free predictions that every evaluation scores beside the model, on the same clips and metrics.

A score means little on its own: on Moving MNIST most pixels are black, so an all-black prediction
already reaches a high PSNR and SSIM, and a model that learned nothing (the mean frame painted) scores
close to it. Three futures that need no model:
- `black`: every predicted frame is zero;
- `last_frame`: the last conditioning frame, repeated (a world where nothing moves);
- `mean_frame`: the per-pixel mean of the training frames (each pixel's own average over `MEAN_FRAME_CLIPS`
  training clips, all their frames), repeated (what a model that ignores its latents converges to).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from srvp.worldmodel.model import to_unit_float

BASELINES = ("black", "last_frame", "mean_frame")
MEAN_FRAME_CLIPS = 256
"""Training clips averaged into the per-pixel mean frame (fixed indices 0..MEAN_FRAME_CLIPS-1)."""


def mean_training_frame(train_set: Dataset, clips: int = MEAN_FRAME_CLIPS) -> Tensor:
    """Per-pixel mean (c h w), float in [0, 1], of every frame of the first `clips` clips of `train_set`.

    Training datasets are pure functions of (seed, index), so the mean is the same at every evaluation.
    """
    if clips < 1:
        raise ValueError(f"clips={clips}: the mean frame needs at least one training clip")
    total = None
    frames = 0
    for index in range(clips):
        clip = to_unit_float(train_set[index]).double()
        total = clip.sum(dim=0) if total is None else total + clip.sum(dim=0)
        frames += clip.shape[0]
    return (total / frames).float()


def baseline_futures(context: Tensor, horizon: int, mean_frame: Tensor) -> dict[str, Tensor]:
    """Each baseline's future of conditioning frames (b k c h w) in [0, 1]: {name: (b horizon c h w)}."""
    batch = context.shape[0]
    shape = (batch, horizon, *context.shape[2:])
    last = context[:, -1:].expand(shape)
    return {
        "black": torch.zeros(shape, dtype=context.dtype, device=context.device),
        "last_frame": last,
        "mean_frame": mean_frame.to(context.device, context.dtype).expand(shape),
    }
