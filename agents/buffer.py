"""Episode replay buffer for learning a world model from pixels (PlaNet-style).

Storage: one contiguous numpy array per field and per episode (no per-frame Python objects):
observations uint8 ``(T+1, C, H, W)`` (channels first, the project's frame layout), actions float32
``(T, A)`` and rewards float32 ``(T,)``, where ``actions[t]`` is taken at ``obs[t]`` and leads to
``obs[t+1]`` while yielding ``rewards[t]``.

Sampled windows keep that alignment without padding: a window of ``L`` observations comes with
the ``L-1`` actions and rewards between them, so a model predicts ``obs[:, 1:]`` from ``obs[:, :-1]``
and ``actions``, and a reward head applied to the state at ``obs[:, 1:]`` regresses ``rewards``.

Persistence is incremental: a directory holds one ``episode_XXXXXXX.npz`` per episode and an
``index.json`` listing the kept episodes in order; saving after each episode writes only the new
episode file and the small index, both atomically.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from srvp.common.files import atomic_write

INDEX_NAME = "index.json"
INDEX_VERSION = 1
EPISODE_PATTERN = re.compile(r"^episode_(\d+)\.npz$")


def _episode_name(episode_id: int) -> str:
    return f"episode_{episode_id:07d}.npz"


def _to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


class EpisodeBuffer:
    """Replay buffer of whole episodes, sampled as uniform fixed-length windows.

    ``capacity`` (in environment steps, i.e. actions) bounds the memory: adding an episode drops the
    oldest episodes until the total fits, always keeping the newest episode. ``None`` keeps all.
    """

    def __init__(self, obs_shape: tuple[int, int, int], action_dim: int, capacity: int | None = None) -> None:
        if len(obs_shape) != 3 or min(obs_shape) < 1:
            raise ValueError(f"obs_shape must be (channels, height, width), all positive, got {obs_shape}")
        if action_dim < 1:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be a positive number of steps or None, got {capacity}")
        self.obs_shape = tuple(int(size) for size in obs_shape)
        self.action_dim = int(action_dim)
        self.capacity = capacity
        self._episode_ids: list[int] = []
        self._obs: list[np.ndarray] = []
        self._actions: list[np.ndarray] = []
        self._rewards: list[np.ndarray] = []
        self._next_episode_id = 0
        self._num_steps = 0
        # Episodes already on disk in `_saved_dir`, so `save` there writes only what is new.
        self._saved_dir: Path | None = None
        self._saved_ids: set[int] = set()

    @property
    def num_episodes(self) -> int:
        return len(self._episode_ids)

    @property
    def num_steps(self) -> int:
        """Number of stored transitions (actions), summed over episodes."""
        return self._num_steps

    def __len__(self) -> int:
        return self.num_steps

    @property
    def reward_mean(self) -> float:
        """Mean reward per transition over the stored episodes (the reward-prediction baseline)."""
        if not self._rewards:
            raise ValueError("the buffer holds no episode")
        return float(np.concatenate(self._rewards).mean())

    def __repr__(self) -> str:
        return (
            f"EpisodeBuffer(episodes={self.num_episodes}, steps={self.num_steps}, "
            f"obs_shape={self.obs_shape}, action_dim={self.action_dim}, capacity={self.capacity})"
        )

    def _channels_first(self, obs: np.ndarray) -> np.ndarray:
        """Return ``obs`` as (T+1, C, H, W), accepting channels-last (T+1, H, W, C) input too."""
        channels, height, width = self.obs_shape
        if obs.ndim == 4 and obs.shape[1:] == (channels, height, width):
            return obs
        if obs.ndim == 4 and obs.shape[1:] == (height, width, channels):
            return obs.transpose(0, 3, 1, 2)
        raise ValueError(
            f"observations must be shaped (T+1, {channels}, {height}, {width}) or "
            f"(T+1, {height}, {width}, {channels}), got {tuple(obs.shape)}"
        )

    def add_episode(
        self,
        obs: np.ndarray | torch.Tensor,
        actions: np.ndarray | torch.Tensor,
        rewards: np.ndarray | torch.Tensor,
    ) -> None:
        """Store one episode: obs uint8 (T+1, C, H, W) or (T+1, H, W, C), actions (T, A), rewards (T,)."""
        obs, actions, rewards = _to_numpy(obs), _to_numpy(actions), _to_numpy(rewards)
        if obs.dtype != np.uint8:
            raise ValueError(f"observations must be uint8, got {obs.dtype}")
        obs = self._channels_first(obs)
        num_actions = len(obs) - 1
        if num_actions < 1:
            raise ValueError(f"an episode needs at least 2 observations, got {len(obs)}")
        if actions.shape != (num_actions, self.action_dim):
            raise ValueError(
                f"actions must be shaped ({num_actions}, {self.action_dim}) for {len(obs)} observations, "
                f"got {tuple(actions.shape)}"
            )
        if rewards.shape != (num_actions,):
            raise ValueError(
                f"rewards must be shaped ({num_actions},) for {len(obs)} observations, got {tuple(rewards.shape)}"
            )
        if not (np.isfinite(actions).all() and np.isfinite(rewards).all()):
            raise ValueError("actions and rewards must be finite")
        self._append(
            self._next_episode_id,
            np.ascontiguousarray(obs).copy(),
            actions.astype(np.float32, copy=True),
            rewards.astype(np.float32, copy=True),
        )
        self._next_episode_id += 1
        self._evict()

    def _append(self, episode_id: int, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        self._episode_ids.append(episode_id)
        self._obs.append(obs)
        self._actions.append(actions)
        self._rewards.append(rewards)
        self._num_steps += len(actions)

    def _evict(self) -> None:
        while self.capacity is not None and self._num_steps > self.capacity and self.num_episodes > 1:
            self._num_steps -= len(self._actions[0])
            for field in (self._episode_ids, self._obs, self._actions, self._rewards):
                del field[0]

    def sample(self, batch_size: int, seq_len: int, generator: torch.Generator | None = None) -> dict:
        """Draw ``batch_size`` windows of ``seq_len`` consecutive observations, uniformly over all windows.

        Returns torch tensors: ``obs`` uint8 (B, L, C, H, W), ``actions`` float32 (B, L-1, A) and
        ``rewards`` float32 (B, L-1), where ``actions[:, t]`` leads from ``obs[:, t]`` to ``obs[:, t+1]``
        and ``rewards[:, t]`` is the reward of that transition. Each window is equally likely, so long
        episodes are drawn in proportion to their length; episodes shorter than the window never are.
        ``generator`` (a CPU torch.Generator) makes the draw reproducible.
        """
        if batch_size < 1 or seq_len < 2:
            raise ValueError(f"need batch_size >= 1 and seq_len >= 2, got {batch_size} and {seq_len}")
        # An episode of T actions has T+1 observations, hence T+2-L windows of L observations.
        windows_per_episode = np.array([max(0, len(a) + 2 - seq_len) for a in self._actions], dtype=np.int64)
        windows_end = np.cumsum(windows_per_episode)
        num_windows = int(windows_end[-1]) if len(windows_end) else 0
        if num_windows == 0:
            raise ValueError(
                f"no stored episode has {seq_len} observations ({self.num_episodes} episodes, {self.num_steps} steps)"
            )
        window = torch.randint(num_windows, (batch_size,), generator=generator).numpy()
        episodes = np.searchsorted(windows_end, window, side="right")
        starts = window - (windows_end[episodes] - windows_per_episode[episodes])
        windows = list(zip(episodes.tolist(), starts.tolist(), strict=True))
        obs = np.stack([self._obs[e][s : s + seq_len] for e, s in windows])
        actions = np.stack([self._actions[e][s : s + seq_len - 1] for e, s in windows])
        rewards = np.stack([self._rewards[e][s : s + seq_len - 1] for e, s in windows])
        return {
            "obs": torch.from_numpy(obs),
            "actions": torch.from_numpy(actions),
            "rewards": torch.from_numpy(rewards),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Save into ``directory`` incrementally: new episode files, then the index, then stale files go.

        Every file is written atomically and the index last, so a crash at any point leaves a
        directory that loads as the previous or the new buffer. Returns the index path.
        """
        directory = Path(directory)
        if directory != self._saved_dir:
            self._saved_dir, self._saved_ids = directory, set()
        for position, episode_id in enumerate(self._episode_ids):
            episode_path = directory / _episode_name(episode_id)
            if episode_id in self._saved_ids and episode_path.exists():
                continue
            arrays = {
                "obs": self._obs[position],
                "actions": self._actions[position],
                "rewards": self._rewards[position],
            }
            atomic_write(episode_path, lambda file, arrays=arrays: np.savez_compressed(file, **arrays))
            self._saved_ids.add(episode_id)
        index = {
            "version": INDEX_VERSION,
            "obs_shape": list(self.obs_shape),
            "action_dim": self.action_dim,
            "capacity": self.capacity,
            "next_episode_id": self._next_episode_id,
            "episode_ids": self._episode_ids,
        }
        index_path = atomic_write(directory / INDEX_NAME, lambda file: file.write(json.dumps(index).encode()))
        kept_ids = set(self._episode_ids)
        for path in directory.iterdir():
            match = EPISODE_PATTERN.match(path.name)
            if match and int(match.group(1)) not in kept_ids:
                path.unlink(missing_ok=True)
        self._saved_ids &= kept_ids
        return index_path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EpisodeBuffer:
        """Rebuild the exact buffer (episodes, order, capacity, episode numbering) saved in ``directory``."""
        directory = Path(directory)
        index_path = directory / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"no replay buffer index at {index_path}")
        try:
            index = json.loads(index_path.read_text())
            buffer = cls(tuple(index["obs_shape"]), index["action_dim"], index["capacity"])
            episode_ids = [int(episode_id) for episode_id in index["episode_ids"]]
            next_episode_id = int(index["next_episode_id"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"corrupt replay buffer index {index_path}: {error}") from error
        if index.get("version") != INDEX_VERSION:
            raise ValueError(
                f"replay buffer index {index_path} has version {index.get('version')}, expected {INDEX_VERSION}"
            )
        for episode_id in episode_ids:
            episode_path = directory / _episode_name(episode_id)
            if not episode_path.is_file():
                raise FileNotFoundError(f"replay buffer episode {episode_path} is listed but missing")
            try:
                with np.load(episode_path) as arrays:
                    obs, actions, rewards = arrays["obs"], arrays["actions"], arrays["rewards"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"corrupt replay buffer episode {episode_path}: {error}") from error
            valid = (
                obs.dtype == np.uint8
                and obs.shape[1:] == buffer.obs_shape
                and actions.dtype == np.float32
                and actions.shape == (len(obs) - 1, buffer.action_dim)
                and rewards.dtype == np.float32
                and rewards.shape == (len(obs) - 1,)
            )
            if not valid:
                raise ValueError(f"replay buffer episode {episode_path} does not match the index shapes")
            buffer._append(episode_id, obs, actions, rewards)
        buffer._next_episode_id = next_episode_id
        buffer._saved_dir, buffer._saved_ids = directory, set(episode_ids)
        return buffer
