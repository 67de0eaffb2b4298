"""Any gymnasium environment with a continuous action space, observed through 64x64 RGB pixels (the loop's
contract, as `srvp.envs.dmc.DMCEnv`).

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

from srvp.envs.dmc import DEFAULT_ACTION_REPEAT, ID_NAMESPACE
from srvp.envs.pixel_env import PixelEnv
from srvp.envs.rendering import configure_mujoco_gl

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


class GymPixelEnv(PixelEnv):
    """A gymnasium environment `env_id` seen through pixels, with scaled actions and action repeat.

    Observations: Box(0, 255, (size, size, 3), uint8), channel-last RGB.
    Actions: Box(-1, 1, (A,), float32), A the flattened size of the wrapped Box; clipped, then mapped onto its
    bounds (which must be finite). Discrete and other non-Box action spaces are refused.
    Seeding: `reset(seed=...)` seeds the wrapped environment's reset.
    `info` holds `state` (the wrapped environment's own observation, for debugging) and `sim_steps`.
    """

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
        super().__init__(env_id, action_repeat, size, render_mode)
        if pixels not in PIXEL_SOURCES:
            raise ValueError(f"pixels must be one of {PIXEL_SOURCES}, got {pixels!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.pixels, self.crop = pixels, crop
        try:
            configure_mujoco_gl()  # before a MuJoCo environment imports its renderer
        except RuntimeError:
            pass  # no headless OpenGL here: only MuJoCo environments need it, and they say so when they render
        kwargs = dict(make_kwargs or {})
        if pixels == "render":
            kwargs["render_mode"] = "rgb_array"
        if max_sim_steps is not None:
            kwargs["max_episode_steps"] = int(max_sim_steps)
        self._env = make_wrapped(env_id, kwargs)
        self._first_frame_checked = False
        problem = unsupported(self._env, env_id, pixels)
        if problem:
            self._env.close()
            raise ValueError(problem)
        inner_actions = self._env.action_space
        self.max_sim_steps = int(self._env.spec.max_episode_steps)
        self._set_action_bounds(inner_actions.low, inner_actions.high)
        self._inner_action_shape, self._inner_action_dtype = inner_actions.shape, inner_actions.dtype
        inner_fps = self._env.metadata.get("render_fps")
        if inner_fps:
            self.metadata = {**self.metadata, "render_fps": inner_fps / action_repeat}

    @property
    def env_id(self) -> str:
        """The gymnasium id of the wrapped environment."""
        return self.name

    @property
    def wrapped(self) -> gymnasium.Env:
        """The wrapped gymnasium environment (as gymnasium.make returned it), for inspection."""
        return self._env

    def close(self) -> None:
        """Close the wrapped environment (and its renderer)."""
        self._env.close()

    def _reset_sim(self, seed: int | None, options: dict[str, Any] | None) -> Any:
        state, _ = self._env.reset(seed=seed, options=options)
        return state

    def _sim_step(self, control: np.ndarray) -> tuple[Any, float, bool, bool]:
        inner_control = control.reshape(self._inner_action_shape).astype(self._inner_action_dtype)
        state, reward, terminated, truncated, _ = self._env.step(inner_control)
        return state, float(reward), bool(terminated), bool(truncated)

    def _render_frame(self, state: Any) -> np.ndarray:
        if self.pixels == "render":
            try:
                frame = self._env.render()
            except gymnasium.error.DependencyNotInstalled as error:
                raise ImportError(f"{self.env_id} cannot render: {first_line(error)}") from None
        else:
            frame = state
        if frame is None:
            raise RuntimeError(f"{self.env_id} rendered no frame: it may not support render_mode='rgb_array'")
        frame = np.asarray(frame)
        # An empty render would be resized into a black frame, and a constant first frame (a renderer that
        # draws nothing) into frames without information: the model would train on them without a word.
        source = "observed" if self.pixels == "observation" else "rendered"
        if frame.size == 0 or frame.ndim not in (2, 3):
            raise RuntimeError(
                f"{self.env_id} {source} an empty or non-image frame of shape {frame.shape}: check its size "
                "arguments (env.make_kwargs, e.g. {width: 64, height: 64})"
            )
        if not self._first_frame_checked:
            if frame.min() == frame.max():
                raise RuntimeError(
                    f"{self.env_id} {source} a constant frame of shape {frame.shape} (every value {frame.flat[0]}) "
                    "at its first reset: its renderer draws nothing (check env.make_kwargs and MUJOCO_GL)"
                )
            self._first_frame_checked = True
        return to_square_frame(frame, self.size, self.crop)

    def _state_info(self, state: Any) -> dict[str, Any]:
        return {"state": state}


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def make_wrapped(env_id: str, kwargs: Mapping[str, Any]) -> gymnasium.Env:
    """`gymnasium.make(env_id, **kwargs)` with its user errors (an unknown id, an argument the environment does
    not take, a missing optional package) in one line naming the id, instead of a traceback."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env.id={env_id!r}: give a registered gymnasium id, e.g. env.id=Reacher-v5")
    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.DependencyNotInstalled as error:
        raise ImportError(f"{env_id} needs a package that is not installed: {first_line(error)}") from None
    except gymnasium.error.Error as error:  # unknown name, version or namespace, and gymnasium's other refusals
        raise ValueError(f"env.id={env_id}: {first_line(error)}") from None
    except TypeError as error:
        # gymnasium appends the creator's kwargs to the message: keep the environment's own complaint.
        reason = first_line(error).split(" was raised from the environment creator")[0]
        given = {key: value for key, value in kwargs.items() if key != "render_mode"}
        raise ValueError(f"{env_id} does not take the arguments {given} (env.make_kwargs): {reason}") from None


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
