"""Learning at CPU scale: test PSNR/SSIM against training steps for the residual model and its ablations.

Each variant (`residual`, the paper's model; `mlp`, y_{t+1} = f(y_t, z); `gru`, a GRU cell driven by z;
`no_z`, the residual model without z) trains with the same seed, data stream and budget from one
experiment config (default `cpu_mmnist`, deterministic Moving MNIST sized for 2 CPU cores), through
`srvp-train`'s own code. Variants advance in turns from one evaluation step to the next, so at any moment
all of them have been measured at the same budgets; every evaluation runs `srvp-eval`'s protocol on the
same fixed test clips (best of `--samples`, PSNR and SSIM, with the model-free baselines) and is appended
to results.json at once, and each run resumes from its checkpoint, so the driver can be stopped and
restarted with the same arguments without losing or redoing work. results.md holds the table and
curves.png the curves. The direction to look for (the paper's Table 2 on deterministic Moving MNIST):
residual > MLP > GRU, and no-z below residual.

    python -m bench.learning --out runs/learning --eval-at 500 1000 2000 4000 --mnist-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import save_report

VARIANTS = {
    "residual": [],
    "mlp": ["model.transition=mlp"],
    "gru": ["model.transition=gru"],
    "no_z": ["model.stochastic=false"],
}
"""Variant name -> its config overrides on top of the experiment."""


def variant_config(experiment: str, variant: str, run_dir: Path, steps: int, extra: list[str]):
    """The training config of `variant`: the experiment, a constant learning rate over `steps`, its run dir."""
    from hydra import compose, initialize_config_module

    overrides = [
        f"experiment={experiment}",
        *VARIANTS[variant],
        f"trainer.steps={steps}",
        "trainer.lr_decay_steps=0",
        "trainer.time_budget_s=null",  # the same step counts for every variant, whatever the machine's speed
        f"run_dir={run_dir}",
        "final_eval=null",
        "trainer.val_every=null",  # evaluated on the test clips at the --eval-at steps instead
        *extra,
    ]
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def train_until(cfg, stop: int) -> None:
    """Continue the run in cfg.run_dir (or start it) until optimisation step `stop`."""
    from omegaconf import open_dict

    from srvp.video_pred.train import train

    with open_dict(cfg):
        cfg.trainer.max_steps = stop
        cfg.trainer.ckpt_every = stop
    train(cfg)


def evaluate_checkpoint(checkpoint: Path, out_dir: Path, clips: int, samples: int, device: str) -> dict[str, Any]:
    """srvp-eval's protocol (PSNR, SSIM, baselines) on the first `clips` fixed test clips."""
    from omegaconf import OmegaConf

    from srvp.video_pred.evaluate import eval_defaults, evaluate

    cfg = OmegaConf.merge(
        eval_defaults(),
        {
            "ckpt_path": str(checkpoint),
            "max_clips": clips,
            "num_samples": samples,
            "metrics": ["psnr", "ssim"],
            "num_workers": 0,
            "device": device,
        },
    )
    return evaluate(cfg, out_dir)


