"""BAIR robot pushing (softmotion30_44k) from its TFRecords into the prepared layout (see prepared.py).

Raw input: the extracted `softmotion30_44k` folder (or its parent) with `train/*.tfrecords` and
`test/*.tfrecords`. Each record is a `tf.train.Example` holding one 30-frame episode. The Examples also
hold `{i}/image_main/encoded`, `{i}/action` and `{i}/endeffector_pos`; like the official SRVP (and SVG)
conversion we read only `{i}/image_aux1/encoded`, raw 64x64x3 RGB bytes, frames i = 0, 1, ... until the
first missing one. The dataset's own train/test split is kept (no validation split), and the test set is
every test video from frame 0 (30-frame clips: 2 conditioning + 28 predicted frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srvp.video_pred.data.prepared import FRAME_SIZE, VALIDATION_FRACTION, RawVideo, assign_validation, prepare_videos
from srvp.video_pred.data.tfrecord import TFRecordError, iter_record_spans, parse_example, read_record

FRAME_FEATURE = "{}/image_aux1/encoded"
FRAME_BYTES = FRAME_SIZE * FRAME_SIZE * 3
TEST_CLIP_LENGTH = 30


@dataclass(frozen=True)
class BAIRRecord(RawVideo):
    """One episode: the record at `offset` (of `length` bytes) inside the TFRecord file `path`."""

    path: str = ""
    offset: int = 0
    length: int = 0

    def decode(self) -> np.ndarray:
        features = parse_example(read_record(self.path, self.offset, self.length))
        frames = []
        while (name := FRAME_FEATURE.format(len(frames))) in features:
            values = features[name]
            if len(values) != 1 or not isinstance(values[0], bytes) or len(values[0]) != FRAME_BYTES:
                raise ValueError(f"feature {name} is not one raw 64x64x3 RGB frame of {FRAME_BYTES} bytes")
            frames.append(np.frombuffer(values[0], np.uint8).reshape(FRAME_SIZE, FRAME_SIZE, 3))
        if not frames:
            raise ValueError(f"the Example has no {FRAME_FEATURE.format(0)} feature")
        return np.stack(frames).transpose(0, 3, 1, 2)  # (T, 3, 64, 64)


def _raw_root(raw: Path) -> Path:
    """`raw` itself, or its `softmotion30_44k` sub-folder when given the folder the archive was extracted in."""
    nested = raw / "softmotion30_44k"
    return nested if nested.is_dir() and not (raw / "train").is_dir() else raw


def find_bair_records(raw: str | Path) -> tuple[list[BAIRRecord], dict[str, str]]:
    """List every record of `train/*.tfrecords` and `test/*.tfrecords` under `raw`.

    Returns the records and `{file: reason}` for truncated or corrupt files, whose complete records
    before the damage are kept.
    """
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise FileNotFoundError(f"BAIR raw folder {raw} does not exist")
    root = _raw_root(raw)
    files = {split: sorted((root / split).glob("*.tfrecords")) for split in ("train", "test")}
    for split, paths in files.items():
        if not paths:
            raise ValueError(
                f"no BAIR {split} records in {raw}: expected softmotion30_44k/{{train,test}}/*.tfrecords "
                "(the folder extracted from bair_robot_pushing_dataset_v0.tar)"
            )
    records: list[BAIRRecord] = []
    damaged: dict[str, str] = {}
    for split, paths in files.items():
        for path in paths:
            try:
                for index, (offset, length) in enumerate(iter_record_spans(path)):
                    records.append(
                        BAIRRecord(
                            video_id=f"{path.stem}_{index:03d}",
                            split=split,
                            source=f"{path}#{index}",
                            path=str(path),
                            offset=offset,
                            length=length,
                        )
                    )
            except TFRecordError as error:
                damaged[str(path)] = f"records after the damage lost: {error}"
    return records, damaged


def prepare_bair(raw: str | Path, out: str | Path, *, workers: int = 1, seed: int = 42) -> dict[str, Any]:
    """Prepare BAIR from `raw` into `out` (resumable); return the written metadata.

    As the official code, 5% of the training videos are held out as a validation split, so training uses
    the other 95%; the test split is the dataset's own."""
    records, damaged = find_bair_records(raw)
    return prepare_videos(
        "bair",
        assign_validation(records, VALIDATION_FRACTION, seed),
        out,
        channels=3,
        seed=seed,
        test_clip_length=TEST_CLIP_LENGTH,
        test_clip_count=None,
        workers=workers,
        skipped=damaged,
        source={"raw": str(Path(raw).resolve()), "frames": FRAME_FEATURE.format("{i}")},
    )
