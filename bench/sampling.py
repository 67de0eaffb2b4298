"""Best-of-N evaluation time: drawing N futures for a batch of test clips end to end, metrics included.

Times `srvp.video_pred.protocol.run_best_of_n` (PSNR and SSIM) on random clips with the paper's SM-MNIST, KTH or
BAIR model, and beside it the parts: `predict` alone (encoding, inference, the latent rollout, decoding),
the decoder alone on as many latent states, and the metrics alone on as many frames. If decoding is most of
the end-to-end time, the evaluation is bound by the convolutions, not by Python overhead. Each setting runs
with the factorised decoder (the default: a clip's skips enter the decoder once for all its samples and
frames) and with the literal one (skips concatenated to every decoded frame), side by side; the speed-up
is literal / factorised.
Run: `.venv/bin/python -m bench.sampling --device cpu --clips 2 --samples 100 --sample-chunk 25`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from bench.timing import seconds
from bench.train_step import DATASETS, TrainSetting, train_setting
from srvp.common.frame_metrics import psnr, ssim
from srvp.common.runtime import autocast
from srvp.video_pred.protocol import FrameMetric, run_best_of_n, score_samples
from srvp.worldmodel import SRVP

METRICS = [FrameMetric("psnr", psnr, True), FrameMetric("ssim", ssim, True)]


@dataclass(frozen=True)
class SamplingTiming:
    """Seconds of best-of-N on a batch of clips end to end, and of its parts run alone."""

    end_to_end: float
    predict: float
    decode: float
    metrics: float


def time_sampling(
    setting: TrainSetting,
    clips: int,
    samples: int,
    sample_chunk: int | None,
    bf16: bool,
    device: torch.device,
    factorised: bool = True,
) -> SamplingTiming:
    """Time best-of-`samples` on `clips` random clips with `setting`'s model (random weights: the work does
    not depend on them), then predict, decode and the metrics alone on the same amounts of work."""
    model_config, cond, pred = setting.model, setting.cond_frames, setting.pred_frames
    torch.manual_seed(0)
    model = SRVP(model_config).to(device).eval()
    model.decoder.factorised = factorised
    videos = torch.randint(0, 256, (clips, cond + pred, model_config.channels, 64, 64), dtype=torch.uint8)
    context = videos[:, :cond].to(device)
    chunk = sample_chunk or samples
    calls = range(0, samples, chunk)
    precision = "bf16" if bf16 else "fp32"
    with torch.inference_mode(), autocast(device, precision):
        model.predict(context, pred, 1)  # warm-up
        end_to_end = seconds(
            lambda: run_best_of_n(
                model,
                [videos],
                cond_frames=cond,
                pred_frames=pred,
                num_samples=samples,
                metrics=METRICS,
                sample_chunk=sample_chunk,
                precision=precision,
            ),
            device,
        )
        predict = seconds(lambda: [model.predict(context, pred, chunk) for _ in calls], device)
        states = torch.randn(clips * chunk, cond + pred, model_config.y_dim, device=device)
        content = torch.randn(clips * chunk, model_config.content_dim, device=device)
        skips = None
        if model_config.skip:
            skips = model.encode(context[:1, :1]).blocks
            skips = [block[:, 0].expand(clips, *block.shape[2:]) for block in skips]  # one per clip
        decode = seconds(lambda: [model.decode(states, content, skips) for _ in calls], device)
    futures = torch.rand(clips, chunk, pred, model_config.channels, 64, 64, device=device)
    truth = torch.rand(clips, pred, model_config.channels, 64, 64, device=device)
    metrics = seconds(lambda: [score_samples(futures, truth, METRICS) for _ in calls], device)
    return SamplingTiming(end_to_end, predict, decode, metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["kth", "smmnist"])
    parser.add_argument("--clips", type=int, default=2, help="test clips in the batch")
    parser.add_argument("--samples", type=int, default=100, help="futures drawn per clip (best-of-N)")
    parser.add_argument("--sample-chunk", type=int, default=None, help="samples per predict call")
    parser.add_argument("--bf16", action="store_true", help="generate under bf16 autocast (CUDA)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.sampling: error: --device cuda but CUDA is not available")
    device = torch.device(args.device)
    print(f"device={device} threads={torch.get_num_threads()} clips={args.clips} samples={args.samples}")
    print(
        f"{'setting':<8} {'decoder':<10} {'end-to-end s':>12} {'predict s':>10} {'decode s':>9} "
        f"{'metrics s':>10} {'decode share':>12} {'speed-up':>8}"
    )
    for name in args.datasets:
        setting = train_setting(name)
        literal, factorised = (
            time_sampling(setting, args.clips, args.samples, args.sample_chunk, args.bf16, device, factorised=mode)
            for mode in (False, True)
        )
        for label, timing in (("literal", literal), ("factorised", factorised)):
            print(
                f"{name:<8} {label:<10} {timing.end_to_end:>12.2f} {timing.predict:>10.2f} {timing.decode:>9.2f} "
                f"{timing.metrics:>10.2f} {timing.decode / timing.end_to_end:>11.0%} "
                f"{literal.end_to_end / timing.end_to_end:>7.2f}x"
            )


if __name__ == "__main__":
    main()
