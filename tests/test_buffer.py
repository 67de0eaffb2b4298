"""Episode replay buffer: alignment of sampled windows, uniform sampling, persistence, capacity."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from srvp.agents.buffer import EpisodeBuffer

OBS_SHAPE = (3, 8, 8)
ACTION_DIM = 2


def make_episode(episode: int, num_actions: int, channels_last: bool = False) -> tuple[np.ndarray, ...]:
    """An episode whose every entry encodes (episode, time): pixel channel 0 holds the episode, channel 1
    the time; action (episode, time); reward 1000 * episode + time."""
    obs = np.zeros((num_actions + 1, *OBS_SHAPE), dtype=np.uint8)
    obs[:, 0] = episode
    obs[:, 1] = np.arange(num_actions + 1)[:, None, None]
    actions = np.stack([np.full(num_actions, episode), np.arange(num_actions)], axis=1).astype(np.float32)
    rewards = (1000 * episode + np.arange(num_actions)).astype(np.float32)
    if channels_last:
        obs = obs.transpose(0, 2, 3, 1)
    return obs, actions, rewards


def filled_buffer(lengths: list[int], capacity: int | None = None) -> EpisodeBuffer:
    buffer = EpisodeBuffer(OBS_SHAPE, ACTION_DIM, capacity=capacity)
    for episode, num_actions in enumerate(lengths):
        buffer.add_episode(*make_episode(episode, num_actions))
    return buffer


def test_sampled_windows_are_aligned_with_the_documented_convention() -> None:
    buffer = filled_buffer([6, 9, 12])
    assert (buffer.num_episodes, buffer.num_steps) == (3, 27)
    batch = buffer.sample(64, 5, torch.Generator().manual_seed(0))
    assert batch["obs"].shape == (64, 5, *OBS_SHAPE) and batch["obs"].dtype == torch.uint8
    assert batch["actions"].shape == (64, 4, ACTION_DIM) and batch["actions"].dtype == torch.float32
    assert batch["rewards"].shape == (64, 4) and batch["rewards"].dtype == torch.float32
    episode = batch["obs"][:, :, 0, 0, 0].long()
    time = batch["obs"][:, :, 1, 0, 0].long()
    assert (episode == episode[:, :1]).all(), "a window mixes episodes"
    assert torch.equal(time, time[:, :1] + torch.arange(5)), "a window skips frames"
    # actions[:, t] and rewards[:, t] belong to the transition obs[:, t] -> obs[:, t+1].
    assert torch.equal(batch["actions"][..., 0].long(), episode[:, :-1])
    assert torch.equal(batch["actions"][..., 1].long(), time[:, :-1])
    assert torch.equal(batch["rewards"].long(), 1000 * episode[:, :-1] + time[:, :-1])


def test_channels_last_input_is_stored_channels_first() -> None:
    buffer = EpisodeBuffer(OBS_SHAPE, ACTION_DIM)
    buffer.add_episode(*make_episode(3, 4, channels_last=True))
    reference = EpisodeBuffer(OBS_SHAPE, ACTION_DIM)
    reference.add_episode(*(torch.from_numpy(array) for array in make_episode(3, 4)))
    batches = [b.sample(8, 5, torch.Generator().manual_seed(0)) for b in (buffer, reference)]
    for key in batches[0]:
        assert torch.equal(batches[0][key], batches[1][key])


def test_sampling_is_uniform_over_valid_windows_and_skips_short_episodes() -> None:
    # Windows of 4 observations: an episode of T actions has T - 2 of them: 0, 2 and 8 here.
    buffer = filled_buffer([2, 4, 10])
    batch = buffer.sample(20000, 4, torch.Generator().manual_seed(0))
    episode = batch["obs"][:, 0, 0, 0, 0].long()
    start = batch["obs"][:, 0, 1, 0, 0].long()
    window_id = torch.where(episode == 1, start, 2 + start)
    assert (episode != 0).all()
    counts = torch.bincount(window_id, minlength=10).double()
    assert len(counts) == 10
    assert ((counts / 20000 - 0.1).abs() < 0.01).all(), counts


def test_sampling_is_reproducible_from_the_generator_state() -> None:
    buffer = filled_buffer([10, 10])
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = buffer.sample(16, 3, generator)
    generator.set_state(state)
    second = buffer.sample(16, 3, generator)
    for key in first:
        assert torch.equal(first[key], second[key])


def test_save_load_round_trip_and_incremental_saving(tmp_path: Path) -> None:
    buffer = filled_buffer([5, 7], capacity=15)
    buffer.save(tmp_path)
    buffer.add_episode(*make_episode(2, 6))  # 18 steps > 15: episode 0 is evicted
    buffer.save(tmp_path)
    assert sorted(path.name for path in tmp_path.glob("episode_*.npz")) == [
        "episode_0000001.npz",
        "episode_0000002.npz",
    ]
    assert json.loads((tmp_path / "index.json").read_text())["episode_ids"] == [1, 2]

    restored = EpisodeBuffer.load(tmp_path)
    assert (restored.num_episodes, restored.num_steps, restored.capacity) == (2, 13, 15)
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    expected = buffer.sample(32, 4, generator)
    generator.set_state(state)
    actual = restored.sample(32, 4, generator)
    for key in expected:
        assert torch.equal(expected[key], actual[key])

    # Saving again after a reload writes only the new episode, and numbering continues.
    kept_file = tmp_path / "episode_0000001.npz"
    kept_written = (kept_file.stat().st_ino, kept_file.stat().st_mtime_ns)
    restored.add_episode(*make_episode(3, 2))
    restored.save(tmp_path)
    assert (kept_file.stat().st_ino, kept_file.stat().st_mtime_ns) == kept_written
    assert (tmp_path / "episode_0000003.npz").is_file()


def test_capacity_drops_oldest_episodes_but_keeps_the_newest() -> None:
    buffer = filled_buffer([4, 4, 4], capacity=10)
    assert (buffer.num_episodes, buffer.num_steps) == (2, 8)
    batch = buffer.sample(200, 2, torch.Generator().manual_seed(0))
    assert set(batch["obs"][:, 0, 0, 0, 0].tolist()) == {1, 2}
    buffer.add_episode(*make_episode(3, 25))
    assert (buffer.num_episodes, buffer.num_steps) == (1, 25)


def test_add_episode_rejects_malformed_episodes() -> None:
    buffer = EpisodeBuffer(OBS_SHAPE, ACTION_DIM)
    obs, actions, rewards = make_episode(0, 5)
    with pytest.raises(ValueError, match="uint8"):
        buffer.add_episode(obs.astype(np.float32), actions, rewards)
    with pytest.raises(ValueError, match="observations must be shaped"):
        buffer.add_episode(obs[:, :, :4], actions, rewards)
    with pytest.raises(ValueError, match="actions must be shaped"):
        buffer.add_episode(obs, actions[:-1], rewards)
    with pytest.raises(ValueError, match="rewards must be shaped"):
        buffer.add_episode(obs, actions, rewards[:, None])
    with pytest.raises(ValueError, match="finite"):
        buffer.add_episode(obs, np.full_like(actions, np.nan), rewards)
    with pytest.raises(ValueError, match="no stored episode has 3 observations"):
        buffer.sample(4, 3)
    assert buffer.num_episodes == 0


def test_load_names_the_missing_or_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="index.json"):
        EpisodeBuffer.load(tmp_path)
    filled_buffer([3, 3]).save(tmp_path)
    (tmp_path / "episode_0000001.npz").write_bytes(b"not an npz archive")
    with pytest.raises(ValueError, match="episode_0000001.npz"):
        EpisodeBuffer.load(tmp_path)
    (tmp_path / "episode_0000001.npz").unlink()
    with pytest.raises(FileNotFoundError, match="episode_0000001.npz"):
        EpisodeBuffer.load(tmp_path)
    (tmp_path / "index.json").write_text("{truncated")
    with pytest.raises(ValueError, match="index.json"):
        EpisodeBuffer.load(tmp_path)
