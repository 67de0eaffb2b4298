"""srvp-figures: frame-rate up-sampling, dt sweep, content swap and y_1 interpolation on a tiny model."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from torch import nn

from srvp.common.checkpoints import save_checkpoint
from srvp.video_pred.data.prepared import RawVideo, prepare_videos
from srvp.video_pred.figures import (
    clip_pairs,
    content_swap,
    dt_sweep,
    interpolate,
    main,
    make_figures,
    upsample,
)
from srvp.worldmodel.config import SRVPConfig
from srvp.worldmodel.model import SRVP

TINY = {
    "filters": 4,
    "code_dim": 16,
    "y_dim": 4,
    "z_dim": 3,
    "content_dim": 16,
    "inf_hidden": 16,
    "fwd_hidden": 16,
    "lstm_hidden": 16,
    "y1_frames": 2,
    "content_frames": 2,
}
COND = 4
"""Conditioning frames: y_1 comes from frames 0-1, the content (w, skips) from frames 2-3."""
BORDERED = 64 + 4
"""Size of a frame in a grid (media.add_border pads 2 pixels on each side)."""


def tiny_model(**overrides: object) -> SRVP:
    torch.manual_seed(0)
    model = SRVP(SRVPConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        # Untrained DCGAN-initialised convolutions shrink activations ~6x per layer, leaving flat grey frames;
        # unit-gain weights make content, state and noise visible in the frames, as in a trained model.
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(module.weight, 0.0, 1.5 / module.weight[0].numel() ** 0.5)
        model.prior[-1].bias[model.config.z_dim :] = 1.0  # prior std ~1.3: the noise matters
    return model


def squares(batch: int, length: int, seed: int) -> torch.Tensor:
    """float clips (b t 1 64 64) of a bright square moving at a clip-specific velocity on noise."""
    generator = torch.Generator().manual_seed(seed)
    clips = torch.rand(batch, length, 1, 64, 64, generator=generator) * 0.2
    start = torch.randint(0, 30, (batch, 2), generator=generator)
    velocity = torch.randint(-3, 4, (batch, 2), generator=generator)
    for clip in range(batch):
        for step in range(length):
            row, col = (start[clip] + velocity[clip] * step) % 50
            clips[clip, step, :, row : row + 12, col : col + 12] = 1.0
    return clips


@pytest.fixture(scope="module")
def model() -> SRVP:
    return tiny_model()


def test_upsampling_decodes_every_euler_state_with_shared_noise(model: SRVP) -> None:
    cond = squares(2, COND, seed=1)
    videos = upsample(model, cond, horizon=3, rates=[1, 2, 3], seed=5)
    sweep = dt_sweep(model, cond, horizon=3, inverse_dts=[1, 2, 3], seed=5)
    for row, rate in enumerate([1, 2, 3]):
        assert videos[rate].shape == (2, (COND + 3 - 1) * rate + 1, 1, 64, 64)
        # The states at integer times are those of the dt = 1/m prediction of the sweep (same noise).
        torch.testing.assert_close(videos[rate][:, ::rate], sweep[:, row])
    torch.manual_seed(5)
    torch.testing.assert_close(videos[1], model.predict(cond, 3, 1, dt=1.0)[:, 0])


def test_dt_sweep_is_deterministic_and_depends_on_dt(model: SRVP) -> None:
    cond = squares(2, COND, seed=2)
    sweep = dt_sweep(model, cond, horizon=5, inverse_dts=[1, 2, 3, 4, 5], seed=3)
    assert sweep.shape == (2, 5, COND + 5, 1, 64, 64)
    assert torch.equal(sweep, dt_sweep(model, cond, horizon=5, inverse_dts=[1, 2, 3, 4, 5], seed=3))
    assert not torch.allclose(sweep[:, 0], sweep[:, 1])
    assert not torch.allclose(sweep, dt_sweep(model, cond, horizon=5, inverse_dts=[1, 2, 3, 4, 5], seed=4))
    with pytest.raises(ValueError, match="dt_sweep value 0"):
        dt_sweep(model, cond, 2, [0], seed=0)


@pytest.mark.parametrize("skip", [False, True])
def test_content_swap_takes_content_from_a_and_dynamics_from_b(skip: bool) -> None:
    model = tiny_model(skip=skip)
    clip_a, clip_b = squares(2, COND, seed=3), squares(2, COND, seed=4)
    swapped = content_swap(model, clip_a, clip_b, horizon=3, seed=9)
    assert swapped.shape == (2, COND + 3, 1, 64, 64)
    # Own content: the swap is B's prediction with the same seed.
    own_content = content_swap(model, clip_b, clip_b, 3, seed=9)
    torch.manual_seed(9)
    torch.testing.assert_close(own_content, model.predict(clip_b, 3)[:, 0])
    assert not torch.allclose(swapped, content_swap(model, clip_b, clip_b, 3, seed=9))
    # Only A's content frames matter: changing A's first frames leaves the swap unchanged.
    altered_a = clip_a.clone()
    altered_a[:, :2] = torch.rand_like(altered_a[:, :2])
    torch.testing.assert_close(content_swap(model, altered_a, clip_b, 3, seed=9), swapped)
    altered_content = clip_a.clone()
    altered_content[:, -1] = torch.rand_like(altered_content[:, -1])
    assert not torch.allclose(content_swap(model, altered_content, clip_b, 3, seed=9), swapped)


def test_content_swap_needs_content_and_eval_mode() -> None:
    clips = squares(1, COND, seed=0)
    with pytest.raises(ValueError, match="use_content"):
        content_swap(tiny_model(use_content=False), clips, clips, 2, seed=0)
    with pytest.raises(ValueError, match="eval mode"):
        content_swap(tiny_model().train(), clips, clips, 2, seed=0)


def test_interpolation_ends_on_each_clip_and_keeps_a_content(model: SRVP) -> None:
    clip_a, clip_b, clip_c = squares(2, COND, seed=5), squares(2, COND, seed=6), squares(2, COND, seed=7)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    rows = interpolate(model, clip_a, clip_b, length=6, alphas=alphas, seed=2)
    assert rows.shape == (2, 5, 6, 1, 64, 64)
    # alpha = 0 starts from A alone: B does not matter.
    torch.testing.assert_close(rows[:, 0], interpolate(model, clip_a, clip_c, 6, [0.0], seed=2)[:, 0])
    # alpha = 1 starts from B: A's y_1 frames do not matter (its content frames do).
    altered_a = clip_a.clone()
    altered_a[:, :2] = torch.rand_like(altered_a[:, :2])
    torch.testing.assert_close(rows[:, -1], interpolate(model, altered_a, clip_b, 6, [1.0], seed=2)[:, 0])
    assert not torch.allclose(rows[:, 0], rows[:, 2]) and not torch.allclose(rows[:, 2], rows[:, 4])
    sampled = interpolate(model, clip_a, clip_b, 6, alphas, seed=2, z_mode="sample")
    assert torch.equal(sampled, interpolate(model, clip_a, clip_b, 6, alphas, seed=2, z_mode="sample"))
    assert not torch.allclose(sampled, rows)
    assert not torch.allclose(sampled, interpolate(model, clip_a, clip_b, 6, alphas, seed=3, z_mode="sample"))
    with pytest.raises(ValueError, match="interpolation z='median'"):
        interpolate(model, clip_a, clip_b, 6, alphas, seed=2, z_mode="median")


def test_clip_pairs() -> None:
    assert clip_pairs([0, 1, 1, 0]) == [(0, 1), (1, 0)]
    with pytest.raises(ValueError, match="pairs"):
        clip_pairs([0, 1, 2])


@dataclass(frozen=True)
class SquareVideo(RawVideo):
    """A raw test video of moving squares, in the prepared-dataset format srvp-prepare writes."""

    seed: int = 0

    def decode(self) -> np.ndarray:
        return (squares(1, 12, self.seed)[0] * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint whose dataset section is a prepared 'kth' layout without its root, the prepared root)."""
    folder = tmp_path_factory.mktemp("figures")
    videos = [
        SquareVideo(video_id=f"{split}{i}", split=split, source=f"{split}{i}", seed=i)
        for split in ("train", "test")
        for i in range(3)
    ]
    prepare_videos("kth", videos, folder / "kth", channels=1, seed=0, test_clip_length=COND + 3, test_clip_count=4)
    dataset = {"name": "kth", "root": None, "cond_frames": COND, "pred_frames": 3}
    path = save_checkpoint(folder / "model.pt", tiny_model(), step=1, config={"dataset": dataset})
    return path, folder / "kth"


