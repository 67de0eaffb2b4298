"""Any folder of videos into the prepared layout (see prepared.py): `srvp-prepare folder --raw DIR --out DIR`.

Raw input: every file under the raw folder, nested folders included, whose extension is one of
VIDEO_EXTENSIONS (any case); names starting with "." (hidden files and folders, macOS `._` copies) are
ignored. A file is one video, named in the prepared folder by its path under the raw folder with "/"
turned into "__" (`walk/day1/a.mp4` -> `walk__day1__a.mp4`). Each video is decoded with PyAV (first video
stream) and its frames go through, in this order:

1. frame rate: keep every n-th decoded frame (`every`), or resample to `fps` frames per second by the
   frames' presentation timestamps, so variable-frame-rate files come out at a regular rate: output frame
   k is the frame on screen at time t_0 + k / fps (the last frame whose timestamp is not after it), for
   every such time up to the last frame's timestamp. Times are exact fractions of the stream's time base.
2. crop: the centre square ("center"), an explicit box (left, upper, right, lower) in source pixels, or
   none ("none": the aspect ratio is squashed by the resize, as KTH's official preparation does);
3. resize to 64x64 with the chosen PIL filter;
4. colour: RGB, or grey (PIL's "L" conversion, ITU-R 601-2 luma) with `grey`.

A video with fewer than `min_frames` frames after this (default: the test clip length, so every kept
video can serve training, validation and test clips) is skipped, and listed in meta.json's `skipped`
with the reason, as a corrupt or truncated file is. Splits are by file: seeded fractions (a fraction of
the videos for test, then a fraction of the rest for validation), or an explicit split file. The fixed test
set is `test_clip_count` seeded clips of `test_clip_length` frames drawn from the test videos.

The frame and split options (seed, fractions, split file) are written to `<out>/folder_options.json` before
any video, so that a rerun with other options cannot resume into a folder of videos prepared differently, nor
move videos between splits.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from srvp.common.files import atomic_write
from srvp.video_pred.data.avdecode import iter_frames
from srvp.video_pred.data.prepared import (
    FRAME_SIZE,
    SPLITS,
    VALIDATION_FRACTION,
    RawVideo,
    assign_validation,
    prepare_videos,
)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")
RESIZE_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
OPTIONS_NAME = "folder_options.json"
ID_SEPARATOR = "__"
TEST_CLIP_LENGTH = 40  # 10 conditioning + 30 predicted frames, as configs/dataset/folder.yaml
TEST_CLIP_COUNT = 1000
TEST_FRACTION = 0.1
Crop = str | tuple[int, int, int, int]


@dataclass(frozen=True)
class FrameOptions:
    """How every video's frames become 64x64 frames (see the module docstring for the order of the steps)."""

    every: int = 1
    """Keep every n-th decoded frame (1: all); excludes `fps`."""
    fps: Fraction | None = None
    """Resample to this many frames per second by timestamps; None keeps the decoded frames (`every`)."""
    crop: Crop = "center"
    """'center' (centre square), 'none' (squash the aspect ratio) or a box (left, upper, right, lower)."""
    resize_filter: str = "lanczos"
    """PIL filter of the 64x64 resize, a key of RESIZE_FILTERS."""
    grey: bool = False
    """Store one grey channel instead of RGB."""
    min_frames: int = TEST_CLIP_LENGTH
    """Videos with fewer frames after subsampling are skipped."""

    def validate(self) -> FrameOptions:
        """Raise a one-line ValueError naming the first impossible option; return self."""
        if int(self.every) != self.every or self.every < 1:
            raise ValueError(f"every={self.every}: keep every n-th frame with n a positive integer")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps={self.fps}: must be a positive number of frames per second")
        if self.fps is not None and self.every != 1:
            raise ValueError(f"every={self.every} and fps={self.fps} exclude each other: choose one")
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"resize_filter={self.resize_filter!r}: expected one of {sorted(RESIZE_FILTERS)}")
        if isinstance(self.crop, str):
            if self.crop not in ("center", "none"):
                raise ValueError(f"crop={self.crop!r}: expected 'center', 'none' or a box left,upper,right,lower")
        elif len(self.crop) != 4 or not 0 <= self.crop[0] < self.crop[2] or not 0 <= self.crop[1] < self.crop[3]:
            raise ValueError(f"crop={self.crop}: a box needs 0 <= left < right and 0 <= upper < lower")
        if int(self.min_frames) != self.min_frames or self.min_frames < 1:
            raise ValueError(f"min_frames={self.min_frames}: must be a positive integer")
        return self

    def to_json(self) -> dict[str, Any]:
        """Plain-data copy for meta.json and folder_options.json (fps as an exact fraction string)."""
        values = asdict(self)
        values["fps"] = None if self.fps is None else str(self.fps)
        values["crop"] = self.crop if isinstance(self.crop, str) else list(self.crop)
        return values


