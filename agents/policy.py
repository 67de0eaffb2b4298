"""Policies that act in a pixel environment, one episode at a time: `reset(first frame)`, then `act()` and
`observe(action, next frame)` in turn. Frames are the environment's, uint8 (h w c).

`PlanningPolicy` is the agent of srvp-control (latent model-predictive control with the SRVP world model);
`RandomPolicy` and `ZeroPolicy` are the model-free baselines every evaluation is read against.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from srvp.agents.config import PlanningConfig
from srvp.agents.mpc import MPCController
from srvp.agents.planner import Planner
from srvp.agents.world_model import EpisodeFilter, LatentObjective
from srvp.worldmodel import SRVP


class Policy(Protocol):
    """Chooses actions in [-1, 1] from the frames of the running episode."""

    def reset(self, frame: np.ndarray) -> None:
        """Start an episode at its first frame."""

    def act(self) -> np.ndarray:
        """The next action (A,)."""

    def observe(self, action: np.ndarray, frame: np.ndarray) -> None:
        """Record the action taken and the frame it led to."""


class RandomPolicy:
    """Uniform random actions in [-1, 1] (seed episodes and the untrained baseline)."""

    def __init__(self, action_dim: int, rng: np.random.Generator) -> None:
        self.action_dim, self.rng = action_dim, rng

    def reset(self, frame: np.ndarray) -> None:
        pass

    def act(self) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)

    def observe(self, action: np.ndarray, frame: np.ndarray) -> None:
        pass


class ZeroPolicy:
    """Always the action 0 (the middle of every action range): what doing nothing earns."""

    def __init__(self, action_dim: int) -> None:
        self.action = np.zeros(action_dim, dtype=np.float32)

    def reset(self, frame: np.ndarray) -> None:
        pass

    def act(self) -> np.ndarray:
        return self.action.copy()

    def observe(self, action: np.ndarray, frame: np.ndarray) -> None:
        pass


def to_chw(frame: np.ndarray) -> torch.Tensor:
    """Environment frame uint8 (h w c) -> the model's frame layout (c h w)."""
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))


class PlanningPolicy:
    """Latent model-predictive control with an action-conditioned SRVP (one with a reward head,
    `srvp.agents.world_model.build_world_model`): at every step, filter the state y_t from the last
    `context_frames` frames and actions (`EpisodeFilter`), search action sequences in imagination from it with
    `planner` (scored by `LatentObjective`, warm-started from the previous plan as `planning` says), and act with
    the plan's first action plus Gaussian noise of std `exploration_noise` (0: none), clipped to [-1, 1].

    The model must be in eval mode. `generator` (on `device`, the model's by default) drives the planner, the
    noise and, with `planning.prior_mean=false`, the imagined z: a fixed seed gives a reproducible episode.
    """

    def __init__(
        self,
        model: SRVP,
        planner: Planner,
        *,
        context_frames: int,
        planning: PlanningConfig | None = None,
        exploration_noise: float = 0.0,
        device: torch.device | str | None = None,
        precision: str = "auto",
        generator: torch.Generator | None = None,
    ) -> None:
        planning = planning or PlanningConfig()
        device = torch.device(device) if device is not None else next(model.parameters()).device
        self.objective = LatentObjective(
            model,
            dt=planning.step,
            prior_mean=planning.prior_mean,
            device=device,
            precision=precision,
            compile=planning.compile,
            generator=generator,
        )
        """Scores candidate action sequences from a state: `objective.returns(states, actions)`."""
        self.controller = MPCController(
            planner,
            self.objective,
            exploration_noise=exploration_noise,
            warm_start=planning.warm_start,
            warm_start_fill=planning.warm_start_fill,
            device=device,
        )
        self.filter = EpisodeFilter(model, context_frames, device=device, precision=precision)
        """The running episode's frames and actions; `filter.state()` is y_t (1, ny)."""
        self.explore = exploration_noise > 0
        self.generator = generator

    def reset(self, frame: np.ndarray) -> None:
        """Start an episode at frame uint8 (h w c); forget the previous episode's plan."""
        self.controller.reset()
        self.filter.reset(to_chw(frame))

    def act(self) -> np.ndarray:
        """Plan from the current state; the plan's first action (A,), with the exploration noise."""
        action = self.controller.act(self.filter.state(), explore=self.explore, generator=self.generator)
        return action[0].float().cpu().numpy()

    def observe(self, action: np.ndarray, frame: np.ndarray) -> None:
        """Record the action (A,) taken and the frame uint8 (h w c) it led to."""
        self.filter.step(torch.from_numpy(np.asarray(action)), to_chw(frame))

    @property
    def plan(self) -> torch.Tensor | None:
        """The action sequence (1, horizon, A) the last `act` chose, noiseless (its first step, plus the noise, was
        the action); None before the first `act` of an episode."""
        return self.controller.previous_plan
