"""KTH actions from its public raw files into the prepared layout (see prepared.py).

Raw input: the per-action zips (boxing.zip, handclapping.zip, handwaving.zip, jogging.zip, running.zip,
walking.zip) and/or extracted `personNN_<action>_dX_uncomp.avi` files (160x120 grey, 25 fps) anywhere under
the raw folder. Each frame is decoded to RGB by PyAV and its first channel kept (as the official code reads
channel 0 of its RGB PNGs), then resized to 64x64 with PIL bicubic, squashing the 4:3 aspect as the official
`ffmpeg -s 64x64` does (ffmpeg's own bicubic differs from PIL's by rounding only). Persons 1-20 are
training videos (5% of them, seeded, held out for validation), 21-25 test videos; the fixed test set is 1000
seeded 40-frame clips (10 conditioning + 30 predicted frames).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from srvp.video_pred.data.avdecode import iter_rgb_frames
from srvp.video_pred.data.prepared import FRAME_SIZE, VALIDATION_FRACTION, RawVideo, assign_validation, prepare_videos

ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
VIDEO_NAME = re.compile(rf"person(\d\d)_({'|'.join(ACTIONS)})_d(\d)_uncomp\.avi")
LAST_TRAIN_PERSON = 20
TEST_CLIP_LENGTH = 40
TEST_CLIP_COUNT = 1000


@dataclass(frozen=True)
class KTHVideo(RawVideo):
    """One KTH AVI, either a file (`member` empty) or a member of a zip archive at `path`."""

    path: str = ""
    member: str = ""

    def decode(self) -> np.ndarray:
        if self.member:
            with zipfile.ZipFile(self.path) as archive:
                frames = _kth_frames(io.BytesIO(archive.read(self.member)))
        else:
            frames = _kth_frames(self.path)
        return frames[:, None]  # (T, 1, 64, 64)


def _kth_frames(file: str | io.BytesIO) -> np.ndarray:
    """First channel of every frame, bicubic-resized to 64x64: uint8 (T, 64, 64)."""
    return np.stack(
        [
            np.asarray(Image.fromarray(rgb[..., 0]).resize((FRAME_SIZE, FRAME_SIZE), Image.Resampling.BICUBIC))
            for rgb in iter_rgb_frames(file)
        ]
    )


def _video(name: str, path: Path, member: str = "") -> KTHVideo | None:
    """A KTHVideo for a file or member called `name`, or None if the name is not a KTH video name."""
    match = VIDEO_NAME.fullmatch(name)
    if match is None:
        return None
    person = int(match.group(1))
    split = "train" if person <= LAST_TRAIN_PERSON else "test"
    source = f"{path}:{member}" if member else str(path)
    return KTHVideo(
        video_id=name.removesuffix("_uncomp.avi"), split=split, source=source, path=str(path), member=member
    )


def find_kth_videos(raw: str | Path) -> tuple[list[KTHVideo], dict[str, str]]:
    """List the KTH videos under `raw` (AVI files first, then zip members; first one of a name wins).

    Returns the videos and `{zip path: reason}` for zips that cannot be opened.
    """
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise FileNotFoundError(f"KTH raw folder {raw} does not exist")
    found: dict[str, KTHVideo] = {}
    unreadable: dict[str, str] = {}
    for path in sorted(raw.rglob("*.avi")):
        video = _video(path.name, path)
        if video is not None:
            found.setdefault(video.video_id, video)
    for path in sorted(raw.rglob("*.zip")):
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            unreadable[str(path)] = f"unreadable zip ({error})"
            continue
        for member in sorted(members):
            video = _video(Path(member).name, path, member)
            if video is not None:
                found.setdefault(video.video_id, video)
    if not found:
        raise ValueError(
            f"no KTH video found in {raw}: expected {', '.join(a + '.zip' for a in ACTIONS)} "
            "or extracted personNN_<action>_dX_uncomp.avi files"
        )
    splits = {video.split for video in found.values()}
    for split, persons in (("train", "1-20"), ("test", "21-25")):
        if split not in splits:
            raise ValueError(f"no KTH {split} video (persons {persons}) found in {raw}")
    return sorted(found.values(), key=lambda v: v.video_id), unreadable


def prepare_kth(
    raw: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    seed: int = 42,
    test_clip_count: int = TEST_CLIP_COUNT,
    test_clip_length: int = TEST_CLIP_LENGTH,
    val_fraction: float = VALIDATION_FRACTION,
) -> dict[str, Any]:
    """Prepare KTH from `raw` into `out` (resumable); return the written metadata."""
    videos, unreadable = find_kth_videos(raw)
    return prepare_videos(
        "kth",
        assign_validation(videos, val_fraction, seed),
        out,
        channels=1,
        seed=seed,
        test_clip_length=test_clip_length,
        test_clip_count=test_clip_count,
        workers=workers,
        skipped=unreadable,
        source={
            "raw": str(Path(raw).resolve()),
            "resize": "PIL bicubic, first RGB channel",
            "val_fraction": val_fraction,
        },
    )
