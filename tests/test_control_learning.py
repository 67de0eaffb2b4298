"""The control world model learns a task whose reward depends on the action: after a short training on the moving
square of examples/own_loop.py (a square pushed by 2-d actions, rewarded for nearing the centre), the imagined
returns differ across action sequences and rank the sequence that moves toward the centre above the one that
moves away. This is what died in training before (dead ReLUs in f, collapsed latents: every candidate got the
same imagined return, so the planner chose at random)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from srvp.agents.diagnostics import SPREAD_WARNING, imagined_return_spread, transition_activity
from srvp.agents.world_model import LatentObjective, build_world_model
from srvp.common.optimisation import optimisation_step

REPO = Path(__file__).resolve().parents[1]
CONTEXT, HORIZON, LENGTH = 3, 3, 10


def load_example():
    """examples/own_loop.py as a module (its synthetic task and window sampler)."""
    spec = importlib.util.spec_from_file_location("own_loop", REPO / "examples" / "own_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def control_settings() -> dict:
    """The loss and initialisation settings of the control world model (configs/world_model/srvp_control.yaml)
    at a tiny width."""
    values = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "world_model" / "srvp_control.yaml"))
    values.pop("defaults")
    sizes = {"filters": 8, "code_dim": 32, "y_dim": 8, "z_dim": 8, "content_dim": 32, "inf_hidden": 64}
    return {**values, **sizes, "fwd_hidden": 64, "lstm_hidden": 64}


def centre_plans(frames: np.ndarray, speed: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, H, 2) plans from the square's position in the last context frame (n, h w 3): straight toward the
    centre (reaching it, not overshooting) and the opposite, away from it; and the square's distances (n,) to the
    centre."""
    plans, distances = [], []
    for frame in frames:
        ys, xs = np.nonzero(frame[:, :, 0])
        offset = np.array([size / 2 - xs.mean(), size / 2 - ys.mean()])
        toward = np.clip(offset / (speed * HORIZON), -1, 1)
        plans.append([np.tile(toward, (HORIZON, 1)), np.tile(-toward, (HORIZON, 1))])
        distances.append(np.linalg.norm(offset))
    return torch.tensor(np.array(plans), dtype=torch.float32), torch.tensor(distances)


@pytest.mark.slow
def test_imagined_returns_depend_on_the_actions_and_rank_the_better_plan_first() -> None:
    example = load_example()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = example.synthetic_episodes(128, LENGTH, rng)
    model = build_world_model(control_settings(), action_dim=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(600):
        frames, actions, rewards = example.sample_windows(train, 16, 8, rng, torch.device("cpu"))
        optimisation_step(model, model, optimizer, frames, "fp32", actions, {"reward": rewards}, 100.0)

    held_out = example.synthetic_episodes(64, CONTEXT + HORIZON, np.random.default_rng(1))
    frames = torch.from_numpy(held_out["frames"][:, :CONTEXT]).permute(0, 1, 4, 2, 3)
    actions = torch.from_numpy(held_out["actions"][:, : CONTEXT - 1])
    model.eval()
    activity = transition_activity(model, frames, actions)
    assert min(activity) >= 0.05, f"dead units in f: active fractions {activity}"
    spread = imagined_return_spread(model, frames, actions, HORIZON, 64, torch.Generator().manual_seed(0))
    assert spread["return_spread"] >= SPREAD_WARNING, spread
    with torch.no_grad():
        states = model.observe(frames, actions).states[:, -1]
        plans, distances = centre_plans(held_out["frames"][:, CONTEXT - 1], example.SPEED, example.SIZE)
        returns = LatentObjective(model).returns(states, plans)
    # Where the square is far from the centre the two plans' true returns differ most.
    far = distances > example.SIZE / 5
    better_first = (returns[far, 0] > returns[far, 1]).float().mean().item()
    assert better_first >= 0.8, f"the plan toward the centre ranks first for {better_first:.0%} of {far.sum()} states"
