"""Videos and image grids of predictions: side-by-side layouts, GIF/MP4/PNG writing (atomic)."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from einops import rearrange

from srvp.common.files import atomic_write

COND_BORDER = (0, 160, 255)
"""Border colour of conditioning (observed) frames; predicted frames get `PRED_BORDER`."""
PRED_BORDER = (255, 60, 60)


def to_uint8_rgb(frames: torch.Tensor) -> np.ndarray:
    """float [0, 1] or uint8 frames (..., c, h, w) -> uint8 (..., h, w, 3) numpy (grey repeated)."""
    if frames.dtype != torch.uint8:
        frames = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    if frames.shape[-3] == 1:
        frames = frames.expand(*frames.shape[:-3], 3, *frames.shape[-2:])
    return rearrange(frames.cpu(), "... c h w -> ... h w c").numpy()


def add_border(frames: np.ndarray, cond_frames: int, width: int = 2) -> np.ndarray:
    """Frame a video (t h w 3): conditioning frames in blue, predicted ones in red."""
    framed = np.pad(frames, ((0, 0), (width, width), (width, width), (0, 0)))
    colours = np.array([COND_BORDER if t < cond_frames else PRED_BORDER for t in range(len(frames))], np.uint8)
    mask = np.ones(framed.shape[1:3], bool)
    mask[width:-width, width:-width] = False
    framed[:, mask] = colours[:, None, :]
    return framed


def side_by_side(videos: list[torch.Tensor], cond_frames: int) -> np.ndarray:
    """Videos (t c h w) of equal length, e.g. [truth, sample 1, sample 2] -> one video (t h W 3), bordered."""
    return np.concatenate([add_border(to_uint8_rgb(video), cond_frames) for video in videos], axis=2)


def time_grid(rows: list[torch.Tensor], cond_frames: int) -> np.ndarray:
    """Rows of videos (t c h w) -> one image (rows*h, t*w, 3) with time along the width."""
    return np.concatenate([np.concatenate(list(side_by_side([row], cond_frames)), axis=1) for row in rows], axis=0)


def write_video(path: str | Path, video: np.ndarray, fps: int = 8) -> Path:
    """Write a uint8 video (t h w 3) as GIF or MP4 (by suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        encoded = iio.imwrite("<bytes>", video, extension=".gif", duration=1000 / fps, loop=0)
    elif suffix == ".mp4":
        # H.264 needs even sizes; pad by one pixel where needed.
        pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
        video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        buffer = io.BytesIO()
        iio.imwrite(buffer, video, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
        encoded = buffer.getvalue()
    else:
        raise ValueError(f"{path}: video files must end in .gif or .mp4")
    return atomic_write(path, lambda file: file.write(encoded))


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 image (h w 3) as PNG, atomically."""
    encoded = iio.imwrite("<bytes>", image, extension=".png")
    return atomic_write(path, lambda file: file.write(encoded))
