"""dm_control suite tasks as gymnasium environments that observe 64x64 RGB pixels (PlaNet's setting).

A task is named `domain-task` (`cartpole-swingup`, `ball_in_cup-catch`, any suite pair). Each agent step
maps an action in [-1, 1] to the task's action bounds, repeats it `action_repeat` times in the simulator
and sums the rewards; the observation is then rendered from one camera as a channel-last `(size, size, 3)`
uint8 array, exactly as `render()` returns it (the models' `(C, H, W)` layout is the data code's business).
An episode lasts the suite's 1000 simulator steps (1000 / action_repeat agent steps) and ends with
`truncated=True`; `terminated` is True only when the task itself ends the episode early (discount 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv

from srvp.envs.pixel_env import PixelEnv
from srvp.envs.rendering import configure_mujoco_gl

# PlaNet's action repeat per domain (Hafner et al. 2019, table 1); other domains get Dreamer's 2.
PLANET_ACTION_REPEAT: dict[str, int] = {
    "cartpole": 8,
    "reacher": 4,
    "cheetah": 4,
    "finger": 2,
    "ball_in_cup": 4,
    "walker": 2,
}
DEFAULT_ACTION_REPEAT = 2
# Camera 0 frames the agent in every domain but quadruped, whose camera 2 follows it (PlaNet/Dreamer).
CAMERA_BY_DOMAIN: dict[str, int] = {"quadruped": 2}
PLANET_TASKS: tuple[str, ...] = (
    "cartpole-swingup",
    "reacher-easy",
    "cheetah-run",
    "finger-spin",
    "ball_in_cup-catch",
    "walker-walk",
)
ID_NAMESPACE = "srvp"


def split_task_name(name: str) -> tuple[str, str]:
    """Split `domain-task` into the dm_control suite's (domain, task) pair, checking that the suite has it."""
    domain, sep, task = name.partition("-")
    if not sep or not domain or not task:
        raise ValueError(f"task name {name!r} must look like 'domain-task', e.g. 'cartpole-swingup'")
    configure_mujoco_gl()
    from dm_control import suite

    if (domain, task) not in suite.ALL_TASKS:
        known = ", ".join(f"{d}-{t}" for d, t in suite.ALL_TASKS)
        raise ValueError(f"unknown dm_control suite task {name!r}; known tasks: {known}")
    return domain, task


def default_action_repeat(name: str) -> int:
    """PlaNet's action repeat for the domain of task `name`, or Dreamer's 2 for domains PlaNet did not use."""
    return PLANET_ACTION_REPEAT.get(name.partition("-")[0], DEFAULT_ACTION_REPEAT)


def default_camera_id(name: str) -> int:
    """The camera PlaNet renders task `name` from: 2 for quadruped, 0 otherwise."""
    return CAMERA_BY_DOMAIN.get(name.partition("-")[0], 0)


