"""The SRVP best-of-N evaluation protocol (docs/benchmarks.md) as importable, testable functions.

For every fixed test clip, N futures are drawn from the prior given the conditioning frames; each metric
scores every frame of every sample against the truth, and for each clip and each metric separately the
sample with the best time-averaged value is kept (PSNR and SSIM higher is better, LPIPS lower). Results
are means over frames then clips with 95% confidence intervals, and per-timestep curves of the kept
samples. FVD compares I3D features of (conditioning + truth) with (conditioning + one random sample),
over several independent draws. The model-free baselines (`srvp.video_pred.baselines`) are scored on the same
clips with the same metrics, so every result says what a prediction without a model reaches.

Generation and scoring are batched: all samples of a batch of clips come from one `predict` call (or a
few, `sample_chunk` samples at a time, to bound memory), and metrics run on all of them at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor
from tqdm import tqdm

from srvp.common import frame_metrics as frames
from srvp.common.runtime import autocast
from srvp.common.stats import mean_ci95
from srvp.video_pred.baselines import BASELINES, baseline_futures
from srvp.video_pred.metrics.fvd import fvd_mean_ci95
from srvp.worldmodel import SRVP
from srvp.worldmodel.model import to_unit_float


@dataclass(frozen=True)
class FrameMetric:
    """A per-frame video metric: `compute(pred, truth)`, (M, T, C, H, W) floats in [0, 1] -> (M, T)."""

    name: str
    compute: Callable[[Tensor, Tensor], Tensor]
    higher_is_better: bool


FRAME_METRICS = {
    "psnr": FrameMetric("psnr", frames.psnr, higher_is_better=True),
    "ssim": FrameMetric("ssim", frames.ssim, higher_is_better=True),
}
"""The per-frame metrics computed directly on videos (LPIPS needs its network: `per_image_metric`)."""


@dataclass(frozen=True)
class MetricSummary:
    """Best-of-N result of one metric: mean over frames then clips, and the per-timestep curve."""

    mean: float
    ci95: float
    """Half-width of the 95% confidence interval of `mean` over clips, 1.96 std / sqrt(clips)."""
    curve: list[float]
    """Mean over clips of the kept sample's value at each predicted frame."""
    curve_ci95: list[float]
    """95% confidence half-width of each `curve` value."""


@dataclass(frozen=True)
class ProtocolResult:
    """Everything the protocol measured on a test set."""

    num_clips: int
    metrics: dict[str, MetricSummary]
    fvd: tuple[float, float] | None
    """FVD mean over the draws and its 95% half-width, or None when not computed."""
    baselines: dict[str, dict[str, MetricSummary]]
    """Model-free baselines scored on the same clips: {baseline: {metric: summary}}; empty when not run."""


def per_image_metric(name: str, distance: Callable[[Tensor, Tensor], Tensor], higher_is_better: bool) -> FrameMetric:
    """Turn an image metric, (N, C, H, W) x 2 -> (N,) (e.g. LPIPS), into a per-frame video metric."""

    def compute(pred: Tensor, truth: Tensor) -> Tensor:
        images = [rearrange(video, "m t c h w -> (m t) c h w") for video in (pred, truth)]
        values = distance(*images)
        return rearrange(values, "(m t) -> m t", m=pred.shape[0])

    return FrameMetric(name, compute, higher_is_better)


def score_samples(samples: Tensor, truth: Tensor, metrics: Sequence[FrameMetric]) -> dict[str, Tensor]:
    """Score every frame of every sample: samples (b n t c h w), truth (b t c h w) -> {name: (b n t)}.

    The truth is broadcast over the samples so each metric runs once on all b * n videos.
    """
    if samples.ndim != 6 or samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(
            f"samples {tuple(samples.shape)} do not match truth {tuple(truth.shape)} as (b n t c h w) and (b t c h w)"
        )
    num_samples = samples.shape[1]
    flat_samples = rearrange(samples, "b n t c h w -> (b n) t c h w")
    flat_truth = repeat(truth, "b t c h w -> (b n) t c h w", n=num_samples)
    return {
        metric.name: rearrange(metric.compute(flat_samples, flat_truth).float(), "(b n) t -> b n t", n=num_samples)
        for metric in metrics
    }


