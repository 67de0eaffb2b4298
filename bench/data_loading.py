"""Loader throughput of PreparedVideos: samples/s through a DataLoader with 2 workers.

Builds synthetic prepared datasets shaped like KTH (grey, long videos) and BAIR (RGB, 30-frame videos)
in a temporary folder with the real writer, then times random training clips and fixed test clips.
Run: `.venv/bin/python bench/data_loading.py [--batches N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from video_pred.data.prepared import PreparedVideos, RawVideo, prepare_videos


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


def samples_per_second(dataset: PreparedVideos, batch_size: int, batches: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not loading
    start, count = time.perf_counter(), 0
    for _, batch in zip(range(batches), iterator, strict=False):
        count += len(batch)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kth = build(Path(tmp) / "kth", channels=1, frames=300, videos=60, clip_length=40)
        bair = build(Path(tmp) / "bair", channels=3, frames=30, videos=600, clip_length=30)
        for name, root, split, seq_len, batch, fixed in (
            ("kth-like train", kth, "train", 20, 100, False),
            ("kth-like test", kth, "test", 40, 100, True),
            ("bair-like train", bair, "train", 12, 192, False),
            ("bair-like test", bair, "test", 30, 192, True),
        ):
            dataset = PreparedVideos(root, split, seq_len, fixed_clips=fixed, epoch_size=None if fixed else 100_000)
            rows.append((name, seq_len, batch, samples_per_second(dataset, batch, args.batches)))
    print(f"{'dataset':<16} {'frames':>6} {'batch':>6} {'samples/s':>10}   (DataLoader, 2 workers)")
    for name, seq_len, batch, rate in rows:
        print(f"{name:<16} {seq_len:>6} {batch:>6} {rate:>10.0f}")


if __name__ == "__main__":
    main()
