"""Control at equal budget: the residual transition against a GRU (PlaNet's kind of cell) and a plain MLP, and
imagination at dt = 1/2 (finer residual steps, make control's) against dt = 1, on the CPU control experiment.

Each variant is an `srvp-control` run of one experiment config (default `cpu_control`, what `make control`
runs) with the same seed, evaluation seeds and budget, through the loop's own code. Variants advance in turns
from one stage (a number of planning episodes) to the next, so at any moment all of them have been measured at
the same budgets; every stage ends with the loop's evaluation (return on the fixed seeds beside the random and
zero-action policies, and the world-model diagnostics on held-out episodes), appended to results.json at once.
Each run resumes from its run directory, so the driver can be stopped and restarted with the same arguments
without losing or redoing work. results.md holds the table and returns.png the curves.

    python -m bench.control --out runs/control_bench --stages 10 20 40
    python -m bench.control debug=control_tiny --out /tmp/c --stages 1 2   # hydra overrides come first
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import save_report

DT_1 = ["world_model.dt=1", "planning.dt=1"]
VARIANTS = {
    "residual": [],
    "gru": ["world_model.transition=gru", *DT_1],
    "mlp": ["world_model.transition=mlp", *DT_1],
    "residual_dt_1": DT_1,
}
"""Variant name -> its overrides on top of the experiment: `residual` is make control's own (trained and
imagined at dt 1/2, two Euler steps per frame); the others step once per frame (GRU and MLP cells have no
Euler step)."""

DIAGNOSTICS = (
    "heldout_psnr",
    "heldout_psnr_last_frame",
    "heldout_reward_mse",
    "heldout_reward_mse_mean_reward",
    "return_spread",
    "heldout_kl_z",
)


def variant_config(experiment: str, variant: str, run_dir: Path, episodes: int, extra: list[str]):
    """The srvp-control config of `variant` stopping after `episodes` planning episodes, in `run_dir`."""
    from hydra import compose, initialize_config_module

    overrides = [f"experiment={experiment}", *VARIANTS[variant], f"loop.episodes={episodes}", *extra]
    with initialize_config_module(config_module="srvp.configs", version_base="1.3"):
        cfg = compose(config_name="control", overrides=overrides)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    return cfg


def last_diagnostics(run_dir: Path) -> dict[str, float]:
    """The diagnostics of the run's last evaluation (metrics.jsonl)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    found = [line for line in lines if any(key.startswith("diagnostics/") for key in line)]
    return {key.split("/", 1)[1]: value for key, value in found[-1].items() if key != "step"} if found else {}


def record(results: dict[str, Any], variant: str, stage: int, run_dir: Path, seconds: float) -> dict[str, Any]:
    """Add the evaluation that ended `variant`'s run at `stage` planning episodes."""
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = {row["policy"]: row for row in summary["rows"]}
    entry = {
        "variant": variant,
        "episodes": stage,
        "env_steps": summary["env_steps"],
        "return": rows["agent"]["mean"],
        "return_ci95": rows["agent"]["ci95"],
        "seconds_total": seconds,
        **{name: last_diagnostics(run_dir).get(name) for name in DIAGNOSTICS},
    }
    results["evaluations"].append(entry)
    results["baselines"] = {name: {"mean": row["mean"], "ci95": row["ci95"]} for name, row in rows.items()}
    results["baselines"].pop("agent")
    return entry


def markdown(results: dict[str, Any]) -> str:
    """One row per (stage, variant), then the baselines."""

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"experiment `{results['experiment']}`, overrides {results['overrides'] or 'none'}",
        "",
        "| episodes | env steps | variant | return ± 95% | open-loop PSNR (last frame) | reward MSE (mean reward) "
        "| return spread | KL z | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(VARIANTS)
    for entry in sorted(results["evaluations"], key=lambda e: (e["episodes"], order.index(e["variant"]))):
        lines.append(
            f"| {entry['episodes']} | {entry['env_steps']} | {entry['variant']} | {entry['return']:.1f} ± "
            f"{entry['return_ci95']:.1f} | {number(entry['heldout_psnr'], 2)} "
            f"({number(entry['heldout_psnr_last_frame'], 2)}) | {number(entry['heldout_reward_mse'], 3)} "
            f"({number(entry['heldout_reward_mse_mean_reward'], 3)}) | "
            f"{number(entry['return_spread'], 4)} | {number(entry['heldout_kl_z'], 1)} | {entry['seconds_total']:.0f} |"
        )
    for name, stats in results.get("baselines", {}).items():
        lines.append(f"| - | - | {name} policy | {stats['mean']:.1f} ± {stats['ci95']:.1f} | | | | | |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any]):
    """Evaluation return against environment steps per variant, the baselines as bands."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4), layout="constrained")
    axes = figure.subplots()
    for variant in VARIANTS:
        points = sorted(
            (e["env_steps"], e["return"], e["return_ci95"]) for e in results["evaluations"] if e["variant"] == variant
        )
        if points:
            steps, means, widths = zip(*points, strict=True)
            axes.errorbar(steps, means, yerr=widths, marker="o", capsize=3, label=variant)
    for (name, stats), colour in zip(results.get("baselines", {}).items(), ("grey", "olive"), strict=False):
        axes.axhspan(stats["mean"] - stats["ci95"], stats["mean"] + stats["ci95"], color=colour, alpha=0.2)
        axes.axhline(stats["mean"], color=colour, linewidth=1, label=f"{name} policy")
    axes.set(xlabel="environment steps", ylabel="evaluation return", title=results["experiment"])
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def save(out: Path, results: dict[str, Any]) -> None:
    save_report(out, results, markdown(results), plot(results), "returns.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs and results")
    parser.add_argument("--stages", type=int, nargs="+", required=True, help="planning episodes at which to stop")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--experiment", default="cpu_control", help="configs/experiment/<name>.yaml")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for every variant (key=value)")
    args = parser.parse_args(argv)
    from srvp.agents.loop import train

    stages = sorted(set(args.stages))
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = (
        json.loads(results_path.read_text())
        if results_path.exists()
        else {"experiment": args.experiment, "overrides": list(args.overrides), "evaluations": []}
    )
    done = {(entry["variant"], entry["episodes"]) for entry in results["evaluations"]}
    for stage in stages:
        for variant in args.variants:
            if (variant, stage) in done:
                continue
            run_dir = args.out / variant
            before = max([e["seconds_total"] for e in results["evaluations"] if e["variant"] == variant], default=0.0)
            started = time.perf_counter()
            train(variant_config(args.experiment, variant, run_dir, stage, list(args.overrides)))
            entry = record(results, variant, stage, run_dir, before + time.perf_counter() - started)
            save(args.out, results)
            print(f"[control] {variant} after {stage} episodes: return {entry['return']:.1f}", flush=True)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
