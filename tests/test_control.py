"""srvp-control end to end on a tiny budget: run files, exact resumption, configs, the loop assembled from its
parts, loop helpers."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from srvp.agents.buffer import EpisodeBuffer
from srvp.agents.config import ControlConfig, LoopConfig, PlanningConfig, control_settings
from srvp.agents.loop import ControlRun, run_episode, stream_seed
from srvp.agents.planner import CEMPlanner
from srvp.agents.policy import PlanningPolicy, RandomPolicy
from srvp.agents.world_model import build_world_model
from srvp.common.logger import RunLogger
from srvp.worldmodel import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = ["debug=control_tiny", "loop.max_episode_steps=5"]


def srvp_control(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the console script (python -m srvp.agents.train where it is not installed) in a subprocess."""
    script = Path(sys.executable).with_name("srvp-control")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "srvp.agents.train"]
    # One thread in every run so that results do not depend on how many threads summed a product.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, *TINY, f"run_dir={run_dir}", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_smoke_run_then_exact_resume(tmp_path):
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    srvp_control(resumed, "loop.episodes=1")
    assert (resumed / "checkpoints" / "last.pt").is_file()
    assert (resumed / "buffer" / "index.json").is_file()
    assert (resumed / "config.yaml").is_file()
    assert list((resumed / "tb").glob("events.out.tfevents.*"))
    names = set().union(*metrics(resumed))
    assert {"train/return", "eval/return", "losses/loss", "losses/head_reward", "train/env_steps"} <= names
    first = load_checkpoint(resumed / "checkpoints" / "last.pt")["extra"]["progress"]
    # 1 seed + 1 planning episode of 5 agent steps, cartpole's action repeat 8.
    assert first == {"train_episodes": 2, "env_steps": 2 * 5 * 8, "updates": 2}

    srvp_control(resumed, "loop.episodes=2")
    srvp_control(straight, "loop.episodes=2")
    payloads = [load_checkpoint(run / "checkpoints" / "last.pt") for run in (resumed, straight)]
    assert payloads[0]["extra"]["progress"] == {"train_episodes": 3, "env_steps": 120, "updates": 4}
    assert payloads[0]["extra"]["progress"] == payloads[1]["extra"]["progress"]
    for name, value in payloads[1]["model"].items():
        assert torch.equal(payloads[0]["model"][name], value), name
    buffers = [EpisodeBuffer.load(run / "buffer") for run in (resumed, straight)]
    assert buffers[0].num_episodes == 3
    batches = [buffer.sample(4, 5, generator=torch.Generator().manual_seed(0)) for buffer in buffers]
    for key in ("obs", "actions", "rewards"):
        assert torch.equal(batches[0][key], batches[1][key]), key
    steps = [line["step"] for line in metrics(resumed) if "train/return" in line]
    assert steps == [40, 80, 120]
    # The resumed run changed loop.episodes: the config the first steps ran with is kept beside the new one.
    assert "episodes: 1" in (resumed / "config.until_step_80.yaml").read_text()
    assert "episodes: 2" in (resumed / "config.yaml").read_text()

    # Another environment in the same run directory is refused in one line, and nothing is touched.
    before = (resumed / "checkpoints" / "last.pt").read_bytes()
    refused = srvp_control(resumed, "loop.episodes=3", "env=reacher-easy", check=False)
    assert refused.returncode == 1
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("srvp-control: error: ") and "cartpole-swingup" in last_line
    assert "reacher-easy" in last_line and "Traceback" not in refused.stderr
    assert (resumed / "checkpoints" / "last.pt").read_bytes() == before


@pytest.fixture(scope="module")
def tiny_cfg():
    with initialize_config_module("srvp.configs", version_base="1.3"):
        return compose("control", overrides=[*TINY, "run_dir=unused"])