class DMCEnv(PixelEnv):
    """One dm_control suite task observed through pixels, with scaled actions and action repeat.

    Observations: Box(0, 255, (size, size, 3), uint8), channel-last RGB from `camera_id`.
    Actions: Box(-1, 1, (action_dim,), float32), clipped then mapped onto the task's bounds.
    Seeding: `seed` (at construction) and `reset(seed=...)` seed the task's own random state, which draws
    the initial state, so a seed gives the same episode as `suite.load(..., task_kwargs={'random': seed})`.
    `info` holds `proprio` (the task's flattened low-dimensional observation, for debugging only) and
    `sim_steps` (simulator steps since reset, the unit of the papers' environment-step budgets).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        task: str,
        action_repeat: int | None = None,
        size: int = 64,
        camera_id: int | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        domain, task_name = split_task_name(task)
        action_repeat = default_action_repeat(task) if action_repeat is None else action_repeat
        super().__init__(task, action_repeat, size, render_mode)
        self.camera_id = default_camera_id(task) if camera_id is None else camera_id

        from dm_control import suite

        self._dmc = suite.load(domain, task_name, task_kwargs={"random": _task_seed(seed)})
        num_cameras = self._dmc.physics.model.ncam
        # -1 is MuJoCo's free camera, always available.
        if not -1 <= self.camera_id < num_cameras:
            raise ValueError(f"camera_id {self.camera_id} is out of range for {task} ({num_cameras} cameras)")
        # dm_control keeps its time limit in simulator steps as `_step_limit` (inf without one).
        step_limit = float(getattr(self._dmc, "_step_limit", math.inf))
        self.max_sim_steps = int(step_limit) if math.isfinite(step_limit) else None
        spec = self._dmc.action_spec()
        self._set_action_bounds(spec.minimum, spec.maximum)
        agent_step_seconds = self._dmc.control_timestep() * self.action_repeat
        self.metadata = {**self.metadata, "render_fps": 1.0 / agent_step_seconds}

    @property
    def task_name(self) -> str:
        """The suite task, `domain-task`."""
        return self.name

    @property
    def physics(self) -> Any:
        """The dm_control `Physics` of the task, for inspection and debugging."""
        return self._dmc.physics

    def close(self) -> None:
        """Free the simulator and its rendering contexts; the environment cannot be used afterwards."""
        if self._dmc is not None:
            self._dmc.physics.free()
            self._dmc = None

    def _reset_sim(self, seed: int | None, options: dict[str, Any] | None) -> Mapping[str, np.ndarray]:
        if seed is not None:
            self._dmc.task.random.seed(_task_seed(seed))
        return self._dmc.reset().observation

    def _sim_step(self, control: np.ndarray) -> tuple[Mapping[str, np.ndarray], float, bool, bool]:
        time_step = self._dmc.step(control)
        # dm_control ends an episode at its time limit with discount 1 and a task termination with 0.
        terminated = time_step.last() and time_step.discount == 0.0
        truncated = time_step.last() and not terminated
        return time_step.observation, time_step.reward or 0.0, terminated, truncated

    def _render_frame(self, state: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._dmc.physics.render(height=self.size, width=self.size, camera_id=self.camera_id)

    def _state_info(self, state: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {"proprio": np.concatenate([np.ravel(value) for value in state.values()]).astype(np.float64)}


def _task_seed(seed: int | None) -> int | None:
    """Check that `seed` fits numpy's RandomState (dm_control's task random state), which needs [0, 2**32)."""
    if seed is not None and not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32) for dm_control's random state, got {seed}")
    return seed


def env_id(task: str) -> str:
    """The gymnasium id of task `task`, e.g. `srvp/cartpole-swingup-v0`."""
    return f"{ID_NAMESPACE}/{task}-v0"


def register_task(task: str) -> str:
    """Register task `task` with gymnasium under `env_id(task)` unless already there; return the id."""
    task_id = env_id(task)
    if task_id not in gymnasium.registry:
        gymnasium.register(id=task_id, entry_point=f"{__name__}:DMCEnv", kwargs={"task": task})
    return task_id


def make_env(task: str, **env_kwargs: Any) -> gymnasium.Env:
    """`gymnasium.make` task `task` (registered on demand), forwarding `DMCEnv` and `make` keyword arguments.

    `max_episode_steps=N` (gymnasium's TimeLimit) gives shorter episodes, e.g. for smoke tests.
    """
    return gymnasium.make(register_task(task), **env_kwargs)


def make_vector_env(
    task: str,
    num_envs: int,
    seed: int | None = None,
    vectorization_mode: str = "sync",
    **env_kwargs: Any,
) -> VectorEnv:
    """A gymnasium vector environment of `num_envs` copies of task `task`, stepping in lock-step.

    Copy i has its task random state seeded with `seed + i` (different initial states per copy) and the
    batched action space is seeded with `seed`; observations are stacked as `(num_envs, size, size, 3)`.
    `vectorization_mode` 'async' runs each copy in its own spawned process.
    """
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    # Workers are spawned, not forked: a GL (or CUDA) context the parent already holds does not survive a
    # fork, and EGL rendering in a forked child can hang forever.
    vector_classes = {"sync": SyncVectorEnv, "async": partial(AsyncVectorEnv, context="spawn")}
    if vectorization_mode not in vector_classes:
        raise ValueError(f"vectorization_mode must be 'sync' or 'async', got {vectorization_mode!r}")
    if seed is not None:
        _task_seed(seed + num_envs - 1)
    env_fns = [
        partial(make_env, task, seed=None if seed is None else seed + index, **env_kwargs) for index in range(num_envs)
    ]
    vector_env = vector_classes[vectorization_mode](env_fns)
    if seed is not None:
        vector_env.action_space.seed(seed)
    return vector_env
