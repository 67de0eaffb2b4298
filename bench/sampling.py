"""Best-of-N evaluation time: drawing N futures for a batch of test clips end to end, metrics included.

Times `video_pred.protocol.run_best_of_n` (PSNR and SSIM) on random clips with the paper's SM-MNIST or KTH
model, and beside it the parts: `predict` alone (encoding, inference, the latent rollout, decoding) and
the decoder alone on as many latent states. If decoding is most of the end-to-end time, the evaluation is
bound by the convolutions, not by Python overhead. Each setting runs with the factorised decoder (the
default: a clip's skips enter the decoder once for all its samples and frames) and with the literal one
(skips concatenated to every decoded frame), side by side; the speed-up is literal / factorised.
Run: `.venv/bin/python bench/sampling.py --device cpu --clips 2 --samples 100 --sample-chunk 25`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import DATASETS, paper_setting, synchronize  # noqa: E402

from video_pred.metrics.frames import psnr, ssim  # noqa: E402
from video_pred.protocol import FrameMetric, run_best_of_n  # noqa: E402
from worldmodel import SRVP  # noqa: E402

COND_PRED = {"smmnist": (5, 20), "kth": (10, 30)}


def seconds(work: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def time_setting(
    name: str, args: argparse.Namespace, device: torch.device, metrics: list[FrameMetric], factorised: bool
) -> tuple[float, float, float]:
    """Seconds of best-of-N end to end, of predict alone and of decode alone, for dataset `name`'s model."""
    model_config, _ = paper_setting(name)
    cond, pred = COND_PRED[name]
    torch.manual_seed(0)
    model = SRVP(model_config).to(device).eval()
    model.decoder.factorised = factorised
    clips = torch.randint(0, 256, (args.clips, cond + pred, model_config.channels, 64, 64), dtype=torch.uint8)
    context = clips[:, :cond].to(device)
    chunk = args.sample_chunk or args.samples
    with torch.inference_mode():
        model.predict(context, pred, 1)  # warm-up
        total = seconds(
            lambda: run_best_of_n(
                model,
                [clips],
                cond_frames=cond,
                pred_frames=pred,
                num_samples=args.samples,
                metrics=metrics,
                sample_chunk=args.sample_chunk,
                autocast=args.bf16,
            ),
            device,
        )
        predict = seconds(lambda: [model.predict(context, pred, chunk) for _ in range(0, args.samples, chunk)], device)
        states = torch.randn(args.clips * chunk, cond + pred, model_config.y_dim, device=device)
        content = torch.randn(args.clips * chunk, model_config.content_dim, device=device)
        skips = None
        if model_config.skip:
            skips = model.encode(context[:1, :1]).blocks
            skips = [block[:, 0].expand(args.clips, *block.shape[2:]) for block in skips]  # one per clip
        decode = seconds(lambda: [model.decode(states, content, skips) for _ in range(0, args.samples, chunk)], device)
    return total, predict, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--clips", type=int, default=2, help="test clips in the batch")
    parser.add_argument("--samples", type=int, default=100, help="futures drawn per clip (best-of-N)")
    parser.add_argument("--sample-chunk", type=int, default=None, help="samples per predict call")
    parser.add_argument("--bf16", action="store_true", help="generate under bf16 autocast (CUDA)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/sampling.py: error: --device cuda but CUDA is not available")
    device = torch.device(args.device)
    metrics = [FrameMetric("psnr", psnr, True), FrameMetric("ssim", ssim, True)]
    print(f"device={device} threads={torch.get_num_threads()} clips={args.clips} samples={args.samples}")
    print(
        f"{'setting':<8} {'decoder':<10} {'end-to-end s':>12} {'predict s':>10} {'decode s':>9} "
        f"{'decode share':>12} {'speed-up':>8}"
    )
    for name in args.datasets:
        literal, factorised = (time_setting(name, args, device, metrics, mode) for mode in (False, True))
        for label, (total, predict, decode) in (("literal", literal), ("factorised", factorised)):
            print(
                f"{name:<8} {label:<10} {total:>12.2f} {predict:>10.2f} {decode:>9.2f} {decode / total:>11.0%} "
                f"{literal[0] / total:>7.2f}x"
            )


if __name__ == "__main__":
    main()
