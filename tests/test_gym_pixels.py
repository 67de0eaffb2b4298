"""Any gymnasium environment in the control loop (envs/gym_pixels.py): action mapping, action repeat, time
limits and frames on a tiny environment of the test's own, refusals, gymnasium's env checker on it and on
MuJoCo's InvertedPendulum-v5 and Reacher-v5, and `srvp-control env=gym` end to end on a tiny budget."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from hydra import compose, initialize_config_module
from PIL import Image

from srvp import envs
from srvp.agents.loop import make_env
from srvp.envs.gym_pixels import GymPixelEnv
from srvp.worldmodel import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 48, 80


class BarEnv(gymnasium.Env):
    """A bar at a position set by the first action coordinate, drawn on 48x80 frames; it records the actions
    it receives and pays the step number as reward."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, image_obs: bool = False, unbounded: bool = False) -> None:
        high = np.array([10.0, np.inf if unbounded else 5.0], dtype=np.float32)
        self.action_space = spaces.Box(np.array([0.0, -5.0], dtype=np.float32), high, dtype=np.float32)
        self.image_obs = image_obs
        if image_obs:
            self.observation_space = spaces.Box(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        else:
            self.observation_space = spaces.Box(0.0, 10.0, (1,), dtype=np.float64)
        self.render_mode = render_mode
        self.received: list[np.ndarray] = []
        self.position, self.steps = 0.0, 0

    def _observation(self) -> Any:
        return self.render() if self.image_obs else np.array([self.position])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.position, self.steps = float(self.np_random.uniform(0, 10)), 0
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        self.received.append(np.array(action))
        self.position, self.steps = float(np.clip(action[0], 0, 10)), self.steps + 1
        return self._observation(), float(self.steps), False, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[:, :, 2] = np.linspace(0, 200, WIDTH, dtype=np.uint8)[None]
        column = int(self.position * 7)
        frame[5:40, column : column + 6] = (255, 220, 0)
        return frame


gymnasium.register(id="srvp-test/Bar-v0", entry_point=BarEnv, max_episode_steps=7)
gymnasium.register(id="srvp-test/BarNoLimit-v0", entry_point=BarEnv)


def bilinear(frame: np.ndarray, box: tuple[int, int, int, int] | None = None, size: int = 64) -> np.ndarray:
    """The reference frame: PIL crop (optional) then bilinear resize."""
    image = Image.fromarray(frame)
    image = image.crop(box) if box else image
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))


def test_actions_are_mapped_repeated_and_rewards_summed_up_to_the_time_limit():
    env = GymPixelEnv("srvp-test/Bar-v0", action_repeat=3)
    inner = env.wrapped.unwrapped
    assert env.action_space == spaces.Box(-1, 1, (2,), np.float32) and env.max_sim_steps == 7
    frame, info = env.reset(seed=0)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and info["sim_steps"] == 0

    _, reward, terminated, truncated, info = env.step(np.array([-1.0, 1.0]))
    np.testing.assert_array_equal(np.stack(inner.received), [[0, 5]] * 3)  # -1 -> low, 1 -> high, held 3 steps
    assert inner.received[0].dtype == np.float32
    assert (reward, terminated, truncated, info["sim_steps"]) == (1 + 2 + 3, False, False, 3)
    np.testing.assert_array_equal(info["state"], [0.0])

    env.step(np.array([0.0, -0.5]))
    np.testing.assert_array_equal(inner.received[-1], [5, -2.5])  # 0 -> the middle of [0, 10]
    _, reward, terminated, truncated, info = env.step(np.array([3.0, -2.0]))  # clipped to [1, -1]
    np.testing.assert_array_equal(inner.received[-1], [10, -5])
    # the 7-step limit ends the third agent step after one of its three repeats
    assert (reward, terminated, truncated, info["sim_steps"]) == (7, False, True, 7) and len(inner.received) == 7
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(2))
    env.close()


