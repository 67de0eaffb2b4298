"""The pixel environment contract that the control loop relies on, implemented once for every simulator.

An agent step maps an action in [-1, 1] onto the simulator's action bounds, repeats it `action_repeat` times
(fewer when the episode ends) and sums the rewards; the observation is the frame rendered after the step,
channel-last `(size, size, 3)` uint8, exactly as `render()` returns it. `info["sim_steps"]` counts simulator
steps since reset, the unit of the papers' environment-step budgets. A simulator (dm_control, a gymnasium
environment) only says how to reset, step once, render a frame and describe its state.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map `action` from [-1, 1] (clipped into it first) affinely onto [low, high], elementwise."""
    unit = np.clip(action, -1.0, 1.0)
    return low + (unit + 1.0) * 0.5 * (high - low)


class PixelEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Scaled actions, action repeat, pixel observations and episode bookkeeping over one simulator.

    Observations: Box(0, 255, (size, size, 3), uint8). Actions: Box(-1, 1, (A,), float32), clipped and then
    mapped onto the bounds a subclass gives to `_set_action_bounds`. A subclass implements `_reset_sim`,
    `_sim_step`, `_render_frame` and `_state_info`; `name` labels its errors.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}
    max_sim_steps: int | None = None
    """The simulator's own episode limit in its steps (its time limit), None when unknown or unlimited."""

    def __init__(self, name: str, action_repeat: int, size: int, render_mode: str | None) -> None:
        if not isinstance(action_repeat, int) or action_repeat < 1:
            raise ValueError(f"action_repeat must be a positive integer, got {action_repeat!r}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.name, self.action_repeat, self.size, self.render_mode = name, action_repeat, size, render_mode
        self.observation_space = spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        self._frame: np.ndarray | None = None
        self._sim_steps = 0
        self._episode_over = True

    def _set_action_bounds(self, low: np.ndarray, high: np.ndarray) -> None:
        """Take the simulator's action bounds (flattened) and expose [-1, 1] of the same size to the agent."""
        self._action_low = np.asarray(low, dtype=np.float64).ravel()
        self._action_high = np.asarray(high, dtype=np.float64).ravel()
        self.action_space = spaces.Box(-1.0, 1.0, shape=self._action_low.shape, dtype=np.float32)

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The simulator's own flattened (low, high) action bounds that -1 and 1 are mapped onto."""
        return self._action_low.copy(), self._action_high.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a `seed` reseeds the simulator first (None continues its random stream)."""
        super().reset(seed=seed)
        state = self._reset_sim(seed, options)
        self._sim_steps = 0
        self._episode_over = False
        return self._observe(state), self._info(state)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply `action` for `action_repeat` simulator steps (fewer if the episode ends) and sum rewards."""
        if self._episode_over:
            raise RuntimeError(f"{self.name}: call reset() before step() (episode not started or over)")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.name}: action shape {action.shape} != expected {self.action_space.shape}")
        control = scale_action(action, self._action_low, self._action_high)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            state, step_reward, terminated, truncated = self._sim_step(control)
            self._sim_steps += 1
            reward += step_reward
            if terminated or truncated:
                break
        self._episode_over = terminated or truncated
        return self._observe(state), float(reward), bool(terminated), bool(truncated), self._info(state)

    def render(self) -> np.ndarray | None:
        """The current observation frame (rgb_array mode), or None when no render mode was requested."""
        if self.render_mode is None or self._frame is None:
            return None
        return self._frame.copy()

    def _observe(self, state: Any) -> np.ndarray:
        """The frame after a reset or step, kept for `render()`; a copy the caller may keep."""
        self._frame = np.ascontiguousarray(self._render_frame(state), dtype=np.uint8)
        return self._frame.copy()

    def _info(self, state: Any) -> dict[str, Any]:
        return {**self._state_info(state), "sim_steps": self._sim_steps}

    def _reset_sim(self, seed: int | None, options: dict[str, Any] | None) -> Any:
        """Reset the simulator (reseeded by `seed` unless None) and return its state."""
        raise NotImplementedError

    def _sim_step(self, control: np.ndarray) -> tuple[Any, float, bool, bool]:
        """One simulator step with `control` (flattened, in the simulator's bounds): (state, reward, terminated,
        truncated), in gymnasium's order."""
        raise NotImplementedError

    def _render_frame(self, state: Any) -> np.ndarray:
        """The (size, size, 3) RGB frame of the simulator now (`state` is what the last reset or step gave)."""
        raise NotImplementedError

    def _state_info(self, state: Any) -> dict[str, Any]:
        """The simulator-specific part of `info` for `state`."""
        raise NotImplementedError


def max_episode_frames(env: gymnasium.Env) -> int | None:
    """The most frames an episode of `env` can have (the reset frame included), from gymnasium's time limit in
    agent steps (`max_episode_steps`) and the simulator's own in its steps; None when neither is known.

    Episodes may end sooner (a task's termination); never later."""
    limits = []
    if env.spec is not None and env.spec.max_episode_steps is not None:
        limits.append(int(env.spec.max_episode_steps))
    inner = env.unwrapped
    if isinstance(inner, PixelEnv) and inner.max_sim_steps is not None:
        limits.append(math.ceil(inner.max_sim_steps / inner.action_repeat))
    return min(limits) + 1 if limits else None
