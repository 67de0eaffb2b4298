"""`srvp-eval`: best-of-N evaluation of a trained checkpoint on its benchmark's fixed test clips.

    srvp-eval ckpt_path=outputs/train/kth/.../best.pt dataset.root=/data/kth
    srvp-eval -m ckpt_path=... dt=1,1/2,1/3,1/4,1/5          # frame-rate sweep (hydra multirun)

The dataset section comes from the checkpoint's training config, with the non-null `dataset.*` values of
configs/eval.yaml merged on top. Results go to the hydra run directory (or `out_dir`): eval.json (config,
checkpoint, N, clips, metric means with 95% CIs, per-step curves, FVD, and the same for the model-free
baselines of `srvp.video_pred.baselines`), curves.csv and curves.png (model and baselines).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from srvp.common.configs import run_hydra_main
from srvp.common.files import atomic_write, check_no_earlier_results, check_output_arguments
from srvp.common.runtime import resolve_device
from srvp.video_pred import data
from srvp.video_pred.baselines import MEAN_FRAME_CLIPS, mean_training_frame
from srvp.video_pred.metrics.i3d import i3d_features, load_i3d
from srvp.video_pred.protocol import FRAME_METRICS, FrameMetric, ProtocolResult, per_image_metric, run_best_of_n
from srvp.worldmodel import load_model
from srvp.worldmodel.config import parse_step

LPIPS = "lpips"
RESULT_FILES = ("eval.json", "curves.csv", "curves.png")
"""What an evaluation writes into its folder; a rerun into a folder holding them is refused (overwrite=true)."""


def eval_defaults() -> DictConfig:
    """configs/eval.yaml as srvp-eval composes it, without hydra's own section: the base of an evaluation run
    from code (inside or outside a running hydra application)."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="eval")
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        return compose(config_name="eval")


def metric_names(value: Any) -> list[str]:
    """`metrics=[psnr,ssim]` (a list) or `metrics=psnr` / `metrics=psnr,ssim` (a string) -> names."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return [str(name) for name in value]


def build_metrics(names: list[str], device: torch.device, lpips_trunk: str | None) -> list[FrameMetric]:
    """The requested per-frame metrics; LPIPS loads its network now so a missing weight file fails early."""
    unknown = sorted(set(names) - set(FRAME_METRICS) - {LPIPS})
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"metrics={names}: expected distinct names among {[*FRAME_METRICS, LPIPS]}")
    metrics = [FRAME_METRICS[name] for name in names if name != LPIPS]
    if LPIPS in names:
        from srvp.video_pred.metrics.lpips import load_lpips

        try:
            lpips_model = load_lpips(device, trunk_path=lpips_trunk)
        except (FileNotFoundError, RuntimeError) as error:
            raise RuntimeError(f"{error} (or evaluate without LPIPS: metrics=[psnr,ssim])") from None
        metrics.append(per_image_metric(LPIPS, lpips_model, higher_is_better=False))
    return metrics


def build_video_features(device: torch.device) -> Callable[[Tensor], Tensor]:
    """I3D features for FVD, (b t c h w) in [0, 1] -> (b 400), with the network loaded on `device` now."""
    i3d = load_i3d(device)
    return lambda videos: i3d_features(i3d, videos)


DEFAULT_VAL_CLIPS = 400
"""Fixed validation clips of `split=val` when the checkpoint's config does not say (configs/trainer/default.yaml)."""


def build_test_loader(
    dataset_cfg: DictConfig, cfg: DictConfig, device: torch.device, val_clips: int = DEFAULT_VAL_CLIPS
) -> DataLoader:
    """Batches of the fixed test clips (or, with `split=val`, the `val_clips` fixed validation clips the
    trainer selects checkpoints on), in order, truncated to `max_clips`."""
    dataset = data.build_dataset(dataset_cfg, cfg.split, size=val_clips if cfg.split == "val" else None)
    if cfg.max_clips is not None:
        if cfg.max_clips < 1:
            raise ValueError(f"max_clips={cfg.max_clips}: must be positive or null")
        dataset = Subset(dataset, range(min(cfg.max_clips, len(dataset))))
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size={cfg.batch_size}: must be positive")
    return DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, pin_memory=device.type == "cuda"
    )