def select_frames(
    frames: Iterable[av.VideoFrame], every: int = 1, fps: Fraction | None = None
) -> Iterator[av.VideoFrame]:
    """The frames to keep, in order: every `every`-th one, or with `fps`, the frame on screen at each time
    t_0 + k / fps up to the last frame's timestamp (a frame may be repeated when fps exceeds the source's).

    Raises ValueError for a frame without a timestamp or timestamps that do not increase (with `fps` only).
    """
    if fps is None:
        yield from itertools.islice(frames, 0, None, every)  # islice still reads to the end: truncation check
        return
    step = 1 / Fraction(fps)
    shown: av.VideoFrame | None = None  # the latest frame: on screen from `shown_time` until the next one
    shown_time = target = Fraction(0)
    for index, frame in enumerate(frames):
        if frame.pts is None or frame.time_base is None:
            raise ValueError(f"frame {index} has no timestamp: subsample with every=n instead of fps")
        time = frame.pts * frame.time_base
        if shown is None:
            target = time
        elif time <= shown_time:
            raise ValueError(
                f"timestamps do not increase at frame {index} ({float(shown_time)} s, then {float(time)} s)"
            )
        while shown is not None and target < time:
            yield shown
            target += step
        shown, shown_time = frame, time
    while shown is not None and target <= shown_time:
        yield shown
        target += step


def crop_box(crop: Crop, width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, upper, right, lower) box `crop` means on a width x height frame."""
    if crop == "none":
        return 0, 0, width, height
    if crop == "center":
        side = min(width, height)
        left, upper = (width - side) // 2, (height - side) // 2
        return left, upper, left + side, upper + side
    box = tuple(int(value) for value in crop)
    if box[2] > width or box[3] > height:
        raise ValueError(f"frames are {width}x{height}, smaller than the crop box {box}")
    return box


@dataclass(frozen=True)
class FolderVideo(RawVideo):
    """One video file of a folder, with the frame options every video of the folder shares."""

    path: str = ""
    options: FrameOptions = FrameOptions()

    def decode(self) -> np.ndarray:
        options = self.options
        frames = [self._frame(frame) for frame in select_frames(iter_frames(self.path), options.every, options.fps)]
        if len(frames) < options.min_frames:
            raise ValueError(f"{len(frames)} frames after subsampling, fewer than min_frames={options.min_frames}")
        stacked = np.stack(frames)
        return stacked[:, None] if options.grey else stacked.transpose(0, 3, 1, 2)  # (T, C, 64, 64)

    def _frame(self, frame: av.VideoFrame) -> np.ndarray:
        """Crop, resize and colour-convert one decoded frame: uint8 (64, 64) grey or (64, 64, 3) RGB."""
        image = Image.fromarray(frame.to_ndarray(format="rgb24"))
        image = image.crop(crop_box(self.options.crop, image.width, image.height))
        image = image.resize((FRAME_SIZE, FRAME_SIZE), RESIZE_FILTERS[self.options.resize_filter])
        return np.asarray(image.convert("L") if self.options.grey else image)


def find_video_files(raw: str | Path) -> dict[str, Path]:
    """{path relative to `raw` in POSIX form: file} of every video file under `raw`, sorted."""
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"raw video folder {raw} does not exist")
    found = {}
    for path in sorted(raw.rglob("*")):
        relative = path.relative_to(raw)
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            if not any(part.startswith(".") for part in relative.parts):
                found[relative.as_posix()] = path
    if not found:
        raise ValueError(f"no video file found in {raw}: expected files ending in {', '.join(VIDEO_EXTENSIONS)}")
    return found


def folder_video_id(relative: str) -> str:
    """Prepared name of the video at `relative` (POSIX path under the raw folder)."""
    return relative.replace("/", ID_SEPARATOR)


def read_split_file(split_file: str | Path, files: dict[str, Path]) -> dict[str, str]:
    """{relative path: split} from a text file of `<split> <path under the raw folder>` lines.

    Blank lines and lines starting with "#" are ignored; files of the folder that are not listed are left out.
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"split file {split_file} does not exist")
    splits: dict[str, str] = {}
    for number, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        split, _, relative = line.partition(" ")
        relative = relative.strip()
        where = f"{split_file}:{number}"
        if split not in SPLITS or not relative:
            raise ValueError(f"{where}: expected '<split> <path>' with split one of {SPLITS}, got {line!r}")
        if relative not in files:
            raise ValueError(f"{where}: {relative} is not a video file of the raw folder")
        if relative in splits:
            raise ValueError(f"{where}: {relative} is listed twice")
        splits[relative] = split
    for split in ("train", "test"):
        if split not in splits.values():
            raise ValueError(f"split file {split_file} lists no {split} video")
    return splits