def best_of_n(scores: Tensor, higher_is_better: bool, keep_from: int = 0) -> Tensor:
    """Per-frame values (b, t - keep_from) from frame `keep_from` on of the sample whose score, averaged over
    all t frames, is best, from scores (b n t). With keep_from > 0 the sample is chosen on frames it does not
    report (the official validation picks by PSNR over reconstructed conditioning and predicted frames, then
    scores the predicted ones)."""
    time_averaged = scores.mean(dim=2)
    best = time_averaged.argmax(dim=1) if higher_is_better else time_averaged.argmin(dim=1)
    return scores[torch.arange(scores.shape[0], device=scores.device), best, keep_from:]


def summarize(best_curves: Tensor) -> MetricSummary:
    """Summary of the kept samples' per-frame values (clips, t): clip means -> mean +- CI, and the curve."""
    clip_means = best_curves.double().mean(dim=1)
    mean, ci95 = mean_ci95(clip_means)
    per_step = [mean_ci95(best_curves[:, step].double()) for step in range(best_curves.shape[1])]
    return MetricSummary(mean, ci95, [value for value, _ in per_step], [width for _, width in per_step])


def _sample_chunks(num_samples: int, sample_chunk: int | None) -> list[int]:
    """Sizes of the successive `predict` calls drawing `num_samples` samples, each at most `sample_chunk`."""
    chunk = num_samples if sample_chunk is None else sample_chunk
    if num_samples < 1 or chunk < 1:
        raise ValueError(f"num_samples={num_samples} and sample_chunk={sample_chunk} must be positive")
    return [min(chunk, num_samples - start) for start in range(0, num_samples, chunk)]


class _BestOfNRun:
    """Accumulates, batch after batch, the kept samples' per-frame values, the baselines' per-frame values
    and the FVD features."""

    def __init__(self, metrics: Sequence[FrameMetric], fvd_draws: int, baselines: Sequence[str]) -> None:
        self.metrics = metrics
        self.best: dict[str, list[Tensor]] = {metric.name: [] for metric in metrics}
        self.baselines: dict[str, dict[str, list[Tensor]]] = {
            baseline: {metric.name: [] for metric in metrics} for baseline in baselines
        }
        self.real_features: list[Tensor] = []
        self.fake_features: list[list[Tensor]] = [[] for _ in range(fvd_draws)]

    def add_scores(self, scores: dict[str, list[Tensor]], keep_from: int = 0) -> None:
        """Keep the best sample of each clip per metric, from per-chunk scores {name: [(b n_i t), ...]}, and
        its values from frame `keep_from` on."""
        for metric in self.metrics:
            kept = best_of_n(torch.cat(scores[metric.name], dim=1), metric.higher_is_better, keep_from)
            self.best[metric.name].append(kept.cpu())

    def add_baselines(self, futures: dict[str, Tensor], truth: Tensor) -> None:
        """Score each baseline's future (b t c h w) against the truth with every metric."""
        for baseline, future in futures.items():
            for name, values in score_samples(future[:, None], truth, self.metrics).items():
                self.baselines[baseline][name].append(values[:, 0].cpu())

    def result(self) -> ProtocolResult:
        if not any(self.best.values()) and not self.real_features:
            raise ValueError("the test set is empty: no clip was evaluated")
        curves = {name: torch.cat(values) for name, values in self.best.items()}
        clip_count = len(next(iter(curves.values()))) if curves else sum(map(len, self.real_features))
        fvd = None
        if self.fake_features:
            fake_features = [torch.cat(parts) for parts in self.fake_features]
            fvd = fvd_mean_ci95(torch.cat(self.real_features), fake_features)
        baselines = {
            baseline: {name: summarize(torch.cat(values)) for name, values in per_metric.items()}
            for baseline, per_metric in self.baselines.items()
        }
        return ProtocolResult(clip_count, {name: summarize(curve) for name, curve in curves.items()}, fvd, baselines)


