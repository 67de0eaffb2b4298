"""The control world model fitted on fixed replay episodes, with the diagnostics that tell a dead model from a
learning one, at chosen update counts: a fast way to compare world-model settings without planning.
A variant sets world-model fields and, by the keys of LOOP_KEYS, the updates ('seq_len=12,batch_size=32').

Every variant starts from the same seed and sees the same batches (the loop's own update step on windows of
the training buffer); at each evaluation point it is measured on fixed windows: activity of f's hidden layers
and the spread of imagined returns on the training buffer's posterior states, open-loop PSNR/SSIM and reward
error on held-out episodes against their model-free baselines (`srvp.agents.diagnostics`). Buffers are
directories written by `srvp.agents.buffer.EpisodeBuffer.save` (an srvp-control run's `buffer/`, or
`--collect` random episodes of a task). Results go to results.json and results.md in --out, with
open_loop_<variant>.png: a held-out window, the context as the agent filters it, then the imagined frames.

    python -m bench.control_model --out runs/control_model --collect cartpole-swingup 30 10 \
        --variant default --variant nu=0.05 'nu=0.05,l2_weight=0.1'
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from srvp.agents.buffer import EpisodeBuffer
from srvp.agents.diagnostics import diagnose
from srvp.agents.loop import (
    RandomPolicy,
    make_env,
    open_loop_prediction,
    run_episode,
    stream_seed,
    update_world_model,
)
from srvp.agents.world_model import build_world_model
from srvp.common.media import time_grid, write_image
from srvp.common.optimisation import build_optimizer
from srvp.common.runtime import resolve_device, seed_everything

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def collect_random(task: str, episodes: int, seed: int, directory: Path, steps: int | None = None) -> EpisodeBuffer:
    """`episodes` uniform-random episodes of dm_control `task` (the loop's seed episodes; `steps` agent steps each,
    None: the task's full length), saved in `directory`, or the ones saved there before."""
    if (directory / "index.json").exists():
        return EpisodeBuffer.load(directory)
    env_cfg = OmegaConf.load(CONFIG_DIR / "env" / f"{task}.yaml")
    env = make_env(env_cfg, steps)
    action_dim = env.action_space.shape[0]
    buffer = EpisodeBuffer((3, env_cfg.size, env_cfg.size), action_dim)
    for index in range(episodes):
        policy = RandomPolicy(action_dim, np.random.default_rng([seed, index]))
        episode = run_episode(env, policy, stream_seed(seed, 0, index))
        buffer.add_episode(episode.frames, episode.actions, episode.rewards)
    env.close()
    buffer.save(directory)
    return buffer


LOOP_KEYS = ("lr", "batch_size", "seq_len")
"""Variant keys that set the updates (learning rate, windows per update, frames per window), not the model."""


def parse_variant(text: str) -> dict[str, Any]:
    """'nu=0.05,l2_weight=0.1' -> overrides of the world model (LOOP_KEYS set the updates'); 'default' -> {}."""
    if text == "default":
        return {}
    overrides = {}
    for item in text.split(","):
        key, value = item.split("=", 1)
        overrides[key.strip()] = _number(value.strip())
    return overrides


def _number(value: str) -> Any:
    """A variant's value as int, float, bool or string."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def measure(
    model: torch.nn.Module, train: dict, heldout: dict, context: int, mean_reward: float, horizon: int
) -> dict[str, float]:
    """Every diagnostic at the current weights, on the fixed windows (the loop's own, `diagnose`)."""
    replay = {"obs": train["obs"][:, :context], "actions": train["actions"][:, : context - 1]}
    return diagnose(
        model, replay, heldout, horizon=horizon, mean_reward=mean_reward, generator=torch.Generator().manual_seed(0)
    )


def run_variant(name: str, overrides: dict[str, Any], args: argparse.Namespace, train_buffer, heldout_buffer) -> list:
    """Train one variant from scratch on `train_buffer`, measuring at every --eval-at count; returns the rows."""
    seed_everything(args.seed)
    device = resolve_device(args.device)
    model_cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "world_model" / "srvp_control.yaml"))
    model_cfg.pop("defaults", None)
    loop = {key: overrides.pop(key, getattr(args, key)) for key in LOOP_KEYS}
    model_cfg.update(overrides)
    model = build_world_model(model_cfg, train_buffer.action_dim).to(device)
    optimizer_cfg = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": loop["lr"], "eps": 1e-4}
    optimizer = build_optimizer(optimizer_cfg, model, device, fused=True)
    windows = max(args.context) + args.horizon
    train_windows = train_buffer.sample(args.windows, windows, generator=torch.Generator().manual_seed(1))
    heldout_windows = heldout_buffer.sample(args.windows, windows, generator=torch.Generator().manual_seed(2))
    mean_reward = train_buffer.reward_mean
    sampler = torch.Generator().manual_seed(args.seed)
    rows, done, start = [], 0, time.perf_counter()
    for target in [0, *args.eval_at]:
        losses = {}
        if target > done:
            losses = update_world_model(
                model,
                optimizer,
                train_buffer,
                updates=target - done,
                batch_size=loop["batch_size"],
                seq_len=loop["seq_len"],
                generator=sampler,
                device=device,
                precision="fp32",
                grad_clip=1000.0,
            )
            done = target
        for context in args.context:
            # The same held-out windows for every context: the predicted frames are the last `horizon` ones.
            offset = max(args.context) - context
            heldout = {key: value[:, offset:] for key, value in heldout_windows.items()}
            scores = measure(model, train_windows, heldout, context, mean_reward, args.horizon)
            row = {"variant": name, "updates": done, "context": context, **loop, **losses, **scores}
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    context = max(args.context)
    truth, prediction = open_loop_prediction(
        model,
        heldout_buffer,
        context=context,
        length=context + args.horizon,
        precision="fp32",
        generator=torch.Generator().manual_seed(3),
    )
    file_name = re.sub(r"[^\w.-]+", "_", name)
    write_image(args.out / f"open_loop_{file_name}.png", time_grid([truth, prediction], context))
    return rows