def last_training_scalars(run_dir: Path) -> dict[str, float]:
    """The last logged training scalars (loss parts, KLs) of a run."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    train_lines = [line for line in lines if "train/loss" in line]
    return train_lines[-1] if train_lines else {}


def record(
    results: dict[str, Any], variant: str, step: int, report: dict[str, Any], run_dir: Path, seconds: float
) -> None:
    """Add one evaluation of `variant` at `step` to the results."""
    scalars = last_training_scalars(run_dir)
    results["evaluations"].append(
        {
            "variant": variant,
            "step": step,
            "train_seconds_total": seconds,
            "psnr": report["metrics"]["psnr"]["mean"],
            "psnr_ci95": report["metrics"]["psnr"]["ci95"],
            "ssim": report["metrics"]["ssim"]["mean"],
            "ssim_ci95": report["metrics"]["ssim"]["ci95"],
            "kl_y1": scalars.get("train/kl_y1"),
            "kl_z": scalars.get("train/kl_z"),
            "nll": scalars.get("train/nll"),
        }
    )
    results["baselines"] = {
        name: {metric: scores[metric]["mean"] for metric in ("psnr", "ssim")}
        for name, scores in report["baselines"].items()
    }


def markdown(results: dict[str, Any]) -> str:
    """The table: one row per (step, variant), then the baselines."""
    lines = [
        f"experiment `{results['experiment']}`, {results['clips']} test clips, best of {results['samples']}",
        "",
        "| step | variant | PSNR | SSIM | KL y1 | KL z | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in sorted(results["evaluations"], key=lambda e: (e["step"], list(VARIANTS).index(e["variant"]))):
        kl_z = "-" if entry["kl_z"] is None else f"{entry['kl_z']:.1f}"
        kl_y1 = "-" if entry["kl_y1"] is None else f"{entry['kl_y1']:.1f}"
        lines.append(
            f"| {entry['step']} | {entry['variant']} | {entry['psnr']:.2f} ± {entry['psnr_ci95']:.2f} | "
            f"{entry['ssim']:.4f} ± {entry['ssim_ci95']:.4f} | {kl_y1} | {kl_z} | "
            f"{entry['train_seconds_total']:.0f} |"
        )
    for name, scores in results.get("baselines", {}).items():
        lines.append(f"| - | baseline {name} | {scores['psnr']:.2f} | {scores['ssim']:.4f} | | | |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any]):
    """PSNR and SSIM against steps, one line per variant, baselines dashed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("psnr", "ssim"), strict=True):
        for variant in VARIANTS:
            points = sorted((e["step"], e[metric]) for e in results["evaluations"] if e["variant"] == variant)
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", label=variant)
        for name, scores in results.get("baselines", {}).items():
            axes.axhline(scores[metric], linestyle="--", linewidth=1, color="grey")
            axes.annotate(name, (0, scores[metric]), xycoords=("axes fraction", "data"), fontsize=7, color="grey")
        axes.set(xlabel="training step", ylabel=metric.upper())
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return figure


def save(out: Path, results: dict[str, Any]) -> None:
    save_report(out, results, markdown(results), plot(results), "curves.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and results")
    parser.add_argument("--eval-at", type=int, nargs="+", required=True, help="steps at which to evaluate")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--experiment", default="cpu_mmnist", help="configs/experiment/<name>.yaml")
    parser.add_argument("--clips", type=int, default=256, help="fixed test clips per evaluation")
    parser.add_argument("--samples", type=int, default=3, help="best of this many samples")
    parser.add_argument("--mnist-dir", default=None, help="folder with the MNIST idx files")
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for every variant (key=value)")
    args = parser.parse_args(argv)
    stops = sorted(set(args.eval_at))
    extra = list(args.overrides) + ([f"dataset.mnist_dir={Path(args.mnist_dir).resolve()}"] if args.mnist_dir else [])
    extra.append(f"device={args.device}")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = (
        json.loads(results_path.read_text())
        if results_path.exists()
        else {
            "experiment": args.experiment,
            "clips": args.clips,
            "samples": args.samples,
            "overrides": extra,
            "evaluations": [],
        }
    )
    done = {(entry["variant"], entry["step"]) for entry in results["evaluations"]}
    for stop in stops:
        for variant in args.variants:
            if (variant, stop) in done:
                continue
            run_dir = args.out / variant
            cfg = variant_config(args.experiment, variant, run_dir, stops[-1], extra)
            started = time.perf_counter()
            train_until(cfg, stop)
            seconds = (
                time.perf_counter()
                - started
                + max(
                    [e["train_seconds_total"] for e in results["evaluations"] if e["variant"] == variant], default=0.0
                )
            )
            report = evaluate_checkpoint(
                run_dir / "checkpoints" / "last.pt", run_dir / f"eval_{stop}", args.clips, args.samples, args.device
            )
            record(results, variant, stop, report, run_dir, seconds)
            save(args.out, results)
            print(
                f"[learning] {variant} step {stop}: PSNR {report['metrics']['psnr']['mean']:.3f} "
                f"SSIM {report['metrics']['ssim']['mean']:.4f}",
                flush=True,
            )
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