def compose_figures(overrides: list[str]):
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        return compose(config_name="figures", overrides=overrides)


@pytest.mark.parametrize(
    ("figure", "clips", "grids"),
    [
        ("upsample", "[2]", {"upsample_clip2_x1.png": (1, 7), "upsample_clip2_x2.png": (1, 13)}),
        ("dt_sweep", "[0,3]", {"dt_sweep_clip0.png": (4, 7), "dt_sweep_clip3.png": (4, 7)}),
        ("content_swap", "[0,1,1,0]", {"content_swap_clips0-1.png": (3, 7), "content_swap_clips1-0.png": (3, 7)}),
        ("interpolate", "[0,1]", {"interpolate_clips0-1.png": (5, 7)}),
    ],
)
def test_make_figures_writes_grids_and_videos(
    checkpoint: tuple[Path, Path], tmp_path: Path, figure: str, clips: str, grids: dict
) -> None:
    ckpt, root = checkpoint
    cfg = compose_figures(
        [
            f"ckpt_path={ckpt}",
            f"figure={figure}",
            f"clips={clips}",
            f"out_dir={tmp_path}",
            f"dataset.root={root}",
            "device=cpu",
            "upsample_rates=[1,2]",
            "dt_sweep=[1,2,3]",
            "interpolation.steps=3",
            "formats=[gif]",
        ]
    )
    paths = make_figures(cfg)
    assert sorted(path.name for path in paths) == sorted(
        [name for name in grids] + [name.replace(".png", ".gif") for name in grids]
    )
    for name, (rows, frames) in grids.items():
        assert iio.imread(tmp_path / name).shape == (rows * BORDERED, frames * BORDERED, 3)
        video = iio.imread(tmp_path / name.replace(".png", ".gif"))
        assert video.shape[:3] == (frames, BORDERED, rows * BORDERED)


