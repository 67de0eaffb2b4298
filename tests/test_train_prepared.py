"""KTH, Human3.6M and BAIR train through `srvp-train dataset=...`: real-format raw files -> srvp-prepare -> a
tiny training run with validation and a checkpoint (in process, through hydra's compose API)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from srvp.video_pred.curves import VALIDATION_PLOT_NAME, read_validation_history
from srvp.video_pred.data.prepare_bair import prepare_bair
from srvp.video_pred.data.prepare_human36m import prepare_human36m
from srvp.video_pred.data.prepare_kth import prepare_kth
from srvp.video_pred.train import train
from srvp.worldmodel import load_model
from tests.test_prepare_bair import write_tfrecords
from tests.test_prepare_human36m import SIZE, write_mp4
from tests.test_prepare_kth import write_avi


def prepare_tiny_kth(tmp_path: Path) -> Path:
    raw = tmp_path / "kth_raw" / "walking"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for person in (1, 2, 3, 21):
        for scene in (1, 2):
            frames = rng.integers(0, 256, (24, 120, 160), dtype=np.uint8)
            write_avi(raw / f"person{person:02d}_walking_d{scene}_uncomp.avi", frames)
    prepare_kth(raw.parent, tmp_path / "kth", test_clip_count=4, test_clip_length=12)
    return tmp_path / "kth"


def prepare_tiny_human36m(tmp_path: Path) -> Path:
    raw = tmp_path / "h36m_raw"
    rng = np.random.default_rng(0)
    for subject in (1, 5, 9):
        for action in ("Walking", "Eating"):
            frames = rng.integers(0, 256, (12 * 8, SIZE, SIZE, 3), dtype=np.uint8)
            write_mp4(raw / f"S{subject}/Videos/{action}.54138969.mp4", frames)
    prepare_human36m(raw, tmp_path / "h36m", crop_box=(25, 25, 223, 223), test_clip_count=4, test_clip_length=10)
    return tmp_path / "h36m"


def prepare_tiny_bair(tmp_path: Path) -> Path:
    root = tmp_path / "bair_raw" / "softmotion30_44k"
    write_tfrecords(root / "train" / "traj_0_to_2.tfrecords", [0, 1, 2])
    write_tfrecords(root / "test" / "traj_0_to_1.tfrecords", [3, 4])
    prepare_bair(root, tmp_path / "bair")
    return tmp_path / "bair"


CASES = {
    "kth": (prepare_tiny_kth, ["dataset.pred_frames=2", "dataset.val_length=12", "trainer.val_every=2"]),
    "human36m": (prepare_tiny_human36m, ["dataset.pred_frames=2", "dataset.train_length=8", "trainer.val_every=2"]),
    "bair": (prepare_tiny_bair, []),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_prepared_dataset_trains_through_srvp_train(tmp_path, name):
    prepare, overrides = CASES[name]
    root = prepare(tmp_path)
    run_dir = tmp_path / "run"
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"dataset={name}",
                f"dataset.root={root}",
                "debug=tiny",
                f"run_dir={run_dir}",
                "device=cpu",
                "trainer.max_steps=4",
                "model.filters=4",
                *overrides,
            ],
        )
    GlobalHydra.instance().clear()
    train(cfg)
    model, payload = load_model(run_dir / "checkpoints" / "last.pt")
    assert payload["step"] == 4
    assert model.config.arch == "vgg" and model.config.skip and model.config.dt == 0.5
    assert model.config.channels == (1 if name == "kth" else 3)
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert "train/loss" in metrics
    if cfg.trainer.val_every:
        assert "val/psnr" in metrics and (run_dir / "checkpoints" / "best.pt").exists()
        history = read_validation_history(run_dir / "metrics.jsonl")
        assert [row["step"] for row in history] == [2, 4]
        assert 0 < history[0]["train_seconds"] < history[1]["train_seconds"]
        assert all(0 < row["ssim"] <= 1 and 0 < row["baseline_ssim/black"] <= 1 for row in history)
        assert (run_dir / VALIDATION_PLOT_NAME).stat().st_size > 0
        assert payload["extra"]["train_seconds"] == pytest.approx(history[1]["train_seconds"])
