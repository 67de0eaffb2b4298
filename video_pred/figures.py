"""`srvp-figures`: the paper's qualitative figures from a trained checkpoint (docs/benchmarks.md).

    srvp-figures ckpt_path=best.pt figure=upsample clips=[0,1] out_dir=figures
    srvp-figures ckpt_path=best.pt figure=dt_sweep clips=[3]
    srvp-figures ckpt_path=best.pt figure=content_swap clips=[0,1,1,0]   # pairs (A, B): w from A
    srvp-figures ckpt_path=best.pt figure=interpolate clips=[0,1] interpolation.steps=7
    python -m srvp.video_pred.figures ...

Each figure is a PNG grid (one row per video, time along the width; real frames and reconstructions of
conditioning frames framed in blue, generated ones in red) and a video per format (GIF/MP4, the rows side
by side), written atomically under `out_dir`; their paths are printed at the end:
- upsample: frame-rate up-sampling. The same sample predicted with dt = 1/m for each rate m, every Euler
  state decoded, so the video has m times more frames (played m times faster: same duration).
- dt_sweep: the same sample (same seed, same noise) predicted with dt = 1, 1/2, ... decoded at integer
  times, one row per dt under the ground truth: robustness to the test-time Euler step.
- content_swap: w and the skips from clip A, dynamics (y_1 and z from the posterior on B's conditioning
  frames, then z from the prior) from clip B. Rows: A truth, B truth, swap. With the same seed, the swap
  follows exactly the latent trajectory `SRVP.predict` gives for B alone.
- interpolate: y_1 = (1 - a) m_A + a m_B for a in [0, 1], m the posterior means of q(y_1) (the means,
  not samples, so a = 0 and a = 1 are each clip's most likely start); w and the skips from clip A so that
  only the dynamics vary along the rows (the content of B would change the appearance too); z from the
  prior mean (`interpolation.z=mean`) or one fixed prior noise shared by all rows (`sample`). Rows: A
  truth, one per a, B truth.
All generation is deterministic given `seed`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from srvp.common.configs import run_hydra_main
from srvp.common.files import check_no_earlier_results, check_output_arguments
from srvp.common.media import side_by_side, time_grid, write_image, write_video
from srvp.common.runtime import resolve_device
from srvp.video_pred.data import build_dataset, check_model_fits, dataset_section
from srvp.worldmodel.checkpoint import load_model
from srvp.worldmodel.model import SRVP, to_unit_float

FIGURES = ("upsample", "dt_sweep", "content_swap", "interpolate")
VIDEO_FORMATS = ("gif", "mp4")
Z_MODES = ("mean", "sample")
FIGURE_FILES = ("*.png", *(f"*.{suffix}" for suffix in VIDEO_FORMATS))
"""What a figure run writes; a rerun into a folder holding such files is refused unless overwrite=true."""


# ---------------------------------------------------------------------------------------------- generation
def _require_eval(model: SRVP) -> None:
    """Figures use the test-time choices (content from the last k frames), which eval mode selects."""
    if model.training:
        raise ValueError("figures need the model in eval mode (model.eval())")


@torch.no_grad()
def upsample(
    model: SRVP, cond_frames: torch.Tensor, horizon: int, rates: list[int], seed: int
) -> dict[int, torch.Tensor]:
    """cond_frames (b k c h w) -> {m: (b, (k + horizon - 1) * m + 1, c, h, w)}: one sample per clip with
    dt = 1/m, every Euler state decoded; each rate restarts from `seed`, so all rates share the noise."""
    _require_eval(model)
    videos = {}
    for rate in rates:
        if rate < 1:
            raise ValueError(f"upsample rate {rate}: must be a positive integer (dt = 1/rate)")
        torch.manual_seed(seed)
        videos[rate] = model.predict(cond_frames, horizon, 1, dt=1 / rate, all_substeps=True, cond_dt=1 / rate)[:, 0]
    return videos


@torch.no_grad()
def dt_sweep(model: SRVP, cond_frames: torch.Tensor, horizon: int, inverse_dts: list[int], seed: int) -> torch.Tensor:
    """cond_frames (b k c h w) -> (b, len(inverse_dts), k + horizon, c, h, w): the same sample (noise
    from `seed`) predicted with dt = 1/n for each n, decoded at integer times."""
    _require_eval(model)
    rows = []
    for inverse_dt in inverse_dts:
        if inverse_dt < 1:
            raise ValueError(f"dt_sweep value {inverse_dt}: must be a positive integer n (dt = 1/n)")
        torch.manual_seed(seed)
        rows.append(model.predict(cond_frames, horizon, 1, dt=1 / inverse_dt, cond_dt=1 / inverse_dt)[:, 0])
    return torch.stack(rows, dim=1)


@torch.no_grad()
def content_swap(
    model: SRVP, content_cond: torch.Tensor, dynamics_cond: torch.Tensor, horizon: int, seed: int
) -> torch.Tensor:
    """Decode the dynamics of `dynamics_cond` (b k c h w) with the content (w, skips) of `content_cond`
    (b k c h w) -> (b, k + horizon, c, h, w). The dynamics draw their noise first, in `predict`'s order."""
    _require_eval(model)
    if not model.config.use_content:
        raise ValueError("content_swap needs a model with a content variable (model.use_content=true)")
    torch.manual_seed(seed)
    dynamics = model.observe(dynamics_cond)
    future = model.imagine(dynamics.states[:, -1], horizon)
    content = model.observe(content_cond)
    states = torch.cat([dynamics.states, future.frame_states[:, 1:]], dim=1)
    return model.decode(states, content.content, content.skips).clamp_(0, 1)