def draw_test_files(files: Sequence[str], test_fraction: float, seed: int) -> set[str]:
    """A seeded `test_fraction` of `files` (at least one, never all) for the test split."""
    if len(files) < 2:
        raise ValueError(f"found {len(files)} video file: splitting by file needs at least 2 (train and test)")
    count = min(max(1, math.ceil(test_fraction * len(files))), len(files) - 1)
    order = np.random.default_rng([seed, 2]).permutation(len(files))  # a stream apart from validation's
    return {sorted(files)[i] for i in order[:count]}


def check_options_file(out: Path, options: dict[str, Any]) -> None:
    """Record the frame and split options in `out`, or refuse to resume into a folder prepared with other ones:
    other frame options would mix differently processed videos, other split options would move videos between
    splits (a model trained before would then be scored on its training videos). Options a file written by an
    older version does not hold are added to it."""
    path = out / OPTIONS_NAME
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [
            f"{key}: {previous[key]} -> {value}"
            for key, value in options.items()
            if key in previous and previous[key] != value
        ]
        if changed:
            raise ValueError(
                f"{out} holds videos prepared with other options ({'; '.join(changed)}): rerun with the same "
                "options, or choose another --out"
            )
        if set(options) <= set(previous):
            return
    atomic_write(path, lambda file: file.write(json.dumps(options, indent=1).encode("utf-8")))


