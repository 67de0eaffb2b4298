"""Loader throughput: training sequences/s of Moving MNIST and clips/s of prepared videos.

Moving MNIST: the training stream exactly as `srvp-train` reads it (`training_loader`, the trainer's
default 2 workers, batch 128, 15 frames, 2 digits), generated on the fly in vectorised batches; random
digit images stand in for MNIST (the cost does not depend on them).
Prepared videos: synthetic datasets shaped like KTH (grey, long videos) and BAIR (RGB, 30-frame videos),
written in a temporary folder with the real writer, then random training clips and fixed test clips
through a DataLoader with 2 workers.
Run: `.venv/bin/python -m bench.data_loading [--batches N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from srvp.video_pred.data.prepared import PreparedVideos, RawVideo, prepare_videos
from srvp.video_pred.data.smmnist import StochasticMovingMNIST
from srvp.video_pred.data.stream import training_loader

LOADER_WORKERS = 2
"""The trainer's default `trainer.num_workers`."""


@dataclass(frozen=True)
class NoiseVideo(RawVideo):
    """Random uint8 frames standing in for a decoded video (the loader never looks at the values)."""

    frames: int = 30
    channels: int = 3

    def decode(self) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(self.video_id)) % 2**32)
        return rng.integers(0, 256, (self.frames, self.channels, 64, 64), dtype=np.uint8)


def build(root: Path, channels: int, frames: int, videos: int, clip_length: int) -> Path:
    raw = [
        NoiseVideo(video_id=f"{split}{i:04d}", split=split, source=f"{split}{i}", frames=frames, channels=channels)
        for split, count in (("train", videos), ("test", max(videos // 10, 1)))
        for i in range(count)
    ]
    prepare_videos("bench", raw, root, channels=channels, seed=0, test_clip_length=clip_length, test_clip_count=1000)
    return root


def samples_per_second(batches_of: Iterator[torch.Tensor], batches: int) -> float:
    """Samples/s over `batches` batches, after the first (worker start-up is not loading)."""
    next(batches_of)
    start, count = time.perf_counter(), 0
    for _, batch in zip(range(batches), batches_of, strict=False):
        count += len(batch)
    return count / (time.perf_counter() - start)


def moving_mnist_rate(deterministic: bool, batches: int) -> float:
    """Training sequences/s of the Moving MNIST stream through the trainer's loader."""
    digits = np.random.default_rng(0).integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    dataset = StochasticMovingMNIST(digits, num_digits=2, seq_len=15, deterministic=deterministic, epoch_size=10**9)
    return samples_per_second(
        training_loader(dataset, batch_size=128, start_step=0, num_workers=LOADER_WORKERS, seed=0), batches
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size of the synthetic prepared sets (1: 60 KTH-like, 600 BAIR-like videos)",
    )
    args = parser.parse_args()
    rows = [
        (f"mmnist {kind} train", 15, 128, moving_mnist_rate(kind == "deterministic", args.batches))
        for kind in ("stochastic", "deterministic")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        kth = build(Path(tmp) / "kth", channels=1, frames=300, videos=max(2, round(60 * args.scale)), clip_length=40)
        bair = build(Path(tmp) / "bair", channels=3, frames=30, videos=max(2, round(600 * args.scale)), clip_length=30)
        for name, root, split, seq_len, batch, fixed in (
            ("kth-like train", kth, "train", 20, 100, False),
            ("kth-like test", kth, "test", 40, 100, True),
            ("bair-like train", bair, "train", 12, 192, False),
            ("bair-like test", bair, "test", 30, 192, True),
        ):
            dataset = PreparedVideos(root, split, seq_len, fixed_clips=fixed, epoch_size=None if fixed else 100_000)
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=LOADER_WORKERS)
            rows.append((name, seq_len, batch, samples_per_second(iter(loader), args.batches)))
    print(f"{'dataset':<26} {'frames':>6} {'batch':>6} {'samples/s':>10}   (DataLoader, {LOADER_WORKERS} workers)")
    for name, seq_len, batch, rate in rows:
        print(f"{name:<26} {seq_len:>6} {batch:>6} {rate:>10.0f}")


if __name__ == "__main__":
    main()
