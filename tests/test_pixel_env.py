"""The pixel environment contract (envs/pixel_env.py) on a simulator of the test's own: what a user writes to
bring a new simulator, gymnasium's env checker, action scaling and repeat, episode ends and refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from srvp import envs


class Slider(envs.PixelEnv):
    """A point on a line, moved by the control (bounds [0, 4]); reward = the control; the episode ends
    terminated when the point passes 10, truncated after `limit` simulator steps; drawn as one bright column."""

    def __init__(self, action_repeat: int = 3, limit: int = 7, render_mode: str | None = None) -> None:
        super().__init__("slider", action_repeat, 16, render_mode)
        self._set_action_bounds(np.array([0.0]), np.array([4.0]))
        self.limit, self.position, self.controls = limit, 0.0, []
        self.steps = 0

    def _reset_sim(self, seed: int | None, options: dict[str, Any] | None) -> float:
        self.position, self.steps = float(self.np_random.integers(0, 3)), 0
        return self.position

    def _sim_step(self, control: np.ndarray) -> tuple[float, float, bool, bool]:
        self.controls.append(float(control[0]))
        self.position += float(control[0])
        self.steps += 1
        terminated = self.position > 10
        return self.position, float(control[0]), terminated, not terminated and self.steps >= self.limit

    def _render_frame(self, state: float) -> np.ndarray:
        frame = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        frame[:, min(int(state), self.size - 1)] = 255
        return frame

    def _state_info(self, state: float) -> dict[str, Any]:
        return {"position": state}


def test_a_user_simulator_passes_gymnasium_env_checker() -> None:
    check_env(Slider(render_mode="rgb_array"))


def test_step_scales_repeats_and_sums_rewards_until_the_episode_ends() -> None:
    env = Slider(action_repeat=3, limit=100)
    frame, info = env.reset(seed=0)
    start = info["position"]
    assert frame.shape == (16, 16, 3) and info["sim_steps"] == 0 and frame[0, int(start), 0] == 255
    frame, reward, terminated, truncated, info = env.step(np.array([0.0], dtype=np.float32))
    assert env.controls == [2.0, 2.0, 2.0] and reward == 6.0 and info["sim_steps"] == 3
    assert info["position"] == start + 6 and not (terminated or truncated)
    # Clipped to 1 -> control 4: the point passes 10 on the next simulator step, which ends the repeat.
    _, reward, terminated, truncated, info = env.step(np.array([7.0], dtype=np.float32))
    assert terminated and not truncated and info["sim_steps"] == 4 and reward == 4.0
    with pytest.raises(RuntimeError, match=r"slider: call reset\(\) before step\(\)"):
        env.step(np.zeros(1, dtype=np.float32))


def test_truncation_render_and_refusals() -> None:
    env = Slider(action_repeat=2, limit=3, render_mode="rgb_array")
    assert env.render() is None
    env.reset(seed=1)
    env.step(np.array([-1.0], dtype=np.float32))
    _, _, terminated, truncated, info = env.step(np.array([-1.0], dtype=np.float32))
    assert truncated and not terminated and info["sim_steps"] == 3
    assert env.render().shape == (16, 16, 3)
    env.reset()
    with pytest.raises(ValueError, match=r"slider: action shape \(2,\) != expected \(1,\)"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="action_repeat must be a positive integer, got 0"):
        Slider(action_repeat=0)
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array', got 'human'"):
        Slider(render_mode="human")