@torch.no_grad()
def interpolate(
    model: SRVP,
    cond_a: torch.Tensor,
    cond_b: torch.Tensor,
    length: int,
    alphas: list[float],
    seed: int,
    z_mode: str = "mean",
) -> torch.Tensor:
    """Roll out from y_1 interpolated between the q(y_1) means of clips A and B (b k c h w each), content from
    A -> (b, len(alphas), length, c, h, w). z: prior mean (`mean`) or one prior noise for all alphas."""
    _require_eval(model)
    if z_mode not in Z_MODES:
        raise ValueError(f"interpolation z={z_mode!r}: expected one of {Z_MODES}")
    y1_frames = model.config.y1_frames
    start_a = model.infer_y1(model.encode(cond_a).codes[:, :y1_frames]).mean
    start_b = model.infer_y1(model.encode(cond_b).codes[:, :y1_frames]).mean
    content = model.observe(cond_a)
    rows = []
    for alpha in alphas:
        generator = torch.Generator(device=start_a.device).manual_seed(seed)
        start = torch.lerp(start_a, start_b, alpha)
        rollout = model.imagine(start, length - 1, prior_mean=z_mode == "mean", generator=generator)
        rows.append(model.decode(rollout.frame_states, content.content, content.skips).clamp_(0, 1))
    return torch.stack(rows, dim=1)


# ---------------------------------------------------------------------------------------------- files
def write_figure(
    out_dir: Path, name: str, rows: list[torch.Tensor], cond_frames: list[int], formats: list[str], fps: int
) -> list[Path]:
    """Write rows of equal-length videos (t c h w) as `name`.png (a time grid) and `name`.<format> (side by
    side); row i has `cond_frames[i]` conditioning frames (framed in blue)."""
    pairs = list(zip(rows, cond_frames, strict=True))
    grid = np.concatenate([time_grid([row], count) for row, count in pairs])
    paths = [write_image(out_dir / f"{name}.png", grid)]
    if formats:
        video = np.concatenate([side_by_side([row], count) for row, count in pairs], axis=2)
        paths += [write_video(out_dir / f"{name}.{suffix}", video, fps=fps) for suffix in formats]
    return paths


def clip_pairs(clips: list[int]) -> list[tuple[int, int]]:
    """Consecutive (A, B) pairs of a clip list of even length."""
    if len(clips) % 2:
        raise ValueError(f"clips={clips}: this figure takes pairs (A, B), e.g. clips=[0,1] or [0,1,1,0]")
    return list(zip(clips[0::2], clips[1::2], strict=True))


def load_clips(dataset: Dataset, indices: list[int], device: torch.device) -> torch.Tensor:
    """Clips number `indices` of a test split -> float (b t c h w) on `device`."""
    for index in indices:
        if not 0 <= index < len(dataset):
            raise ValueError(f"clip {index} is out of range: the test split has {len(dataset)} clips")
    return to_unit_float(torch.stack([torch.as_tensor(dataset[index]) for index in indices])).to(device)


