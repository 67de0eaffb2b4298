"""Human3.6M preparation on tiny H.264 mp4 files in the real S<n>/Videos layout (250x250 instead of
1000x1000, with the crop box scaled accordingly)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from srvp.video_pred.data.prepare_human36m import prepare_human36m

SIZE, CROP_BOX, SUBSAMPLE, FRAMES = 248, (25, 25, 223, 223), 8, 20  # real: 1000, (100, 100, 900, 900), 8


def frames_for(seed: int) -> np.ndarray:
    """Smooth RGB frames whose brightness steps by 10 per frame, so a wrong subsampling phase shows."""
    ramp = np.linspace(0, 80, SIZE)[None, :, None] + np.linspace(0, 40, SIZE)[:, None, None]
    colour = np.random.default_rng(seed).integers(0, 60, 3)[None, None, :]
    return np.stack([(ramp + colour + 10 * t).clip(0, 255).astype(np.uint8) for t in range(FRAMES)])


def write_mp4(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=50, options={"crf": "10", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def crop_resize(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).crop(CROP_BOX).resize((64, 64), Image.Resampling.LANCZOS))


def reference_from_file(path: Path) -> np.ndarray:
    """Independent reading of the spec: decode with PyAV, every 8th frame, PIL crop then Lanczos resize."""
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack([crop_resize(rgb) for rgb in decoded[::SUBSAMPLE]]).transpose(0, 3, 1, 2)


def test_prepare_human36m(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    videos = {
        "S1_Directions_1.54138969": raw / "S1/Videos/Directions 1.54138969.mp4",
        "S1_Walking.55011271": raw / "S1/Videos/Walking.55011271.mp4",
        "S5_Eating.54138969": raw / "S5/Videos/Eating.54138969.mp4",
        "S9_Sitting_1.54138969": raw / "S9/Videos/Sitting 1.54138969.mp4",
        "S11_Posing.60457274": raw / "S11/Videos/Posing.60457274.mp4",
    }
    originals = {}
    for seed, (video_id, path) in enumerate(videos.items()):
        originals[video_id] = frames_for(seed)
        write_mp4(path, originals[video_id])
    write_mp4(raw / "S1/Videos/_ALL 1.54138969.mp4", frames_for(9))
    write_mp4(raw / "S5/Videos/Directions ALL.54138969.mp4", frames_for(9))
    (raw / "S9/Videos/Phoning.54138969.mp4").write_bytes(b"\x00" * 5000)
    write_mp4(raw / "S2/Videos/Walking.mp4", frames_for(9))  # subject 2 is in neither split

    with pytest.warns(RuntimeWarning, match=r"Phoning\.54138969\.mp4"):
        meta = prepare_human36m(raw, out, crop_box=CROP_BOX, seed=0, test_clip_count=4, test_clip_length=2)
    assert [Path(name).name for name in meta["skipped"]] == ["Phoning.54138969.mp4"]
    train_val = {**meta["splits"]["train"], **meta["splits"]["val"]}
    assert sorted(train_val) == ["S1_Directions_1.54138969", "S1_Walking.55011271", "S5_Eating.54138969"]
    assert len(meta["splits"]["val"]) == 1
    assert sorted(meta["splits"]["test"]) == ["S11_Posing.60457274", "S9_Sitting_1.54138969"]
    expected_count = len(range(0, FRAMES, SUBSAMPLE))
    assert all(count == expected_count for split in meta["splits"].values() for count in split.values())

    for split, stored_videos in meta["splits"].items():
        for video_id in stored_videos:
            stored = np.load(out / split / f"{video_id}.npy")
            assert stored.dtype == np.uint8 and stored.shape == (expected_count, 3, 64, 64)
            np.testing.assert_array_equal(stored, reference_from_file(videos[video_id]))
            # the right frames were kept: frame k is the original frame 8k (brightness steps of 10 apart)
            for k, original in enumerate(originals[video_id][::SUBSAMPLE]):
                assert np.abs(stored[k].astype(int) - crop_resize(original).transpose(2, 0, 1)).mean() < 3

    assert meta["test_clips"]["length"] == 2 and len(meta["test_clips"]["clips"]) == 4
    assert meta["source"]["crop_box"] == list(CROP_BOX) and meta["source"]["subsample"] == SUBSAMPLE

    written = {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")}
    with pytest.warns(RuntimeWarning):
        again = prepare_human36m(raw, out, crop_box=CROP_BOX, seed=0, test_clip_count=4, test_clip_length=2)
    assert again == meta and {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")} == written


def test_real_crop_box_rejects_small_frames(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_mp4(raw / "S1/Videos/Walking.mp4", frames_for(0))
    write_mp4(raw / "S9/Videos/Walking.mp4", frames_for(1))
    with pytest.warns(RuntimeWarning, match="smaller than the crop box"), pytest.raises(RuntimeError, match="no test"):
        prepare_human36m(raw, tmp_path / "out", test_clip_count=2, test_clip_length=2)


def test_wrong_raw_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_human36m(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match=r"expected subject folders S1, .*Videos/\*\.mp4"):
        prepare_human36m(tmp_path / "raw", tmp_path / "out")
    write_mp4(tmp_path / "raw/S1/Videos/Walking.mp4", frames_for(0)[:2])
    with pytest.raises(ValueError, match="no Human3.6M test video"):
        prepare_human36m(tmp_path / "raw", tmp_path / "out")
