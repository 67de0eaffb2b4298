"""One on-disk layout for every prepared video dataset (KTH, Human3.6M, BAIR), its writer and its reader.

Layout of a folder written by `srvp-prepare`::

    <root>/meta.json               written last: its presence means the preparation finished
    <root>/<split>/<video_id>.npy  one video, uint8, shape (T, C, 64, 64); split in train | val | test

`meta.json` holds `format` (LAYOUT_FORMAT), `dataset`, `channels`, `height`, `width`, `seed`,
`splits` (`{split: {video_id: frame count}}`), `test_clips` (`{"length": L, "clips": [[video_id, start],
...]}`, the fixed evaluation clips, all inside the `test` split), `skipped` (`{source name: reason}` for
every raw video that could not be decoded) and `source` (the preparation parameters).

Every file is written atomically, so an interrupted preparation resumes: videos whose `.npy` is already
there with the right frame shape are not decoded again. Videos are decoded in a process pool.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from srvp.common.files import atomic_write
from srvp.worldmodel.model import FRAME_SIZE

LAYOUT_FORMAT = "srvp-prepared-videos/1"
META_NAME = "meta.json"
VALIDATION_FRACTION = 0.05
"""Share of the training videos held out for validation (the official code's 95/5 split, every dataset)."""
CLAIM_NAME = ".srvp-prepare.json"
"""Written first into an output folder: the dataset it is being prepared for (meta.json comes last)."""
SPLITS = ("train", "val", "test")
OPEN_MAPS = 1024  # memory maps a PreparedVideos keeps open per process


@dataclass(frozen=True)
class RawVideo(ABC):
    """One raw video to prepare: where it goes, how to name it in messages, and how to decode it.

    Subclasses are plain picklable dataclasses so that a process pool can decode them.
    """

    video_id: str
    split: str
    source: str  # human-readable origin (file path, zip member, record) used in warnings

    @abstractmethod
    def decode(self) -> np.ndarray:
        """Decode to uint8 frames shaped (T, C, 64, 64); raise on a corrupt or truncated source."""


def video_path(root: str | Path, split: str, video_id: str) -> Path:
    """Path of one prepared video inside a prepared folder."""
    return Path(root) / split / f"{video_id}.npy"


def assign_validation(videos: Sequence[RawVideo], fraction: float, seed: int) -> list[RawVideo]:
    """Move a seeded random `fraction` of the training videos to the `val` split (at least one, if any).

    Decided from the raw listing, before decoding, so that the split does not depend on which videos
    decode; one training video always stays in `train`.
    """
    train_ids = sorted(v.video_id for v in videos if v.split == "train")
    val_count = min(math.ceil(fraction * len(train_ids)), max(len(train_ids) - 1, 0))
    order = np.random.default_rng(seed).permutation(len(train_ids))
    val_ids = {train_ids[i] for i in order[:val_count]}
    return [replace(v, split="val") if v.split == "train" and v.video_id in val_ids else v for v in videos]


def _stored_frame_count(path: Path, channels: int) -> int | None:
    """Frame count of an already prepared video, or None if it is absent or not a valid video array."""
    if not path.is_file():
        return None
    try:
        frames = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (channels, FRAME_SIZE, FRAME_SIZE):
        return None
    return int(frames.shape[0])


def _decode_and_store(job: tuple[RawVideo, str, int]) -> tuple[int, str | None]:
    """Pool task: decode one video and write its `.npy` atomically; return (frame count, error or None)."""
    video, root, channels = job
    try:
        frames = video.decode()
        expected = (channels, FRAME_SIZE, FRAME_SIZE)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != expected or not len(frames):
            raise ValueError(f"decoded array {frames.dtype} {frames.shape}, expected uint8 (T>0, {expected})")
    except Exception as error:  # any decoder failure skips this video only; it is reported by name
        message = " ".join(str(error).split()) or type(error).__name__
        return 0, f"{type(error).__name__}: {message}"
    atomic_write(video_path(root, video.split, video.video_id), lambda file: np.save(file, frames))
    return len(frames), None


def draw_test_clips(frame_counts: dict[str, int], count: int, length: int, seed: int) -> list[list]:
    """Draw `count` fixed clips `[video_id, start]`: a uniform video among those with `length` frames,
    then a uniform start inside it (what the official make_test_set scripts do)."""
    eligible = sorted(video_id for video_id, frames in frame_counts.items() if frames >= length)
    if not eligible:
        raise RuntimeError(f"no test video has at least {length} frames: cannot draw the fixed test clips")
    rng = np.random.default_rng([seed, 1])  # a stream of its own, independent of the validation draw
    clips = []
    for _ in range(count):
        video_id = eligible[rng.integers(len(eligible))]
        clips.append([video_id, int(rng.integers(frame_counts[video_id] - length + 1))])
    return clips


def prepare_videos(
    dataset: str,
    videos: Sequence[RawVideo],
    out: str | Path,
    *,
    channels: int,
    seed: int,
    test_clip_length: int,
    test_clip_count: int | None,
    workers: int = 1,
    skipped: dict[str, str] | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Decode `videos` into the layout above under `out`, then write `meta.json`; return the metadata.

    Already prepared videos are kept (resume). A video that fails to decode is warned about by name and
    listed in `skipped` (together with the `skipped` sources the caller could not even list, e.g. a
    truncated record file). `test_clip_count=None` makes every test video one clip from frame 0 (BAIR);
    otherwise that many seeded random clips of `test_clip_length` frames are drawn.
    """
    out = Path(out).expanduser()
    claim_output_folder(out, dataset, seed)
    ids = [(v.split, v.video_id) for v in videos]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"two raw videos map to the same prepared video {duplicate[0]}/{duplicate[1]}")
    check_splits_unchanged(out, videos)
    skipped = dict(skipped or {})
    frame_counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    todo = []
    for video in videos:
        stored = _stored_frame_count(video_path(out, video.split, video.video_id), channels)
        if stored is None:
            todo.append(video)
        else:
            frame_counts[video.split][video.video_id] = stored
    if len(videos) > len(todo):
        print(f"{dataset}: {len(videos) - len(todo)} videos already prepared in {out}, {len(todo)} to decode")
    jobs = [(video, str(out), channels) for video in todo]
    with tqdm(total=len(jobs), desc=f"prepare {dataset}", unit="video", disable=not jobs) as progress:
        if workers > 1 and len(jobs) > 1:
            # Spawned, not forked: a fork of a process that already runs threads (torch's pool, an EGL
            # renderer, a tensorboard writer) can inherit a held lock and hang forever.
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                chunk = max(1, min(16, len(jobs) // (4 * workers)))
                results = pool.map(_decode_and_store, jobs, chunksize=chunk)
                outcomes = [_count(progress, result) for result in results]
        else:
            outcomes = [_count(progress, _decode_and_store(job)) for job in jobs]
    for video, (frames, error) in zip(todo, outcomes, strict=True):
        if error is None:
            frame_counts[video.split][video.video_id] = frames
        else:
            skipped[video.source] = error
    for name, reason in skipped.items():
        warnings.warn(f"{dataset}: skipped {name}: {reason}", RuntimeWarning, stacklevel=2)
    failed_tests = [video for video, (_, error) in zip(todo, outcomes, strict=True) if error and video.split == "test"]
    if failed_tests and not frame_counts["test"]:
        # The cause is the files or the options (a crop box outside the frames), not the clip length.
        first = failed_tests[0]
        raise RuntimeError(
            f"no test video could be prepared: all {len(failed_tests)} failed (e.g. {first.source}: "
            f"{skipped[first.source]})"
        )
    if test_clip_count is None:
        clips = [
            [video_id, 0]
            for video_id in sorted(frame_counts["test"])
            if frame_counts["test"][video_id] >= test_clip_length
        ]
    else:
        clips = draw_test_clips(frame_counts["test"], test_clip_count, test_clip_length, seed)
    meta = {
        "format": LAYOUT_FORMAT,
        "dataset": dataset,
        "channels": channels,
        "height": FRAME_SIZE,
        "width": FRAME_SIZE,
        "seed": seed,
        "splits": {split: dict(sorted(counts.items())) for split, counts in frame_counts.items()},
        "test_clips": {"length": test_clip_length, "clips": clips},
        "skipped": dict(sorted(skipped.items())),
        "source": source or {},
    }
    atomic_write(out / META_NAME, lambda file: file.write(json.dumps(meta, indent=1).encode("utf-8")))
    return meta


def claim_output_folder(out: Path, dataset: str, seed: int | None = None) -> None:
    """Mark `out` as holding `dataset` prepared with `seed` before anything is written into it, refusing a folder
    that holds (or started to hold) another dataset, whose meta.json would be replaced and the videos of both
    mixed, or the same one prepared with another seed, whose validation videos and test clips would be drawn
    anew."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    for marker in (out / META_NAME, out / CLAIM_NAME):
        if marker.is_file():
            try:
                found = json.loads(marker.read_text(encoding="utf-8"))
                found_dataset, found_seed = found.get("dataset"), found.get("seed")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                raise ValueError(f"{marker} is unreadable: is {out} a prepared dataset? Choose another --out") from None
            if found_dataset != dataset:
                raise ValueError(
                    f"--out {out} already holds a prepared {found_dataset} dataset: choose another folder for {dataset}"
                )
            if seed is not None and found_seed is not None and found_seed != seed:
                raise ValueError(
                    f"--out {out} was prepared with --seed {found_seed}: rerun with --seed {found_seed} to resume, or "
                    f"choose another --out for --seed {seed} (its splits and test clips differ)"
                )
    claim = {"dataset": dataset} if seed is None else {"dataset": dataset, "seed": seed}
    atomic_write(out / CLAIM_NAME, lambda file: file.write(json.dumps(claim).encode("utf-8")))


def check_splits_unchanged(out: Path, videos: Sequence[RawVideo]) -> None:
    """Refuse to prepare into `out` a video it already holds in another split (the split was drawn differently:
    another seed, fraction, split file or set of raw files): the video would be in two splits at once, and a
    model trained before would be scored on its training videos."""
    moved = [
        (other, video)
        for video in videos
        for other in SPLITS
        if other != video.split and video_path(out, other, video.video_id).is_file()
    ]
    if moved:
        other, video = moved[0]
        raise ValueError(
            f"{out} already holds {len(moved)} of these videos in another split (e.g. {video.video_id} in {other}, "
            f"now drawn into {video.split}): the splits changed since it was prepared; rerun with the options it "
            "was prepared with, or choose another --out"
        )


def _count(progress: tqdm, result: tuple[int, str | None]) -> tuple[int, str | None]:
    progress.update()
    return result


def load_meta(root: str | Path, dataset: str | None = None) -> dict[str, Any]:
    """Read and check `meta.json` of a prepared folder (holding `dataset` when given), with a one-line error
    for a wrong folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"prepared dataset folder {root} does not exist: run `srvp-prepare` first")
    meta_path = root / META_NAME
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a prepared dataset (no {META_NAME}): run `srvp-prepare <dataset> --out {root}`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{meta_path} is not valid JSON ({error}): prepare the dataset again") from error
    if not isinstance(meta, dict) or meta.get("format") != LAYOUT_FORMAT:
        raise ValueError(f"{meta_path} is not a {LAYOUT_FORMAT} file: prepare the dataset again")
    if dataset is not None and meta.get("dataset") != dataset:
        raise ValueError(
            f"{root} holds a prepared {meta.get('dataset')} dataset, not {dataset}: use "
            f"dataset={meta.get('dataset')} or give the folder prepared for {dataset}"
        )
    return meta


class PreparedVideos(torch.utils.data.Dataset):
    """Clips of a prepared dataset as `torch.uint8` tensors shaped (seq_len, C, 64, 64).

    Random mode (`fixed_clips=False`): item i is a sub-sequence of `seq_len` frames of a video of
    `split`, drawn uniformly among the videos long enough, then a uniform start. The draw is a function of
    (`seed`, i) only, so it does not depend on DataLoader workers; another seed draws other clips.
    `epoch_size` is the number of items (default: the number of usable videos).

    Fixed mode (`fixed_clips=True`, split `test`): item i is the i-th fixed test clip written by
    `srvp-prepare`, cut to its first `seq_len` frames.

    Frames are read through memory-mapped `.npy` files (kept open, LRU), so only the clip's bytes are read.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        seq_len: int,
        fixed_clips: bool = False,
        epoch_size: int | None = None,
        seed: int = 0,
        dataset: str | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        meta = load_meta(self.root, dataset)
        if split not in meta["splits"]:
            expected = sorted(meta["splits"])
            raise ValueError(f"unknown split {split!r} for {self.root}: expected one of {expected}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be a positive number of frames, got {seq_len}")
        self.split, self.seq_len, self.seed = split, seq_len, seed
        self.channels: int = meta["channels"]
        frame_counts: dict[str, int] = meta["splits"][split]
        if fixed_clips:
            if split != "test":
                raise ValueError(f"fixed clips exist for the 'test' split only, got split {split!r}")
            clip_length = meta["test_clips"]["length"]
            if seq_len > clip_length:
                raise ValueError(f"seq_len {seq_len} exceeds the fixed test clips' {clip_length} frames")
            self.clips: list[tuple[str, int]] | None = [(vid, start) for vid, start in meta["test_clips"]["clips"]]
            self.videos = sorted({vid for vid, _ in self.clips})
            self.length = len(self.clips)
        else:
            self.clips = None
            self.videos = sorted(vid for vid, frames in frame_counts.items() if frames >= seq_len)
            if not self.videos:
                raise ValueError(f"no {split} video of {self.root} has at least {seq_len} frames")
            self.length = len(self.videos) if epoch_size is None else epoch_size
        self.frame_counts = {vid: frame_counts[vid] for vid in self.videos}
        self._open_maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def clip_location(self, index: int) -> tuple[str, int]:
        """(video id, start frame) of item `index`."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        if self.clips is not None:
            return self.clips[index]
        rng = np.random.default_rng([self.seed, index])
        video_id = self.videos[rng.integers(len(self.videos))]
        return video_id, int(rng.integers(self.frame_counts[video_id] - self.seq_len + 1))

    def _frames(self, video_id: str) -> np.ndarray:
        """The memory-mapped frames of a video, kept open in a per-process LRU cache (opening costs more
        than reading a clip); the bound keeps BAIR's 43k videos under the kernel's map-count limit."""
        frames = self._open_maps.pop(video_id, None)
        if frames is None:
            path = video_path(self.root, self.split, video_id)
            try:
                frames = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as error:
                raise RuntimeError(f"cannot read prepared video {path} ({error}): prepare it again") from error
            if len(self._open_maps) >= OPEN_MAPS:
                self._open_maps.pop(next(iter(self._open_maps)))
        self._open_maps[video_id] = frames  # (re)inserted last: most recently used
        return frames

    def __getitem__(self, index: int) -> torch.Tensor:
        video_id, start = self.clip_location(index)
        frames = self._frames(video_id)
        clip = np.array(frames[start : start + self.seq_len])  # copies only these frames out of the map
        if clip.shape != (self.seq_len, self.channels, FRAME_SIZE, FRAME_SIZE):
            path = video_path(self.root, self.split, video_id)
            raise RuntimeError(f"prepared video {path} holds {frames.shape}, not the frames meta.json lists")
        return torch.from_numpy(clip)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. to spawned DataLoader workers) without the open maps, which are per process."""
        return {**self.__dict__, "_open_maps": {}}
