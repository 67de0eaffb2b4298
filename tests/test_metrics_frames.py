"""PSNR and SSIM per frame agree with scikit-image, frame by frame and channel by channel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srvp.common import frame_metrics as frames
from srvp.common.frame_metrics import PSNR_MAX_DB, psnr, ssim
from srvp.common.stats import mean_ci95


def _video_pair(channels: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random truth (B=2, T=3, C, 64, 64) and a noisy prediction, both in [0, 1]."""
    coarse = torch.rand(2 * 3, channels, 8, 8, dtype=torch.float64)
    truth = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False).view(2, 3, channels, 64, 64)
    pred = (truth + 0.1 * torch.randn_like(truth)).clamp(0, 1)
    return pred.to(dtype), truth.to(dtype)


def _per_frame(metric, pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Reference (B, T) values: scikit-image metric per channel image, averaged over channels."""
    pred, truth = pred.double().numpy(), truth.double().numpy()
    values = np.zeros(pred.shape[:2])
    for b, t in np.ndindex(*pred.shape[:2]):
        values[b, t] = np.mean([metric(truth[b, t, c], pred[b, t, c]) for c in range(pred.shape[2])])
    return values


def _skimage_ssim(truth: np.ndarray, pred: np.ndarray) -> float:
    return structural_similarity(
        truth, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_matches_skimage(channels: int) -> None:
    pred, truth = _video_pair(channels)
    expected = _per_frame(lambda t, p: peak_signal_noise_ratio(t, p, data_range=1.0), pred, truth)
    values = psnr(pred, truth)
    assert values.shape == (2, 3)
    np.testing.assert_allclose(values.double().numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels: int) -> None:
    pred, truth = _video_pair(channels)
    expected = _per_frame(_skimage_ssim, pred, truth)
    values = ssim(pred, truth)
    assert values.shape == (2, 3)
    assert 0.2 < expected.min() and expected.max() < 0.95  # a range where errors would show
    np.testing.assert_allclose(values.double().numpy(), expected, atol=2e-5)
    np.testing.assert_allclose(ssim(pred.double(), truth.double()).numpy(), expected, atol=1e-10)
    # Half-precision predictions (autocast) are computed in float32, not in bfloat16.
    low_precision = ssim(pred.bfloat16(), truth.bfloat16())
    assert low_precision.dtype == torch.float32
    torch.testing.assert_close(low_precision, ssim(pred.bfloat16().float(), truth.bfloat16().float()))


def test_ssim_in_chunks_equals_one_pass(monkeypatch) -> None:
    # 2 x 3 frames of 3 channels = 18 images, scored 4 at a time (last chunk partial), in order.
    pred, truth = _video_pair(3, torch.float64)
    one_pass = ssim(pred, truth)
    monkeypatch.setattr(frames, "SSIM_CHUNK", 4)
    torch.testing.assert_close(ssim(pred, truth), one_pass, rtol=0, atol=1e-12)


def test_identical_frames() -> None:
    pred, truth = _video_pair(3)
    torch.testing.assert_close(psnr(truth, truth), torch.full((2, 3), PSNR_MAX_DB))
    # One identical channel of three: capped at PSNR_MAX_DB, then averaged with the others.
    pred[:, :, 0] = truth[:, :, 0]
    per_channel = -10 * torch.log10(((pred - truth) ** 2).mean(dim=(3, 4)))
    expected = per_channel.clamp(max=PSNR_MAX_DB).mean(dim=2)
    assert torch.isfinite(psnr(pred, truth)).all()
    torch.testing.assert_close(psnr(pred, truth), expected)
    torch.testing.assert_close(ssim(truth, truth), torch.ones(2, 3))


def test_frame_metrics_reject_bad_inputs() -> None:
    pred, truth = _video_pair(1)
    with pytest.raises(ValueError, match="pred shape"):
        psnr(pred, truth[:, :2])
    with pytest.raises(ValueError, match="float videos"):
        ssim((pred * 255).byte(), (truth * 255).byte())
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        psnr(pred[0], truth[0])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(pred[..., :10, :10], truth[..., :10, :10])


def test_mean_ci95() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, 7.0])
    mean, half_width = mean_ci95(values)
    assert mean == pytest.approx(3.5)
    assert half_width == pytest.approx(1.96 * np.std([1.0, 2.0, 4.0, 7.0]) / math.sqrt(4))
    assert mean_ci95(torch.tensor([5.0])) == (5.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        mean_ci95(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="1-D"):
        mean_ci95(torch.zeros(2, 2))