def render(
    model: SRVP, clips: torch.Tensor, clip_ids: list[int], cond: int, horizon: int, cfg: DictConfig, out_dir: Path
) -> list[Path]:
    """Generate the figure `cfg.figure` for the loaded clips (b t c h w) and write its files."""
    figure, formats, fps, seed = cfg.figure, list(cfg.formats), int(cfg.fps), int(cfg.seed)
    cond_clips = clips[:, :cond]
    paths: list[Path] = []
    if figure == "upsample":
        rates = [int(rate) for rate in cfg.upsample_rates]
        for rate, videos in upsample(model, cond_clips, horizon, rates, seed).items():
            for clip_id, video in zip(clip_ids, videos, strict=True):
                name, cond_states = f"upsample_clip{clip_id}_x{rate}", (cond - 1) * rate + 1
                paths += write_figure(out_dir, name, [video], [cond_states], formats, fps * rate)
    elif figure == "dt_sweep":
        inverse_dts = [int(value) for value in cfg.dt_sweep]
        predictions = dt_sweep(model, cond_clips, horizon, inverse_dts, seed)
        for clip_id, truth, rows in zip(clip_ids, clips, predictions, strict=True):
            counts = [len(truth)] + [cond] * len(rows)
            paths += write_figure(out_dir, f"dt_sweep_clip{clip_id}", [truth, *rows], counts, formats, fps)
    else:
        pairs = clip_pairs(clip_ids)
        truth_a, truth_b = clips[0::2], clips[1::2]
        if figure == "content_swap":
            generated = content_swap(model, truth_a[:, :cond], truth_b[:, :cond], horizon, seed)[:, None]
        else:
            steps = int(cfg.interpolation.steps)
            if steps < 2:
                raise ValueError(f"interpolation.steps={steps}: needs at least 2 (alpha 0 and 1)")
            alphas = torch.linspace(0, 1, steps).tolist()
            generated = interpolate(
                model, truth_a[:, :cond], truth_b[:, :cond], cond + horizon, alphas, seed, cfg.interpolation.z
            )
        for (clip_a, clip_b), a, b, rows in zip(pairs, truth_a, truth_b, generated, strict=True):
            if figure == "content_swap":
                ordered, counts = [a, b, *rows], [len(a), len(b), cond]
            else:  # interpolated rows are generated from their first frame on
                ordered, counts = [a, *rows, b], [len(a), *[0] * len(rows), len(b)]
            paths += write_figure(out_dir, f"{figure}_clips{clip_a}-{clip_b}", ordered, counts, formats, fps)
    return paths


# ---------------------------------------------------------------------------------------------- CLI
def make_figures(cfg: DictConfig) -> list[Path]:
    """Load the checkpoint and its test clips, generate `cfg.figure`, write the files; returns their paths."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ValueError("ckpt_path is required: srvp-figures ckpt_path=/path/to/checkpoint.pt figure=...")
    if cfg.figure not in FIGURES:
        raise ValueError(f"figure={cfg.figure!r}: expected one of {FIGURES}")
    unknown = sorted(set(cfg.formats) - set(VIDEO_FORMATS))
    if unknown:
        raise ValueError(f"formats={list(cfg.formats)}: expected some of {VIDEO_FORMATS}")
    if not cfg.clips:
        raise ValueError("clips is empty: list test clip indices, e.g. clips=[0,1]")
    device = resolve_device(cfg.device)
    model, payload = load_model(cfg.ckpt_path, device)
    dataset_cfg = dataset_section(payload.get("config", {}).get("dataset", {}), cfg.dataset)
    check_model_fits(dataset_cfg, model.config)
    clip_ids = [int(index) for index in cfg.clips]
    clips = load_clips(build_dataset(dataset_cfg, "test"), clip_ids, device)
    cond = int(dataset_cfg.cond_frames)
    horizon = int(cfg.horizon) if cfg.horizon is not None else clips.shape[1] - cond
    if horizon < 1 or cond + horizon > clips.shape[1]:
        raise ValueError(
            f"horizon={horizon}: must lie in [1, {clips.shape[1] - cond}] (test clips have "
            f"{clips.shape[1]} frames, {cond} conditioning)"
        )
    clips = clips[:, : cond + horizon]
    out_dir = Path(cfg.out_dir).expanduser()
    check_no_earlier_results(out_dir, FIGURE_FILES, "out_dir", cfg.overwrite)
    return render(model, clips, clip_ids, cond, horizon, cfg, out_dir)


@hydra.main(version_base="1.3", config_path="pkg://srvp.configs", config_name="figures")
def _hydra_main(cfg: DictConfig) -> None:
    """Console entry point `srvp-figures`; user errors end in one line on stderr and exit status 1."""
    try:
        paths = make_figures(cfg)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"srvp-figures: error: {error}")
    print("\n".join(str(path) for path in paths))


def main() -> None:
    """Console-script entry point: an unusable output folder is refused before hydra creates it."""
    check_output_arguments(sys.argv[1:], ("hydra.run.dir", "out_dir"), "srvp-figures")
    run_hydra_main("srvp-figures", _hydra_main)


if __name__ == "__main__":
    main()
