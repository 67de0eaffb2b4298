"""Best-of-N protocol: per-clip, per-metric selection by time average, CIs, curves, chunking, FVD wiring."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from srvp.common import frame_metrics as frames
from srvp.video_pred.metrics.i3d import NUM_CLASSES
from srvp.video_pred.protocol import (
    FrameMetric,
    best_of_n,
    per_image_metric,
    run_best_of_n,
    score_samples,
    summarize,
)
from srvp.worldmodel import SRVP, SRVPConfig
from tests.worldmodel_testing import SMALLEST

# Hand-made metrics on constant frames: "brightness" (higher is better) and "darkness" (lower is better,
# applied per image like LPIPS), so the expected pick is known without any image model.
BRIGHTNESS = FrameMetric("brightness", lambda pred, truth: pred.mean(dim=(2, 3, 4)), higher_is_better=True)
DARKNESS = per_image_metric("darkness", lambda pred, truth: pred.mean(dim=(1, 2, 3)), higher_is_better=False)


class ScriptedFutures(nn.Module):
    """Stands in for SRVP.predict: returns given futures (b, n, horizon, c, h, w) in order, chunk by chunk."""

    def __init__(self, futures: torch.Tensor) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the protocol a device to read
        self.futures, self.next_sample = futures, 0
        self.calls: list[int] = []

    def predict(self, cond_frames, horizon, num_samples, dt=None):
        chunk = self.futures[:, self.next_sample : self.next_sample + num_samples, :horizon]
        self.next_sample += num_samples
        self.calls.append(num_samples)
        reconstructions = cond_frames[:, None].expand(-1, num_samples, -1, -1, -1, -1)
        return torch.cat([reconstructions, chunk], dim=2)


def constant_videos(levels: list[list[list[float]]], channels: int = 1, size: int = 16) -> torch.Tensor:
    """(b, n, t) frame levels -> videos (b, n, t, c, size, size) whose frames are filled with those levels."""
    values = torch.tensor(levels, dtype=torch.float32)
    return values[..., None, None, None].expand(*values.shape, channels, size, size).clone()


# Per clip, three samples over three frames. Clip 0: sample 0 has the brightest single frame but sample 1
# the brightest average; sample 2 is the darkest on average. Clip 1: the order is different.
LEVELS = [
    [[0.9, 0.1, 0.1], [0.5, 0.5, 0.5], [0.2, 0.2, 0.2]],
    [[0.3, 0.3, 0.3], [0.6, 0.7, 0.8], [0.05, 0.6, 0.05]],
]


def test_best_of_n_keeps_best_time_average_per_clip():
    scores = torch.tensor(LEVELS)
    assert torch.equal(best_of_n(scores, higher_is_better=True), torch.tensor([LEVELS[0][1], LEVELS[1][1]]))
    assert torch.equal(best_of_n(scores, higher_is_better=False), torch.tensor([LEVELS[0][2], LEVELS[1][2]]))


def test_score_samples_matches_metric_on_each_sample():
    truth = torch.rand(2, 3, 1, 16, 16)
    samples = torch.rand(2, 4, 3, 1, 16, 16)
    scores = score_samples(samples, truth, [FrameMetric("psnr", frames.psnr, True)])["psnr"]
    assert scores.shape == (2, 4, 3)
    for sample in range(4):
        torch.testing.assert_close(scores[:, sample], frames.psnr(samples[:, sample], truth))
    with pytest.raises(ValueError, match="do not match truth"):
        score_samples(samples, truth[:, :2], [BRIGHTNESS])


def test_summarize_ci_and_curve():
    curves = torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 8.0], [2.0, 0.0, 1.0], [6.0, 2.0, 1.0]])
    summary = summarize(curves)
    clip_means = curves.double().mean(dim=1).numpy()
    assert summary.mean == pytest.approx(clip_means.mean())
    assert summary.ci95 == pytest.approx(1.96 * clip_means.std() / math.sqrt(4))
    assert summary.curve == pytest.approx(curves.double().mean(dim=0).tolist())
    column_std = curves.double().numpy().std(axis=0)
    assert summary.curve_ci95 == pytest.approx((1.96 * column_std / 2).tolist())
    assert np.mean(summary.curve) == pytest.approx(summary.mean)


@pytest.mark.parametrize("sample_chunk", [None, 1, 2])
def test_run_selects_each_metric_separately_in_chunks(sample_chunk):
    futures = constant_videos(LEVELS)
    clips = torch.zeros(2, 2 + 3, 1, 16, 16, dtype=torch.uint8)
    model = ScriptedFutures(futures)
    result = run_best_of_n(
        model,
        [clips],
        cond_frames=2,
        pred_frames=3,
        num_samples=3,
        metrics=[BRIGHTNESS, DARKNESS],
        sample_chunk=sample_chunk,
    )
    expected_calls = {None: [3], 1: [1, 1, 1], 2: [2, 1]}[sample_chunk]
    assert model.calls == expected_calls
    assert result.num_clips == 2
    brightness, darkness = result.metrics["brightness"], result.metrics["darkness"]
    assert brightness.curve == pytest.approx([(0.5 + 0.6) / 2, (0.5 + 0.7) / 2, (0.5 + 0.8) / 2])
    assert darkness.curve == pytest.approx([(0.2 + 0.05) / 2, (0.2 + 0.6) / 2, (0.2 + 0.05) / 2])
    assert brightness.mean == pytest.approx((0.5 + 0.7) / 2)
    assert result.fvd is None


def test_run_over_batches_with_fvd_features():
    futures = constant_videos([[[0.1 * (clip + sample)] * 4 for sample in range(3)] for clip in range(4)])
    clips = (torch.rand(4, 6, 1, 16, 16) * 255).to(torch.uint8)
    projection = torch.randn(6 * 16 * 16, NUM_CLASSES)
    seen_lengths = []

    def video_features(videos):
        seen_lengths.append(videos.shape[1])
        return videos.flatten(1) @ projection

    model = ScriptedFutures(futures)
    model.predict = _per_batch(futures)
    result = run_best_of_n(
        model,
        [clips[:2], clips[2:]],
        cond_frames=2,
        pred_frames=4,
        num_samples=3,
        metrics=[BRIGHTNESS],
        video_features=video_features,
        fvd_draws=2,
    )
    assert result.num_clips == 4
    assert set(seen_lengths) == {6}  # conditioning + future, for real and fake videos
    assert len(seen_lengths) == 2 * (1 + 2)  # per batch: the real videos and the two draws
    mean, ci95 = result.fvd
    assert mean > 0 and ci95 >= 0
    with pytest.raises(ValueError, match="fvd_draws"):
        run_best_of_n(
            model,
            [clips],
            cond_frames=2,
            pred_frames=4,
            num_samples=3,
            metrics=[BRIGHTNESS],
            video_features=video_features,
            fvd_draws=4,
        )


def _per_batch(futures):
    """predict() serving successive batches of clips: the futures of clips [seen, seen + b)."""
    seen = [0]

    def predict(cond_frames, horizon, num_samples, dt=None):
        batch = cond_frames.shape[0]
        chunk = futures[seen[0] : seen[0] + batch, :num_samples, :horizon]
        seen[0] += batch
        return torch.cat([cond_frames[:, None].expand(-1, num_samples, -1, -1, -1, -1), chunk], dim=2)

    return predict


def test_run_with_tiny_srvp_and_frame_metrics():
    config = SRVPConfig(**SMALLEST, dt=0.5)
    model = SRVP(config).eval()
    clips = (torch.rand(3, 5, 1, 64, 64) * 255).to(torch.uint8)
    metrics = [FrameMetric("psnr", frames.psnr, True), FrameMetric("ssim", frames.ssim, True)]
    result = run_best_of_n(
        model,
        [clips[:2], clips[2:]],
        cond_frames=2,
        pred_frames=3,
        num_samples=4,
        metrics=metrics,
        dt=1 / 3,
        sample_chunk=3,
        precision="bf16",
    )
    assert result.num_clips == 3
    assert result.metrics["psnr"].mean > 0 and len(result.metrics["psnr"].curve) == 3
    assert -1 <= result.metrics["ssim"].mean <= 1
    with pytest.raises(ValueError, match="expected \\(b, T >= 6"):
        run_best_of_n(model, [clips], cond_frames=2, pred_frames=4, num_samples=2, metrics=metrics)
    with pytest.raises(ValueError, match="test set is empty"):
        run_best_of_n(model, [], cond_frames=2, pred_frames=3, num_samples=2, metrics=metrics)


def test_run_scores_model_free_baselines_on_the_same_clips():
    # Conditioning frames of levels 40 then 200 (uint8); the baselines' futures are known constants, so
    # their brightness is: black 0, last frame 200/255, mean frame the given 0.3, at every step and clip.
    clips = torch.zeros(2, 2 + 3, 1, 16, 16, dtype=torch.uint8)
    clips[:, 0], clips[:, 1] = 40, 200
    model = ScriptedFutures(constant_videos(LEVELS))
    mean_frame = torch.full((1, 16, 16), 0.3)
    result = run_best_of_n(
        model,
        [clips],
        cond_frames=2,
        pred_frames=3,
        num_samples=3,
        metrics=[BRIGHTNESS, DARKNESS],
        mean_frame=mean_frame,
    )
    assert set(result.baselines) == {"black", "last_frame", "mean_frame"}
    expected = {"black": 0.0, "last_frame": 200 / 255, "mean_frame": 0.3}
    for baseline, level in expected.items():
        for metric in ("brightness", "darkness"):
            summary = result.baselines[baseline][metric]
            assert summary.mean == pytest.approx(level) and summary.curve == pytest.approx([level] * 3)
    # The model's own results are unchanged by the baselines.
    assert result.metrics["brightness"].mean == pytest.approx((0.5 + 0.7) / 2)
    without = run_best_of_n(
        ScriptedFutures(constant_videos(LEVELS)),
        [clips],
        cond_frames=2,
        pred_frames=3,
        num_samples=3,
        metrics=[BRIGHTNESS],
    )
    assert without.baselines == {}


class WholeClipFutures(nn.Module):
    """predict() returning given whole clips (b, n, cond + horizon, c, h, w): reconstructions of the
    conditioning frames included, each sample with its own."""

    def __init__(self, clips: torch.Tensor) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.clips = clips

    def predict(self, cond_frames, horizon, num_samples, dt=None):
        return self.clips[:, :num_samples]


@pytest.mark.parametrize(("with_conditioning", "expected"), [(False, 0.5), (True, 0.2)])
def test_selection_on_conditioning_and_predicted_frames(with_conditioning, expected):
    # Sample 0 reconstructs the 2 conditioning frames brightly (0.9) but predicts dimly (0.2); sample 1 the
    # reverse (0.1, then 0.5). Over predicted frames sample 1 wins; over all five frames (the official
    # validation) sample 0 wins, (2 * 0.9 + 3 * 0.2) / 5 > (2 * 0.1 + 3 * 0.5) / 5, and its predicted
    # frames are what is reported.
    clips = constant_videos([[[0.9, 0.9, 0.2, 0.2, 0.2], [0.1, 0.1, 0.5, 0.5, 0.5]]])
    truth = torch.zeros(1, 5, 1, 16, 16, dtype=torch.uint8)
    result = run_best_of_n(
        WholeClipFutures(clips),
        [truth],
        cond_frames=2,
        pred_frames=3,
        num_samples=2,
        metrics=[BRIGHTNESS],
        select_with_conditioning=with_conditioning,
    )
    assert result.metrics["brightness"].curve == pytest.approx([expected] * 3)
