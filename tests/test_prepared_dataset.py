"""PreparedVideos: random and fixed clips read from the prepared layout, and its errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from srvp.video_pred.data.prepared import PreparedVideos, RawVideo, prepare_videos, video_path


@dataclass(frozen=True)
class SyntheticVideo(RawVideo):
    """Frames whose every pixel of frame t equals (10 * index + t) % 256, so a clip tells where it came from."""

    index: int = 0
    frames: int = 10
    channels: int = 3

    def decode(self) -> np.ndarray:
        values = (10 * self.index + np.arange(self.frames)) % 256
        return np.broadcast_to(values[:, None, None, None], (self.frames, self.channels, 64, 64)).astype(np.uint8)


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    lengths = {"train": [10, 12, 5, 9], "val": [10], "test": [10, 15]}
    videos = [
        SyntheticVideo(video_id=f"{split}{i}", split=split, source=f"{split}{i}", index=i, frames=frames)
        for split, counts in lengths.items()
        for i, frames in enumerate(counts)
    ]
    prepare_videos("synthetic", videos, tmp_path / "ds", channels=3, seed=0, test_clip_length=8, test_clip_count=20)
    return tmp_path / "ds"


def test_random_clips(prepared: Path) -> None:
    dataset = PreparedVideos(prepared, "train", seq_len=8)
    assert len(dataset) == 3  # train2 (5 frames) is too short for 8-frame clips
    for index in range(len(dataset)):
        clip = dataset[index]
        assert clip.dtype == torch.uint8 and clip.shape == (8, 3, 64, 64)
        video_id, start = dataset.clip_location(index)
        stored = np.load(video_path(prepared, "train", video_id))
        assert torch.equal(clip, torch.from_numpy(stored[start : start + 8]))
    big = PreparedVideos(prepared, "train", seq_len=8, epoch_size=300, seed=1)
    locations = [big.clip_location(i) for i in range(len(big))]
    seen = {video_id for video_id, _ in locations}
    assert seen == {"train0", "train1", "train3"}
    assert all(0 <= start <= {"train0": 2, "train1": 4, "train3": 1}[vid] for vid, start in locations)
    assert {start for vid, start in locations if vid == "train1"} == set(range(5))  # every start is drawn
    # reproducible from (seed, index); another seed draws other clips
    assert [
        PreparedVideos(prepared, "train", 8, epoch_size=300, seed=1).clip_location(i) for i in range(300)
    ] == locations
    other_seed = PreparedVideos(prepared, "train", 8, epoch_size=300, seed=2)
    assert [other_seed.clip_location(i) for i in range(300)] != locations


def test_fixed_clips(prepared: Path) -> None:
    meta = json.loads((prepared / "meta.json").read_text())
    dataset = PreparedVideos(prepared, "test", seq_len=8, fixed_clips=True)
    assert len(dataset) == 20
    for index, (video_id, start) in enumerate(meta["test_clips"]["clips"]):
        stored = np.load(video_path(prepared, "test", video_id))
        assert torch.equal(dataset[index], torch.from_numpy(stored[start : start + 8]))
    shorter = PreparedVideos(prepared, "test", seq_len=3, fixed_clips=True)
    assert torch.equal(shorter[5], dataset[5][:3])


def test_dataloader_workers_give_the_same_clips(prepared: Path) -> None:
    dataset = PreparedVideos(prepared, "train", seq_len=4, epoch_size=8, seed=2)
    loaded = torch.cat(list(torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)))
    assert loaded.shape == (8, 4, 3, 64, 64)
    assert torch.equal(loaded, torch.stack([dataset[i] for i in range(8)]))


def test_errors(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PreparedVideos(tmp_path / "missing", "train", 8)
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        PreparedVideos(tmp_path, "train", 8)
    with pytest.raises(ValueError, match="unknown split 'training'"):
        PreparedVideos(prepared, "training", 8)
    with pytest.raises(ValueError, match="fixed clips exist for the 'test' split only"):
        PreparedVideos(prepared, "train", 8, fixed_clips=True)
    with pytest.raises(ValueError, match="exceeds the fixed test clips' 8 frames"):
        PreparedVideos(prepared, "test", 9, fixed_clips=True)
    with pytest.raises(ValueError, match="no train video .* at least 13 frames"):
        PreparedVideos(prepared, "train", 13)
    with pytest.raises(IndexError):
        PreparedVideos(prepared, "val", 8)[1]
    video_path(prepared, "val", "val0").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="cannot read prepared video .*val0.npy"):
        PreparedVideos(prepared, "val", 8)[0]
    (prepared / "meta.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="is not a srvp-prepared-videos/1 file"):
        PreparedVideos(prepared, "train", 8)