def test_a_rerun_never_replaces_earlier_figures_silently(checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    """srvp-figures into a folder that already holds figures is refused in one line; overwrite=true replaces them."""
    ckpt, root = checkpoint
    base = [f"ckpt_path={ckpt}", "figure=upsample", "clips=[2]", f"out_dir={tmp_path}", f"dataset.root={root}"]
    base += ["device=cpu", "upsample_rates=[1]", "formats=[gif]"]
    first = make_figures(compose_figures(base))
    written = {path: path.read_bytes() for path in first}
    with pytest.raises(ValueError, match=r"out_dir=.* already holds results of an earlier run .*overwrite=true"):
        make_figures(compose_figures([*base, "clips=[1]"]))
    assert {path: path.read_bytes() for path in first} == written
    assert make_figures(compose_figures([*base, "overwrite=true"])) == first


def test_make_figures_errors_name_the_culprit(checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, root = checkpoint
    base = [f"ckpt_path={ckpt}", f"out_dir={tmp_path}", f"dataset.root={root}", "device=cpu"]
    for overrides, error, message in [
        (["figure=swirl"], ValueError, "figure='swirl'"),
        (["clips=[0,99]", "figure=content_swap"], ValueError, "clip 99 is out of range"),
        (["clips=[0,1,2]", "figure=interpolate"], ValueError, "pairs"),
        (["horizon=9"], ValueError, "horizon=9"),
        (["formats=[avi]"], ValueError, "formats"),
        (["ckpt_path=/nonexistent.pt"], FileNotFoundError, "checkpoint not found"),
    ]:
        with pytest.raises(error, match=message):
            make_figures(compose_figures(base + overrides))
    assert not list(tmp_path.iterdir())


def test_cli_prints_the_written_paths(
    checkpoint: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    ckpt, root = checkpoint
    arguments = [
        "srvp-figures",
        f"ckpt_path={ckpt}",
        "figure=content_swap",
        "clips=[0,1]",
        f"out_dir={tmp_path}",
        f"dataset.root={root}",
        "device=cpu",
        "formats=[mp4]",
    ]
    monkeypatch.setattr(sys, "argv", arguments)
    main()
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "content_swap_clips0-1.png"),
        str(tmp_path / "content_swap_clips0-1.mp4"),
    ]
    assert iio.imread(tmp_path / "content_swap_clips0-1.mp4", plugin="pyav").shape[0] == COND + 3
    monkeypatch.setattr(sys, "argv", [*arguments, f"ckpt_path={tmp_path / 'absent.pt'}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    message = str(exit_info.value.code)
    assert message.startswith("srvp-figures: error: checkpoint not found") and "\n" not in message
