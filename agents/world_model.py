"""The action-conditioned SRVP as a planning world model: building it, filtering y_t, scoring action plans.

Thin glue around `srvp.worldmodel.SRVP` (no fork of the model):
- `build_world_model` makes the SRVP with the environment's action size and a reward head on y;
- `reward_targets` aligns the buffer's rewards with the frames for the ELBO's reward head;
- `EpisodeFilter` tracks one episode's frame codes and actions and gives the current state y_t by
  posterior filtering over a sliding window of the last `context` frames (see its docstring);
- `LatentObjective` turns a state y_t (B, ny) into the planner's objective: every candidate action
  sequence (B, N, H, A) is imagined in ONE batched `imagine` call on B*N states, and its return is the
  sum of the reward head over the imagined frame states y_{t+1..t+H}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat
from torch import Tensor

from srvp.agents.planner import Objective
from srvp.common.runtime import autocast
from srvp.worldmodel import SRVP, SRVPConfig
from srvp.worldmodel.model import FRAME_SIZE

REWARD_HEAD = "reward"


def build_world_model(model_config: Mapping[str, Any], action_dim: int) -> SRVP:
    """The SRVP of `model_config` (SRVPConfig fields) taking actions of size `action_dim`, with a reward head."""
    if action_dim < 1:
        raise ValueError(f"action_dim={action_dim}: a control world model needs actions")
    values = dict(model_config)
    values["action_dim"] = int(action_dim)
    values["heads"] = {**dict(values.get("heads") or {}), REWARD_HEAD: 1}
    return SRVP(SRVPConfig.from_dict(values))


def check_environment(
    observation_shape: tuple[int, ...], *, episode_frames: int | None, channels: int, seq_len: int
) -> None:
    """Refuse, before any episode is played, an environment the world model cannot learn from: frames other than
    (64, 64, `channels`) (the env's observation shape, h w c), or episodes of at most `episode_frames` frames
    (`srvp.envs.max_episode_frames`; None: unknown) shorter than the training windows of `seq_len` frames.
    Each error is one line naming the config key to change."""
    shape = tuple(observation_shape)
    if shape[:2] != (FRAME_SIZE, FRAME_SIZE):
        raise ValueError(
            f"env.size={shape[0]}: the environment gives frames of shape {shape} but the world model takes "
            f"{FRAME_SIZE}x{FRAME_SIZE} frames: set env.size={FRAME_SIZE}"
        )
    if shape != (FRAME_SIZE, FRAME_SIZE, channels):
        raise ValueError(f"world_model.channels={channels} but the environment gives frames of shape {shape}")
    if episode_frames is not None and seq_len > episode_frames:
        raise ValueError(
            f"loop.seq_len={seq_len}: episodes have at most {episode_frames} frames (the time limit, or "
            f"loop.max_episode_steps): lower loop.seq_len to {episode_frames} or less"
        )


def reward_targets(rewards: Tensor) -> Tensor:
    """Buffer rewards (b, t-1), reward i earned on reaching frame i+1 -> head targets (b, t), NaN at frame 0.

    The reward head reads the state of the frame a transition leads to, so frame 0 has no target.
    """
    missing = torch.full_like(rewards[:, :1], float("nan"))
    return torch.cat([missing, rewards], dim=1)


def filter_states(model: SRVP, codes: Tensor, actions: Tensor) -> Tensor:
    """Posterior-mean states (b k ny) of the frames with codes (b k d) linked by actions (b, k-1, a).

    y_1 is the mean of q(y_1) on the window's first y1_frames codes and z_2..z_k the means of the LSTM
    posterior, then the residual transition is rolled through the real actions. Means rather than samples
    make the acting state deterministic given the observations. Without z (`stochastic: false`) nothing after
    the first y1_frames frames corrects the rollout: the later states are open-loop predictions.
    """
    q_y1 = model.infer_y1(codes[:, : model.config.y1_frames])
    z = model.posterior_z(codes).mean if model.config.stochastic and codes.shape[1] > 1 else None
    return model.imagine(q_y1.mean, codes.shape[1] - 1, z=z, actions=actions).frame_states


def filter_state(model: SRVP, codes: Tensor, actions: Tensor) -> Tensor:
    """The acting state (b ny): `filter_states` at the last frame."""
    return filter_states(model, codes, actions)[:, -1]


def open_loop_states(
    model: SRVP, frames: Tensor, actions: Tensor, context: int
) -> tuple[Tensor, Tensor | None, list[Tensor] | None]:
    """States (b t ny) of windows frames (b t c h w) with actions (b, t-1, a) as the agent sees them: the first
    `context` frames' `filter_states`, then the rest imagined from the real actions with prior-mean z, as the
    planner imagines; and the content w and skips of the context frames, to decode the states."""
    encoded = model.encode(frames[:, :context])
    content, skips = model.observe_content(encoded)
    observed = filter_states(model, encoded.codes, actions[:, : context - 1])
    future = model.imagine(
        observed[:, -1], frames.shape[1] - context, actions=actions[:, context - 1 :], prior_mean=True
    )
    return torch.cat([observed, future.frame_states[:, 1:]], dim=1), content, skips


class EpisodeFilter:
    """Current latent state of one running episode from its frames so far (batch of one).

    Choice of filter: the SRVP posterior is an LSTM over the frames of a clip starting at y_1, and the
    model is trained on windows that start anywhere in an episode, so the state at time t is re-inferred
    from the window of the last `context` frames (at least y1_frames) and the actions between them. Each
    frame is encoded once (its code is cached); a decision costs one LSTM pass and `context` transitions,
    negligible beside the planner's H x N x iterations transitions. Before y1_frames frames exist, the
    window is padded at the front with copies of the first frame and zero actions (the episode's start is
    near rest in the dm_control tasks).
    """

    def __init__(self, model: SRVP, context: int, *, device: torch.device, precision: str = "auto") -> None:
        if context < model.config.y1_frames:
            raise ValueError(
                f"context={context}: the filter window needs at least y1_frames={model.config.y1_frames} frames"
            )
        self.model = model
        self.context = context
        self.device = device
        self.precision = precision
        self.codes: list[Tensor] = []
        self.actions: list[Tensor] = []

    def _encode(self, frame: Tensor | np.ndarray) -> Tensor:
        """frame uint8 (c h w) -> code (d)."""
        self._check_eval_mode()
        with torch.no_grad(), autocast(self.device, self.precision):
            return self.model.encode(torch.as_tensor(frame).to(self.device)[None, None]).codes[0, 0].float()

    def _check_eval_mode(self) -> None:
        if self.model.training:
            raise RuntimeError(
                "EpisodeFilter needs the model in eval mode: call model.eval() first (in training mode BatchNorm "
                "would normalise each single frame by its own statistics and overwrite the running ones)"
            )

    def reset(self, first_frame: Tensor | np.ndarray) -> None:
        """Start an episode at frame uint8 (c h w)."""
        self.codes = [self._encode(first_frame)]
        self.actions = []

    def step(self, action: Tensor | np.ndarray, frame: Tensor | np.ndarray) -> None:
        """Record the action (a) taken and the frame uint8 (c h w) it led to."""
        action = torch.as_tensor(action)
        expected = (self.model.config.action_dim,)
        if tuple(action.shape) != expected:
            # Exact: a scalar or 1-element action would broadcast over every action dimension of the window.
            raise ValueError(
                f"EpisodeFilter.step: action of shape {tuple(action.shape)}, but the model takes actions of shape "
                f"{expected} (model.action_dim={expected[0]})"
            )
        self.actions.append(action.to(self.device, torch.float32))
        self.codes.append(self._encode(frame))
        # Keep only the window: `context` codes and the actions between them.
        self.codes = self.codes[-self.context :]
        self.actions = self.actions[len(self.actions) - (len(self.codes) - 1) :]

    @torch.no_grad()
    def state(self) -> Tensor:
        """y_t (1, ny) of the latest frame."""
        if not self.codes:
            raise RuntimeError("EpisodeFilter.state() called before reset(first_frame)")
        self._check_eval_mode()
        missing = max(0, self.model.config.y1_frames - len(self.codes))
        codes = torch.stack([self.codes[0]] * missing + self.codes)[None]
        actions = torch.zeros(1, codes.shape[1] - 1, self.model.config.action_dim, device=self.device)
        if self.actions:
            actions[0, missing:] = torch.stack(self.actions)
        with autocast(self.device, self.precision):
            return filter_state(self.model, codes, actions).float()


def imagined_returns(
    model: SRVP,
    states: Tensor,
    actions: Tensor,
    dt: float,
    prior_mean: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sum of predicted rewards of action sequences (M, H, A) from states (M, ny) -> (M,).

    One `imagine` call on the whole batch; with dt < 1 the reward is read at integer times (frame states),
    the times the environment pays rewards at.
    """
    rollout = model.imagine(
        states, actions.shape[1], dt, actions=actions, prior_mean=prior_mean, generator=generator, details=False
    )
    rewards = model.predict_heads(rollout.frame_states[:, 1:])[REWARD_HEAD]
    return rewards.float().sum(dim=(1, 2))


class LatentObjective:
    """Builds the planner's objective from a filtered state: `LatentObjective(...)(y_t)` -> Objective.

    dt: Euler step of imagination (1/dt integer; < 1 for finer imagination of the residual model).
    prior_mean: z of the imagined transitions is the prior mean (True) or a prior sample (False).
    compile: torch.compile the batched rollout (recompiles once per new candidate count); True for the default
        mode, or a mode name such as "reduce-overhead" (CUDA graphs: the whole rollout replays as one graph).
    """

    def __init__(
        self,
        model: SRVP,
        *,
        dt: float = 1.0,
        prior_mean: bool = True,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        compile: bool | str = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.model = model
        self.dt = dt
        self.prior_mean = prior_mean
        self.device = torch.device(device)
        self.precision = precision
        self.generator = generator
        self._rollout: Callable[..., Tensor] = imagined_returns
        if compile:
            self._rollout = torch.compile(imagined_returns, mode=None if compile is True else compile)

    @torch.no_grad()
    def returns(self, states: Tensor, actions: Tensor) -> Tensor:
        """Predicted returns (B, N) of candidates (B, N, H, A) from states (B, ny), all in one rollout."""
        if states.shape[0] != actions.shape[0]:
            raise ValueError(f"{states.shape[0]} states but {actions.shape[0]} candidate batches")
        candidates = actions.shape[1]
        flat_states = repeat(states, "b y -> (b n) y", n=candidates)
        flat_actions = rearrange(actions, "b n h a -> (b n) h a")
        with autocast(self.device, self.precision):
            flat_returns = self._rollout(
                self.model, flat_states, flat_actions, self.dt, self.prior_mean, self.generator
            )
        return rearrange(flat_returns.float(), "(b n) -> b n", n=candidates)

    def __call__(self, states: Tensor) -> Objective:
        """The objective maximised by the planner from states (B, ny)."""
        return lambda actions: self.returns(states, actions)