COLUMNS = {
    "f_active": "active units of f's hidden layers",
    "return_spread": "spread of imagined returns",
    "heldout_psnr": "open-loop PSNR (last frame)",
    "heldout_reward_mse": "reward MSE (mean reward)",
    "heldout_kl_y1": "KL y1",
    "heldout_kl_z": "KL z",
}


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per (variant, update count): the diagnostics beside their baselines."""
    lines = ["| variant | updates | context | " + " | ".join(COLUMNS.values()) + " |"]
    lines.append("|---" * (len(COLUMNS) + 3) + "|")
    for row in rows:
        active = "/".join(f"{row[key]:.2f}" for key in sorted(row) if key.startswith("f_active"))
        cells = [
            active,
            f"{row['return_spread']:.4f}",
            f"{row['heldout_psnr']:.2f} ({row['heldout_psnr_last_frame']:.2f})",
            f"{row['heldout_reward_mse']:.3f} ({row['heldout_reward_mse_mean_reward']:.3f})",
            f"{row['heldout_kl_y1']:.1f}",
            f"{row['heldout_kl_z']:.1f}",
        ]
        lines.append(f"| {row['variant']} | {row['updates']} | {row.get('context', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--collect",
        nargs=3,
        metavar=("TASK", "TRAIN", "HELDOUT"),
        required=True,
        help="task and counts of random training and held-out episodes (collected once, kept in --out)",
    )
    parser.add_argument("--episode-steps", type=int, default=None, help="agent steps per episode (default: full)")
    parser.add_argument("--windows", type=int, default=16, help="fixed windows the diagnostics are measured on")
    parser.add_argument("--variant", nargs="+", default=["default"])
    parser.add_argument("--eval-at", type=int, nargs="+", default=[100, 200, 300])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument(
        "--context", type=int, nargs="+", default=[8], help="observed frames before the open loop (one row each)"
    )
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    task, train_count, heldout_count = args.collect
    train_buffer = collect_random(task, int(train_count), 7, args.out / "buffer_train", args.episode_steps)
    heldout_buffer = collect_random(task, int(heldout_count), 8, args.out / "buffer_heldout", args.episode_steps)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    for variant in args.variant:
        rows = run_variant(variant, parse_variant(variant), args, train_buffer, heldout_buffer)
        results = [row for row in results if row["variant"] != variant] + rows
        results_path.write_text(json.dumps(results, indent=1))
        (args.out / "results.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
