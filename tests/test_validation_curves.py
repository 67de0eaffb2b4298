"""The training clock behind the validation curves leaves out validation, videos and checkpoints, and
validation.png is drawn from a run's metrics.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from srvp.video_pred import trainer as trainer_module
from srvp.video_pred.curves import plot_validation, read_validation_history
from srvp.video_pred.trainer import TrainClock


def test_train_clock_leaves_out_side_work(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])
    clock = TrainClock(done=50.0)
    now[0] += 3.0  # three seconds of steps
    with clock.side_work():
        now[0] += 40.0  # a validation
    now[0] += 2.0
    assert clock.total() == pytest.approx(55.0)
    assert clock.lap() == pytest.approx(5.0) and clock.done == pytest.approx(55.0)
    with clock.side_work():
        now[0] += 7.0
    now[0] += 1.0
    assert clock.lap() == pytest.approx(1.0) and clock.total() == pytest.approx(56.0)


def test_validation_history_and_plot(tmp_path):
    rows = [
        {"step": 50, "train/loss": 3.0, "train/seconds": 10.0},
        {"step": 100, "val/psnr": 15.0, "val/ssim": 0.70, "baseline_ssim/black": 0.85},  # a run before the clock
        {"step": 500, "val/psnr": 18.0, "val/ssim": 0.80, "val/train_seconds": 60.0, "val/baseline_ssim/black": 0.85},
        {"step": 1000, "val/psnr": 19.0, "val/ssim": 0.86, "val/train_seconds": 120.0, "val/baseline_ssim/black": 0.85},
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(row) + "\n" for row in reversed(rows)))
    history = read_validation_history(metrics)
    assert [row["step"] for row in history] == [100, 500, 1000]
    assert history[2] == {
        "step": 1000,
        "psnr": 19.0,
        "ssim": 0.86,
        "train_seconds": 120.0,
        "baseline_ssim/black": 0.85,
    }
    image = np.asarray(Image.open(plot_validation(tmp_path / "validation.png", history)).convert("L"))
    assert image.shape[0] > 200 and image.std() > 10  # a drawn figure, not a blank one
    with pytest.raises(ValueError, match="train_seconds"):
        plot_validation(tmp_path / "none.png", history[:1])


def test_plot_frames_the_model_and_the_best_baseline():
    from srvp.video_pred.curves import value_axis_limits

    low, high = value_axis_limits([0.72, 0.84], [0.8434, 0.7493, 0.27])  # black, last frame, mean frame
    assert 0.68 < low < 0.72 and 0.8434 < high < 0.86  # the mean frame's 0.27 is left out of the frame
    low, high = value_axis_limits([18.0, 18.0], [])  # a flat curve still gets a band
    assert low < 18.0 < high