def test_config_composes_with_the_planet_defaults():
    with initialize_config_module("srvp.configs", version_base="1.3"):
        cfg = compose("control", overrides=["run_dir=unused"])
    assert cfg.env.name == "cartpole-swingup" and cfg.env.action_repeat == 8
    assert (cfg.agent.horizon, cfg.agent.candidates, cfg.agent.top_k, cfg.agent.iterations) == (12, 1000, 100, 10)
    loop = cfg.loop
    assert (loop.seed_episodes, loop.collect_interval, loop.batch_size, loop.seq_len) == (5, 100, 50, 50)
    assert cfg.loop.exploration_noise == 0.3
    # The world model's YAML holds only what differs from SRVPConfig's defaults; the schema fills the rest.
    assert (cfg.world_model.f_gain, cfg.world_model.fwd_layers, dict(cfg.world_model.heads)) == (0.5, 4, {})


def test_bad_loop_values_fail_with_their_name(tiny_cfg):
    assert control_settings(tiny_cfg).loop.seq_len == 5
    for key, value, message in [
        ("seq_len", 1, "loop.seq_len=1: must be at least 2"),
        ("collect_interval", 0, "loop.collect_interval=0: must be at least 1"),
        ("max_episode_steps", 0, "loop.max_episode_steps=0: must be at least 1"),
    ]:
        bad = tiny_cfg.copy()
        bad.loop[key] = value
        with pytest.raises(ValueError, match=message):
            control_settings(bad)
    # The dataclasses check their values however they are built, not only when hydra composes them.
    with pytest.raises(ValueError, match="loop.exploration_noise=-1: must be at least 0"):
        LoopConfig(exploration_noise=-1)
    with pytest.raises(ValueError, match="planning.warm_start_fill='noise': expected one of"):
        PlanningConfig(warm_start_fill="noise")
    with pytest.raises(ValueError, match="planning.dt=0.3: 1/dt must be an integer"):
        PlanningConfig(dt=0.3)
    with pytest.raises(ValueError, match="threads=0: expected auto or a positive integer"):
        ControlConfig(threads=0)


def test_the_schema_holds_planets_values_and_the_yaml_only_what_differs():
    """configs/control.yaml sets no loop or planning value: LoopConfig's and PlanningConfig's defaults are PlaNet's,
    and the composed config holds every field of the dataclasses."""
    assert "loop" not in OmegaConf.load(REPO / "configs" / "control.yaml")
    with initialize_config_module("srvp.configs", version_base="1.3"):
        cfg = compose("control", overrides=["run_dir=unused"])
    settings = control_settings(cfg)
    assert settings.loop == LoopConfig() and settings.planning == PlanningConfig()
    assert set(cfg) == {item.name for item in dataclasses.fields(ControlConfig)}


def test_random_episode_layout_and_seeding():
    from srvp import envs

    env = envs.make_env("cartpole-swingup", max_episode_steps=4)
    episodes = [run_episode(env, RandomPolicy(1, np.random.default_rng(0)), seed=5) for _ in range(2)]
    env.close()
    episode = episodes[0]
    assert episode.frames.shape == (5, 64, 64, 3) and episode.frames.dtype == np.uint8
    assert episode.actions.shape == (4, 1) and episode.rewards.shape == (4,)
    assert episode.sim_steps == 4 * 8
    assert np.array_equal(episodes[0].frames, episodes[1].frames)
    assert stream_seed(1, 0, 0) != stream_seed(1, 1, 0) and 0 <= stream_seed(1, 0, 0) < 2**31


class SquareEnv(gymnasium.Env):
    """A tiny pixel environment for assembling the loop from parts: a white square on black pushed by a 1-d
    action, rewarded for nearing the centre, 6 steps per episode (no simulator, no rendering library)."""

    observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    spec = gymnasium.envs.registration.EnvSpec("srvp-test/Square-v0", max_episode_steps=6)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.steps = float(self.np_random.uniform(8, 56)), 0
        return self._frame(), {"sim_steps": 0}

    def step(self, action):
        self.position = float(np.clip(self.position + 6 * action[0], 8, 56))
        self.steps += 1
        reward = -abs(self.position - 32) / 32
        return self._frame(), reward, False, self.steps == 6, {"sim_steps": self.steps}

    def _frame(self) -> np.ndarray:
        frame = np.zeros((64, 64, 3), np.uint8)
        column = int(self.position)
        frame[28:36, column - 4 : column + 4] = 255
        return frame


