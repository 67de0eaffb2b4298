"""Control evaluations read against model-free policies: baselines, the summary table and the returns curve.

Every evaluation return of `srvp-control` is shown beside the returns of a uniform random policy and of the
zero-action policy on the same evaluation seeds (the same initial states), so a curve or a final number can be
read at once: an agent that does not beat both has learned nothing usable. The baselines are computed once per
task, episode length and seed set and cached in the run directory (`baselines.json`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srvp.common.files import atomic_write
from srvp.common.stats import mean_ci95

BASELINES_NAME = "baselines.json"
RETURNS_PLOT_NAME = "returns.png"
REFERENCE_NAMES = {"planet": "PlaNet", "dreamer": "Dreamer"}
"""How the reference methods of the env configs' `anchors` are written on the plot."""


def returns_ci(returns: Sequence[float]) -> dict[str, float]:
    """Mean, 95% confidence half-width and count of episode returns."""
    mean, half_width = mean_ci95(torch.tensor(list(returns), dtype=torch.float64))
    return {"mean": mean, "ci95": half_width, "episodes": float(len(returns))}


def load_or_compute_baselines(
    run_dir: Path, key: dict[str, Any], compute: Callable[[str], list[float]]
) -> dict[str, list[float]]:
    """Per-seed returns of the 'random' and 'zero' policies for the evaluation setting `key` (task, episode
    length, seeds...), read from run_dir/baselines.json when it holds that key, else computed by
    `compute(policy_name)` and written there."""
    path = run_dir / BASELINES_NAME
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["returns"]
    returns = {name: compute(name) for name in ("random", "zero")}
    payload = json.dumps({"key": key, "returns": returns}, indent=1).encode()
    atomic_write(path, lambda file: file.write(payload))
    return returns


def summary_rows(agent_returns: Sequence[float], baselines: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Rows (policy, mean, ci95, episodes) of the agent and of each baseline, agent first."""
    rows = [{"policy": "agent", **returns_ci(agent_returns)}]
    rows += [{"policy": name, **returns_ci(values)} for name, values in baselines.items()]
    return rows


def verdict(rows: list[dict[str, Any]]) -> str:
    """'agent vs best baseline' in words: beats it (above its mean by more than the agent's CI or not) or below."""
    agent, others = rows[0], rows[1:]
    best = max(others, key=lambda row: row["mean"])
    gap = agent["mean"] - best["mean"]
    if gap > 0:
        margin = "beyond" if gap > agent["ci95"] + best["ci95"] else "within"
        return f"beats {best['policy']} by {gap:.1f} ({margin} the two 95% CIs)"
    return f"BELOW {best['policy']} by {-gap:.1f}"


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the evaluation return of the agent and the baselines, and the verdict."""
    lines = ["| policy | return | ±95% | episodes |", "|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['mean']:.1f} | {r['ci95']:.1f} | {int(r['episodes'])} |" for r in rows]
    return "\n".join(lines) + f"\n\nagent vs best baseline: {verdict(rows)}"


def plot_returns(
    path: Path,
    *,
    history: list[dict[str, float]],
    baselines: dict[str, list[float]],
    anchors: dict[str, float],
    title: str,
) -> Path:
    """returns.png: evaluation return (mean ± 95% CI) against environment steps, the baselines as bands over the
    whole range, and the reference returns of other methods at 500k steps (`anchors`) as labelled lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    steps = [row["env_steps"] for row in history]
    means = np.array([row["mean"] for row in history])
    half_widths = np.array([row["ci95"] for row in history])
    axis.errorbar(steps, means, yerr=half_widths, marker="o", capsize=3, color="tab:blue", label="SRVP agent")
    right = max(steps) if steps else 1
    for (name, values), colour in zip(baselines.items(), ("tab:gray", "tab:olive"), strict=False):
        stats = returns_ci(values)
        axis.axhspan(stats["mean"] - stats["ci95"], stats["mean"] + stats["ci95"], color=colour, alpha=0.25)
        axis.axhline(stats["mean"], color=colour, lw=1, label=f"{name} policy (mean ± 95% CI)")
    for (name, value), style in zip(anchors.items(), ("--", ":", "-."), strict=False):
        label = REFERENCE_NAMES.get(name, name)
        axis.axhline(value, color="black", ls=style, lw=0.8, label=f"{label} at 500k steps (reference)")
    axis.set_xlim(0, right * 1.05)
    axis.set_xlabel("environment steps (simulator steps)")
    axis.set_ylabel("evaluation return")
    axis.set_title(title)
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110))
    plt.close(figure)
    return path