def prepare_folder(
    raw: str | Path,
    out: str | Path,
    *,
    workers: int = 1,
    seed: int = 42,
    every: int = 1,
    fps: Fraction | float | str | None = None,
    crop: Crop | Sequence[int] = "center",
    resize_filter: str = "lanczos",
    grey: bool = False,
    min_frames: int | None = None,
    val_fraction: float = VALIDATION_FRACTION,
    test_fraction: float = TEST_FRACTION,
    split_file: str | Path | None = None,
    test_clip_count: int = TEST_CLIP_COUNT,
    test_clip_length: int = TEST_CLIP_LENGTH,
) -> dict[str, Any]:
    """Prepare every video under `raw` into `out` (resumable); return the written metadata.

    `fps` may be a fraction string ("30000/1001"); `min_frames=None` means `test_clip_length`. With
    `split_file`, the file decides the splits and the fractions are unused.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must lie in [0, 1)")
    if split_file is None and test_fraction == 0:
        raise ValueError("test_fraction=0 leaves no test video: give a positive fraction or a split file")
    if test_clip_length < 1 or test_clip_count < 1:
        raise ValueError(f"test_clip_length={test_clip_length}, test_clip_count={test_clip_count}: must be positive")
    options = FrameOptions(
        every=every,
        fps=None if fps is None else Fraction(str(fps)),
        crop=crop if isinstance(crop, str) else tuple(int(value) for value in crop),
        resize_filter=resize_filter,
        grey=bool(grey),
        min_frames=test_clip_length if min_frames is None else min_frames,
    ).validate()
    files = find_video_files(raw)
    if split_file is None:
        test_files = draw_test_files(list(files), test_fraction, seed)
        splits = {relative: "test" if relative in test_files else "train" for relative in files}
    else:
        splits = read_split_file(split_file, files)
        left_out = len(files) - len(splits)
        if left_out:
            print(f"folder: {left_out} video files of {raw} are not in {split_file}: left out")
    videos = [
        FolderVideo(folder_video_id(relative), split, str(files[relative]), path=str(files[relative]), options=options)
        for relative, split in splits.items()
    ]
    if split_file is None:
        videos = assign_validation(videos, val_fraction, seed)
    out = Path(out)
    split_options = {
        "seed": seed,
        "split_file": None if split_file is None else str(Path(split_file).resolve()),
        "val_fraction": None if split_file else val_fraction,
        "test_fraction": None if split_file else test_fraction,
    }
    check_options_file(out, {**options.to_json(), **split_options})
    return prepare_videos(
        "folder",
        videos,
        out,
        channels=1 if options.grey else 3,
        seed=seed,
        test_clip_length=test_clip_length,
        test_clip_count=test_clip_count,
        workers=workers,
        source={
            "raw": str(Path(raw).resolve()),
            "frames": options.to_json(),
            "split_file": split_options["split_file"],
            "val_fraction": split_options["val_fraction"],
            "test_fraction": split_options["test_fraction"],
        },
    )


def parse_crop(text: str) -> Crop:
    """--crop value: 'center', 'none' or 'left,upper,right,lower' in source pixels."""
    if text in ("center", "none"):
        return text
    try:
        box = tuple(int(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected center, none or left,upper,right,lower") from None
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: a box has four numbers left,upper,right,lower")
    return box


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `srvp-prepare folder` (all default to None: unset, prepare_folder's defaults apply)."""
    group = parser.add_argument_group("folder options (srvp-prepare folder only)")
    group.add_argument("--every", type=int, help="keep every n-th decoded frame (default 1)")
    group.add_argument(
        "--fps", type=Fraction, help="resample to this frame rate by timestamps, e.g. 12.5 or 30000/1001"
    )
    group.add_argument("--crop", type=parse_crop, help="center (default), none (squash) or left,upper,right,lower")
    group.add_argument("--filter", dest="resize_filter", choices=sorted(RESIZE_FILTERS), help="resize filter (lanczos)")
    group.add_argument("--grey", action="store_true", default=None, help="one grey channel instead of RGB")
    group.add_argument("--min-frames", type=int, help="skip shorter videos (default: the test clip length)")
    group.add_argument("--val-fraction", type=float, help=f"seeded fraction for validation ({VALIDATION_FRACTION})")
    group.add_argument("--test-fraction", type=float, help=f"seeded fraction of the videos for test ({TEST_FRACTION})")
    group.add_argument("--split-file", help="text file of '<train|val|test> <path under --raw>' lines")
    group.add_argument("--test-clips", dest="test_clip_count", type=int, help=f"fixed test clips ({TEST_CLIP_COUNT})")
    group.add_argument("--test-clip-length", type=int, help=f"frames per fixed test clip ({TEST_CLIP_LENGTH})")


FOLDER_ARGUMENTS: dict[str, str] = {
    "every": "--every",
    "fps": "--fps",
    "crop": "--crop",
    "resize_filter": "--filter",
    "grey": "--grey",
    "min_frames": "--min-frames",
    "val_fraction": "--val-fraction",
    "test_fraction": "--test-fraction",
    "split_file": "--split-file",
    "test_clip_count": "--test-clips",
    "test_clip_length": "--test-clip-length",
}
"""`prepare_folder` keyword -> its command-line flag."""


def folder_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The folder options given on the command line, as `prepare_folder` keyword arguments."""
    return {name: getattr(args, name) for name in FOLDER_ARGUMENTS if getattr(args, name) is not None}