def test_frames_are_cropped_and_resized_from_renders_or_observations():
    for kwargs, box in (({}, None), ({"crop": "center"}, (16, 0, 64, 48))):
        env = GymPixelEnv("srvp-test/Bar-v0", render_mode="rgb_array", **kwargs)
        frame, _ = env.reset(seed=3)
        np.testing.assert_array_equal(frame, bilinear(env.wrapped.unwrapped.render(), box))
        frame, *_ = env.step(np.array([0.5, 0.0]))
        np.testing.assert_array_equal(frame, bilinear(env.wrapped.unwrapped.render(), box))
        np.testing.assert_array_equal(env.render(), frame)
    env = GymPixelEnv("srvp-test/Bar-v0", pixels="observation", size=32, make_kwargs={"image_obs": True})
    frame, info = env.reset(seed=3)
    np.testing.assert_array_equal(frame, bilinear(info["state"], size=32))


def test_unusable_environments_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^CartPole-v1 has the action space Discrete\(2\): .*Box") as error:
        GymPixelEnv("CartPole-v1")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="srvp-test/Bar-v0 has unbounded actions"):
        GymPixelEnv("srvp-test/Bar-v0", make_kwargs={"unbounded": True})
    with pytest.raises(ValueError, match=r"srvp-test/BarNoLimit-v0 has no time limit: give max_sim_steps"):
        GymPixelEnv("srvp-test/BarNoLimit-v0")
    assert GymPixelEnv("srvp-test/BarNoLimit-v0", max_sim_steps=4).max_sim_steps == 4
    with pytest.raises(ValueError, match=r"observes Box\(0.0, 10.0, \(1,\), float64\), not uint8 images"):
        GymPixelEnv("srvp-test/Bar-v0", pixels="observation")


@pytest.mark.parametrize(
    ("env_id", "make_kwargs"),
    [("srvp-test/Bar-v0", {}), ("InvertedPendulum-v5", {"width": 64, "height": 64}), ("Reacher-v5", {})],
)
def test_gymnasium_env_checker_passes(env_id, make_kwargs):
    env = envs.make_gym_env(env_id, make_kwargs=make_kwargs, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings: none may appear
        check_env(env.unwrapped)
    env.close()


def test_the_loop_builds_either_kind_of_environment_from_its_config():
    with initialize_config_module("srvp.configs", version_base="1.3"):
        gym_cfg = compose("control", overrides=["env=gym", "env.id=Reacher-v5", "run_dir=unused"])
        sized_cfg = compose(
            "control",
            overrides=["env=gym", "env.id=Reacher-v5", "env.make_kwargs={width: 64, height: 64}", "run_dir=x"],
        )
        dmc_cfg = compose("control", overrides=["run_dir=unused"])
    assert gym_cfg.env.name == "Reacher-v5"
    env = make_env(gym_cfg.env, max_episode_steps=2)
    frame, _ = env.reset(seed=0)
    assert frame.shape == (64, 64, 3) and env.action_space.shape == (2,)
    *_, truncated, info = env.step(np.zeros(2))
    assert info["sim_steps"] == 2 and not truncated
    *_, truncated, info = env.step(np.zeros(2))
    assert truncated and info["sim_steps"] == 4
    env.close()
    env = make_env(sized_cfg.env, max_episode_steps=None)  # MuJoCo renders at 64x64: no resize needed
    assert env.reset(seed=0)[0].shape == (64, 64, 3) and env.unwrapped.wrapped.unwrapped.width == 64
    env.close()
    env = make_env(dmc_cfg.env, max_episode_steps=None)
    assert env.unwrapped.task_name == "cartpole-swingup" and env.unwrapped.action_repeat == 8
    env.close()


@pytest.mark.slow
def test_srvp_control_runs_on_a_gymnasium_mujoco_task(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "srvp.agents.train", "env=gym", "env.id=Reacher-v5", "debug=control_tiny"]
    command += ["loop.max_episode_steps=5", f"run_dir={run_dir}"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    # 1 seed episode + 1 planning episode of 5 agent steps, each 2 Reacher steps (action repeat 2)
    assert payload["extra"]["progress"] == {"train_episodes": 2, "env_steps": 2 * 5 * 2, "updates": 2}
    assert payload["config"]["env"]["id"] == "Reacher-v5" and payload["model"]
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert all(name in metrics for name in ("train/return", "eval/return", "losses/head_reward"))
