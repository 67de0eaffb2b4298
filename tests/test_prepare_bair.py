"""BAIR preparation on tiny softmotion30_44k TFRecord files holding real-schema tf.train.Examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srvp.video_pred.data.prepare_bair import prepare_bair
from tests.tfrecord_files import encode_example, frame_record

EPISODE_FRAMES = 30


def episode(seed: int) -> tuple[bytes, np.ndarray]:
    """A serialised Example with the real feature names; returns it and its image_aux1 frames (T, 64, 64, 3)."""
    rng = np.random.default_rng(seed)
    aux = rng.integers(0, 256, (EPISODE_FRAMES, 64, 64, 3), dtype=np.uint8)
    features: dict = {}
    for i in range(EPISODE_FRAMES):
        features[f"{i}/action"] = [float(v) for v in rng.normal(size=4)]
        features[f"{i}/endeffector_pos"] = [float(v) for v in rng.normal(size=3)]
        features[f"{i}/image_aux1/encoded"] = [aux[i].tobytes()]
        features[f"{i}/image_main/encoded"] = [(255 - aux[i]).tobytes()]  # a different camera
    return encode_example(features), aux


def write_tfrecords(path: Path, seeds: list[int]) -> tuple[dict[int, np.ndarray], bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    records, frames = [], {}
    for index, seed in enumerate(seeds):
        data, frames[index] = episode(seed)
        records.append(frame_record(data))
    path.write_bytes(b"".join(records))
    return frames, path.read_bytes()


def stored_split(meta: dict, video_id: str) -> str:
    return next(split for split, videos in meta["splits"].items() if video_id in videos)


def test_prepare_bair(tmp_path: Path) -> None:
    root = tmp_path / "raw" / "softmotion30_44k"  # the folder the tar extracts; its parent is given
    expected = {}
    for stem, split, seeds in (
        ("traj_0_to_2", "train", [0, 1, 2]),
        ("traj_3_to_4", "train", [3, 4]),
        ("traj_0_to_1", "test", [5, 6]),
    ):
        frames, _ = write_tfrecords(root / split / f"{stem}.tfrecords", seeds)
        expected.update({(split, f"{stem}_{i:03d}"): f for i, f in frames.items()})
    # a test file cut inside its third record: the first two are kept, the rest reported
    frames, data = write_tfrecords(root / "test" / "traj_9_to_11.tfrecords", [7, 8, 9])
    (root / "test" / "traj_9_to_11.tfrecords").write_bytes(data[: len(data) - 1000])
    expected.update({("test", f"traj_9_to_11_{i:03d}"): frames[i] for i in (0, 1)})
    # a train file whose second record has a flipped byte (CRC mismatch): only that record is lost
    frames, data = write_tfrecords(root / "train" / "traj_5_to_6.tfrecords", [10, 11])
    flipped = bytearray(data)
    flipped[len(data) - 500] ^= 0xFF
    (root / "train" / "traj_5_to_6.tfrecords").write_bytes(bytes(flipped))
    expected[("train", "traj_5_to_6_000")] = frames[0]

    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning) as caught:
        meta = prepare_bair(tmp_path / "raw", out, workers=1)
    messages = " ".join(str(w.message) for w in caught)
    assert "traj_9_to_11.tfrecords" in messages and "traj_5_to_6.tfrecords#1" in messages
    assert sorted(Path(name).name for name in meta["skipped"]) == ["traj_5_to_6.tfrecords#1", "traj_9_to_11.tfrecords"]

    # As the official code: 5% of the training videos (here 1 of 6) held out for validation.
    stored = {vid: split for split, videos in meta["splits"].items() for vid in videos}
    assert set(stored) == {vid for _, vid in expected}
    assert len(meta["splits"]["val"]) == 1 and meta["channels"] == 3
    moved = next(iter(meta["splits"]["val"]))
    assert ("train", moved) in expected
    assert {vid for vid, split in stored.items() if split == "test"} == {
        vid for split, vid in expected if split == "test"
    }
    for (_, video_id), aux in expected.items():
        on_disk = np.load(out / stored_split(meta, video_id) / f"{video_id}.npy")
        assert on_disk.shape == (EPISODE_FRAMES, 3, 64, 64)
        np.testing.assert_array_equal(on_disk, aux.transpose(0, 3, 1, 2))  # image_aux1, not image_main

    # the test set is every test video from frame 0
    assert meta["test_clips"] == {"length": 30, "clips": [[vid, 0] for vid in sorted(meta["splits"]["test"])]}

    written = {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")}
    with pytest.warns(RuntimeWarning):
        assert prepare_bair(tmp_path / "raw", out, workers=2) == meta
    assert {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")} == written


def test_wrong_raw_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_bair(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "raw").mkdir()
    with pytest.raises(ValueError, match=r"expected softmotion30_44k/\{train,test\}/\*\.tfrecords"):
        prepare_bair(tmp_path / "raw", tmp_path / "out")
    write_tfrecords(tmp_path / "raw" / "train" / "a.tfrecords", [0])
    (tmp_path / "raw" / "test").mkdir()
    (tmp_path / "raw" / "test" / "a.tfrecord").write_bytes(b"")  # wrong extension
    with pytest.raises(ValueError, match="no BAIR test records"):
        prepare_bair(tmp_path / "raw", tmp_path / "out")