def assembled_run(run_dir: Path) -> ControlRun:
    """The loop from its parts, at a tiny size, as a user with their own environment would assemble it."""
    torch.manual_seed(0)
    sizes = {"channels": 3, "filters": 4, "code_dim": 8, "y_dim": 4, "content_dim": 8, "inf_hidden": 16}
    sizes |= {"fwd_hidden": 16, "lstm_hidden": 8, "y1_frames": 2, "content_frames": 2, "stochastic": False}
    model = build_world_model(sizes, action_dim=1)
    loop = LoopConfig(
        seed_episodes=1,
        episodes=2,
        collect_interval=2,
        batch_size=2,
        seq_len=5,
        context_frames=3,
        eval_every=1,
        eval_episodes=2,
        video_frames=5,
    )
    return ControlRun(
        env=SquareEnv(),
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        buffer=EpisodeBuffer((3, 64, 64), action_dim=1),
        planner_factory=lambda: CEMPlanner(1, horizon=3, candidates=16, top_k=4, iterations=2),
        logger=RunLogger(run_dir, enabled=False),
        settings=ControlConfig(run_dir=str(run_dir), env={"name": "square"}, loop=loop, threads=1),
    )


def vars_of(run: ControlRun) -> dict:
    """The parts a run was assembled from."""
    names = ("env", "model", "optimizer", "buffer", "planner_factory", "logger", "settings")
    return {name: getattr(run, name) for name in names}


def test_the_loop_assembled_from_its_parts_trains_evaluates_and_resumes(tmp_path):
    run = assembled_run(tmp_path)
    assert run.resume() == (None, [])  # nothing saved yet
    summary = run.run()
    run.close()
    assert run.progress.train_episodes == 3 and run.progress.env_steps == 18 and run.progress.updates == 4
    assert {"train_return", "eval_return", "random_return", "zero_return", "loss"} <= set(summary)
    assert len(run.eval_history) == 2 and len(run.eval_history[-1]["returns"]) == 2
    assert "srvp-control square: evaluation return after 18 environment steps" in (tmp_path / "summary.md").read_text()
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["config"]["loop"]["episodes"] == 2 and saved["config"]["env"] == {"name": "square"}

    # A new run from the same parts resumes where the first stopped, and with one more episode continues.
    again = assembled_run(tmp_path)
    again.settings.loop.episodes = 3
    assert again.resume() == (18, ["loop.episodes: 2 -> 3"])
    assert again.progress == run.progress and again.buffer.num_episodes == 3
    again.run()
    again.close()
    assert again.progress.train_episodes == 4


def test_parts_that_do_not_fit_are_named_before_any_episode(tmp_path):
    run = assembled_run(tmp_path)
    with pytest.raises(ValueError, match="loop.seq_len=8: episodes have at most 7 frames"):
        ControlRun(**{**vars_of(run), "settings": ControlConfig(loop=LoopConfig(seq_len=8))})
    with pytest.raises(ValueError, match="loop.context_frames=1: the filter window needs at least"):
        ControlRun(**{**vars_of(run), "settings": ControlConfig(loop=LoopConfig(seq_len=5, context_frames=1))})
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_planning_policy_acts_reproducibly_from_the_environments_frames(tmp_path):
    """The public policy: reset, then act and observe in turn on (h w c) frames; a seeded generator gives the same
    episode again, and exploration noise changes it."""
    model = assembled_run(tmp_path).model.eval()

    def episode(noise: float) -> np.ndarray:
        policy = PlanningPolicy(
            model,
            CEMPlanner(1, horizon=3, candidates=16, top_k=4, iterations=2),
            context_frames=3,
            exploration_noise=noise,
            generator=torch.Generator().manual_seed(5),
        )
        return run_episode(SquareEnv(), policy, seed=3).actions

    first = episode(0.0)
    assert first.shape == (6, 1) and np.abs(first).max() <= 1
    assert np.array_equal(first, episode(0.0)) and not np.array_equal(first, episode(0.5))
