"""srvp-control end to end on a tiny budget: run files, exact resumption, configs, loop helpers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from srvp.agents.buffer import EpisodeBuffer
from srvp.agents.loop import RandomPolicy, check_config, run_episode, stream_seed
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
    bad = tiny_cfg.copy()
    bad.loop.seq_len = 1
    with pytest.raises(ValueError, match="loop.seq_len"):
        check_config(bad)
    bad = tiny_cfg.copy()
    bad.loop.collect_interval = 0
    with pytest.raises(ValueError, match="loop.collect_interval"):
        check_config(bad)


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
