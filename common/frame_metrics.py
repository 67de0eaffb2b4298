"""Frame metrics of the SRVP protocol, PSNR and SSIM, per frame of batched float videos (video evaluation and
the control loop's open-loop predictions).

Both take `pred, truth: (B, T, C, H, W)` float tensors in [0, 1] and return one value per frame
`(B, T)`, computed in a single batched tensor program on the tensors' device (the evaluation runs
them on 100 samples of every test clip, so there is no Python loop over frames).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

PSNR_MAX_DB = 100.0
"""PSNR of a frame equal to its truth (MSE 0), instead of infinity: one such frame would make every mean
infinite. Only model-free baselines reach it in practice (the last conditioning frame repeated, on a
clip where nothing moves)."""
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_CHUNK = 512
"""Images per convolution pass of SSIM: the convolutions' work buffers grow with the images at once (about
0.75 MB per 64x64 image on CPU), and an evaluation scores millions of frames (100 samples x 95 frames x a
batch of clips would need tens of GB in one pass)."""


def _checked_videos(pred: Tensor, truth: Tensor, metric: str) -> tuple[Tensor, Tensor]:
    """Both videos, at least float32, after a one-line failure unless they are float videos of one shape.

    Half-precision inputs (from autocast) are upcast: local variances E[x^2] - E[x]^2 cancel badly there.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"{metric}: pred shape {tuple(pred.shape)} != truth shape {tuple(truth.shape)}")
    if pred.ndim != 5:
        raise ValueError(f"{metric}: expected videos (B, T, C, H, W), got shape {tuple(pred.shape)}")
    if not (pred.is_floating_point() and truth.is_floating_point()):
        raise ValueError(f"{metric}: expected float videos in [0, 1], got {pred.dtype} and {truth.dtype}")
    dtype = torch.promote_types(torch.promote_types(pred.dtype, truth.dtype), torch.float32)
    return pred.to(dtype), truth.to(dtype)


def psnr(pred: Tensor, truth: Tensor) -> Tensor:
    """PSNR = 10 log10(1 / MSE) per channel, averaged over channels: (B, T, C, H, W) x 2 -> (B, T).

    A channel identical to its truth scores PSNR_MAX_DB (the official implementation gives infinity, which
    no model reaches but the last-frame baseline does on static clips, making means infinite).
    """
    pred, truth = _checked_videos(pred, truth, "psnr")
    per_channel = peak_signal_noise_ratio(
        rearrange(pred, "b t c h w -> (b t) c h w"),
        rearrange(truth, "b t c h w -> (b t) c h w"),
        data_range=1.0,
        reduction="none",
        dim=(2, 3),
    )
    return rearrange(per_channel.clamp(max=PSNR_MAX_DB).mean(dim=1), "(b t) -> b t", b=pred.shape[0])


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian window of SSIM_WINDOW taps and std SSIM_SIGMA, shaped (SSIM_WINDOW,)."""
    offsets = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    window = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return window / window.sum()


def _local_mean(images: Tensor, window: Tensor) -> Tensor:
    """Gaussian-weighted local mean of (N, 1, H, W) images, valid convolution: -> (N, 1, H - 10, W - 10).

    The 2-D Gaussian window is separable, so two 1-D convolutions compute it exactly and cheaply.
    """
    rows = F.conv2d(images, window.view(1, 1, SSIM_WINDOW, 1))
    return F.conv2d(rows, window.view(1, 1, 1, SSIM_WINDOW))


def ssim(pred: Tensor, truth: Tensor) -> Tensor:
    """SSIM per frame: (B, T, C, H, W) x 2 -> (B, T), averaged over channels and valid pixels.

    11x11 Gaussian window (sigma 1.5), valid convolution (no border padding), k1 = 0.01, k2 = 0.03,
    data range 1, population (not sample) local covariances: the SRVP protocol's SSIM, equal to
    scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1.0)` computed per channel and averaged. torchmetrics is not used here because its SSIM
    averages over reflection-padded borders instead of the valid region.
    """
    pred, truth = _checked_videos(pred, truth, "ssim")
    batch, steps, _, height, width = pred.shape
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"ssim: frames must be at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {height}x{width}")
    window = _gaussian_window(pred.dtype, pred.device)
    x = rearrange(pred, "b t c h w -> (b t c) 1 h w")
    y = rearrange(truth, "b t c h w -> (b t c) 1 h w")
    per_channel = torch.cat(
        [
            _mean_ssim(x_part, y_part, window)
            for x_part, y_part in zip(x.split(SSIM_CHUNK), y.split(SSIM_CHUNK), strict=True)
        ]
    )
    return rearrange(per_channel, "(b t c) -> b t c", b=batch, t=steps).mean(dim=2)


def _mean_ssim(x: Tensor, y: Tensor, window: Tensor) -> Tensor:
    """Mean SSIM over the valid window positions of image pairs (N, 1, H, W) x 2 -> (N,)."""
    # One convolution pass over the five stacked moment images instead of five passes.
    moments = _local_mean(torch.cat([x, y, x * x, y * y, x * y]), window).chunk(5)
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = moments
    var_x = mean_xx - mean_x**2
    var_y = mean_yy - mean_y**2
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))
