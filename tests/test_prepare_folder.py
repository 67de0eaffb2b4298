"""`srvp-prepare folder` on real files written by PyAV and PIL in several containers and codecs (mp4/h264,
avi/mjpeg, mkv/mpeg4, webm/vp9, mov/mpeg4, gif, lossless avi), with variable-frame-rate files, a corrupt and
a short file and nested folders; every option is checked against frames decoded separately and processed
with PIL by the test itself; then a tiny `srvp-train dataset=folder` run, and srvp-eval and srvp-figures on
its checkpoint."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from PIL import Image

from srvp.video_pred.data import build_dataset, dataset_defaults
from srvp.video_pred.data.prepare_folder import FolderVideo, FrameOptions, prepare_folder
from srvp.video_pred.data.prepared import load_meta
from srvp.video_pred.evaluate import eval_defaults, evaluate
from srvp.video_pred.figures import make_figures
from srvp.video_pred.prepare import main
from srvp.video_pred.train import train
from srvp.worldmodel import load_model

WIDTH, HEIGHT = 80, 48  # not square, so that the crop options differ
PIL_FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}


def make_frames(count: int, seed: int = 0) -> np.ndarray:
    """Smooth RGB frames (T, 48, 80, 3) whose brightness steps by 12 per frame (a wrongly picked frame shows
    even through a lossy codec), with a coloured block that moves one pixel per frame."""
    ramp = np.linspace(0, 60, WIDTH)[None, :, None] + np.linspace(0, 30, HEIGHT)[:, None, None]
    colour = np.random.default_rng(seed).integers(0, 40, 3)
    frames = []
    for t in range(count):
        frame = (ramp + colour + 12 * t).clip(0, 255)
        frame[10:22, 4 + t : 20 + t] = (250, 40, 90)
        frames.append(frame.astype(np.uint8))
    return np.stack(frames)


def write_video(
    path: Path,
    frames: np.ndarray,
    container_format: str,
    codec: str,
    pix_fmt: str = "yuv420p",
    pts_ms: list[int] | None = None,
) -> None:
    """Encode RGB frames (T, H, W, 3) with PyAV at 25 fps, or at the given millisecond timestamps (VFR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format) as container:
        options = {"crf": "12", "preset": "ultrafast"} if codec == "libx264" else {}
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if codec in ("mpeg4", "mjpeg", "libvpx-vp9"):
            stream.bit_rate = 8_000_000
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_gif(path: Path, frames: np.ndarray, durations_ms: list[int]) -> None:
    """An animated GIF written by PIL, each frame shown for its own duration (a variable frame rate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations_ms, loop=0)


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of the file, decoded on its own by PyAV: the reference's input."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def processed(
    rgb: np.ndarray,
    box: tuple[int, int, int, int] | None = (16, 0, 64, 48),
    resize_filter: str = "lanczos",
    grey: bool = False,
) -> np.ndarray:
    """The reference pipeline on one frame: PIL crop (default: the centre square of 80x48), resize, colour;
    returned as (C, 64, 64)."""
    image = Image.fromarray(rgb)
    if box is not None:
        image = image.crop(box)
    image = image.resize((64, 64), PIL_FILTERS[resize_filter])
    if grey:
        return np.asarray(image.convert("L"))[None]
    return np.asarray(image).transpose(2, 0, 1)


def reference(path: Path, indices: list[int], **options) -> np.ndarray:
    frames = decoded(path)
    return np.stack([processed(frames[index], **options) for index in indices])


FORMATS = {
    # prepared name: (path under raw, container, codec, pixel format)
    "a__clip.mp4": ("a/clip.mp4", "mp4", "libx264", "yuv420p"),
    "a__b__clip.avi": ("a/b/clip.avi", "avi", "mjpeg", "yuvj420p"),
    "c__clip.mkv": ("c/clip.mkv", "matroska", "mpeg4", "yuv420p"),
    "clip.webm": ("clip.webm", "webm", "libvpx-vp9", "yuv420p"),
    "e__clip.MOV": ("e/clip.MOV", "mov", "mpeg4", "yuv420p"),
}
FRAMES = 10
GIF_DURATIONS_MS = [40, 40, 120, 40, 260, 40, 40, 40, 40, 40]
VFR_PTS_MS = [0, 40, 80, 200, 240, 500, 540, 580, 620, 660]  # the same timestamps: a 25 fps stream with two gaps


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory) -> Path:
    """Nested folders of every format, a VFR mp4, a VFR gif, a corrupt mp4, a short mkv and files to ignore."""
    raw = tmp_path_factory.mktemp("videos")
    for seed, (relative, container_format, codec, pix_fmt) in enumerate(FORMATS.values()):
        write_video(raw / relative, make_frames(FRAMES, seed), container_format, codec, pix_fmt)
    write_video(raw / "vfr" / "irregular.mp4", make_frames(FRAMES, 7), "mp4", "libx264", pts_ms=VFR_PTS_MS)
    write_gif(raw / "d" / "anim.gif", make_frames(FRAMES, 8), GIF_DURATIONS_MS)
    (raw / "broken.mp4").write_bytes(b"definitely not an mp4 file" * 200)
    write_video(raw / "short.mkv", make_frames(3), "matroska", "mpeg4")
    write_video(raw / ".hidden" / "skip.mp4", make_frames(FRAMES), "mp4", "libx264")
    (raw / "notes.txt").write_text("not a video")
    return raw


FILES = {name: relative for name, (relative, *_) in FORMATS.items()}
FILES |= {"vfr__irregular.mp4": "vfr/irregular.mp4", "d__anim.gif": "d/anim.gif"}


def test_every_container_nested_folders_corrupt_and_short_files(raw_folder, tmp_path):
    out = tmp_path / "out"
    kwargs = dict(seed=5, min_frames=6, test_fraction=0.3, val_fraction=0.2, test_clip_count=5, test_clip_length=6)
    with pytest.warns(RuntimeWarning) as caught:
        meta = prepare_folder(raw_folder, out, **kwargs)
    messages = " ".join(str(warning.message) for warning in caught)
    assert "broken.mp4" in messages and "short.mkv" in messages
    skipped = {Path(name).name: reason for name, reason in meta["skipped"].items()}
    assert sorted(skipped) == ["broken.mp4", "short.mkv"]
    assert "fewer than min_frames=6" in skipped["short.mkv"]

    # splits by file: 3 of 7 for test (ceil of 30%), then 1 of the other 4 for validation (ceil of 20%)
    splits = meta["splits"]
    assert sorted({**splits["train"], **splits["val"], **splits["test"]}) == sorted(FILES)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (3, 1, 3)
    assert meta["channels"] == 3 and meta["dataset"] == "folder"
    assert meta["source"]["frames"]["crop"] == "center" and meta["source"]["frames"]["resize_filter"] == "lanczos"

    # frames: each equals its own file decoded separately, centre-cropped and Lanczos-resized by PIL
    for split, videos in splits.items():
        for name, count in videos.items():
            stored = np.load(out / split / f"{name}.npy")
            assert stored.dtype == np.uint8 and stored.shape == (FRAMES, 3, 64, 64) and count == FRAMES
            np.testing.assert_array_equal(stored, reference(raw_folder / FILES[name], list(range(FRAMES))))

    clips = meta["test_clips"]
    assert clips["length"] == 6 and len(clips["clips"]) == 5
    assert all(name in splits["test"] and 0 <= start <= FRAMES - 6 for name, start in clips["clips"])

    # resume: nothing decoded again; other frame options are refused with the option named
    written = {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")}
    with pytest.warns(RuntimeWarning):
        assert prepare_folder(raw_folder, out, **kwargs) == meta
    assert {path: path.stat().st_mtime_ns for path in out.glob("*/*.npy")} == written
    with pytest.raises(ValueError, match=r"other options \(resize_filter: lanczos -> bilinear\)"):
        prepare_folder(raw_folder, out, **kwargs, resize_filter="bilinear")


def folder_video(path: Path, **options) -> FolderVideo:
    return FolderVideo("v", "train", str(path), path=str(path), options=FrameOptions(min_frames=1, **options))


def test_target_fps_follows_timestamps_of_variable_frame_rate_files(raw_folder):
    # Frames on screen at 0, 100, ..., 600 ms: the last frame whose timestamp is not after each time (timestamps
    # 0 40 80 200 240 500 540 580 620 660 ms in the mp4, and in the GIF through its per-frame durations).
    for vfr in (raw_folder / "vfr/irregular.mp4", raw_folder / "d/anim.gif"):
        np.testing.assert_array_equal(
            folder_video(vfr, fps=Fraction(10)).decode(), reference(vfr, [0, 2, 3, 4, 4, 5, 7])
        )
    # a constant 25 fps file at 12.5 fps keeps every other frame, exactly (no rounding drift)
    mp4 = raw_folder / "a/clip.mp4"
    np.testing.assert_array_equal(folder_video(mp4, fps=Fraction(25, 2)).decode(), reference(mp4, [0, 2, 4, 6, 8]))
    # frame counts are not timestamps: every-n-th on a VFR file keeps frames 0, 3, 6, 9 whatever their times
    vfr = raw_folder / "vfr/irregular.mp4"
    np.testing.assert_array_equal(folder_video(vfr, every=3).decode(), reference(vfr, [0, 3, 6, 9]))
    # above the source rate a frame is shown again until the next one
    assert len(folder_video(mp4, fps=Fraction(50)).decode()) == 2 * (FRAMES - 1) + 1


def test_crop_resize_and_grey_options_on_lossless_frames(tmp_path):
    original = make_frames(4, seed=3)
    path = tmp_path / "lossless.avi"
    write_video(path, original, "avi", "rawvideo", "bgr24")  # lossless: the reference starts from `original`
    cases = [
        ({}, {}),
        ({"crop": "none"}, {"box": None}),
        ({"crop": (8, 4, 40, 36)}, {"box": (8, 4, 40, 36)}),
        ({"resize_filter": "bilinear"}, {"resize_filter": "bilinear"}),
        ({"grey": True}, {"grey": True}),
    ]
    for options, expected in cases:
        stored = folder_video(path, **options).decode()
        np.testing.assert_array_equal(stored, np.stack([processed(frame, **expected) for frame in original]))
    with pytest.raises(ValueError, match=r"frames are 80x48, smaller than the crop box \(0, 0, 64, 64\)"):
        folder_video(path, crop=(0, 0, 64, 64)).decode()
    with pytest.raises(ValueError, match="exclude each other"):
        FrameOptions(every=2, fps=Fraction(5)).validate()


def test_split_file_decides_the_splits(raw_folder, tmp_path):
    split_file = tmp_path / "splits.txt"
    split_file.write_text("# my split\ntrain a/clip.mp4\ntrain c/clip.mkv\n\nval clip.webm\ntest d/anim.gif\n")
    meta = prepare_folder(raw_folder, tmp_path / "out", split_file=split_file, test_clip_count=2, test_clip_length=6)
    assert {split: sorted(videos) for split, videos in meta["splits"].items()} == {
        "train": ["a__clip.mp4", "c__clip.mkv"],
        "val": ["clip.webm"],
        "test": ["d__anim.gif"],
    }
    split_file.write_text("train a/clip.mp4\ntest missing.mp4\n")
    with pytest.raises(ValueError, match=r"splits.txt:2: missing.mp4 is not a video file"):
        prepare_folder(raw_folder, tmp_path / "out2", split_file=split_file)
    split_file.write_text("training a/clip.mp4\n")
    with pytest.raises(ValueError, match=r"splits.txt:1: expected '<split> <path>'"):
        prepare_folder(raw_folder, tmp_path / "out2", split_file=split_file)


# Frames kept at 12.5 fps (every 80 ms): every other frame at 25 fps; on the VFR timestamps above, the frames on
# screen at 0, 80, ..., 640 ms.
KEPT_AT_12_5_FPS = {name: [0, 2, 4, 6, 8] for name in FORMATS} | {
    "vfr__irregular.mp4": [0, 2, 2, 4, 4, 4, 4, 6, 8],
    "d__anim.gif": [0, 2, 2, 4, 4, 4, 4, 6, 8],
}


def test_cli_options_and_one_line_errors(raw_folder, tmp_path, capsys):
    out = tmp_path / "grey"
    args = ["folder", "--raw", str(raw_folder), "--out", str(out), "--workers", "2", "--fps", "25/2", "--grey"]
    args += ["--crop", "0,0,48,48", "--filter", "bilinear", "--min-frames", "4", "--test-clips", "3"]
    with pytest.warns(RuntimeWarning):  # broken.mp4, and short.mkv: 2 frames at 12.5 fps
        main([*args, "--test-clip-length", "4"])
    assert "folder: train" in capsys.readouterr().out
    meta = load_meta(out)
    assert meta["channels"] == 1 and len(meta["test_clips"]["clips"]) == 3
    assert sorted(Path(name).name for name in meta["skipped"]) == ["broken.mp4", "short.mkv"]
    for split, videos in meta["splits"].items():
        for name in videos:
            expected = reference(
                raw_folder / FILES[name],
                KEPT_AT_12_5_FPS[name],
                box=(0, 0, 48, 48),
                resize_filter="bilinear",
                grey=True,
            )
            np.testing.assert_array_equal(np.load(out / split / f"{name}.npy"), expected)

    with pytest.raises(SystemExit) as error:
        main(["kth", "--raw", str(raw_folder), "--out", str(tmp_path / "kth"), "--fps", "10"])
    assert error.value.code == 2 and "--fps: options of `srvp-prepare folder` only" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as error:
        main(["folder", "--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    message = str(error.value.code)
    assert message.startswith("srvp-prepare: error: no video file found") and "\n" not in message
    # the training config's colour is checked against the prepared folder's
    with pytest.raises(ValueError, match=r"dataset.channels=3 but .* holds 1-channel videos: set dataset.channels=1"):
        build_dataset(OmegaConf.merge(dataset_defaults("folder"), {"root": str(out)}), "train")


@pytest.mark.slow
def test_folder_trains_through_srvp_train_then_evaluates_and_draws(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(0)
    for index in range(5):
        frames = rng.integers(0, 256, (12, HEIGHT, WIDTH, 3), dtype=np.uint8)
        write_video(raw / f"take{index % 2}" / f"clip{index}.avi", frames, "avi", "rawvideo", "bgr24")
    root = tmp_path / "prepared"
    prepare_folder(raw, root, test_fraction=0.2, val_fraction=0.25, test_clip_count=4, test_clip_length=8)
    run_dir = tmp_path / "run"
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "dataset=folder",
                f"dataset.root={root}",
                "debug=tiny",
                f"run_dir={run_dir}",
                "device=cpu",
                "trainer.max_steps=4",
                "trainer.val_every=2",
                "model.filters=4",
                "dataset.train_length=6",
                "dataset.cond_frames=3",
                "dataset.pred_frames=3",
            ],
        )
    GlobalHydra.instance().clear()
    train(cfg)
    model, payload = load_model(run_dir / "checkpoints" / "last.pt")
    assert payload["step"] == 4
    assert (model.config.arch, model.config.skip, model.config.dt, model.config.channels) == ("vgg", True, 0.5, 3)
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert "train/loss" in metrics and "val/psnr" in metrics and (run_dir / "checkpoints" / "best.pt").exists()

    # srvp-eval on the checkpoint: the dataset section (folder, its root, 3 + 3 frames) comes from the checkpoint
    eval_cfg = OmegaConf.merge(
        eval_defaults(),
        {"ckpt_path": str(run_dir / "checkpoints" / "last.pt"), "device": "cpu", "metrics": ["psnr", "ssim"]},
        {"num_samples": 2, "max_clips": 2, "batch_size": 2, "num_workers": 0},
    )
    report = evaluate(eval_cfg, tmp_path / "eval")
    assert report["num_clips"] == 2 and report["num_samples"] == 2
    assert set(report["metrics"]) == {"psnr", "ssim"} and np.isfinite(report["metrics"]["psnr"]["mean"])
    assert (tmp_path / "eval" / "eval.json").is_file()

    # srvp-figures on it: the checkpoint's folder test clips, up-sampled at dt = 1/2
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        figures_cfg = compose(
            config_name="figures",
            overrides=[f"ckpt_path={run_dir / 'checkpoints' / 'last.pt'}", f"out_dir={tmp_path / 'figures'}"]
            + ["figure=upsample", "clips=[0]", "upsample_rates=[2]", "formats=[]", "device=cpu"],
        )
    GlobalHydra.instance().clear()
    assert [path.name for path in make_figures(figures_cfg)] == ["upsample_clip0_x2.png"]
