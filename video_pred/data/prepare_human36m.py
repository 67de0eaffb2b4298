"""Human3.6M from its subject video folders into the prepared layout (see prepared.py).

Raw input: `S1/Videos/*.mp4`, `S5/...`, ..., `S11/...` (50 Hz, 1000x1000). Every 8th frame is kept
(6.25 Hz), cropped to the box (100, 100, 900, 900) -- the centre 800x800 -- then Lanczos-resized to 64x64
RGB with PIL, crop then resize as the official code does. Subjects 1, 5, 6, 7, 8 are training videos
(5% held out for validation, seeded), 9 and 11 test videos; videos with "ALL" in their name and files
starting with "_" are skipped. The fixed test set is 1000 seeded 53-frame clips (8 + 45) of the 6.25 Hz
videos. The official code keeps 50 Hz videos and subsamples when loading; storing the subsampled frames
is 8 times smaller, at the cost of the 7 other sub-sampling phases for training clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from srvp.video_pred.data.avdecode import iter_rgb_frames
from srvp.video_pred.data.prepared import FRAME_SIZE, VALIDATION_FRACTION, RawVideo, assign_validation, prepare_videos

TRAIN_SUBJECTS = (1, 5, 6, 7, 8)
TEST_SUBJECTS = (9, 11)
CROP_BOX = (100, 100, 900, 900)
SUBSAMPLE = 8
TEST_CLIP_LENGTH = 53
TEST_CLIP_COUNT = 1000


@dataclass(frozen=True)
class HumanVideo(RawVideo):
    """One Human3.6M mp4 with the crop box (left, upper, right, lower) and the frame subsampling."""

    path: str = ""
    crop_box: tuple[int, int, int, int] = CROP_BOX
    subsample: int = SUBSAMPLE

    def decode(self) -> np.ndarray:
        frames = []
        for rgb in iter_rgb_frames(self.path, every=self.subsample):
            height, width = rgb.shape[:2]
            if self.crop_box[2] > width or self.crop_box[3] > height:
                raise ValueError(f"frames are {width}x{height}, smaller than the crop box {self.crop_box}")
            image = Image.fromarray(rgb).crop(self.crop_box)
            frames.append(np.asarray(image.resize((FRAME_SIZE, FRAME_SIZE), Image.Resampling.LANCZOS)))
        return np.stack(frames).transpose(0, 3, 1, 2)  # (T, 3, 64, 64)


def _video_id(subject: int, path: Path) -> str:
    """`S<subject>_<file stem>` with blanks turned into underscores ("Directions 1.54138969")."""
    return f"S{subject}_" + "_".join(path.stem.split())


def find_human36m_videos(
    raw: str | Path, crop_box: tuple[int, int, int, int] = CROP_BOX, subsample: int = SUBSAMPLE
) -> list[HumanVideo]:
    """List the usable Human3.6M videos of the train and test subjects under `raw`."""
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise FileNotFoundError(f"Human3.6M raw folder {raw} does not exist")
    videos = []
    for subject in TRAIN_SUBJECTS + TEST_SUBJECTS:
        split = "train" if subject in TRAIN_SUBJECTS else "test"
        for path in sorted((raw / f"S{subject}" / "Videos").glob("*.mp4")):
            if path.name.startswith("_") or "ALL" in path.name:
                continue
            videos.append(
                HumanVideo(
                    video_id=_video_id(subject, path),
                    split=split,
                    source=str(path),
                    path=str(path),
                    crop_box=crop_box,
                    subsample=subsample,
                )
            )
    expected = "subject folders S1, S5, S6, S7, S8 (train) and S9, S11 (test), each holding Videos/*.mp4"
    if not videos:
        raise ValueError(f"no Human3.6M video found in {raw}: expected {expected}")
    for split in ("train", "test"):
        if not any(video.split == split for video in videos):
            raise ValueError(f"no Human3.6M {split} video found in {raw}: expected {expected}")
    return videos


def prepare_human36m(
    raw: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    seed: int = 42,
    crop_box: tuple[int, int, int, int] = CROP_BOX,
    subsample: int = SUBSAMPLE,
    test_clip_count: int = TEST_CLIP_COUNT,
    test_clip_length: int = TEST_CLIP_LENGTH,
    val_fraction: float = VALIDATION_FRACTION,
) -> dict[str, Any]:
    """Prepare Human3.6M from `raw` into `out` (resumable); return the written metadata.

    `crop_box` and `subsample` default to the real 1000x1000, 50 Hz values; tests pass smaller ones.
    """
    videos = find_human36m_videos(raw, crop_box, subsample)
    return prepare_videos(
        "human36m",
        assign_validation(videos, val_fraction, seed),
        out,
        channels=3,
        seed=seed,
        test_clip_length=test_clip_length,
        test_clip_count=test_clip_count,
        workers=workers,
        source={
            "raw": str(Path(raw).resolve()),
            "crop_box": list(crop_box),
            "subsample": subsample,
            "resize": "PIL Lanczos",
            "val_fraction": val_fraction,
        },
    )
