"""KTH preparation on tiny AVI files written by PyAV in the real naming scheme (folder and zip)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from srvp.video_pred.data.prepare_kth import prepare_kth
from srvp.video_pred.prepare import main

FRAMES = 12


def grey_frames(seed: int, count: int = FRAMES) -> np.ndarray:
    """Random grey 160x120 frames as uint8 (T, 120, 160)."""
    return np.random.default_rng(seed).integers(0, 256, (count, 120, 160), dtype=np.uint8)


def write_avi(path: Path, frames: np.ndarray, codec: str = "rawvideo") -> None:
    """Write grey frames (T, H, W) as an AVI; rawvideo (bgr24) is lossless, mpeg4 (yuv420p) is lossy."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr24" if codec == "rawvideo" else "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 20_000_000
        for grey in frames:
            rgb = np.repeat(grey[..., None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def reference(frames: np.ndarray) -> np.ndarray:
    """PIL bicubic 64x64 resize of each frame: uint8 (T, 1, 64, 64)."""
    resized = [np.asarray(Image.fromarray(f).resize((64, 64), Image.Resampling.BICUBIC)) for f in frames]
    return np.stack(resized)[:, None]


@pytest.fixture
def kth_raw(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Raw folder: extracted AVIs, one real zip (mpeg4), a corrupt and a truncated AVI, unrelated files."""
    raw = tmp_path / "raw"
    (raw / "boxing").mkdir(parents=True)
    originals = {}
    for seed, name in enumerate(
        ["person01_boxing_d1", "person02_boxing_d2", "person05_boxing_d3", "person21_boxing_d1"]
    ):
        originals[name] = grey_frames(seed)
        write_avi(raw / "boxing" / f"{name}_uncomp.avi", originals[name])
    originals["person22_running_d4"] = grey_frames(10)
    write_avi(tmp_path / "person22_running_d4_uncomp.avi", originals["person22_running_d4"], codec="mpeg4")
    with zipfile.ZipFile(raw / "running.zip", "w") as archive:
        archive.write(tmp_path / "person22_running_d4_uncomp.avi", "person22_running_d4_uncomp.avi")
    (raw / "boxing" / "person03_boxing_d1_uncomp.avi").write_bytes(b"not a video at all" * 100)
    write_avi(tmp_path / "full.avi", grey_frames(20))
    data = (tmp_path / "full.avi").read_bytes()
    (raw / "boxing" / "person04_boxing_d1_uncomp.avi").write_bytes(data[: len(data) // 2])
    (raw / "00sequences.txt").write_text("ignored")
    (raw / "boxing" / "other_video.avi").write_bytes(b"ignored: not a KTH name")
    return raw, originals


def test_prepare_kth(kth_raw, tmp_path: Path) -> None:
    raw, originals = kth_raw
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning) as caught:
        meta = prepare_kth(raw, out, workers=1, seed=3, test_clip_count=7, test_clip_length=8)
    messages = " ".join(str(w.message) for w in caught)
    assert "person03_boxing_d1_uncomp.avi" in messages and "person04_boxing_d1_uncomp.avi" in messages
    assert sorted(Path(name).name for name in meta["skipped"]) == [
        "person03_boxing_d1_uncomp.avi",
        "person04_boxing_d1_uncomp.avi",
    ]

    # splits: persons 1-20 train with one (ceil of 5%) held out for validation, 21-25 test
    train_val = {**meta["splits"]["train"], **meta["splits"]["val"]}
    assert sorted(train_val) == ["person01_boxing_d1", "person02_boxing_d2", "person05_boxing_d3"]
    assert len(meta["splits"]["val"]) == 1
    assert sorted(meta["splits"]["test"]) == ["person21_boxing_d1", "person22_running_d4"]
    assert all(count == FRAMES for split in meta["splits"].values() for count in split.values())
    assert meta["channels"] == 1

    # frames: the lossless AVI matches the PIL reference exactly, the mpeg4 one from the zip closely
    for split, videos in meta["splits"].items():
        for name in videos:
            stored = np.load(out / split / f"{name}.npy")
            assert stored.dtype == np.uint8 and stored.shape == (FRAMES, 1, 64, 64)
            expected = reference(originals[name])
            if name == "person22_running_d4":
                assert np.abs(stored.astype(int) - expected).mean() < 3
            else:
                np.testing.assert_array_equal(stored, expected)

    clips = meta["test_clips"]
    assert clips["length"] == 8 and len(clips["clips"]) == 7
    assert all(vid in meta["splits"]["test"] and 0 <= start <= FRAMES - 8 for vid, start in clips["clips"])

    # resume: nothing decoded again, same metadata; a removed video is decoded again
    written = {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")}
    with pytest.warns(RuntimeWarning):
        again = prepare_kth(raw, out, workers=1, seed=3, test_clip_count=7, test_clip_length=8)
    assert again == meta
    assert {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")} == written
    (out / "test" / "person21_boxing_d1.npy").unlink()
    with pytest.warns(RuntimeWarning):
        assert prepare_kth(raw, out, workers=1, seed=3, test_clip_count=7, test_clip_length=8) == meta
    np.testing.assert_array_equal(
        np.load(out / "test" / "person21_boxing_d1.npy"), reference(originals["person21_boxing_d1"])
    )


def test_process_pool_gives_same_result(kth_raw, tmp_path: Path) -> None:
    raw, _ = kth_raw
    with pytest.warns(RuntimeWarning):
        serial = prepare_kth(raw, tmp_path / "serial", workers=1, test_clip_count=4, test_clip_length=8)
        pooled = prepare_kth(raw, tmp_path / "pooled", workers=2, test_clip_count=4, test_clip_length=8)
    assert pooled["splits"] == serial["splits"] and pooled["test_clips"] == serial["test_clips"]
    for path in (tmp_path / "serial").glob("*/*.npy"):
        np.testing.assert_array_equal(np.load(path), np.load(tmp_path / "pooled" / path.parent.name / path.name))


def test_wrong_raw_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_kth(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"expected boxing\.zip.*personNN_<action>_dX_uncomp\.avi"):
        prepare_kth(tmp_path / "empty", tmp_path / "out")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    write_avi(wrong / "person01_swimming_d1_uncomp.avi", grey_frames(0, 2))
    with pytest.raises(ValueError, match="no KTH video found"):
        prepare_kth(wrong, tmp_path / "out")
    write_avi(wrong / "person01_boxing_d1_uncomp.avi", grey_frames(0, 2))
    with pytest.raises(ValueError, match=r"no KTH test video \(persons 21-25\)"):
        prepare_kth(wrong, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_one_line_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["kth", "--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code not in (0, None)
    error = str(exit_info.value.code)
    assert error.startswith("srvp-prepare: error: no KTH video found") and "\n" not in error
