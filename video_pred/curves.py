"""The validation curves of a training run: PSNR and SSIM of the best sample against training wall-clock,
beside the model-free baselines on the same clips, redrawn as validation.png at every validation so that a
run can be read while it trains (when does the model first beat an all-black frame?)."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from srvp.common.files import atomic_write

VALIDATION_PLOT_NAME = "validation.png"
METRICS = ("psnr", "ssim")


def read_validation_history(metrics_path: Path) -> list[dict[str, float]]:
    """The validation rows of a run's metrics.jsonl, in step order, with the 'val/' prefix removed and 'step'
    kept: [{'step', 'psnr', 'ssim', 'train_seconds', 'baseline_psnr/black', ...}, ...]."""
    rows = []
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line)
        values = {key.removeprefix("val/"): value for key, value in record.items() if key.startswith("val/")}
        if values:
            rows.append({"step": record["step"], **values})
    return sorted(rows, key=lambda row: row["step"])


def plot_validation(path: Path, history: list[dict[str, float]]) -> Path:
    """Write `path` (validation.png): one panel per metric of `history` (read_validation_history's rows), the
    model's value against training minutes, each baseline dashed with its value in the legend (rows of runs that
    logged no time are left out). The y-axis frames the model and the best baseline, the line to cross: a
    baseline far below them (the mean frame's SSIM) would squash the crossing into a few pixels."""
    history = [row for row in history if "train_seconds" in row]
    if not history:
        raise ValueError("no validation row with train_seconds to plot")
    minutes = [row["train_seconds"] / 60 for row in history]
    metrics = [name for name in METRICS if any(name in row for row in history)]
    figure = Figure(figsize=(4 * max(len(metrics), 1), 3.2), layout="constrained")
    for axes, name in zip(figure.subplots(1, max(len(metrics), 1), squeeze=False)[0], metrics, strict=False):
        points = [(m, row[name]) for m, row in zip(minutes, history, strict=True) if name in row]
        axes.plot(*zip(*points, strict=True), marker="o", label="model")
        baselines = []
        for key in sorted({key for row in history for key in row if key.startswith(f"baseline_{name}/")}):
            line = [(m, row[key]) for m, row in zip(minutes, history, strict=True) if key in row]
            baselines.append(line[-1][1])
            label = f"{key.split('/', 1)[1]} {baselines[-1]:.4g}"
            axes.plot(*zip(*line, strict=True), linestyle="--", linewidth=1, label=label)
        axes.set_ylim(*value_axis_limits([value for _, value in points], baselines))
        last = history[-1]
        title = f"validation {name.upper()} {last.get(name, float('nan')):.4g} at step {last['step']}"
        axes.set(ylabel=name.upper(), title=title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.supxlabel("training minutes (validation, videos and checkpoints excluded)", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110))
    return path


def value_axis_limits(model: list[float], baselines: list[float]) -> tuple[float, float]:
    """Y-axis limits framing the model's values and the best (highest) of `baselines` with a 10% margin; the
    other baselines may fall outside (a flat curve gets a small band around it)."""
    framed = model + ([max(baselines)] if baselines else [])
    low, high = min(framed), max(framed)
    margin = 0.1 * (high - low) or 0.01 * (abs(high) or 1.0)
    return low - margin, high + margin
