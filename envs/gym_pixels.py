"""Any gymnasium environment with a continuous action space, observed through 64x64 RGB pixels (the loop's
contract, as `envs.dmc.DMCEnv`).

The wrapped environment is built by `gymnasium.make(env_id, ...)`. Its frames come from `render()` in
`rgb_array` mode (`pixels="render"`, e.g. the MuJoCo tasks, whose low-dimensional observation is then only
kept in `info["state"]`), or are its observations themselves (`pixels="observation"`, for environments that
already observe images). Each frame is cropped (`crop="center"`: the centre square; `"none"`: the aspect
ratio is squashed) and resized to `size` x `size` with PIL's bilinear filter (antialiased when shrinking);
frames already at that size are used as they are (MuJoCo tasks render at any size: pass
`make_kwargs={"width": 64, "height": 64}`).

Each agent step maps an action in [-1, 1] onto the Box bounds, repeats it `action_repeat` times (fewer when
the episode ends) and sums the rewards; `info["sim_steps"]` counts the wrapped environment's steps since
reset. An episode ends when the wrapped environment terminates or reaches its time limit (its registered
`max_episode_steps`, or `max_sim_steps`, in its own steps); one without any time limit is refused, since
the training loop needs episodes that end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from PIL import Image

from envs.dmc import DEFAULT_ACTION_REPEAT, ID_NAMESPACE, scale_action
from envs.rendering import configure_mujoco_gl

PIXEL_SOURCES = ("render", "observation")
CROPS = ("none", "center")
GYM_PIXELS_ID = f"{ID_NAMESPACE}/GymPixels-v0"


def to_square_frame(frame: np.ndarray, size: int, crop: str) -> np.ndarray:
    """An image (h w), (h w 1), (h w 3) or (h w 4) -> uint8 RGB (size size 3): crop, then bilinear resize."""
    image = Image.fromarray(
        np.ascontiguousarray(frame.squeeze(-1) if frame.ndim == 3 and frame.shape[-1] == 1 else frame)
    )
    image = image.convert("RGB")
    if crop == "center" and image.width != image.height:
        side = min(image.width, image.height)
        left, upper = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, upper, left + side, upper + side))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def unsupported(env: gymnasium.Env, env_id: str, pixels: str) -> str | None:
    """Why environment `env` (made from `env_id`) cannot be wrapped, in one line; None when it can."""
    actions, observations = env.action_space, env.observation_space
    if not isinstance(actions, spaces.Box):
        return f"{env_id} has the action space {actions}: the planners need a continuous Box action space"
    if not (np.all(np.isfinite(actions.low)) and np.all(np.isfinite(actions.high))):
        return f"{env_id} has unbounded actions {actions}: [-1, 1] cannot be mapped onto them"
    if env.spec is None or env.spec.max_episode_steps is None:
        return f"{env_id} has no time limit: give max_sim_steps (env.max_sim_steps=N)"
    is_image = (
        isinstance(observations, spaces.Box) and observations.dtype == np.uint8 and len(observations.shape) in (2, 3)
    )
    if pixels == "observation" and not is_image:
        return f"{env_id} observes {observations}, not uint8 images: use pixels='render'"
    return None


class GymPixelEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """A gymnasium environment `env_id` seen through pixels, with scaled actions and action repeat.

    Observations: Box(0, 255, (size, size, 3), uint8), channel-last RGB.
    Actions: Box(-1, 1, (A,), float32), A the flattened size of the wrapped Box; clipped, then mapped onto its
    bounds (which must be finite). Discrete and other non-Box action spaces are refused.
    Seeding: `reset(seed=...)` seeds the wrapped environment's reset.
    `info` holds `state` (the wrapped environment's own observation, for debugging) and `sim_steps`.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        env_id: str,
        action_repeat: int = DEFAULT_ACTION_REPEAT,
        size: int = 64,
        pixels: str = "render",
        crop: str = "none",
        max_sim_steps: int | None = None,
        make_kwargs: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(action_repeat, int) or action_repeat < 1:
            raise ValueError(f"action_repeat must be a positive integer, got {action_repeat!r}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if pixels not in PIXEL_SOURCES:
            raise ValueError(f"pixels must be one of {PIXEL_SOURCES}, got {pixels!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.env_id, self.action_repeat, self.size, self.pixels, self.crop = env_id, action_repeat, size, pixels, crop
        self.render_mode = render_mode
        try:
            configure_mujoco_gl()  # before a MuJoCo environment imports its renderer
        except RuntimeError:
            pass  # no headless OpenGL here: only MuJoCo environments need it, and they say so when they render
        kwargs = dict(make_kwargs or {})
        if pixels == "render":
            kwargs["render_mode"] = "rgb_array"
        if max_sim_steps is not None:
            kwargs["max_episode_steps"] = int(max_sim_steps)
        self._env = gymnasium.make(env_id, **kwargs)
        problem = unsupported(self._env, env_id, pixels)
        if problem:
            self._env.close()
            raise ValueError(problem)
        inner_actions = self._env.action_space
        self.max_sim_steps = int(self._env.spec.max_episode_steps)
        self._action_low = inner_actions.low.astype(np.float64).ravel()
        self._action_high = inner_actions.high.astype(np.float64).ravel()
        self._inner_action_shape, self._inner_action_dtype = inner_actions.shape, inner_actions.dtype
        self.action_space = spaces.Box(-1.0, 1.0, shape=self._action_low.shape, dtype=np.float32)
        self.observation_space = spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        inner_fps = self._env.metadata.get("render_fps")
        if inner_fps:
            self.metadata = {**self.metadata, "render_fps": inner_fps / action_repeat}
        self._frame: np.ndarray | None = None
        self._sim_steps = 0
        self._episode_over = True

    @property
    def wrapped(self) -> gymnasium.Env:
        """The wrapped gymnasium environment (as gymnasium.make returned it), for inspection."""
        return self._env

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The wrapped environment's flattened (low, high) action bounds that -1 and 1 are mapped onto."""
        return self._action_low.copy(), self._action_high.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; a `seed` seeds the wrapped environment's reset (None continues its stream)."""
        super().reset(seed=seed)
        state, _ = self._env.reset(seed=seed, options=options)
        self._sim_steps = 0
        self._episode_over = False
        return self._observe(state), self._info(state)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply `action` for `action_repeat` steps of the wrapped environment (fewer if the episode ends)."""
        if self._episode_over:
            raise RuntimeError(f"{self.env_id}: call reset() before step() (episode not started or over)")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.env_id}: action shape {action.shape} != expected {self.action_space.shape}")
        control = scale_action(action, self._action_low, self._action_high)
        control = control.reshape(self._inner_action_shape).astype(self._inner_action_dtype)
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.action_repeat):
            state, step_reward, terminated, truncated, _ = self._env.step(control)
            self._sim_steps += 1
            reward += float(step_reward)
            if terminated or truncated:
                break
        self._episode_over = terminated or truncated
        return self._observe(state), reward, bool(terminated), bool(truncated), self._info(state)

    def render(self) -> np.ndarray | None:
        """The current observation frame (rgb_array mode), or None when no render mode was requested."""
        if self.render_mode is None or self._frame is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        """Close the wrapped environment (and its renderer)."""
        self._env.close()

    def _observe(self, state: Any) -> np.ndarray:
        """The frame after a reset or step, kept for `render()`; a copy the caller may keep."""
        frame = self._env.render() if self.pixels == "render" else state
        if frame is None:
            raise RuntimeError(f"{self.env_id} rendered no frame: it may not support render_mode='rgb_array'")
        self._frame = to_square_frame(np.asarray(frame), self.size, self.crop)
        return self._frame.copy()

    def _info(self, state: Any) -> dict[str, Any]:
        return {"state": state, "sim_steps": self._sim_steps}


def register_gym_pixels() -> str:
    """Register `GymPixelEnv` with gymnasium under GYM_PIXELS_ID unless already there; return the id."""
    if GYM_PIXELS_ID not in gymnasium.registry:
        gymnasium.register(id=GYM_PIXELS_ID, entry_point=f"{__name__}:GymPixelEnv")
    return GYM_PIXELS_ID


def make_gym_env(env_id: str, **env_kwargs: Any) -> gymnasium.Env:
    """`gymnasium.make` of `GymPixelEnv(env_id, ...)`, forwarding its and `make`'s keyword arguments.

    `max_episode_steps=N` (gymnasium's TimeLimit, in agent steps) gives shorter episodes, e.g. for smoke tests.
    """
    return gymnasium.make(register_gym_pixels(), env_id=env_id, **env_kwargs)
