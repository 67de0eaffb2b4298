"""Tiny MNIST-format (idx) files for tests: the real reader and generator run on them, no download needed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from srvp.video_pred.data.mnist import MNIST_FILES

TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    """Write `array` in the idx format by hand (magic, big-endian dims, big-endian data)."""
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    header = struct.pack(">BBBB", 0, 0, TYPE_CODES[big_endian.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + big_endian.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_fake_split(folder: Path, split: str, count: int = 5, seed: int = 0) -> None:
    """Random 28x28 'digits' and labels for `split` ('train' or 'test'), images gzipped, labels raw."""
    rng = np.random.default_rng(seed)
    images_name, labels_name = MNIST_FILES[split]
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{images_name}.gz", rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), True)
    write_idx(folder / labels_name, rng.integers(0, 10, count, dtype=np.uint8), False)


def write_fake_mnist(folder: Path, count: int = 40) -> Path:
    """Both splits of a tiny fake MNIST in `folder` (use with dataset.verify_md5=false)."""
    write_fake_split(folder, "train", count, seed=0)
    write_fake_split(folder, "test", count, seed=1)
    return folder