def run_best_of_n(
    model: SRVP,
    clip_batches: Iterable[Tensor],
    *,
    cond_frames: int,
    pred_frames: int,
    num_samples: int,
    metrics: Sequence[FrameMetric],
    dt: float | None = None,
    sample_chunk: int | None = None,
    precision: str = "fp32",
    video_features: Callable[[Tensor], Tensor] | None = None,
    fvd_draws: int = 5,
    num_clips: int | None = None,
    mean_frame: Tensor | None = None,
    select_with_conditioning: bool = False,
    progress_bar: bool = True,
) -> ProtocolResult:
    """Run the protocol on batches of uint8 clips (b, T >= cond + pred, c, h, w) with `model` on its device.

    Every sample is generated from the prior (`model.predict`) under `precision` (auto, bf16 or fp32, as
    `srvp.common.runtime.autocast`) while metrics stay float32. With `video_features` (I3D: (b t c h w) in [0, 1]
    -> (b 400)), FVD between conditioning + truth and conditioning + prediction is computed for `fvd_draws` draws, draw
    j taking sample j of every clip (samples are i.i.d., so each is one random future per clip).
    With `mean_frame` (c h w, the per-pixel mean training frame), the model-free baselines are scored too.
    With `select_with_conditioning`, each metric picks the sample by its average over the reconstructed
    conditioning frames and the predicted ones (the official validation), and still reports the predicted
    frames. `num_clips` only sizes the progress bar.
    """
    if not metrics and video_features is None:
        raise ValueError("nothing to evaluate: give at least one metric or enable FVD")
    if video_features is not None and not 2 <= fvd_draws <= num_samples:
        raise ValueError(f"FVD needs 2 <= fvd_draws ({fvd_draws}) <= num_samples ({num_samples})")
    chunks = _sample_chunks(num_samples, sample_chunk)
    device = next(model.parameters()).device
    baselines = BASELINES if mean_frame is not None and metrics else ()
    run = _BestOfNRun(metrics, fvd_draws if video_features is not None else 0, baselines)
    progress = tqdm(total=num_clips, desc="best-of-N", unit="clip", dynamic_ncols=True, disable=not progress_bar)
    scored_from = 0 if select_with_conditioning else cond_frames
    with torch.inference_mode():
        for clips in clip_batches:
            if clips.ndim != 5 or clips.shape[1] < cond_frames + pred_frames:
                raise ValueError(
                    f"test clips of shape {tuple(clips.shape)}: expected (b, T >= "
                    f"{cond_frames + pred_frames}, c, h, w) for {cond_frames} + "
                    f"{pred_frames} frames"
                )
            videos = to_unit_float(clips[:, : cond_frames + pred_frames].to(device))
            context, truth = videos[:, :cond_frames], videos[:, cond_frames:]
            scores: dict[str, list[Tensor]] = {metric.name: [] for metric in metrics}
            drawn = 0
            for count in chunks:
                with autocast(device, precision):
                    samples = model.predict(context, pred_frames, count, dt=dt)[:, :, scored_from:].float()
                for name, values in score_samples(samples, videos[:, scored_from:], metrics).items():
                    scores[name].append(values)
                for draw in range(drawn, min(drawn + count, len(run.fake_features))):
                    fake = torch.cat([context, samples[:, draw - drawn, -pred_frames:]], dim=1)
                    run.fake_features[draw].append(video_features(fake).float().cpu())
                drawn += count
            run.add_scores(scores, keep_from=cond_frames - scored_from)
            if baselines:
                run.add_baselines(baseline_futures(context, pred_frames, mean_frame), truth)
            if video_features is not None:
                run.real_features.append(video_features(videos).float().cpu())
            progress.update(clips.shape[0])
            if metrics:
                name = metrics[0].name
                progress.set_postfix({name: f"{torch.cat(run.best[name]).mean().item():.4g}"})
    progress.close()
    return run.result()
