"""The control world model learns a task whose reward depends on the action: after a short training on the moving
square of examples/own_loop.py (a square pushed by 2-d actions, rewarded for nearing the centre), f stays active,
the imagined returns differ across action sequences, and they order random plans as the task's true returns do
(rank correlation). This is what died before on cartpole (dead ReLUs in f, collapsed latents: every candidate got
the same imagined return, so the planner chose at random)."""

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


def true_returns(frames: np.ndarray, plans: torch.Tensor, example) -> torch.Tensor:
    """The task's returns (n, m) of plans (n, m, H, 2) from the square's position in frames (n, h w 3)."""
    ys, xs = zip(*(np.nonzero(frame[:, :, 0]) for frame in frames), strict=True)
    # A square of side S drawn from corner c covers pixels c..c+S-1: its centre is their mean + 0.5.
    position = np.array([[x.mean() + 0.5, y.mean() + 0.5] for x, y in zip(xs, ys, strict=True)])[:, None, :]
    low, high = example.SQUARE / 2, example.SIZE - example.SQUARE / 2
    returns = np.zeros(plans.shape[:2])
    for step in range(plans.shape[2]):
        position = np.clip(position + example.SPEED * plans[:, :, step].numpy(), low, high)
        returns -= np.linalg.norm(position - example.SIZE / 2, axis=-1) / (example.SIZE / 2)
    return torch.from_numpy(returns)


def rank_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each row of two (n, m) tensors -> (n,)."""
    first, second = (values.argsort(-1).argsort(-1).double() for values in (first, second))
    first, second = first - first.mean(-1, keepdim=True), second - second.mean(-1, keepdim=True)
    return (first * second).sum(-1) / (first.norm(dim=-1) * second.norm(dim=-1))


@pytest.mark.slow
def test_imagined_returns_depend_on_the_actions_and_rank_plans_as_the_task_does() -> None:
    example = load_example()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = example.synthetic_episodes(128, LENGTH, rng)
    model = build_world_model(control_settings(), action_dim=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(600):
        frames, actions, rewards = example.sample_windows(train, 16, 8, rng, torch.device("cpu"))
        optimisation_step(
            model,
            optimizer,
            frames,
            precision="fp32",
            actions=actions,
            head_targets={"reward": rewards},
            grad_clip=100.0,
        )

    held_out = example.synthetic_episodes(64, CONTEXT + HORIZON, np.random.default_rng(1))
    frames = torch.from_numpy(held_out["frames"][:, :CONTEXT]).permute(0, 1, 4, 2, 3)
    actions = torch.from_numpy(held_out["actions"][:, : CONTEXT - 1])
    model.eval()
    activity = transition_activity(model, frames, actions)
    assert min(activity) >= 0.05, f"dead units in f: active fractions {activity}"
    spread = imagined_return_spread(
        model, frames, actions, horizon=HORIZON, candidates=64, generator=torch.Generator().manual_seed(0)
    )
    assert spread["return_spread"] >= SPREAD_WARNING, spread
    # Imagined against true returns of 32 random plans from each held-out state: their orders must agree.
    plans = torch.rand(len(frames), 32, HORIZON, 2, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        states = model.observe(frames, actions).states[:, -1]
        imagined = LatentObjective(model).returns(states, plans)
    truth = true_returns(held_out["frames"][:, CONTEXT - 1], plans, example)
    correlation = rank_correlation(imagined, truth).mean().item()
    assert correlation >= 0.3, f"imagined and true returns of the same plans agree in order by {correlation:.2f} only"
