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
    model's value against training minutes, each baseline dashed (rows of runs that logged no time are left out)."""
    history = [row for row in history if "train_seconds" in row]
    if not history:
        raise ValueError("no validation row with train_seconds to plot")
    minutes = [row["train_seconds"] / 60 for row in history]
    metrics = [name for name in METRICS if any(name in row for row in history)]
    figure = Figure(figsize=(4 * max(len(metrics), 1), 3.2), layout="constrained")
    for axes, name in zip(figure.subplots(1, max(len(metrics), 1), squeeze=False)[0], metrics, strict=False):
        points = [(m, row[name]) for m, row in zip(minutes, history, strict=True) if name in row]
        axes.plot(*zip(*points, strict=True), marker="o", label="model")
        for key in sorted({key for row in history for key in row if key.startswith(f"baseline_{name}/")}):
            line = [(m, row[key]) for m, row in zip(minutes, history, strict=True) if key in row]
            axes.plot(*zip(*line, strict=True), linestyle="--", linewidth=1, label=key.split("/", 1)[1])
        last = history[-1]
        axes.set(
            xlabel="training minutes (validation, videos and checkpoints excluded)",
            ylabel=name.upper(),
            title=f"validation {name.upper()} {last.get(name, float('nan')):.4g} at step {last['step']}",
        )
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110))
    return path
