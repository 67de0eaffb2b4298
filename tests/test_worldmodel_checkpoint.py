"""Checkpoints: weights_only round trip, model rebuilt from the file alone, RNG restore, clear errors,
and atomic writes."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from srvp.common.checkpoints import save_checkpoint
from srvp.common.files import atomic_write
from srvp.common.runtime import capture_rng_state, restore_rng_state
from srvp.worldmodel import load_checkpoint, load_model
from tests.worldmodel_testing import random_clips, tiny_model


def trained_model_and_optimizer() -> tuple:
    model = tiny_model(arch="vgg", skip=True, heads={"reward": 1}, action_dim=2, dt=0.5).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.1, total_iters=10)
    output = model.elbo(random_clips(2, 3), actions=torch.randn(2, 2, 2), head_targets={"reward": torch.randn(2, 3)})
    output.loss.backward()
    optimizer.step()
    scheduler.step()
    return model.eval(), optimizer, scheduler


def test_round_trip_loads_with_weights_only(tmp_path: Path) -> None:
    model, optimizer, scheduler = trained_model_and_optimizer()
    run_config = {"trainer": {"steps": 10, "lr": 1e-3}, "dataset": "bair", "tags": ["a", "b"]}
    path = save_checkpoint(
        tmp_path / "nested" / "ckpt.pt",
        model,
        step=7,
        config=run_config,
        optimizer=optimizer,
        scheduler=scheduler,
        extra={"best_psnr": 21.5},
    )
    assert path == tmp_path / "nested" / "ckpt.pt" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]

    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 7 and raw["config"] == run_config and raw["extra"] == {"best_psnr": 21.5}
    assert raw["model_config"] == model.config.to_dict()

    payload = load_checkpoint(path)
    state = model.state_dict()
    assert payload["model"].keys() == state.keys()
    for name, tensor in state.items():
        torch.testing.assert_close(payload["model"][name], tensor, msg=name)
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3)
    fresh.load_state_dict(payload["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    first_moment = optimizer.state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"], first_moment)
    assert payload["scheduler"]["last_epoch"] == 1


def test_load_model_rebuilds_an_identical_model(tmp_path: Path) -> None:
    model, _, _ = trained_model_and_optimizer()
    save_checkpoint(tmp_path / "ckpt.pt", model, step=1)
    rebuilt, payload = load_model(tmp_path / "ckpt.pt")
    assert not rebuilt.training
    assert rebuilt.config == model.config
    assert payload["step"] == 1
    frames, actions = random_clips(2, 4, channels=1), torch.randn(2, 2 + 3, 2)
    with torch.no_grad():
        outputs = []
        for candidate in (model, rebuilt):
            torch.manual_seed(5)
            outputs.append(candidate.predict(frames[:, :3], 3, num_samples=2, actions=actions))
    torch.testing.assert_close(outputs[0], outputs[1])
    buffers = dict(rebuilt.named_buffers())
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffers[name], buffer, msg=name)


def test_rng_capture_and_restore_reproduce_python_numpy_and_torch(tmp_path: Path) -> None:
    random.gauss(0, 1)  # leaves a cached Gaussian in python's generator state
    np.random.standard_normal(1)  # and one in numpy's legacy generator state

    def draw() -> tuple:
        return (
            random.random(),
            random.gauss(0, 1),
            np.random.standard_normal(3).tolist(),
            np.random.randint(0, 1000, 4).tolist(),
            torch.rand(3).tolist(),
            torch.randn(2).tolist(),
        )

    state = capture_rng_state()
    first = draw()
    restore_rng_state(state)
    assert draw() == first

    save_checkpoint(tmp_path / "ckpt.pt", tiny_model(), step=0)
    expected = draw()
    draw()
    restore_rng_state(load_checkpoint(tmp_path / "ckpt.pt")["rng"])
    assert draw() == expected


def test_missing_checkpoint_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def truncated(path: Path) -> None:
    save_checkpoint(path, tiny_model(), step=0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def text(path: Path) -> None:
    path.write_bytes(b"this is not a checkpoint at all")


def garbage(path: Path) -> None:
    path.write_bytes(b"garbage bytes")


def foreign_object(path: Path) -> None:
    torch.save({"model_config": {}, "model": {}, "args": argparse.Namespace(lr=1.0)}, path)


def not_a_checkpoint(path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, path)


@pytest.mark.parametrize("corrupt", [truncated, text, garbage, foreign_object, not_a_checkpoint])
def test_corrupt_checkpoint_is_a_one_line_runtime_error(tmp_path: Path, corrupt) -> None:
    path = tmp_path / "bad.pt"
    corrupt(path)
    with pytest.raises(RuntimeError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message, f"multi-line error: {message!r}"


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old contents")

    def failing_writer(file) -> None:
        file.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing_writer)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda file: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]

    assert atomic_write(path, lambda file: file.write(b"new contents")) == path
    assert path.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_atomic_write_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.bin"
    atomic_write(str(path), lambda file: file.write(b"x"))
    assert path.read_bytes() == b"x"


def test_checkpoint_save_failure_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ckpt.pt"
    model = tiny_model()
    save_checkpoint(path, model, step=1)
    before = path.read_bytes()

    def failing_save(obj, file) -> None:
        file.write(b"partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(RuntimeError, match="interrupted"):
        save_checkpoint(path, model, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