def evaluate(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run the protocol described by `cfg` and write its results under `out_dir`; returns the JSON report."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ValueError("ckpt_path is required: srvp-eval ckpt_path=/path/to/checkpoint.pt")
    started = time.perf_counter()
    device = resolve_device(cfg.device)
    dt = None if cfg.dt is None else parse_step(cfg.dt)
    # The checkpoint and the data first: a wrong path is reported before metric networks are loaded.
    model, payload = load_model(cfg.ckpt_path, device)
    dataset_cfg = data.dataset_section(payload["config"].get("dataset", {}), cfg.dataset)
    data.check_model_fits(dataset_cfg, model.config)
    val_clips = (payload["config"].get("trainer") or {}).get("val_clips") or DEFAULT_VAL_CLIPS
    loader = build_test_loader(dataset_cfg, cfg, device, int(val_clips))
    num_samples = int(cfg.num_samples if cfg.num_samples is not None else dataset_cfg.test_samples)
    metrics = build_metrics(metric_names(cfg.metrics), device, cfg.lpips_trunk)
    video_features = build_video_features(device) if cfg.fvd else None
    mean_frame = mean_training_frame(data.build_dataset(dataset_cfg, "train")) if cfg.baselines else None
    torch.manual_seed(cfg.seed)
    result = run_best_of_n(
        model,
        loader,
        cond_frames=dataset_cfg["cond_frames"],
        pred_frames=dataset_cfg["pred_frames"],
        num_samples=num_samples,
        metrics=metrics,
        dt=dt,
        sample_chunk=cfg.sample_chunk,
        precision=cfg.precision,
        video_features=video_features,
        fvd_draws=cfg.fvd_draws,
        num_clips=len(loader.dataset),
        mean_frame=mean_frame,
    )
    higher_is_better = {metric.name: metric.higher_is_better for metric in metrics}
    report = {
        "checkpoint": str(Path(cfg.ckpt_path).expanduser().resolve()),
        "checkpoint_step": payload.get("step"),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "dataset": OmegaConf.to_container(dataset_cfg, resolve=True),
        "num_samples": num_samples,
        "num_clips": result.num_clips,
        "dt": dt if dt is not None else model.config.dt,
        "device": str(device),
        "metrics": {
            name: {"mean": s.mean, "ci95": s.ci95, "higher_is_better": higher_is_better[name]}
            for name, s in result.metrics.items()
        },
        "curves": {name: {"mean": s.curve, "ci95": s.curve_ci95} for name, s in result.metrics.items()},
        "fvd": None if result.fvd is None else {"mean": result.fvd[0], "ci95": result.fvd[1], "draws": cfg.fvd_draws},
        "baselines": {
            baseline: {
                name: {"mean": s.mean, "ci95": s.ci95, "curve": s.curve, "curve_ci95": s.curve_ci95}
                for name, s in summaries.items()
            }
            for baseline, summaries in result.baselines.items()
        },
        "mean_frame": f"per-pixel mean of every frame of {MEAN_FRAME_CLIPS} training clips" if cfg.baselines else None,
        "seconds": time.perf_counter() - started,
    }
    write_results(out_dir, report, result, dataset_cfg["cond_frames"])
    return report


def write_results(out_dir: Path, report: dict[str, Any], result: ProtocolResult, cond_frames: int) -> None:
    """Atomically write eval.json, and the per-step curves as curves.csv and curves.png when metrics ran."""
    atomic_write(out_dir / "eval.json", lambda file: file.write(json.dumps(report, indent=2).encode()))
    if not result.metrics:
        return
    steps = len(next(iter(result.metrics.values())).curve)
    text = io.StringIO()
    writer = csv.writer(text)
    # The model's columns, then each baseline's: {baseline}_{metric}_mean / _ci95.
    series = {name: summary for name, summary in result.metrics.items()}
    for baseline, summaries in result.baselines.items():
        series.update({f"{baseline}_{name}": summary for name, summary in summaries.items()})
    columns = [f"{name}_{part}" for name in series for part in ("mean", "ci95")]
    writer.writerow(["step", "frame", *columns])
    for step in range(steps):
        values = [value for s in series.values() for value in (s.curve[step], s.curve_ci95[step])]
        writer.writerow([step + 1, cond_frames + step + 1, *values])
    atomic_write(out_dir / "curves.csv", lambda file: file.write(text.getvalue().encode()))
    figure = plot_curves(result, cond_frames)
    atomic_write(out_dir / "curves.png", lambda file: figure.savefig(file, format="png"))


def plot_curves(result: ProtocolResult, cond_frames: int) -> Figure:
    """One panel per metric: the best sample's mean value against the frame index, with its 95% band, and
    each model-free baseline as a dashed line."""
    figure = Figure(figsize=(4 * len(result.metrics), 3.2), layout="constrained")
    for axes, (name, summary) in zip(
        figure.subplots(1, len(result.metrics), squeeze=False)[0], result.metrics.items(), strict=True
    ):
        frame_index = range(cond_frames + 1, cond_frames + 1 + len(summary.curve))
        low = [m - w for m, w in zip(summary.curve, summary.curve_ci95, strict=True)]
        high = [m + w for m, w in zip(summary.curve, summary.curve_ci95, strict=True)]
        axes.plot(frame_index, summary.curve, label="model")
        axes.fill_between(frame_index, low, high, alpha=0.3)
        for baseline, summaries in result.baselines.items():
            axes.plot(frame_index, summaries[name].curve, linestyle="--", linewidth=1, label=baseline)
        title = f"{name.upper()} {summary.mean:.4g} ± {summary.ci95:.2g}"
        axes.set(xlabel="frame", ylabel=name.upper(), title=title)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if result.baselines:
            axes.legend(fontsize="small")
    return figure


def results_table(report: dict[str, Any]) -> str:
    """Plain-text table of the headline numbers: the model's mean and CI, each baseline's mean, and the
    verdict against the best baseline of each metric."""
    baselines = report.get("baselines") or {}
    header = f"{'metric':<8}{'model':>10}{'±95%':>9}" + "".join(f"{name:>12}" for name in baselines)
    lines = [header + ("   model vs best baseline" if baselines else "")]
    for name, values in report["metrics"].items():
        line = f"{name:<8}{values['mean']:>10.4g}{values['ci95']:>9.2g}"
        if baselines:
            line += "".join(f"{scores[name]['mean']:>12.4g}" for scores in baselines.values())
            line += "   " + versus_best_baseline(name, values, baselines)
        lines.append(line)
    if report["fvd"] is not None:
        lines.append(f"{'fvd':<8}{report['fvd']['mean']:>10.4g}{report['fvd']['ci95']:>9.2g}")
    return "\n".join(lines)


def versus_best_baseline(metric: str, model: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> str:
    """'beats mean_frame by 1.2' or 'BELOW black by 0.3': the model's report entry of `metric` against the
    best baseline of that metric."""
    sign = 1 if model["higher_is_better"] else -1
    best = max(baselines, key=lambda baseline: sign * baselines[baseline][metric]["mean"])
    margin = sign * (model["mean"] - baselines[best][metric]["mean"])
    verdict = "beats" if margin > 0 else "BELOW"
    return f"{verdict} {best} by {abs(margin):.3g}"


def evaluated(dataset: dict[str, Any], split: str) -> str:
    """What an evaluation ran on, for its first printed line: 'kth test split (/data/kth)'."""
    root = dataset.get("root")
    return f"{dataset['name']} {split} split" + (f" ({root})" if root else "")


def output_dir(cfg: DictConfig) -> Path:
    """`out_dir` when given (single runs only), else the hydra run or sweep-job directory."""
    hydra_cfg = HydraConfig.get()
    if cfg.out_dir is None:
        return Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        raise ValueError("out_dir cannot be shared by multirun jobs: choose hydra.sweep.dir=... instead")
    return Path(cfg.out_dir).expanduser()


@hydra.main(version_base="1.3", config_path="pkg://srvp.configs", config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    """Console entry point `srvp-eval`; user errors end in one line on stderr and exit status 1."""
    try:
        out_dir = output_dir(cfg)
        check_no_earlier_results(out_dir, RESULT_FILES, "out_dir", cfg.overwrite)
        report = evaluate(cfg, out_dir)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"srvp-eval: error: {error}")
    print(
        f"{evaluated(report['dataset'], cfg.split)}: {report['num_clips']} clips x {report['num_samples']} samples, "
        f"dt={report['dt']:.4g}, {report['seconds']:.1f} s"
    )
    print(results_table(report))
    print(
        f"results: {out_dir / 'eval.json'}"
        + (f", {out_dir / 'curves.csv'}, {out_dir / 'curves.png'}" if report["metrics"] else "")
    )


def main() -> None:
    """Console-script entry point: an unusable output folder is refused before hydra creates it."""
    check_output_arguments(sys.argv[1:], ("hydra.run.dir", "hydra.sweep.dir", "out_dir"), "srvp-eval")
    run_hydra_main("srvp-eval", _hydra_main)


if __name__ == "__main__":
    main()
