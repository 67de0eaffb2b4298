"""Tests of envs/: dm_control pixel environments, their seeding, action handling and headless GL selection.

Rendering runs at a few tens of frames per second on a shared CPU, so each test renders few frames.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from srvp import envs
from srvp.envs.rendering import GL_LIBRARIES, configure_mujoco_gl, probe_gl_backend

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SCORES = {  # docs/control.md: PlaNet and Dreamer returns at 500k environment steps.
    "cartpole-swingup": (475, 762),
    "reacher-easy": (210, 793),
    "cheetah-run": (305, 570),
    "finger-spin": (561, 796),
    "ball_in_cup-catch": (460, 879),
    "walker-walk": (351, 897),
}


def raw_dm_control_env(domain: str, task: str, seed: int):
    """The unwrapped dm_control suite task, loaded as its own documentation prescribes."""
    from dm_control import suite

    return suite.load(domain, task, task_kwargs={"random": seed})


def test_registration_is_idempotent_and_covers_planet_tasks() -> None:
    import importlib

    importlib.reload(envs)
    for task in envs.PLANET_TASKS:
        assert envs.env_id(task) in gymnasium.registry
    assert envs.register_task("cartpole-swingup") == "srvp/cartpole-swingup-v0"


def test_env_checker_passes_with_render_check() -> None:
    env = gymnasium.make("srvp/cartpole-swingup-v0", render_mode="rgb_array")
    check_env(env.unwrapped)
    env.close()


def test_spaces_render_and_info() -> None:
    env = envs.make_env("finger-spin", render_mode="rgb_array", size=32)
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.unwrapped.action_repeat == 2 and env.unwrapped.camera_id == 0
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (32, 32, 3) and obs.std() > 0
    np.testing.assert_array_equal(env.render(), obs)
    obs, _, _, _, info = env.step(np.zeros(2, np.float32))
    np.testing.assert_array_equal(env.render(), obs)
    assert info["sim_steps"] == 2 and info["proprio"].ndim == 1
    env.close()


def test_action_repeat_sums_rewards_like_raw_dm_control() -> None:
    seed, actions = 7, np.random.default_rng(0).uniform(-1, 1, size=(4, 6)).astype(np.float32)
    env = envs.make_env("cheetah-run")
    env.reset(seed=seed)
    raw = raw_dm_control_env("cheetah", "run", seed)
    raw.reset()
    for action in actions:
        _, reward, _, _, info = env.step(action)
        raw_steps = [raw.step(action) for _ in range(4)]
        assert reward == pytest.approx(sum(step.reward for step in raw_steps), rel=1e-12, abs=1e-12)
        raw_proprio = np.concatenate([np.ravel(value) for value in raw_steps[-1].observation.values()])
        np.testing.assert_array_equal(info["proprio"], raw_proprio)
        np.testing.assert_array_equal(env.unwrapped.physics.get_state(), raw.physics.get_state())
    assert info["sim_steps"] == 16
    env.close()


def test_same_seed_same_episode_different_seed_different_start() -> None:
    actions = np.random.default_rng(1).uniform(-1, 1, size=(3, 2)).astype(np.float32)

    def rollout(seed: int) -> tuple[list[np.ndarray], list[float]]:
        env = envs.make_env("reacher-easy")
        frames, rewards = [env.reset(seed=seed)[0]], []
        for action in actions:
            obs, reward, *_ = env.step(action)
            frames.append(obs)
            rewards.append(reward)
        env.close()
        return frames, rewards

    frames_a, rewards_a = rollout(3)
    frames_b, rewards_b = rollout(3)
    assert rewards_a == rewards_b
    for frame_a, frame_b in zip(frames_a, frames_b, strict=True):
        np.testing.assert_array_equal(frame_a, frame_b)
    other_start, _ = envs.make_env("reacher-easy").reset(seed=4)
    assert not np.array_equal(other_start, frames_a[0])


def test_scale_action_maps_unit_box_onto_bounds() -> None:
    low, high = np.array([-1.0, -0.8, 0.0]), np.array([1.0, 0.8, 3.0])
    np.testing.assert_allclose(envs.scale_action(np.full(3, -1.0), low, high), low)
    np.testing.assert_allclose(envs.scale_action(np.full(3, 1.0), low, high), high)
    np.testing.assert_allclose(envs.scale_action(np.zeros(3), low, high), (low + high) / 2)
    np.testing.assert_allclose(envs.scale_action(np.full(3, 5.0), low, high), high)


def test_env_applies_scaled_action_to_asymmetric_bounds() -> None:
    env = envs.make_env("quadruped-walk", size=16)
    assert env.unwrapped.camera_id == 2
    env.reset(seed=0)
    spec = raw_dm_control_env("quadruped", "walk", 0).action_spec()
    spec_low, spec_high = spec.minimum, spec.maximum
    for ours, theirs in zip(env.unwrapped.action_bounds, (spec_low, spec_high), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.allclose(spec_low, -spec_high)
    for unit_action, bound in ((1.0, spec_high), (-1.0, spec_low)):
        env.step(np.full(env.action_space.shape, unit_action, np.float32))
        np.testing.assert_allclose(env.unwrapped.physics.data.ctrl, bound)
    with pytest.raises(ValueError, match="action shape"):
        env.step(np.zeros(3, np.float32))
    env.close()


def test_episode_truncates_after_1000_simulator_steps() -> None:
    env = envs.make_env("cartpole-swingup", size=16)
    env.reset(seed=0)
    for step in range(1, 126):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated and truncated == (step == 125)
    assert info["sim_steps"] == 1000
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(env.action_space.sample())
    env.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_env_stacks_observations(mode: str) -> None:
    vector_env = envs.make_vector_env("reacher-easy", num_envs=2, seed=5, vectorization_mode=mode, size=32)
    first_obs, _ = vector_env.reset()
    assert first_obs.shape == (2, 32, 32, 3) and first_obs.dtype == np.uint8
    obs, reward, terminated, truncated, info = vector_env.step(vector_env.action_space.sample())
    assert obs.shape == (2, 32, 32, 3) and reward.shape == (2,) and info["sim_steps"].tolist() == [4, 4]
    vector_env.close()
    # Copy i is seeded with seed + i: the second copy starts where a lone env seeded with 6 starts.
    single = envs.make_env("reacher-easy", size=32, seed=6)
    np.testing.assert_array_equal(single.reset()[0], first_obs[1])
    assert not np.array_equal(first_obs[0], first_obs[1])
    single.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "cartpole"}, "domain-task"),
        ({"task": "cartpole-fly"}, "unknown dm_control suite task"),
        ({"task": "cartpole-swingup", "action_repeat": 0}, "action_repeat"),
        ({"task": "cartpole-swingup", "camera_id": 9}, "camera_id"),
        ({"task": "cartpole-swingup", "seed": -1}, "seed"),
        ({"task": "cartpole-swingup", "render_mode": "human"}, "render_mode"),
    ],
)
def test_bad_arguments_fail_with_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        envs.DMCEnv(**kwargs)


def test_configs_match_defaults_and_spec_anchors() -> None:
    for task, (planet, dreamer) in REFERENCE_SCORES.items():
        config = yaml.safe_load((REPO_ROOT / "configs" / "env" / f"{task}.yaml").read_text())
        assert config["name"] == task and config["size"] == 64
        assert config["action_repeat"] == envs.default_action_repeat(task)
        assert config["camera_id"] == envs.default_camera_id(task)
        assert config["anchors"] == {"planet": planet, "dreamer": dreamer}


def test_configs_compose_with_hydra() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO_ROOT / "configs" / "env"), version_base="1.3"):
        config = compose(config_name="ball_in_cup-catch", overrides=["action_repeat=2"])
    assert config.name == "ball_in_cup-catch" and config.action_repeat == 2


def run_python(code: str, **env_overrides: str | None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (MUJOCO_GL is read once per process) with adjusted variables."""
    child_env = {key: value for key, value in os.environ.items() if key != "MUJOCO_GL"}
    child_env.update({key: value for key, value in env_overrides.items() if value is not None})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env, cwd=REPO_ROOT, timeout=60
    )


def test_gl_selection_honours_user_setting() -> None:
    code = "import os; from srvp.envs.rendering import configure_mujoco_gl as c; print(c(), os.environ['MUJOCO_GL'])"
    # glfw (a desktop's choice) is kept as it is; egl/osmesa are kept too once their library loads.
    result = run_python(code, MUJOCO_GL="glfw")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["glfw", "glfw"]


def test_gl_selection_probes_when_unset() -> None:
    code = "import os; from srvp.envs.rendering import configure_mujoco_gl as c; print(c(), os.environ['MUJOCO_GL'])"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    chosen, exported = result.stdout.split()
    assert chosen == exported and chosen in GL_LIBRARIES


def test_gl_selection_names_missing_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = {"egl": ("libEGL-srvp-missing.so.1",), "osmesa": ("libOSMesa-srvp-missing.so",)}
    with pytest.raises(RuntimeError, match="libEGL-srvp-missing.so.1.*libgl1-mesa-dri.*libosmesa6"):
        probe_gl_backend(missing)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(RuntimeError, match="libOSMesa-srvp-missing.so"):
        configure_mujoco_gl(missing)
    assert "MUJOCO_GL" not in os.environ
